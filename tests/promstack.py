"""A Prometheus and Alertmanager stack on loopback for the end-to-end tests: the processes, and
the shipped configurations pointed at them and at the tests' webhook receiver."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from tests.conftest import ROOT, Webhook, debian_alertmanager, debian_tool, free_port, wait_for_port


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


def prometheus_for_test(
    rules: Path, exporter_port: int, alertmanager_port: int, scrape_interval: str = "1s"
) -> dict[str, Any]:
    """The shipped scrape example with loopback targets, rules evaluated every second."""
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=scrape_interval, evaluation_interval="1s")
    config["rule_files"] = [str(rules)]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
        f"127.0.0.1:{alertmanager_port}"
    ]
    [job] = config["scrape_configs"]
    job.update(scrape_interval=scrape_interval, scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{exporter_port}"]
    return config


def start_alerting(
    processes: Processes, tmp: Path, webhook: Webhook, exporter_port: int, scrape_interval: str = "1s"
) -> str:
    """Alertmanager with the shipped routing, and Prometheus scraping the exporter with the
    shipped rules (their `for` shortened); Prometheus' URL."""
    am_port, prom_port = free_port(), free_port()
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_for_test(webhook)))
    processes.start(
        "alertmanager",
        debian_alertmanager(
            f"--config.file={tmp / 'alertmanager.yml'}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ),
        am_port,
    )
    rules = tmp / "ingestion-failures.rules.yml"
    rules.write_text(
        yaml.safe_dump(with_short_for(yaml.safe_load((ROOT / "alerts" / rules.name).read_text())))
    )
    config = prometheus_for_test(rules, exporter_port, am_port, scrape_interval)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    return processes.start(
        "prometheus",
        [
            debian_tool("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        prom_port,
    )


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result
