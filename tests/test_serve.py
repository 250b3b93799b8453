"""Serve mode: the real program's HTTP endpoints, web-config, scheduling and graceful stop."""

from __future__ import annotations

import asyncio
import gzip
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme
import yaml
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import build_settings
from exporter.runtime import Exporter
from exporter.scheduler import build_scheduler, jitter_for
from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import (
    ROOT,
    TENANT_A,
    eventually,
    free_port,
    listening,
    rezolve_file,
    rezolve_source,
    wait_for_port,
)


def test_endpoints(serve: Any, rezolve: RezolveSimulator) -> None:
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f", "PARSE_ERROR", "", time.time(), 0))
    served = serve({"poll_interval": "1h", "sources": [rezolve_source(rezolve)]})
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    text = httpx.get(f"{served.url}/metrics")
    assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert 'ingestion_failed_files{error_type="PARSE_ERROR"' in text.text
    index = httpx.get(f"{served.url}/")
    assert 'href="metrics"' in index.text and 'href="sources"' in index.text
    sources = httpx.get(f"{served.url}/sources").json()
    assert sources["rezolve-test"]["kind"] == "rezolve" and sources["rezolve-test"]["up"] is True
    assert httpx.get(f"{served.url}/nope").status_code == 404


def test_ready_only_once_every_source_has_finished_an_attempt(serve: Any, rezolve: RezolveSimulator) -> None:
    release = threading.Event()
    held = lambda request: request.headers.get("authorization") == f"Bearer {rezolve.token}"  # noqa: E731
    rezolve.inject(hold=release, when=held)
    config = {
        "poll_interval": "1h",
        "sources": [
            rezolve_source(rezolve, timeout="60s"),
            rezolve_source(rezolve, name="refused", token="wrong"),
        ],
    }
    served = serve(config)
    try:
        # The refused source has finished (failed); the held one has not: not ready.
        eventually(lambda: httpx.get(f"{served.url}/sources").json()["refused"]["last_poll_end"])
        assert httpx.get(f"{served.url}/readyz").status_code == 503
    finally:
        release.set()
    # Every source has finished one attempt, one of them failed: ready all the same.
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    assert httpx.get(f"{served.url}/sources").json()["refused"]["up"] is False


def raw_get(url: str, headers: dict[str, str]) -> tuple[httpx.Headers, bytes]:
    """Exactly these headers (httpx would add its own Accept-Encoding), and the bytes as sent."""
    with httpx.Client(headers={"accept-encoding": ""}) as client:
        request = client.build_request("GET", url, headers=headers)
        for name in ("accept-encoding", "accept"):
            if name not in {k.lower() for k in headers}:
                request.headers.pop(name, None)
        response = client.send(request, stream=True)
        try:
            return response.headers, b"".join(response.iter_raw())
        finally:
            response.close()


