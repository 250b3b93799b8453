"""The mixin's one configuration: a user's file of overrides generates their own rules,
PrometheusRule and dashboards, and promtool accepts what it generates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, debian_tool

OVERRIDES = """\
selector: 'job="ingestion", namespace="data-platform"'
replica_labels: [instance, pod, replica]
runbook_base_url: https://wiki.example.com/runbooks/ingestion
exporter_url: https://exporter.example.com
prometheus_rule: {labels: {release: monitoring}}
alerts:
  IngestionFailedFilesSpike: {for: 30m, min_excess: 50, factor: 3}
  IngestionSourceDown: {severity: warning}
"""


def mixin(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mixin", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mine")
    (out / "mine.yml").write_text(OVERRIDES)
    result = mixin("--config", str(out / "mine.yml"), "--out-dir", str(out))
    assert result.returncode == 0, result.stderr
    return out


def alerts(path: Path) -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_overrides_reach_every_rule_and_promtool_accepts_them(generated: Path) -> None:
    rules = generated / "ingestion-failures.rules.yml"
    check = subprocess.run(
        [debian_tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    groups = yaml.safe_load(rules.read_text())["groups"]
    for rule in (r for group in groups for r in group["rules"]):
        assert 'job="ingestion", namespace="data-platform"' in rule["expr"], rule
    spike = alerts(rules)["IngestionFailedFilesSpike"]
    assert spike["for"] == "30m"
    assert ">= 50" in spike["expr"] and "> 3 * max without (instance, pod, replica)" in spike["expr"]
    assert alerts(rules)["IngestionSourceDown"]["labels"] == {"severity": "warning"}
    # What was not overridden keeps its default.
    assert alerts(rules)["IngestionSourceStale"]["for"] == "5m"
    for name, rule in alerts(rules).items():
        assert (
            rule["annotations"]["runbook_url"]
            == f"https://wiki.example.com/runbooks/ingestion#{name.lower()}"
        )


def test_the_prometheus_rule_and_dashboards_follow_the_same_file(generated: Path) -> None:
    rule = yaml.safe_load((generated / "prometheusrule.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == "monitoring"
    assert (
        rule["spec"]["groups"]
        == yaml.safe_load((generated / "ingestion-failures.rules.yml").read_text())["groups"]
    )
    overview = json.loads((generated / "dashboards" / "overview.json").read_text())
    variables = {v["name"]: v for v in overview["templating"]["list"]}
    assert variables["exporter_url"]["query"] == "https://exporter.example.com"
    assert 'job="ingestion", namespace="data-platform"' in variables["job"]["query"]["query"]
    exprs = [
        t["expr"]
        for p in overview["panels"]
        if p["type"] != "row"
        for t in p.get("targets", [])
        if "expr" in t
    ]
    assert any("max without (instance, pod, replica)" in e for e in exprs)
    configmap = yaml.safe_load((generated / "grafana-dashboards.yaml").read_text())
    assert json.loads(configmap["data"]["ingestion-failures-overview.json"]) == overview


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ("alerts: {IngestionSourceDown: {for: 15 minutes}}", "IngestionSourceDown.for"),
        ("alerts: {IngestionFailedFilesSpike: {factor: 1}}", "IngestionFailedFilesSpike.factor"),
        ("selectr: 'job=\"x\"'", "selectr"),
        ("replica_labels: []", "replica_labels"),
    ],
)
def test_a_bad_override_is_a_clear_error(tmp_path: Path, overrides: str, complaint: str) -> None:
    (tmp_path / "bad.yml").write_text(overrides)
    result = mixin("--config", str(tmp_path / "bad.yml"), "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert complaint in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_check_names_an_out_of_date_file(tmp_path: Path) -> None:
    # --check against the committed files passes (tests/test_alerts_and_dashboards.py); here a
    # copy of the repository's outputs with one edited file is reported.
    out = tmp_path / "out"
    assert mixin("--out-dir", str(out)).returncode == 0
    (out / "prometheusrule.yaml").write_text("edited\n")
    result = mixin("--out-dir", str(out), "--check")
    assert result.returncode == 1
    assert "prometheusrule.yaml" in result.stderr and "overview.json" not in result.stderr


def test_the_alert_links_follow_the_exporters_scheme(tmp_path: Path) -> None:
    (tmp_path / "tls.yml").write_text("exporter_scheme: https\n")
    assert mixin("--config", str(tmp_path / "tls.yml"), "--out-dir", str(tmp_path)).returncode == 0
    linked = [
        r
        for r in alerts(tmp_path / "ingestion-failures.rules.yml").values()
        if "failures_url" in r["annotations"]
    ]
    assert len(linked) == 8
    assert all(str(r["annotations"]["failures_url"]).startswith("https://") for r in linked)  # type: ignore[index]
