"""End to end: the exporter on its simulators, a real Prometheus loading the shipped rules and
scrape configuration, a real Alertmanager with the shipped routing, and a webhook receiver —
all on 127.0.0.1, with short intervals. The deploy/ files are the ones used here."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.demo import Demo
from tests.conftest import ROOT, eventually, free_port
from tests.promstack import Processes, Webhook, query, start_alerting

pytestmark = pytest.mark.e2e

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


@dataclass
class Stack:
    prometheus: str
    simulators: list[Any]
    processes: Processes
    exporter: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        return query(self.prometheus, expr)

    def label_values(self, label: str, match: str) -> list[str]:
        answer = httpx.get(f"{self.prometheus}/api/v1/label/{label}/values", params={"match[]": match}).json()
        values: list[str] = answer["data"]
        return values


@pytest.fixture
def stack(tmp_path: Path, webhook: Webhook) -> Iterator[Stack]:
    processes = Processes(tmp_path)
    demo = Demo(seed=7)  # the demo's simulators and data, polled every 2 s
    config = {**demo.start(), "poll_interval": "2s", "stale_after": "1h"}
    simulators = demo.simulators
    try:
        exporter_port = free_port()
        del config["listen_address"]
        (tmp_path / "exporter.yml").write_text(yaml.safe_dump(config))
        processes.start(
            "exporter",
            [
                sys.executable,
                "-m",
                "exporter",
                "--config",
                str(tmp_path / "exporter.yml"),
                "--listen",
                f"127.0.0.1:{exporter_port}",
            ],
            exporter_port,
        )
        prometheus = start_alerting(processes, tmp_path, webhook, exporter_port)
        stack = Stack(prometheus, simulators, processes, f"http://127.0.0.1:{exporter_port}")
        eventually(lambda: stack.query('up{job="ingestion-failure-exporter"} == 1'), 60)
        yield stack
    except BaseException:
        print(processes.logs())
        raise
    finally:
        processes.stop()
        demo.stop()


def substitute(expr: str, values: dict[str, str]) -> str:
    """A panel's PromQL as Grafana sends it, variables replaced."""
    for name, value in values.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


def panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """The PromQL of every panel that Prometheus answers."""
    return [
        (p["title"], t["expr"])
        for p in board["panels"]
        if p["type"] != "row"
        for t in p["targets"]
        if "expr" in t
    ]


def infinity_queries(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The targets of the panels that the Infinity data source reads from the exporter."""
    return [
        (p["title"], t)
        for p in board["panels"]
        if p.get("datasource", {}).get("type") == "yesoreyeram-infinity-datasource"
        for t in p["targets"]
    ]


def test_the_stack_alerts_and_every_dashboard_panel_has_data(stack: Stack, webhook: Webhook) -> None:
    # Every dashboard panel returns data, with "All" for the multi-value variables and, for the
    # tenant dashboard, a tenant that has failures at the retry cap.
    everything = {
        "job": ".+",
        "instance": ".+",
        "source": ".*",
        "tenant": ".*",
        "platform": ".*",
        "error_type": ".*",
    }
    eventually(lambda: stack.query("source:ingestion_source_poll_duration_seconds:p95_5m > 0"), 60)
    at_cap = eventually(lambda: stack.query('ingestion_failed_files{retry_count=~".*\\\\+"}'), 30)
    tenant = at_cap[0]["metric"]["tenant"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        values = (
            {**everything, "tenant": tenant} if board["uid"] == "ingestion-failures-tenant" else everything
        )
        for title, expr in panel_queries(board):
            query = substitute(expr, values)
            assert eventually(lambda q=query: stack.query(q), 30), (
                f"{path.name}: panel {title!r} has no data: {query}"
            )
        for title, infinity in infinity_queries(board):
            # What Grafana's Infinity data source asks the exporter, relative to its URL.
            params = {
                p["key"]: substitute(p["value"].replace("${", "$").replace("}", ""), values)
                for p in infinity["url_options"]["params"]
            }
            answer = httpx.get(f"{stack.exporter}{infinity['url']}", params=params, timeout=10).json()
            rows = answer[infinity["root_selector"]]
            assert rows, f"{path.name}: panel {title!r} has no data"
            for column in infinity["columns"]:  # a selector may name a nested field: example.name
                value = rows[0]
                for part in column["selector"].split("."):
                    assert part in value, f"{path.name}: panel {title!r} has no {column['selector']}"
                    value = value[part]
            items = [row.get("example", row) for row in rows]  # a group's example is one of its items
            assert {item["tenant"] for item in items} == {tenant}
        for variable in board["templating"]["list"]:
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable.get("definition", ""))
            if match:
                selector = substitute(match.group(1), values)
                assert stack.label_values(match.group(2), selector), (
                    f"{path.name}: variable {variable['name']} is empty"
                )

    # Drive one source into failure: its alert reaches the pager receiver with the right labels.
    rezolve_sim = stack.simulators[0]
    rezolve_sim.inject(status=401, body='{"detail": "Invalid or expired token"}')

    def source_down() -> list[dict[str, Any]]:
        return [a for a in webhook.alerts("/pager") if a["labels"].get("alertname") == "IngestionSourceDown"]

    [alert, *_] = eventually(source_down, 60)
    assert alert["status"] == "firing"
    assert alert["labels"]["source"] == "rezolve-demo"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "ingestion-failure-exporter"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks.md#ingestionsourcedown")
    failures_url = alert["annotations"]["failures_url"]
    assert failures_url == f"{stack.exporter}/failures?format=html&group_by=message&source=rezolve-demo"
    page = httpx.get(failures_url, timeout=10)
    assert page.status_code == 200 and "Failed files" in page.text
    assert "rezolve-demo" in alert["annotations"]["summary"]
    errors = stack.query('ingestion_source_poll_errors_total{source="rezolve-demo", reason="auth"} > 0')
    assert errors
    healthy = stack.query('ingestion_source_up{source=~"commvault-demo|unstructured-demo|aep-demo"} == 1')
    assert len(healthy) == 3  # the other sources are untouched
