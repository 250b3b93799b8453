"""Alert rules with promtool, the Alertmanager example with amtool, the dashboards' shape."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, debian_tool

RULES = ROOT / "alerts" / "ingestion-failures.rules.yml"
RULE_TESTS = ROOT / "alerts" / "tests" / "ingestion-failures.test.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_is_clean() -> None:
    result = run(debian_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 17 rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run(debian_tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in checks if c.get("exp_alerts")}
    silent = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in alerts()}
    assert names == {
        "IngestionSourceDown",
        "IngestionSourceStale",
        "IngestionPollErrorsRising",
        "IngestionFailedFilesSpike",
        "IngestionPersistentFailures",
        "IngestionUnresolvedFailuresOld",
        "IngestionAccessDeniedBurst",
        "IngestionSeriesCapHit",
        "IngestionExporterAbsent",
        "IngestionShardMissing",
    }
    assert firing == names and silent == names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_texts_and_a_written_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["for"]
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    anchor = annotations["runbook_url"].rsplit("#", 1)[1]
    assert annotations["runbook_url"].endswith(f"docs/runbooks.md#{rule['alert'].lower()}")
    section = re.search(rf"^## {rule['alert']}\n(.*?)(?=^## |\Z)", RUNBOOKS.read_text(), re.M | re.S)
    assert section is not None and anchor == rule["alert"].lower()
    for heading in ("What it means", "How to confirm", "How to fix"):
        assert f"**{heading}**" in section.group(1)


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_but_the_absent_exporter_links_to_its_failed_files(rule: dict[str, Any]) -> None:
    url = rule["annotations"].get("failures_url")
    if rule["alert"] in ("IngestionExporterAbsent", "IngestionShardMissing"):
        assert url is None  # no exporter to link to: the one missing is what the alert is about
        return
    page = "/failures?format=html&group_by=message&source={{ $labels.source | urlquery }}"
    if "tenant" in rule["annotations"]["summary"] + rule["annotations"]["description"]:
        # Counted once over replicas, so without an instance: Prometheus is asked which holds it.
        assert url.startswith("http://{{ with query (printf `max by (instance) (")
        assert url.endswith("{{ end }}" + page + _PLACE + ("&error_type=ACCESS_DENIED" * ("DENIED" in url)))
    else:
        assert url == "http://{{ $labels.instance }}" + page


_PLACE = "&tenant={{ $labels.tenant | urlquery }}&platform={{ $labels.platform | urlquery }}"


def test_amtool_accepts_the_alertmanager_example() -> None:
    result = run(debian_tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=IngestionSourceDown"], "pager"),
        (["severity=warning", "alertname=IngestionFailedFilesSpike"], "tickets"),
    ],
)
def test_alerts_route_by_severity(labels: list[str], receiver: str) -> None:
    result = run(debian_tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
    assert result.stdout.strip() == receiver


def test_per_tenant_alerts_are_inhibited_while_their_source_is_down() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert config["route"]["group_by"] == ["alertname", "source", "tenant"]
    [inhibit, *_] = config["inhibit_rules"]
    assert inhibit["equal"] == ["source"]
    assert "IngestionSourceDown" in inhibit["source_matchers"][0]
    assert "IngestionFailedFilesSpike" in inhibit["target_matchers"][0]


def test_committed_rules_dashboards_and_kubernetes_objects_are_what_the_mixin_makes() -> None:
    result = run(sys.executable, "-m", "mixin", "--check")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_are_importable_as_they_are(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["schemaVersion"] >= 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    infinity = {"type": "yesoreyeram-infinity-datasource", "uid": "${failures_datasource}"}
    for panel in panels:
        assert panel["datasource"] in ({"type": "prometheus", "uid": "${datasource}"}, infinity)
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    uids = re.findall(r'"uid": "([^"]+)"', path.read_text())
    # Nothing environment-specific: data sources are variables.
    assert set(uids) <= {"${datasource}", "${failures_datasource}", board["uid"]}
    assert variables["exporter_url"]["type"] == "textbox"
    assert variables["exporter_url"]["query"] == "http://localhost:9890"
    for name, variable in variables.items():
        if name != "datasource" and variable.get("multi"):
            # job and instance take "All" as ".+", as the dashboard linter asks; label filters
            # as ".*", so that a series without the label still shows.
            assert variable["includeAll"] and variable["allValue"] == (
                ".+" if name in ("job", "instance") else ".*"
            )


def panel_links(board: dict[str, Any]) -> dict[str, list[str]]:
    return {
        p["title"]: [link["url"] for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
        for p in board["panels"]
        if p["type"] != "row"
    }


def test_overview_has_the_four_filters_and_links_tenants_to_the_tenant_dashboard() -> None:
    overview = json.loads((ROOT / "dashboards" / "overview.json").read_text())
    names = [v["name"] for v in overview["templating"]["list"]]
    assert names == [
        "datasource",
        "job",
        "instance",
        "source",
        "tenant",
        "platform",
        "error_type",
        "exporter_url",
    ]
    to_tenant = [url for urls in panel_links(overview).values() for url in urls if url.startswith("/d/")]
    assert to_tenant and all(url.startswith("/d/ingestion-failures-tenant/") for url in to_tenant)


FAILURES = "${exporter_url}/failures?format=html&"


@pytest.mark.parametrize(
    ("board", "title", "link"),
    [
        ("overview", "Failed files by platform", "platform=${__field.labels.platform}"),
        ("overview", "Failed files by error type", "error_type=${__field.labels.error_type}"),
        ("overview", "Top tenants", "tenant=${__field.labels.tenant}"),
        (
            "overview",
            "Oldest unresolved failure by tenant and platform",
            "source=${__data.fields.source}&tenant=${__data.fields.tenant}&platform=${__data.fields.platform}",
        ),
        ("tenant", "Failed files", "tenant=${tenant}"),
        ("tenant", "By platform", "tenant=${tenant}&platform=${__field.labels.platform}"),
        ("tenant", "By error type", "tenant=${tenant}&error_type=${__field.labels.error_type}"),
        (
            "tenant",
            "Current failures",
            "source=${__data.fields.source}&tenant=${tenant}&platform=${__data.fields.platform}"
            "&error_type=${__data.fields.error_type}",
        ),
    ],
)
def test_panels_showing_a_tenant_platform_or_error_type_link_to_its_failed_files(
    board: str, title: str, link: str
) -> None:
    dashboard = json.loads((ROOT / "dashboards" / f"{board}.json").read_text())
    assert FAILURES + link in panel_links(dashboard)[title]


def test_the_tenant_dashboard_lists_the_failed_files_through_infinity() -> None:
    tenant = json.loads((ROOT / "dashboards" / "tenant.json").read_text())
    [table] = [p for p in tenant["panels"] if p["title"] == "Failed files by name"]
    [query] = table["targets"]
    assert (query["type"], query["source"], query["url"], query["root_selector"]) == (
        "json",
        "url",
        "/failures",
        "items",
    )
    assert {"key": "tenant", "value": "${tenant}"} in query["url_options"]["params"]
    provisioned = yaml.safe_load(
        (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "infinity.yml").read_text()
    )
    [source] = provisioned["datasources"]
    assert source["type"] == "yesoreyeram-infinity-datasource" and source["url"] == "http://exporter:9890"
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert (
        "yesoreyeram-infinity-datasource"
        in compose["services"]["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    )


def test_the_tenant_dashboard_shows_the_causes_beside_the_files() -> None:
    tenant = json.loads((ROOT / "dashboards" / "tenant.json").read_text())
    titles = [p["title"] for p in tenant["panels"]]
    assert titles.index("Causes") == titles.index("Failed files by name") - 1
    [causes] = [p for p in tenant["panels"] if p["title"] == "Causes"]
    [query] = causes["targets"]
    assert (query["url"], query["root_selector"]) == ("/failures", "groups")
    params = {(p["key"], p["value"]) for p in query["url_options"]["params"]}
    assert {("tenant", "${tenant}"), ("group_by", "message")} <= params
    # Each column reads a field /failures?group_by=message answers.
    group = {"key": "x", "count": 1, "newest_failed_at": 1.0, "example": {"error_type": "E", "name": "n"}}
    for column in query["columns"]:
        value: Any = group
        for part in column["selector"].split("."):
            value = value[part]


def test_deploy_files_use_the_same_rules_and_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    mounts = [m for service in compose["services"].values() for m in service.get("volumes", [])]
    for mount in mounts:
        host = mount.split(":", 1)[0]
        if host.startswith("."):
            assert (ROOT / "deploy" / host).resolve().exists(), mount
    assert any(m.startswith("../alerts:") for m in mounts)
    assert any(m.startswith("../dashboards:") for m in mounts)
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert [Path(p).name for p in prometheus["rule_files"]] == [RULES.name]