@pytest.mark.parametrize(
    ("accept", "accept_encoding", "openmetrics", "gzipped"),
    [
        (None, None, False, False),
        (None, "identity", False, False),
        (None, "gzip", False, True),
        (None, "deflate, gzip;q=0.5", False, True),
        (None, "gzip;q=0", False, False),
        (None, "*", False, True),
        (None, "*, gzip;q=0", False, False),
        ("application/openmetrics-text; version=1.0.0", None, True, False),
        ("application/openmetrics-text; version=1.0.0", "gzip", True, True),
        # What Prometheus sends: OpenMetrics weighted above the text format.
        (
            "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
            "gzip",
            True,
            True,
        ),
        ("text/plain;version=0.0.4", "gzip", False, True),
        ("application/openmetrics-text;q=0", None, False, False),
        ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9", None, False, False),
    ],
)
def test_metrics_negotiate_format_and_compression_from_explicit_headers(
    served_metrics: str, accept: str | None, accept_encoding: str | None, openmetrics: bool, gzipped: bool
) -> None:
    headers = {k: v for k, v in (("accept", accept), ("accept-encoding", accept_encoding)) if v is not None}
    got, body = raw_get(served_metrics, headers)
    assert got.get("content-encoding") == ("gzip" if gzipped else None)
    text = (gzip.decompress(body) if gzipped else body).decode()
    if openmetrics:
        assert got["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
        assert text.endswith("# EOF\n") and "ingestion_source_up" in text
        families = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(text)}
        assert families["process_cpu_seconds"].type == "counter"
    else:
        assert got["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# EOF" not in text and "ingestion_source_up" in text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["process_cpu_seconds"].type == "counter"
    # The exporter's own process, as prometheus-client's process collector reads it.
    for name in PROCESS_FAMILIES:
        [sample] = families[name].samples
        assert sample.value > 0, name
    assert int(got["content-length"]) == len(body)
    assert "accept-encoding" in got["vary"].lower()


PROCESS_FAMILIES = (
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
)


def test_process_metrics_are_at_most_a_second_old(served_metrics: str) -> None:
    def cpu_seconds() -> float:
        families = text_string_to_metric_families(httpx.get(served_metrics).text)
        return next(f for f in families if f.name == "process_cpu_seconds").samples[0].value

    first = cpu_seconds()
    # Scrapes cost the process CPU time; its snapshot (no poll in between) is the same.
    assert eventually(lambda: cpu_seconds() > first)


@pytest.fixture(scope="module")
def served_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One exporter for the negotiation table (a process per row would be slow)."""
    from exporter.simulators.rezolve import RezolveSimulator
    from tests.conftest import TENANT_A as tenant

    simulator = RezolveSimulator(token="t").start()
    simulator.add_tenant(tenant, "acme.rezolve.ai")
    simulator.put(tenant, "sharepoint", rezolve_file("f", "PARSE_ERROR", "", time.time(), 0))
    port = free_port()
    config = tmp_path_factory.mktemp("negotiation") / "config.yml"
    config.write_text(yaml.safe_dump({"poll_interval": "1h", "sources": [rezolve_source(simulator)]}))
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        yield f"{url}/metrics"
    finally:
        process.kill()
        process.wait()
        simulator.stop()


def test_scrapes_never_trigger_polls(serve: Any, rezolve: RezolveSimulator) -> None:
    served = serve({"poll_interval": "1h", "sources": [rezolve_source(rezolve)]})
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    before = len(rezolve.calls("failed-files"))
    for _ in range(20):
        httpx.get(f"{served.url}/metrics")
    assert len(rezolve.calls("failed-files")) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_process_cleanly(serve: Any, rezolve: RezolveSimulator, signum: int) -> None:
    served = serve({"sources": [rezolve_source(rezolve)]})
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    assert served.stop(signum) == 0
    log = served.stderr()
    assert "stopping" in log and "Traceback" not in log


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """A server certificate for 127.0.0.1, a client certificate, both from one CA, and a stranger."""
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("prometheus@example.com")
    stranger = trustme.CA().issue_cert("intruder@example.com")
    files = {
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "ca": tmp_path / "ca.pem",
        "client": tmp_path / "client.pem",
        "stranger": tmp_path / "stranger.pem",
    }
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    stranger.private_key_and_cert_chain_pem.write_to_path(str(files["stranger"]))
    return files


def tls_section(files: dict[str, Path], **extra: str) -> dict[str, Any]:
    """``tls_server_config`` with the server certificate, and the CA for client certificates."""
    section = {"cert_file": str(files["cert"]), "key_file": str(files["key"]), **extra}
    if "client_auth_type" in extra:
        section["client_ca_file"] = str(files["ca"])
    return {"tls_server_config": section}


def serve_tls(serve: Any, rezolve: RezolveSimulator, tmp_path: Path, web: dict[str, Any]) -> Any:
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web))
    config = {"poll_interval": "1h", "sources": [rezolve_source(rezolve)]}
    return serve(config, "--web-config", str(tmp_path / "web.yml"), scheme="https")


def client_context(files: dict[str, Path], cert: str | None = None, **versions: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files["ca"]))
    if cert is not None:
        context.load_cert_chain(str(files[cert]))
    for name, version in versions.items():
        setattr(context, name, version)
    return context


def test_tls_and_basic_auth(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = {**tls_section(tls_files), "basic_auth_users": {"prometheus": hashed}}
    served = serve_tls(serve, rezolve, tmp_path, web)
    context = client_context(tls_files)
    missing = httpx.get(f"{served.url}/metrics", verify=context)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{served.url}/metrics", verify=context, auth=("prometheus", "wrong")).status_code == 401
    assert httpx.get(f"{served.url}/metrics", verify=context, auth=("nobody", "s3cret")).status_code == 401
    for path in ("/metrics", "/sources", "/readyz", "/healthz", "/", "/failures"):
        assert httpx.get(f"{served.url}{path}", verify=context).status_code == 401
    ok = httpx.get(f"{served.url}/metrics", verify=context, auth=("prometheus", "s3cret"))
    assert ok.status_code == 200 and "ingestion_exporter_build_info" in ok.text
    with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port gets no answer
        httpx.get(served.url.replace("https", "http") + "/metrics", timeout=5).raise_for_status()


def test_a_required_client_certificate_must_come_from_the_configured_ca(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    served = serve_tls(
        serve, rezolve, tmp_path, tls_section(tls_files, client_auth_type="RequireAndVerifyClientCert")
    )
    ok = httpx.get(f"{served.url}/metrics", verify=client_context(tls_files, "client"))
    assert ok.status_code == 200
    for refused in (client_context(tls_files), client_context(tls_files, "stranger")):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{served.url}/metrics", verify=refused).raise_for_status()
    # The refused handshakes did not take the server down.
    assert httpx.get(f"{served.url}/healthz", verify=client_context(tls_files, "client")).status_code == 200


def test_an_optional_client_certificate_is_verified_when_given(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    served = serve_tls(
        serve, rezolve, tmp_path, tls_section(tls_files, client_auth_type="VerifyClientCertIfGiven")
    )
    assert httpx.get(f"{served.url}/metrics", verify=client_context(tls_files)).status_code == 200
    assert httpx.get(f"{served.url}/metrics", verify=client_context(tls_files, "client")).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{served.url}/metrics", verify=client_context(tls_files, "stranger")).raise_for_status()


def test_min_version_tls13_refuses_a_tls12_client(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    served = serve_tls(serve, rezolve, tmp_path, tls_section(tls_files, min_version="TLS13"))
    tls12 = client_context(tls_files, maximum_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{served.url}/metrics", verify=tls12).raise_for_status()
    tls13 = client_context(tls_files, minimum_version=ssl.TLSVersion.TLSv1_3)
    assert httpx.get(f"{served.url}/metrics", verify=tls13).status_code == 200


def test_tls12_is_accepted_by_default(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path, tls_files: dict[str, Path]
) -> None:
    served = serve_tls(serve, rezolve, tmp_path, tls_section(tls_files))
    tls12 = client_context(tls_files, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert httpx.get(f"{served.url}/metrics", verify=tls12).status_code == 200


def test_a_bad_web_config_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "web.yml").write_text(
        yaml.safe_dump({"tls_server_config": {"cert_file": "/nope"}, "extra": 1})
    )
    result = run_cli("--check", "--web-config", str(tmp_path / "web.yml"), config={}, tmp_path=tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        "web_config.tls_server_config.key_file: field required: give key_file (or key, inline)",
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
    scheduler = build_scheduler(exporter.lanes.values())
    jobs = {job.name.removeprefix("poll "): job for job in scheduler.get_jobs()}
    assert set(jobs) == {"rezolve-test", "other"}
    assert {job.id for job in jobs.values()} == {lane.job_id for lane in exporter.lanes.values()}
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
        scheduler = build_scheduler(exporter.lanes.values())
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


def test_the_exporter_toolkit_flags_and_prometheus_health_paths(
    tmp_path: Path, rezolve: RezolveSimulator
) -> None:
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({"basic_auth_users": {"prometheus": hashed}}))
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({"poll_interval": "1h", "sources": [rezolve_source(rezolve)]}))
    auth = ("prometheus", "secret")
    argv = [sys.executable, "-m", "exporter", "--config", str(config), "--web.config.file", str(web_config)]
    with listening(argv, ROOT, listen_flag="--web.listen-address", auth=auth) as running:
        url = running.url
        assert httpx.get(f"{url}/-/healthy").status_code == 401  # the web config is in force
        assert httpx.get(f"{url}/-/healthy", auth=auth).status_code == 200
        eventually(lambda: httpx.get(f"{url}/-/ready", auth=auth).status_code == 200)
        assert httpx.get(f"{url}/readyz", auth=auth).status_code == 200
