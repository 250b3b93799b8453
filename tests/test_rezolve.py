"""The Rezolve source against its simulator: the documented contract, and every way it can fail."""

from __future__ import annotations

import json
import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from exporter.records import Reason
from exporter.runtime import Exporter
from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import TENANT_A, free_port, rezolve_file, run_polls


def poll_once(simulator_url: str, token: str, **source: Any) -> Exporter:
    document = {
        "poll_timeout": source.pop("poll_timeout", "20s"),
        "sources": [{**rezolve_source_for(simulator_url, token), **source}],
    }
    exporter: Exporter = run_polls(document)
    return exporter


def rezolve_source_for(url: str, token: str) -> dict[str, Any]:
    return {
        "name": "rezolve-test",
        "kind": "rezolve",
        "base_url": url,
        "token": token,
        "timeout": "1s",
        "tenants": [
            {"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}
        ],
    }


def outcome(exporter: Exporter) -> tuple[bool | None, dict[Reason, int]]:
    state = exporter.states["rezolve-test"]
    return state.up, {reason: n for reason, n in state.errors.items() if n}


def test_sends_the_documented_request(rezolve: RezolveSimulator) -> None:
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f1", "PARSE_ERROR", "x", time.time(), 2))
    exporter = poll_once(rezolve.url, rezolve.token)
    assert outcome(exporter) == (True, {})
    [request] = rezolve.calls("/v2/azure/failed-files", "POST")
    assert request.headers["authorization"] == "Bearer test-token"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenantid"] == TENANT_A
    assert json.loads(request.body) == {
        "pinecone_config": {"rezolve_domain": "acme.rezolve.ai", "tenant_id": TENANT_A},
        "platform_type": "sharepoint",
    }


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"status": 401, "body": '{"detail": "Invalid or expired token"}'}, Reason.AUTH),
        ({"status": 403, "body": '{"detail": "Insufficient permissions"}'}, Reason.AUTH),
        ({"status": 400, "body": '{"detail": "Invalid request body"}'}, Reason.HTTP_ERROR),
        (
            {"status": 422, "body": '{"detail": [{"loc": ["body"], "msg": "x", "type": "y"}]}'},
            Reason.HTTP_ERROR,
        ),
        ({"status": 500, "body": '{"detail": "Internal Server Error"}'}, Reason.HTTP_ERROR),
        ({"status": 429, "headers": {"Retry-After": "0"}}, Reason.RATE_LIMITED),
        ({"status": 200, "body": "<html>gateway</html>"}, Reason.INVALID_RESPONSE),
        (
            {"status": 200, "body": '{"success": true, "data": {"failed_files": "nope"}}'},
            Reason.INVALID_RESPONSE,
        ),
        (
            {"status": 200, "body": '{"success": true, "data": {"failed_files": [{"no_id": 1}]}}'},
            Reason.INVALID_RESPONSE,
        ),
        ({"status": 200, "body": '{"success": false, "message": "table unavailable"}'}, Reason.HTTP_ERROR),
        ({"status": 200, "body": "x" * 5_000_000}, Reason.INVALID_RESPONSE),
        ({"delay": 1.5}, Reason.TIMEOUT),
    ],
    ids=[
        "401",
        "403",
        "400",
        "422",
        "500",
        "429",
        "html",
        "bad-shape",
        "no-file-id",
        "success-false",
        "huge",
        "slow",
    ],
)
def test_every_failure_maps_to_one_reason(
    rezolve: RezolveSimulator, fault: dict[str, Any], reason: Reason
) -> None:
    rezolve.inject(**fault)
    exporter = poll_once(rezolve.url, rezolve.token, max_response_bytes=1_000_000)
    assert outcome(exporter) == (False, {reason: 1})


