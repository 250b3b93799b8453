"""What Prometheus sees matches what happened: the real exporter polling the Rezolve simulator
every second, a real Prometheus scraping it every 5 s with the shipped rules, a real Alertmanager
posting to a webhook. A permissions regression pages whether it hits a label set never seen
before or happens while the exporter restarts; a source that recovers with the records it had
pages nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import (
    ROOT,
    TENANT_A,
    TENANT_B,
    Webhook,
    eventually,
    free_port,
    rezolve_file,
    rezolve_source,
    wait_for_port,
)
from tests.promstack import Processes, query, start_alerting

pytestmark = pytest.mark.e2e

SCRAPE_INTERVAL = "5s"
FALSE_ALARMS = 'ALERTS{alertname=~"IngestionAccessDeniedBurst|IngestionFailedFilesSpike"}'


def burst_expression() -> str:
    """The shipped IngestionAccessDeniedBurst expression, without its threshold."""
    rules = yaml.safe_load((ROOT / "alerts" / "ingestion-failures.rules.yml").read_text())
    [expr] = [
        r["expr"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "IngestionAccessDeniedBurst"
    ]
    inner, threshold = expr.rsplit(">=", 1)
    assert threshold.strip() == "10"
    return str(inner)


BURST = burst_expression()
T0 = 1_765_535_400.0


@dataclass
class Exporter:
    """The real program in serve mode on one port, stopped and started again by the test."""

    config: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config", str(self.config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        """SIGTERM, as a rollout or a node drain sends it; the exit code must be 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=15) == 0, self.log.read_text()[-3000:]
        self.process = None


@dataclass
class Stack:
    prometheus: str
    exporter: Exporter
    rezolve: RezolveSimulator
    webhook: Webhook

    def burst(self, tenant: str) -> float | None:
        """The IngestionAccessDeniedBurst expression (without its threshold) for a tenant."""
        found = [r for r in query(self.prometheus, BURST) if r["metric"].get("tenant") == tenant]
        return float(found[0]["value"][1]) if found else None

    def fired(self, alertname: str, tenant: str | None = None) -> list[dict[str, Any]]:
        return [
            alert
            for path in ("/pager", "/tickets")
            for alert in self.webhook.alerts(path)
            if alert["labels"]["alertname"] == alertname
            and (tenant is None or alert["labels"].get("tenant") == tenant)
        ]

    def scraped(self, expr: str) -> list[dict[str, Any]]:
        return eventually(lambda: query(self.prometheus, expr), 60)

    def add_access_denied(self, tenant: str) -> None:
        for i in range(12):
            self.rezolve.put(tenant, "sharepoint", denied(i))


def denied(i: int) -> Any:
    return rezolve_file(f"denied-{i}", "ACCESS_DENIED", "Insufficient permissions to access file", T0, 0)


