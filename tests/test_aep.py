"""The aep source against its simulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.records import Reason
from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.base import SimRequest
from exporter.sources.aep import first_validation_message
from tests.conftest import (
    eventually,
    failed_key,
    failure_series,
    poll_holding_until_counted,
    run_polls,
)

BAD_DATE = "[2018-00-23T22:07:01Z] is not a valid date-time. Expected [yyyy-MM-dd'T'HH:mm:ssZ]"


@pytest.fixture
def aep() -> Iterator[AepSimulator]:
    simulator = AepSimulator(
        api_key="cid", client_secret="csecret", org_id="ORG@AdobeOrg", sandbox="prod"
    ).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def oauth(sim: AepSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": "aep",
                "kind": "aep",
                "base_url": sim.url,
                "org_id": sim.org_id,
                "sandbox": sim.sandbox,
                "client_id": "cid",
                "client_secret": "csecret",
                "ims_url": f"{sim.url}/ims/token/v3",
                "timeout": "2s",
                **extra,
            }
        ]
    }


def batch(
    sim: AepSimulator,
    batch_id: str,
    files: dict[str, bytes],
    *,
    age: float = 3600,
    status: str = "failed",
    errors: list[dict[str, Any]] | None = None,
) -> SimBatch:
    return sim.add_batch(SimBatch(batch_id, int((time.time() - age) * 1000), status, errors or [], files))


def test_sends_the_four_headers_and_classifies_each_failed_file(aep: AepSimulator) -> None:
    batch(
        aep,
        "B1",
        {"part-0.json": validation_file(BAD_DATE), "part-1.json": validation_file("x", json_lines=True)},
    )
    exporter = run_polls(oauth(aep))
    assert exporter.states["aep"].up is True
    assert failure_series(exporter) == {
        failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 1,
        failed_key("aep", "prod", "aep", "UNKNOWN"): 1,
    }
    for request in aep.calls("/data/foundation/"):
        assert request.headers["authorization"].startswith("Bearer eyJ")
        assert request.headers["x-api-key"] == "cid"
        assert request.headers["x-gw-ims-org-id"] == "ORG@AdobeOrg"
        assert request.headers["x-sandbox-name"] == "prod"
    [token] = aep.calls("/ims/token/v3")
    assert token.headers["content-type"] == "application/x-www-form-urlencoded"


def test_a_batchs_files_are_counted_while_other_batches_are_still_answering(aep: AepSimulator) -> None:
    batch(aep, "B1", {"first.json": validation_file(BAD_DATE)})
    batch(aep, "B2", {"second.json": validation_file(BAD_DATE)})
    # B2's failed files are listed only once B1's are counted.
    result = poll_holding_until_counted(oauth(aep), aep, "/batches/B2/failed$", "first.json")
    assert sum(result.counts.values()) == 2


def test_catalog_discovery_pages_and_filters_to_failed_batches_in_the_lookback(aep: AepSimulator) -> None:
    for i in range(5):
        batch(
            aep, f"F{i}", {f"p{i}.json": validation_file(BAD_DATE)}, status="failed" if i % 2 else "failure"
        )
    batch(aep, "OLD", {"p.json": validation_file(BAD_DATE)}, age=3 * 86400)
    batch(aep, "OK", {}, status="success")
    exporter = run_polls(oauth(aep, page_size=2, lookback="1d"))
    assert sum(failure_series(exporter).values()) == 5
    listings = [r for r in aep.calls("/catalog/batches$") if r.arg("status") == "failed,failure"]
    assert [r.arg("start") for r in listings] == ["0", "2", "4"]
    first = listings[0]
    assert first.arg("limit") == "2" and first.arg("orderBy") == "desc:created"
    assert first.arg("properties") == "status,created,errors,metrics,failedRecordCount"
    assert abs(int(first.arg("createdAfter") or 0) / 1000 - (time.time() - 86400)) < 60


def test_failed_file_listing_follows_next_links_and_skips_markers(aep: AepSimulator) -> None:
    files = {f"part-{i}.json": validation_file(BAD_DATE) for i in range(5)}
    files["empty.json"] = b""
    batch(aep, "B1", files)
    exporter = run_polls(oauth(aep, page_size=2))
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 5}
    assert len(aep.calls("/export/batches/B1/failed$")) - 5 == 4  # 4 listing pages (7 entries), 5 downloads
    assert aep.downloads("B1", "_SUCCESS") == 0 and aep.downloads("B1", "empty.json") == 0


def test_a_file_is_downloaded_once_and_at_most_max_download_bytes(aep: AepSimulator) -> None:
    huge = (
        json.dumps({"_validationErrors": [{"message": BAD_DATE}]}).encode()
        + b"\n"
        + b'{"pad": "'
        + b"x" * 4_000_000
        + b'"}'
    )
    batch(aep, "B1", {"huge.json": huge})
    exporter = run_polls(oauth(aep, max_download_bytes=4096, max_response_bytes=65536), lambda: None)
    state = exporter.states["aep"]
    assert state.up is True and state.errors[Reason.INVALID_RESPONSE] == 0
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 1}
    assert aep.downloads("B1", "huge.json") == 1  # the second poll reused the classification


def test_a_failed_batch_without_failed_files_counts_once_from_its_errors(aep: AepSimulator) -> None:
    batch(
        aep,
        "B1",
        {},
        errors=[{"code": "INGEST-1212-400", "description": "Encoding of the file is not supported (UTF-16)"}],
    )
    batch(aep, "B2", {}, errors=[{"code": "INGEST-1555-400"}])
    exporter = run_polls(oauth(aep, tenant="acme"))
    assert failure_series(exporter) == {
        failed_key("aep", "acme", "aep", "UNSUPPORTED_FORMAT"): 1,
        failed_key("aep", "acme", "aep", "UNKNOWN"): 1,
    }


def test_the_oauth_token_is_renewed_before_it_expires(aep: AepSimulator) -> None:
    aep.token_lifetime = 1
    batch(aep, "B1", {"p.json": validation_file(BAD_DATE)})
    issued_at = time.monotonic()
    exporter = run_polls(oauth(aep), lambda: eventually(lambda: time.monotonic() - issued_at > 1.0))
    assert exporter.states["aep"].up is True
    assert aep.tokens_issued == 2
    assert not [r for r in aep.calls("/data/") if r.headers.get("authorization") is None]


def test_a_revoked_token_is_replaced_once(aep: AepSimulator) -> None:
    batch(aep, "B1", {"p.json": validation_file(BAD_DATE)})
    exporter = run_polls(oauth(aep), aep.tokens.clear)
    assert exporter.states["aep"].up is True and aep.tokens_issued == 2


def test_a_static_token_and_a_wrong_one(aep: AepSimulator) -> None:
    aep.add_static_token("static-token")
    document = oauth(aep, access_token="static-token", api_key="cid")
    for field in ("client_id", "client_secret", "ims_url"):
        del document["sources"][0][field]
    batch(aep, "B1", {"p.json": validation_file(BAD_DATE)})
    assert run_polls(document).states["aep"].up is True
    document["sources"][0]["access_token"] = "revoked"
    assert run_polls(document).states["aep"].errors[Reason.AUTH] == 1


@pytest.mark.parametrize("code", ["invalid_client", "invalid_scope", "unauthorized_client"])
def test_credentials_that_ims_refuses_with_400_are_auth(aep: AepSimulator, code: str) -> None:
    if code == "invalid_client":
        document = oauth(aep, client_secret="nope")  # the simulator refuses it as IMS does
    else:
        aep.inject("/ims/token/v3", status=400, body=json.dumps({"error": code}))
        document = oauth(aep)
    state = run_polls(document).states["aep"]
    assert state.errors[Reason.AUTH] == 1
    assert state.last_error is not None
    assert state.last_error.detail.startswith(
        "the token service refused the credentials: POST /ims/token/v3: HTTP 400"
    )


def test_another_400_from_ims_is_an_http_error(aep: AepSimulator) -> None:
    aep.inject("/ims/token/v3", status=400, body=json.dumps({"error": "unsupported_grant_type"}))
    assert run_polls(oauth(aep)).states["aep"].errors[Reason.HTTP_ERROR] == 1


def test_ims_gets_none_of_the_platform_headers(aep: AepSimulator) -> None:
    assert run_polls(oauth(aep)).states["aep"].up is True
    (token_request,) = aep.calls("/ims/token/v3", "POST")
    assert not {"x-api-key", "x-gw-ims-org-id", "x-sandbox-name"} & set(token_request.headers)
    platform_request = aep.calls("/data/foundation/catalog")[0]
    assert {"x-api-key", "x-gw-ims-org-id", "x-sandbox-name"} <= set(platform_request.headers)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (validation_file(BAD_DATE), BAD_DATE),
        (validation_file(BAD_DATE, lines=3, json_lines=True), BAD_DATE),
        (
            b'{"_errors": {"_streamingValidation": [{"message": "Payload header is missing Source Name"}]}}',
            "Payload header is missing Source Name",
        ),
        (
            b'{"_corrupt_record": "x", "_errors": [{"code": "1401", "message": "Row is malformed"}]}',
            "Row is malformed",
        ),
        (
            b'{"_validationErrors": [{"message": "cut \\"short\\" here"}], "rest": "xxxxxxxx',
            'cut "short" here',
        ),
        (b"not json at all", ""),
    ],
    ids=["document", "json-lines", "streaming", "row-errors", "truncated", "garbage"],
)
def test_first_validation_message(content: bytes, message: str) -> None:
    assert first_validation_message(content) == message


def test_a_next_link_to_another_host_is_followed_on_the_configured_base_url(aep: AepSimulator) -> None:
    batch(aep, "B1", {f"part-{i}.json": validation_file(BAD_DATE) for i in range(3)})
    listing = {
        "data": [{"name": "part-0.json", "length": "10"}],
        "_links": {
            "next": {
                "href": "https://elsewhere.example:443/data/foundation/export/batches/B1/failed?start=1&limit=100"
            }
        },
    }
    aep.inject(
        "/export/batches/B1/failed$",
        status=200,
        body=json.dumps(listing),
        times=1,
        when=lambda request: request.arg("path") is None,
    )
    exporter = run_polls(oauth(aep))
    assert exporter.states["aep"].up is True
    follow_up = [r for r in aep.calls("/export/batches/B1/failed$") if r.arg("start") == "1"]
    assert follow_up and follow_up[0].headers["host"] == aep.url.removeprefix("http://")
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 3}


def test_a_batch_that_fails_once_keeps_its_files_classified(aep: AepSimulator) -> None:
    batch(aep, "B1", {f"f{i}.json": validation_file(BAD_DATE) for i in range(3)})
    batch(aep, "B2", {"g.json": validation_file(BAD_DATE)})

    def fail_b1_listing_once() -> None:
        aep.inject("/export/batches/B1/failed$", status=503, times=4, when=lambda r: "path" not in r.query)

    exporter = run_polls(oauth(aep), fail_b1_listing_once, aep.clear_faults)
    assert exporter.states["aep"].up is True
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 4}
    for name in ("f0.json", "f1.json", "f2.json"):
        assert aep.downloads("B1", name) == 1  # classified at the first poll, kept through the failed one
    assert aep.downloads("B2", "g.json") == 1


def test_a_later_poll_lists_the_batches_it_knows_while_the_catalog_is_read(aep: AepSimulator) -> None:
    batch(aep, "B1", {"f.json": validation_file(BAD_DATE)})
    listed = threading.Event()

    def hold_the_catalog_until_b1_is_listed() -> None:
        def listing(request: SimRequest) -> bool:
            if "path" not in request.query:
                listed.set()
            return False  # noticed, not broken

        aep.inject("/export/batches/B1/failed$", when=listing)
        aep.inject("/catalog/batches$", hold=listed, times=1)

    try:
        exporter = run_polls(oauth(aep), hold_the_catalog_until_b1_is_listed)
    finally:
        listed.set()
    assert exporter.states["aep"].up is True
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 1}


def test_a_batch_that_left_the_catalog_is_resolved_whatever_its_early_listing_says(aep: AepSimulator) -> None:
    batch(aep, "B1", {"f.json": validation_file(BAD_DATE)})
    batch(aep, "B2", {"g.json": validation_file(BAD_DATE)})
    batch(aep, "B3", {"h.json": validation_file(BAD_DATE)})

    def b2_deleted_and_b3_retried() -> None:
        del aep.batches["B2"]  # its early listing is answered 404
        # Retried with success (no row failed); its early listing still lists the file.
        aep.batches["B3"].status, aep.batches["B3"].failed_rows = "success", 0

    exporter = run_polls(oauth(aep), b2_deleted_and_b3_retried)
    state = exporter.states["aep"]
    assert state.up is True and sum(state.errors.values()) == 0
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 1}
    assert state.resolved[("prod", "aep")] == 2


def test_a_failed_catalog_read_fails_the_poll_while_a_listing_is_on_its_way(aep: AepSimulator) -> None:
    batch(aep, "B1", {"f.json": validation_file(BAD_DATE)})

    def catalog_refused() -> None:
        aep.inject("/catalog/batches$", status=400, body='{"message": "bad filter"}')
        aep.inject("/export/batches/B1/failed$", delay=0.5, when=lambda r: "path" not in r.query)

    exporter = run_polls(oauth(aep), catalog_refused)
    state = exporter.states["aep"]
    assert state.up is False and state.errors[Reason.HTTP_ERROR] == 1
    assert failure_series(exporter) == {
        failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 1
    }  # the last result stands
