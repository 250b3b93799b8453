"""Secrets never reach what people read, even when a server echoes them back, as real services do
(an error body quoting the token it refused, a login error quoting the password, a storage error
quoting the account key). Checked where they would show: the real program's stderr (its own log
handler, not pytest's), /sources, /metrics and --check."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.redact import ISSUED_KEPT, REDACTED, Redactor
from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response
from exporter.simulators.commvault import CommvaultSimulator
from exporter.simulators.commvault import SimJob as CommvaultJob
from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from tests.conftest import TENANT_A, Served, eventually, rezolve_source, run_cli

ACCOUNT_KEY = base64.b64encode(b"an account key that must never be shown").decode()
PASSWORD = "hunter2-but-longer"


class EchoingTable(Simulator):
    """A table endpoint that refuses every request, quoting the account key in its OData error."""

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", r".*", self._refuse)

    def _refuse(self, request: SimRequest) -> SimResponse:
        message = (
            f"The MAC signature found in the request is not the one computed with AccountKey={ACCOUNT_KEY}"
        )
        return json_response(400, {"odata.error": {"code": "InvalidInput", "message": {"value": message}}})

    def source_config(self) -> dict[str, Any]:
        return {
            "name": "table",
            "kind": "azure_table",
            "connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
                f"TableEndpoint={self.url}/devstoreaccount1;"
            ),
        }


@pytest.fixture
def echoing_table() -> Iterator[EchoingTable]:
    simulator = EchoingTable().start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def refusing_commvault() -> Iterator[CommvaultSimulator]:
    """A CommServe whose refused login quotes the password it was sent, plain and as base64."""
    simulator = CommvaultSimulator(username="svc", password="the-right-one").start()
    sent = base64.b64encode(PASSWORD.encode()).decode()
    error = {"errorCode": 1116, "errLogMessage": f"Invalid password {PASSWORD!r} ({sent}) for user svc"}
    simulator.inject("/Login", status=200, body=json.dumps({"errList": [error]}))
    try:
        yield simulator
    finally:
        simulator.stop()


def echoing_rezolve(rezolve: RezolveSimulator) -> dict[str, Any]:
    body = {"detail": f"Invalid bearer token {rezolve.token}; expected a token for acme.rezolve.ai"}
    rezolve.inject(status=401, body=json.dumps(body), headers={"Content-Type": "application/json"})
    return rezolve_source(rezolve)


def secrets_of(rezolve: RezolveSimulator) -> list[str]:
    return [rezolve.token, ACCOUNT_KEY, PASSWORD, base64.b64encode(PASSWORD.encode()).decode()]


def commvault_source(simulator: CommvaultSimulator) -> dict[str, Any]:
    return simulator.source_config("cv", password=PASSWORD, timeout="5s")


@pytest.fixture
def hostile_config(
    rezolve: RezolveSimulator, echoing_table: EchoingTable, refusing_commvault: CommvaultSimulator
) -> dict[str, Any]:
    return {
        "poll_interval": "1h",
        "sources": [
            echoing_rezolve(rezolve),
            echoing_table.source_config(),
            commvault_source(refusing_commvault),
        ],
    }


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text


def test_once_logs_what_the_servers_said_without_the_secrets_they_echoed(
    hostile_config: dict[str, Any], rezolve: RezolveSimulator, tmp_path: Path
) -> None:
    for log_format in ("text", "json"):
        result = run_cli(
            "--once",
            "--log-level",
            "debug",
            "--log-format",
            log_format,
            config=hostile_config,
            tmp_path=tmp_path,
        )
        assert result.code == 1
        assert_no_secret(result.stderr + result.stdout, secrets_of(rezolve))
        # What was said is kept, with only the secret cut out of it.
        assert "Invalid bearer token <redacted>" in result.stderr
        assert "computed with AccountKey=<redacted>" in result.stderr
        assert "Invalid password '<redacted>' (<redacted>) for user svc" in result.stderr


def test_sources_report_what_the_servers_said_without_the_secrets_they_echoed(
    serve: Any, hostile_config: dict[str, Any], rezolve: RezolveSimulator
) -> None:
    served: Served = serve(hostile_config, "--log-level", "debug")
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    report = httpx.get(f"{served.url}/sources").json()
    errors = {name: entry["last_error"] for name, entry in report.items()}
    assert errors["rezolve-test"]["reason"] == "auth"
    assert errors["rezolve-test"]["message"].startswith("POST /v2/azure/failed-files: HTTP 401: ")
    assert "Invalid bearer token <redacted>" in errors["rezolve-test"]["message"]
    assert errors["table"]["reason"] == "http_error"
    assert errors["table"]["message"] == (
        "table 'FailureRecords': HTTP 400: The MAC signature found in the request is not the one "
        "computed with AccountKey=<redacted>"
    )
    assert errors["cv"] == {
        "reason": "auth",
        "message": "login refused: Invalid password '<redacted>' (<redacted>) for user svc",
    }
    metrics = httpx.get(f"{served.url}/metrics").text
    everything = json.dumps(report) + metrics + served.stderr()
    assert_no_secret(everything, secrets_of(rezolve))
    assert served.stderr().count("<redacted>") >= 3


def test_tokens_the_platforms_issue_are_redacted_like_configured_secrets(serve: Any) -> None:
    """A Commvault login token and an IMS access token exist only at run time; when a server
    quotes them in an error, logs (at debug level), /sources and /metrics still never show them."""
    commvault, aep = CommvaultSimulator().start(), AepSimulator().start()
    try:
        now = time.time()
        commvault.add_job(
            CommvaultJob(1, "Windows File System", "fs01", "default", now - 60, [("C:\\a", "denied")])
        )
        aep.add_batch(SimBatch("B1", int((now - 60) * 1000), "failed", [], {"p.json": validation_file("x")}))
        config = {
            "poll_interval": "1s",
            "sources": [commvault.source_config("cv", timeout="2s"), aep.source_config("aep", timeout="2s")],
        }
        served: Served = serve(config, "--log-level", "debug")
        eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
        [login_token] = commvault.tokens
        [access_token] = aep.tokens
        commvault.inject("/FailedItems", status=500, body=f"session {login_token} is not valid on this node")
        aep.inject("/failed$", status=500, body=json.dumps({"message": f"token {access_token} was rejected"}))

        def failed_with_redaction() -> dict[str, Any] | None:
            report = httpx.get(f"{served.url}/sources").json()
            messages = [(report[n]["last_error"] or {}).get("message", "") for n in ("cv", "aep")]
            return report if all("<redacted>" in m for m in messages) else None

        report = eventually(failed_with_redaction)
        assert "session <redacted> is not valid" in report["cv"]["last_error"]["message"]
        assert "token <redacted> was rejected" in report["aep"]["last_error"]["message"]
        metrics = httpx.get(f"{served.url}/metrics").text
        bare = login_token.partition(" ")[2]
        assert_no_secret(json.dumps(report) + metrics + served.stderr(), [login_token, bare, access_token])
        assert "session <redacted> is not valid" in served.stderr()
    finally:
        commvault.stop()
        aep.stop()


def test_check_never_prints_a_secret(tmp_path: Path) -> None:
    config = {
        "sources": [
            {
                "name": "table",
                "kind": "azure_table",
                "connection_string": f"AccountKey={ACCOUNT_KEY};nonsense",
            },
            {"name": "cv", "kind": "commvault", "base_url": "ftp://x", "password": PASSWORD},
            {
                "name": "rz",
                "kind": "rezolve",
                "base_url": "http://x",
                "token": {"value": PASSWORD},
                "tenants": [],
            },
        ]
    }
    result = run_cli("--check", config=config, tmp_path=tmp_path)
    assert result.code == 2
    assert_no_secret(result.stderr + result.stdout, [ACCOUNT_KEY, PASSWORD])
    assert result.stderr.strip().splitlines() == [
        "sources[0].connection_string: not a valid storage connection string",
        "sources[1].base_url: must be an http:// or https:// URL",
        "sources[2].token: Input should be a valid string",
        "sources[2].tenants: Tuple should have at least 1 item after validation, not 0",
    ]


def test_issued_tokens_kept_are_the_latest_and_never_too_short_to_be_a_token() -> None:
    redactor = Redactor(["a-configured-secret"])
    for i in range(ISSUED_KEPT + 10):
        redactor.add_issued(f"issued-token-{i:04d}")
    assert redactor.scrub(f"issued-token-{ISSUED_KEPT + 9:04d}") == REDACTED
    assert redactor.scrub(f"issued-token-{10:04d}") == REDACTED
    assert redactor.scrub("issued-token-0009") == "issued-token-0009"  # replaced long ago
    redactor.add_issued("QSDK")
    assert redactor.scrub("QSDK a-configured-secret") == f"QSDK {REDACTED}"


def test_failures_never_show_a_secret_a_platform_quoted(
    serve: Any, rezolve: RezolveSimulator, tmp_path: Path
) -> None:
    """A record's message or URL may quote a secret (a platform echoing its request, a SAS token
    in a link): /failures, in every format, and --once --failures show it redacted."""
    rezolve.put(
        TENANT_A,
        "sharepoint",
        RezolveFile(
            "f1", f"{rezolve.token}.pdf", "ACCESS_DENIED", f"token {rezolve.token} refused", time.time(), 0
        ),
    )
    config = {"poll_interval": "1h", "sources": [rezolve_source(rezolve)]}
    served: Served = serve(config)
    eventually(lambda: httpx.get(f"{served.url}/readyz").status_code == 200)
    for fmt in ("json", "csv", "html"):
        body = httpx.get(f"{served.url}/failures", params={"format": fmt}).text
        at = body.find(rezolve.token)
        assert at == -1, body[max(at - 80, 0) : at + 40]
        assert ("token &lt;redacted&gt; refused" if fmt == "html" else "token <redacted> refused") in body
    written = tmp_path / "failures.json"
    assert run_cli("--once", "--failures", str(written), config=config, tmp_path=tmp_path).code == 0
    [item] = json.loads(written.read_text())["items"]
    assert rezolve.token not in json.dumps(item) and item["message"] == "token <redacted> refused"