def stack_with(
    tmp_path: Path, webhook: Webhook, rezolve: RezolveSimulator, **settings: Any
) -> Iterator[Stack]:
    port = free_port()
    source = rezolve_source(
        rezolve,
        name="rezolve-e2e",
        tenants=[
            {"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]},
            {"tenant_id": TENANT_B, "rezolve_domain": "globex.rezolve.ai", "platforms": ["sharepoint"]},
        ],
    )
    config = {
        "listen_address": f"127.0.0.1:{port}",
        "poll_interval": "1s",
        # At least twice the scrape interval, so that Prometheus sees each new series at 0.
        "counter_birth_delay": "10s",
        "sources": [source],
        **settings,
    }
    (tmp_path / "exporter.yml").write_text(yaml.safe_dump(config))
    # Every tenant has had failures, none of them access denied.
    for tenant in (TENANT_A, TENANT_B):
        rezolve.put(tenant, "sharepoint", rezolve_file("broken", "PARSE_ERROR", "Unable to parse", T0, 0))
    processes = Processes(tmp_path)
    exporter = Exporter(tmp_path / "exporter.yml", port, tmp_path / "exporter.log")
    try:
        exporter.start()
        prometheus = start_alerting(processes, tmp_path, webhook, port, SCRAPE_INTERVAL)
        stack = Stack(prometheus, exporter, rezolve, webhook)
        stack.scraped('ingestion_failed_files_discovered_total{error_type="PARSE_ERROR"}')
        yield stack
    except BaseException:
        print(processes.logs(), (tmp_path / "exporter.log").read_text()[-3000:])
        raise
    finally:
        if exporter.process is not None:
            exporter.process.kill()
            exporter.process.wait()
        processes.stop()


@pytest.fixture
def stack(tmp_path: Path, webhook: Webhook, rezolve: RezolveSimulator) -> Iterator[Stack]:
    yield from stack_with(tmp_path, webhook, rezolve, state_dir=str(tmp_path / "state"))


@pytest.fixture
def stateless_stack(tmp_path: Path, webhook: Webhook, rezolve: RezolveSimulator) -> Iterator[Stack]:
    yield from stack_with(tmp_path, webhook, rezolve)


@pytest.fixture
def stack_going_stale(tmp_path: Path, webhook: Webhook, rezolve: RezolveSimulator) -> Iterator[Stack]:
    """12 access-denied files of tenant A from the start (the baseline); stale 3 s after a failure."""
    for i in range(12):
        rezolve.put(TENANT_A, "sharepoint", denied(i))
    yield from stack_with(tmp_path, webhook, rezolve, state_dir=str(tmp_path / "state"), stale_after="3s")


def test_a_burst_in_a_label_set_never_seen_before_pages(stack: Stack) -> None:
    stack.add_access_denied(TENANT_A)
    assert eventually(lambda: (stack.burst(TENANT_A) or 0) >= 10, 90)
    [alert, *_] = eventually(lambda: stack.fired("IngestionAccessDeniedBurst", TENANT_A), 60)
    assert alert["status"] == "firing" and alert["labels"]["platform"] == "sharepoint"


def test_a_burst_while_the_exporter_restarts_pages_with_a_state_dir(stack: Stack) -> None:
    stack.exporter.stop()
    stack.add_access_denied(TENANT_B)
    stack.exporter.start()
    assert eventually(lambda: (stack.burst(TENANT_B) or 0) >= 10, 90)
    [alert, *_] = eventually(lambda: stack.fired("IngestionAccessDeniedBurst", TENANT_B), 60)
    assert alert["status"] == "firing"


def test_without_a_state_dir_a_burst_while_the_exporter_restarts_is_never_counted(
    stateless_stack: Stack,
) -> None:
    stack = stateless_stack
    stack.exporter.stop()
    stack.add_access_denied(TENANT_B)
    stack.exporter.start()
    # The restart's first poll is a new baseline: the series is born at 0 and stays there, past
    # the birth delay (four scrapes, 15 s and more).
    series = f'ingestion_failed_files_discovered_total{{tenant="{TENANT_B}", error_type="ACCESS_DENIED"}}'
    stack.scraped(f'ingestion_failed_files{{tenant="{TENANT_B}", error_type="ACCESS_DENIED"}} == 12')
    stack.scraped(f"count_over_time({series}[1m]) >= 4")
    assert query(stack.prometheus, f"max_over_time({series}[1m])")[0]["value"][1] == "0"
    assert stack.burst(TENANT_B) == 0
    assert not query(stack.prometheus, f"count_over_time({FALSE_ALARMS}[5m])")


def test_a_source_back_from_stale_with_the_same_records_pages_nothing(stack_going_stale: Stack) -> None:
    stack = stack_going_stale
    gauge = f'ingestion_failed_files{{tenant="{TENANT_A}", error_type="ACCESS_DENIED"}}'
    stack.scraped(f"{gauge} == 12")
    stack.rezolve.inject(status=500, body='{"detail": "Internal Server Error"}')
    # Down past stale_after: Prometheus sees the series gone.
    stack.scraped('ingestion_source_up{source="rezolve-e2e"} == 0')
    eventually(lambda: not query(stack.prometheus, gauge), 60)
    stack.rezolve.clear_faults()
    stack.scraped(f"{gauge} == 12")
    stack.scraped('ingestion_source_up{source="rezolve-e2e"} == 1')
    # Four more scrapes after the recovery, well past the birth delay.
    up = 'ingestion_source_up{source="rezolve-e2e"}'
    stack.scraped(f"min_over_time({up}[25s]) == 1 and count_over_time({up}[25s]) >= 4")
    assert stack.burst(TENANT_A) == 0
    assert not query(stack.prometheus, f"count_over_time({FALSE_ALARMS}[10m])")
    assert not stack.fired("IngestionAccessDeniedBurst") and not stack.fired("IngestionFailedFilesSpike")