def test_the_simulator_itself_enforces_auth_and_headers(rezolve: RezolveSimulator) -> None:
    body = {
        "pinecone_config": {"rezolve_domain": "acme.rezolve.ai", "tenant_id": TENANT_A},
        "platform_type": "sharepoint",
    }
    good = {"authorization": "Bearer test-token", "accept": "application/json", "x-tenantid": TENANT_A}
    url = f"{rezolve.url}/v2/azure/failed-files"
    assert httpx.post(url, json=body, headers=good).status_code == 200
    assert httpx.post(url, json=body, headers={**good, "authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(url, json=body, headers={**good, "x-tenantid": "not-a-uuid"}).status_code == 400
    assert httpx.post(url, json={"platform_type": "sharepoint"}, headers=good).status_code == 422
    assert httpx.post(url, json={**body, "platform_type": "dropbox"}, headers=good).status_code == 422
    other = "11111111-2222-3333-4444-555555555555"
    assert httpx.post(url, json=body, headers={**good, "x-tenantid": other}).status_code == 403


def test_a_refused_connection_is_reason_connection() -> None:
    exporter = poll_once(f"http://127.0.0.1:{free_port()}", "t")
    assert outcome(exporter) == (False, {Reason.CONNECTION: 1})


def test_5xx_is_retried_and_a_recovery_succeeds(rezolve: RezolveSimulator) -> None:
    rezolve.inject(status=503, times=2)
    exporter = poll_once(rezolve.url, rezolve.token)
    assert outcome(exporter) == (True, {})
    assert len(rezolve.calls("failed-files")) == 3


@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_429_waits_for_retry_after(rezolve: RezolveSimulator, retry_after: str) -> None:
    value = formatdate(time.time() + 2, usegmt=True) if retry_after == "http-date" else retry_after
    rezolve.inject(status=429, headers={"Retry-After": value}, times=1)
    exporter = poll_once(rezolve.url, rezolve.token)
    assert outcome(exporter) == (True, {})
    first, second = rezolve.calls("failed-files")
    assert second.received - first.received >= 0.9


def test_429_beyond_the_poll_budget_is_rate_limited(rezolve: RezolveSimulator) -> None:
    rezolve.inject(status=429, headers={"Retry-After": "3600"})
    exporter = poll_once(rezolve.url, rezolve.token, poll_timeout="5s")
    assert outcome(exporter) == (False, {Reason.RATE_LIMITED: 1})
    assert len(rezolve.calls("failed-files")) == 1  # it did not wait an hour, nor hammer


def test_a_retry_the_poll_could_not_wait_for_is_not_made(rezolve: RezolveSimulator) -> None:
    # Each answer takes 0.9 s. A retry after the first would end past the 2 s poll: made, it
    # would turn the source's 503 into a timeout.
    rezolve.inject(status=503, delay=0.9)
    exporter = poll_once(rezolve.url, rezolve.token, timeout="5s", poll_timeout="2s")
    assert outcome(exporter) == (False, {Reason.HTTP_ERROR: 1})
    assert len(rezolve.calls("failed-files")) == 1


def test_a_poll_past_poll_timeout_is_abandoned_as_timeout(rezolve: RezolveSimulator) -> None:
    rezolve.inject(delay=3)
    exporter = poll_once(rezolve.url, rezolve.token, timeout="10s", poll_timeout="1s")
    assert outcome(exporter) == (False, {Reason.TIMEOUT: 1})
    assert exporter.states["rezolve-test"].last_error is not None


def test_requests_within_a_source_respect_max_concurrency(rezolve: RezolveSimulator) -> None:
    platforms = ["sharepoint", "servicenow", "confluence", "itglue", "web"]
    rezolve.inject(delay=0.3)
    started = time.monotonic()
    exporter = poll_once(
        rezolve.url,
        rezolve.token,
        max_concurrency=1,
        tenants=[{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": platforms}],
    )
    assert outcome(exporter) == (True, {})
    assert time.monotonic() - started >= 5 * 0.3  # one at a time: the delays add up


def test_a_well_formed_answer_over_max_response_bytes_fails_the_poll(rezolve: RezolveSimulator) -> None:
    for n in range(40):  # about 9 KB of valid JSON
        rezolve.put(
            TENANT_A, "sharepoint", rezolve_file(f"file-{n:03d}", "PARSE_ERROR", "x" * 150, time.time(), 0)
        )
    assert outcome(poll_once(rezolve.url, rezolve.token, max_response_bytes=65536)) == (True, {})
    capped = poll_once(rezolve.url, rezolve.token, max_response_bytes=4096)
    assert outcome(capped) == (False, {Reason.INVALID_RESPONSE: 1})
    error = capped.states["rezolve-test"].last_error
    assert error is not None and "body over 4096 bytes" in error.detail
    # Sent without a length, it is cut while it is read.
    rezolve.inject("/failed-files", mode="chunked")
    streamed = poll_once(rezolve.url, rezolve.token, max_response_bytes=4096)
    assert outcome(streamed) == (False, {Reason.INVALID_RESPONSE: 1})
    rezolve.clear_faults()
    assert outcome(poll_once(rezolve.url, rezolve.token, max_response_bytes=65536)) == (True, {})


def test_two_platforms_of_one_tenant_may_share_a_file_id(rezolve: RezolveSimulator) -> None:
    now = time.time()
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("file-001", "ACCESS_DENIED", "", now, 0))
    rezolve.put(TENANT_A, "confluence", rezolve_file("file-001", "PARSE_ERROR", "", now, 0))
    exporter = poll_once(
        rezolve.url,
        rezolve.token,
        tenants=[
            {
                "tenant_id": TENANT_A,
                "rezolve_domain": "acme.rezolve.ai",
                "platforms": ["sharepoint", "confluence"],
            }
        ],
    )
    result = exporter.states["rezolve-test"].result
    assert result is not None
    assert sorted(detail.id for detail in result.details.values()) == [
        f"{TENANT_A}/confluence/file-001",
        f"{TENANT_A}/sharepoint/file-001",
    ]
    assert sum(result.counts.values()) == 2
