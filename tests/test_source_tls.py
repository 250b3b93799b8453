"""HTTPS sources: the platform's certificate is checked against the system's trust store, or
against the bundle ``SSL_CERT_FILE`` names; an untrusted one fails the poll as ``connection``."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from exporter.simulators.unstructured import SimJob, UnstructuredSimulator
from tests.conftest import parse_exposition, run_cli


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def platform(ca: trustme.CA) -> Iterator[UnstructuredSimulator]:
    simulator = UnstructuredSimulator()
    simulator.ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(simulator.ssl_context)
    workflow = simulator.add_workflow("ingest", "sharepoint")
    failed = [("contract.pdf", "Unable to parse document content")]
    simulator.add_job(SimJob("job-1", workflow, "FAILED", time.time() - 60, failed))
    simulator.start()
    yield simulator
    simulator.stop()


def once(platform: UnstructuredSimulator, tmp_path: Path, env: dict[str, str]) -> dict[str, float]:
    assert platform.url.startswith("https://")
    config = {"sources": [platform.source_config("docs")]}
    result = run_cli("--once", config=config, tmp_path=tmp_path, env=env)
    samples = parse_exposition(result.stdout)
    return {
        "code": result.code,
        "up": samples[("ingestion_source_up", frozenset({("source", "docs")}))],
        "files": sum(v for (name, _), v in samples.items() if name == "ingestion_failed_files"),
        "connection_errors": samples.get(
            (
                "ingestion_source_poll_errors_total",
                frozenset({("source", "docs"), ("reason", "connection")}),
            ),
            0.0,
        ),
    }


def test_a_platform_whose_ca_ssl_cert_file_names_is_read_over_https(
    platform: UnstructuredSimulator, ca: trustme.CA, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    seen = once(platform, tmp_path, {"SSL_CERT_FILE": str(bundle)})
    assert seen == {"code": 0, "up": 1.0, "files": 1.0, "connection_errors": 0.0}
    assert platform.calls("/failed-files")


def test_a_certificate_no_trusted_ca_signed_fails_the_poll_as_connection(
    platform: UnstructuredSimulator, tmp_path: Path
) -> None:
    stranger = trustme.CA()
    bundle = tmp_path / "other-ca.pem"
    stranger.cert_pem.write_to_path(str(bundle))
    seen = once(platform, tmp_path, {"SSL_CERT_FILE": str(bundle)})
    assert seen == {"code": 1, "up": 0.0, "files": 0.0, "connection_errors": 1.0}
    assert not platform.calls("/jobs")  # the handshake failed before any request was read
