"""Serve mode: the real program's HTTP endpoints, web-config, scheduling and graceful stop."""

from __future__ import annotations

import asyncio
import gzip
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import yaml

from exporter.config import build_settings
from exporter.poller import Exporter
from exporter.scheduler import build_scheduler, jitter_for
from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import ROOT, TENANT_A, eventually, free_port, rezolve_file, rezolve_source, wait_for_port


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(config: dict[str, Any], *extra: str) -> Served:
        port = free_port()
        path = tmp_path / f"config-{port}.yml"
        path.write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config",
                str(path),
                "--listen",
                f"127.0.0.1:{port}",
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        wait_for_port(port, process=process)
        scheme = (
            "https" if "--web-config" in extra and "tls" in (tmp_path / "web.yml").read_text() else "http"
        )
        return Served(process, f"{scheme}://127.0.0.1:{port}")

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_endpoints_formats_and_readiness(serve: Any, rezolve: RezolveSimulator) -> None:
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f", "PARSE_ERROR", "", time.time(), 0))
    rezolve.inject(delay=1.0, times=2)  # the first poll is slow: not ready until it ends
    served = serve({"poll_interval": "1h", "sources": [rezolve_source(rezolve)]})
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    assert httpx.get(f"{served.url}/readyz").status_code == 503
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)

    text = httpx.get(f"{served.url}/metrics")
    assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'ingestion_failed_files{error_type="PARSE_ERROR"' in text.text

    om = httpx.get(f"{served.url}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")

    raw = httpx.get(f"{served.url}/metrics", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip" and raw.text == text.text  # httpx decodes gzip

    index = httpx.get(f"{served.url}/")
    assert 'href="metrics"' in index.text and 'href="sources"' in index.text
    sources = httpx.get(f"{served.url}/sources").json()
    assert sources["rezolve-test"]["kind"] == "rezolve" and sources["rezolve-test"]["up"] is True
    assert "test-token" not in httpx.get(f"{served.url}/sources").text
    assert httpx.get(f"{served.url}/nope").status_code == 404


def test_scrapes_never_trigger_polls(serve: Any, rezolve: RezolveSimulator) -> None:
    served = serve({"poll_interval": "1h", "sources": [rezolve_source(rezolve)]})
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    before = len(rezolve.calls("failed-files"))
    for _ in range(20):
        httpx.get(f"{served.url}/metrics")
    assert len(rezolve.calls("failed-files")) == before


def test_sigterm_stops_gracefully(serve: Any, rezolve: RezolveSimulator) -> None:
    served = serve({"sources": [rezolve_source(rezolve)]})
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=15) == 0
    assert "Traceback" not in served.process.stderr.read()  # type: ignore[union-attr]


def test_web_config_tls_and_basic_auth(serve: Any, rezolve: RezolveSimulator, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = {
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {"prometheus": hashed},
    }
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    served = serve({"sources": [rezolve_source(rezolve)]}, "--web-config", str(tmp_path / "web.yml"))
    context = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"{served.url}/metrics", verify=context).status_code == 401
    assert httpx.get(f"{served.url}/metrics", verify=context, auth=("prometheus", "wrong")).status_code == 401
    ok = httpx.get(f"{served.url}/metrics", verify=context, auth=("prometheus", "s3cret"))
    assert ok.status_code == 200 and "ingestion_exporter_build_info" in ok.text


def test_a_bad_web_config_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "web.yml").write_text(
        yaml.safe_dump({"tls_server_config": {"cert_file": "/nope"}, "extra": 1})
    )
    result = run_cli("--check", "--web-config", str(tmp_path / "web.yml"), config={}, tmp_path=tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "web_config.tls_server_config.key_file: field required",
        "web_config.extra: unknown key",
    ]


def test_scheduler_has_one_job_per_source_started_at_once_with_jitter(rezolve: RezolveSimulator) -> None:
    settings = build_settings(
        {
            "poll_interval": "2m",
            "sources": [
                rezolve_source(rezolve),
                rezolve_source(rezolve, name="other", interval="10m"),
                rezolve_source(rezolve, name="off", enabled=False),
            ],
        },
        {},
    )
    exporter = Exporter(settings)
    scheduler = build_scheduler(exporter)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"rezolve-test", "other"}
    assert jobs["rezolve-test"].trigger.interval.total_seconds() == 120
    assert jobs["other"].trigger.interval.total_seconds() == 600
    assert jobs["rezolve-test"].trigger.jitter == jitter_for(120) == 12
    assert jobs["other"].trigger.jitter == 30  # capped
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())
    assert jobs["rezolve-test"].next_run_time < jobs["other"].next_run_time


def test_a_slow_poll_is_never_run_twice_at_once(rezolve: RezolveSimulator) -> None:
    rezolve.inject(delay=1.5, times=1)
    one_request = [{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}]
    settings = build_settings(
        {"poll_interval": 0.2, "sources": [rezolve_source(rezolve, tenants=one_request)]}, {}
    )
    exporter = Exporter(settings)

    async def run() -> None:
        scheduler = build_scheduler(exporter)
        scheduler.start()
        try:
            while exporter.states["rezolve-test"].duration_count < 3:
                await asyncio.sleep(0.05)
        finally:
            scheduler.shutdown(wait=False)
            await exporter.aclose()

    asyncio.run(asyncio.wait_for(run(), 30))
    calls = rezolve.calls("failed-files")
    # The slow first request ends after 1.5 s; the next poll may only start once it has ended.
    assert calls[1].received - calls[0].received >= 1.4


def test_gzip_body_is_really_compressed(rezolve: RezolveSimulator) -> None:
    exporter = Exporter(build_settings({"sources": [rezolve_source(rezolve)]}, {}))
    snapshot = exporter.snapshot
    assert gzip.decompress(snapshot.text_gzip) == snapshot.text
