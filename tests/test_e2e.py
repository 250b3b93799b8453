"""End to end: the exporter on its simulators, a real Prometheus loading the shipped rules and
scrape configuration, a real Alertmanager with the shipped routing, and a webhook receiver —
all on 127.0.0.1, with short intervals. The deploy/ files are the ones used here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from exporter.demo import Demo
from tests.conftest import ROOT, debian_alertmanager, debian_tool, eventually, free_port, wait_for_port

pytestmark = pytest.mark.e2e

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


@dataclass
class Webhook:
    """Collects what Alertmanager posts, by path (= receiver)."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def alerts(self, path: str) -> list[dict[str, Any]]:
        return [alert for p, body in list(self.received) if p == path for alert in body["alerts"]]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            hook.received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.started = tmp, []

    def start(self, name: str, argv: list[str], port: int) -> str:
        log = (self.tmp / f"{name}.log").open("w")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.started.append((name, process))
        wait_for_port(port, process=process)
        return f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.tmp / f'{name}.log').read_text()[-3000:]}" for name, _ in self.started
        )

    def stop(self) -> None:
        for _, process in reversed(self.started):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def with_short_for(rules: dict[str, Any]) -> dict[str, Any]:
    """The shipped rules, with every alert's `for` shortened so that the test takes seconds."""
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "1s"
    return rules


def alertmanager_for_test(webhook: Webhook) -> dict[str, Any]:
    """The shipped Alertmanager example, its receivers pointed at the local webhook."""
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{webhook.port}{urlsplit(hook['url']).path}"
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1m")
    return config


def prometheus_for_test(rules: Path, exporter_port: int, alertmanager_port: int) -> dict[str, Any]:
    """The shipped scrape example with loopback targets and one-second intervals."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{alertmanager_port}"
    ]
    [job] = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter_port}"]
    return config


@dataclass
class Stack:
    prometheus: str
    simulators: list[Any]
    processes: Processes
    exporter: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

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
        exporter_port, am_port, prom_port = free_port(), free_port(), free_port()
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
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_for_test(webhook)))
        processes.start(
            "alertmanager",
            debian_alertmanager(
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ),
            am_port,
        )
        rules = tmp_path / "ingestion-failures.rules.yml"
        rules.write_text(
            yaml.safe_dump(with_short_for(yaml.safe_load((ROOT / "alerts" / rules.name).read_text())))
        )
        (tmp_path / "prometheus.yml").write_text(
            yaml.safe_dump(prometheus_for_test(rules, exporter_port, am_port))
        )
        prometheus = processes.start(
            "prometheus",
            [
                debian_tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            prom_port,
        )
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
            assert {c["selector"] for c in infinity["columns"]} <= set(rows[0])
            assert {row["tenant"] for row in rows} == {tenant}
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
    assert failures_url == f"{stack.exporter}/failures?format=html&source=rezolve-demo"
    page = httpx.get(failures_url, timeout=10)
    assert page.status_code == 200 and "Failed files" in page.text
    assert "rezolve-demo" in alert["annotations"]["summary"]
    errors = stack.query('ingestion_source_poll_errors_total{source="rezolve-demo", reason="auth"} > 0')
    assert errors
    healthy = stack.query('ingestion_source_up{source=~"commvault-demo|unstructured-demo|aep-demo"} == 1')
    assert len(healthy) == 3  # the other sources are untouched
