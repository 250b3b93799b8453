"""AEP as it runs today (docs/reference.md, Platforms): partially ingested batches, their failed rows, and a
Data Access API that no longer serves some batches. Against the AEP simulator."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.records import Reason
from exporter.serving.endpoints import source_report
from exporter.serving.failures import FailureIndex, as_csv, as_json, parse_query, search
from exporter.serving.triage import triage_page
from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from tests.conftest import failed_key, failure_series, parse_exposition, run_polls, series, series_key

BAD_DATE = "[2018-00-23T22:07:01Z] is not a valid date-time for field 'timestamp'"
MISSING = "Required field 'identityMap' is missing"


@pytest.fixture
def aep() -> Iterator[AepSimulator]:
    simulator = AepSimulator(api_key="cid", client_secret="csecret").start()
    try:
        yield simulator
    finally:
        simulator.stop()


def config(sim: AepSimulator, **extra: Any) -> dict[str, Any]:
    return {"sources": [sim.source_config("aep", timeout="2s", **extra)]}


def partial(
    sim: AepSimulator,
    batch_id: str,
    errors: list[dict[str, Any]],
    rows: int,
    *,
    age: float = 3600,
    **more: Any,
) -> SimBatch:
    created = int((time.time() - age) * 1000)
    return sim.add_batch(SimBatch(batch_id, created, "success", errors, failed_rows=rows, **more))


def error(code: str, description: str, count: int | None = None) -> dict[str, Any]:
    return {"code": code, "description": description} | ({} if count is None else {"recordCount": count})


def rows_series(exporter: Any) -> dict[frozenset[tuple[str, str]], float]:
    return series(parse_exposition(exporter.snapshot.text.decode()), "ingestion_failed_rows")


def rows_key(error_type: str) -> frozenset[tuple[str, str]]:
    return series_key(source="aep", tenant="prod", platform="aep", error_type=error_type)


def items(exporter: Any) -> list[dict[str, Any]]:
    lanes = FailureIndex().refresh(exporter.states)
    page = search(lanes, parse_query([]), everything=True)
    return list(json.loads(as_json(page, parse_query([]), everything=True))["items"])


def by_id(exporter: Any) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items(exporter)}


def test_a_partial_batch_with_several_errors_is_a_record_per_code_with_its_rows(aep: AepSimulator) -> None:
    partial(aep, "P1", [error("INGEST-1555-400", BAD_DATE, 3), error("INGEST-1212-400", MISSING, 9)], 12)
    exporter = run_polls(config(aep))
    assert exporter.states["aep"].up is True
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 2}
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): 12}  # 3 + 9 in one label set
    found = by_id(exporter)
    assert set(found) == {"P1/INGEST-1555-400", "P1/INGEST-1212-400"}
    date = found["P1/INGEST-1555-400"]
    assert (date["name"], date["location"], date["message"], date["rows"]) == (
        "INGEST-1555-400",
        "P1",
        BAD_DATE,
        3,
    )
    assert found["P1/INGEST-1212-400"]["rows"] == 9


def test_a_partial_batch_with_one_error_and_one_without_errors(aep: AepSimulator) -> None:
    partial(aep, "ONE", [error("INGEST-1401-400", "Unable to parse the row: malformed CSV", 4)], 4)
    partial(aep, "NONE", [], 6)
    exporter = run_polls(config(aep))
    assert failure_series(exporter) == {
        failed_key("aep", "prod", "aep", "PARSE_ERROR"): 1,
        failed_key("aep", "prod", "aep", "UNKNOWN"): 1,
    }
    assert rows_series(exporter) == {rows_key("PARSE_ERROR"): 4, rows_key("UNKNOWN"): 6}
    found = by_id(exporter)
    assert found["ONE/INGEST-1401-400"]["rows"] == 4
    # A batch that lists no error is one record named by its batch, with the batch's count.
    assert (found["NONE/"]["name"], found["NONE/"]["rows"], found["NONE/"]["message"]) == ("NONE", 6, "")


def test_an_error_without_a_record_count(aep: AepSimulator) -> None:
    # Its only error stands for the batch's every failed row...
    partial(aep, "ALONE", [error("INGEST-1212-400", MISSING)], 15)
    # ...but beside others it says nothing of its rows, and none are made up for it.
    partial(aep, "MIXED", [error("INGEST-1555-400", BAD_DATE, 5), error("CODE-ONLY", "")], 8)
    exporter = run_polls(config(aep))
    found = by_id(exporter)
    assert found["ALONE/INGEST-1212-400"]["rows"] == 15
    assert found["MIXED/INGEST-1555-400"]["rows"] == 5
    code_only = found["MIXED/CODE-ONLY"]
    assert code_only["rows"] is None and code_only["message"] == "CODE-ONLY"  # classified by its code
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): 20}  # 15 + 5


def test_entries_of_one_code_are_one_record_with_their_rows_summed(aep: AepSimulator) -> None:
    partial(aep, "P", [error("INGEST-1555-400", BAD_DATE, 2), error("INGEST-1555-400", "another", 3)], 5)
    exporter = run_polls(config(aep))
    [record] = items(exporter)
    assert (record["id"], record["rows"], record["message"]) == ("P/INGEST-1555-400", 5, BAD_DATE)


def test_a_finished_batch_without_failed_rows_is_not_a_failure(aep: AepSimulator) -> None:
    partial(aep, "CLEAN", [], 0)
    partial(aep, "CLEAN-WITH-NOTE", [error("INFO", "nothing failed")], 0)
    exporter = run_polls(config(aep))
    assert exporter.states["aep"].up is True
    assert failure_series(exporter) == {} and rows_series(exporter) == {}
    assert items(exporter) == []


def test_a_count_at_the_top_level_of_the_batch(aep: AepSimulator) -> None:
    partial(aep, "TOP", [error("INGEST-1212-400", MISSING)], 11, count_at_top=True)
    batch = aep.batches["TOP"].as_json(None, aep.sandbox_id)
    assert batch["failedRecordCount"] == 11 and "failedRecordCount" not in batch["metrics"]
    exporter = run_polls(config(aep))
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): 11}


def test_partial_batches_are_read_through_every_catalog_page(aep: AepSimulator) -> None:
    for i in range(7):
        partial(aep, f"P{i}", [error("INGEST-1555-400", BAD_DATE, i + 1)], i + 1, age=600 + i)
    partial(aep, "OLD", [error("INGEST-1555-400", BAD_DATE, 50)], 50, age=3 * 86400)
    exporter = run_polls(config(aep, page_size=3, lookback="1d"))
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): sum(range(1, 8))}
    finished = [r for r in aep.calls("/catalog/batches$") if r.arg("status") == "success,active"]
    assert [r.arg("start") for r in finished] == ["0", "3", "6"]
    assert finished[0].arg("properties") == "status,created,errors,metrics,failedRecordCount"
    assert abs(int(finished[0].arg("createdAfter") or 0) / 1000 - (time.time() - 86400)) < 60


def test_failed_and_partial_batches_together_and_a_failed_batchs_rows(aep: AepSimulator) -> None:
    created = int((time.time() - 600) * 1000)
    aep.add_batch(SimBatch("F", created, "failed", [], {"part-0.json": validation_file(BAD_DATE)}))
    aep.add_batch(SimBatch("FB", created, "failure", [error("INGEST-1212-400", MISSING)], failed_rows=40))
    partial(aep, "P", [error("INGEST-1555-400", BAD_DATE, 2)], 2)
    exporter = run_polls(config(aep))
    found = by_id(exporter)
    assert found["F/part-0.json"]["rows"] is None  # a failed file says nothing of its rows
    assert found["FB/"]["rows"] == 40  # a failed batch without files: its failedRecordCount
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): 42}
    assert failure_series(exporter) == {failed_key("aep", "prod", "aep", "SCHEMA_VALIDATION"): 3}


def test_a_batch_that_goes_from_partial_to_gone_is_resolved_once(aep: AepSimulator) -> None:
    partial(aep, "P", [error("INGEST-1555-400", BAD_DATE, 2), error("INGEST-1212-400", MISSING, 1)], 3)
    partial(aep, "STAYS", [error("INGEST-1212-400", MISSING, 4)], 4)
    resolved: list[float] = []

    def gone() -> None:
        del aep.batches["P"]

    def record_resolved() -> None:
        found = series(
            parse_exposition(exporter.snapshot.text.decode()), "ingestion_failed_files_resolved_total"
        )
        resolved.append(found[series_key(source="aep", tenant="prod", platform="aep")])

    from exporter.config import build_settings
    from exporter.runtime import Exporter

    exporter = Exporter(build_settings(config(aep), {}))
    run_polls(exporter, record_resolved, gone, record_resolved, record_resolved)
    record_resolved()
    # 0 before, 2 (the batch's two records) once it is gone, and no more after that.
    assert resolved == [0, 2, 2, 2]
    assert rows_series(exporter) == {rows_key("SCHEMA_VALIDATION"): 4}


@pytest.mark.parametrize("status", [403, 404, 410, 501])
def test_a_batch_the_data_access_api_no_longer_serves_is_one_record_from_the_catalog(
    aep: AepSimulator, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    created = int((time.time() - 600) * 1000)
    files = {"part-0.json": validation_file(BAD_DATE)}
    errors = [error("INGEST-1212-400", MISSING)]
    aep.add_batch(SimBatch("GONE1", created, "failed", errors, files, failed_rows=30, export_status=status))
    aep.add_batch(SimBatch("GONE2", created, "failed", [], files, failed_rows=3, export_status=status))
    aep.add_batch(SimBatch("SERVED", created, "failed", [], files))
    with caplog.at_level(logging.WARNING):
        exporter = run_polls(config(aep))
    state = exporter.states["aep"]
    assert state.up is True and sum(state.errors.values()) == 0
    found = by_id(exporter)
    assert set(found) == {"GONE1/", "GONE2/", "SERVED/part-0.json"}
    assert (found["GONE1/"]["name"], found["GONE1/"]["message"], found["GONE1/"]["rows"]) == (
        "GONE1",
        MISSING,
        30,
    )
    assert found["GONE1/"]["error_type"] == "SCHEMA_VALIDATION"
    assert found["GONE2/"]["error_type"] == "UNKNOWN"  # no Catalog error to classify it by
    # One warning for the poll, in the log and in /sources, naming the status.
    [warning] = state.warnings
    assert f"HTTP {status} for 2" in warning and "2 failed batch(es)" in warning
    logged = [r.getMessage() for r in caplog.records if "Data Access API" in r.getMessage()]
    assert len(logged) == 1
    report = source_report(exporter)["aep"]
    assert report["warnings"] == [warning] and report["up"] is True
    if status == 501:  # Not Implemented is lasting: asked once, not retried
        assert len(aep.calls("/export/batches/GONE1/failed$")) == 1


def test_a_data_access_api_that_serves_again_brings_the_files_back(aep: AepSimulator) -> None:
    created = int((time.time() - 600) * 1000)
    files = {"part-0.json": validation_file(BAD_DATE)}
    aep.add_batch(SimBatch("B", created, "failed", [error("X", MISSING)], files, export_status=410))

    def served_again() -> None:
        aep.batches["B"].export_status = None

    exporter = run_polls(config(aep), served_again)
    assert set(by_id(exporter)) == {"B/part-0.json"}
    assert exporter.states["aep"].warnings == ()


def test_a_download_the_data_access_api_refuses_makes_its_batch_one_record(aep: AepSimulator) -> None:
    created = int((time.time() - 600) * 1000)
    files = {"part-0.json": validation_file(BAD_DATE), "part-1.json": validation_file(BAD_DATE)}
    aep.add_batch(SimBatch("B", created, "failed", [error("X", MISSING)], files))
    aep.batches["B"].download_status = 404  # listed, but its files' downloads are refused
    exporter = run_polls(config(aep))
    assert exporter.states["aep"].up is True
    assert {i["id"]: i["message"] for i in items(exporter)} == {"B/": MISSING}
    assert len(exporter.states["aep"].warnings) == 1


def test_a_listing_that_answers_500_is_still_a_failed_part(aep: AepSimulator) -> None:
    created = int((time.time() - 600) * 1000)
    files = {"part-0.json": validation_file(BAD_DATE)}
    aep.add_batch(SimBatch("BROKEN", created, "failed", [], files, export_status=500))
    aep.add_batch(SimBatch("FINE", created, "failed", [], files))
    partial(aep, "P", [error("INGEST-1212-400", MISSING, 2)], 2)
    exporter = run_polls(config(aep))
    state = exporter.states["aep"]
    assert state.up is False and state.errors[Reason.HTTP_ERROR] == 1
    assert state.warnings == ()
    assert set(by_id(exporter)) == {"FINE/part-0.json", "P/INGEST-1212-400"}


def test_rows_in_csv_and_the_html_page(aep: AepSimulator) -> None:
    partial(aep, "P", [error("INGEST-1555-400", BAD_DATE, 7)], 7)
    exporter = run_polls(config(aep))
    lanes = FailureIndex().refresh(exporter.states)
    query = parse_query([])
    page = search(lanes, query)
    [row] = list(csv.DictReader(io.StringIO(as_csv(page).decode())))
    assert row["rows"] == "7"
    document = triage_page(
        lanes, parse_query([("format", "html")]), exporter.states, now=time.time()
    ).decode()
    assert "<th data-sort='rows'>Rows</th>" in document
    assert "<td class='rows' data-value='7'>7</td>" in document


def test_kinds_without_rows_export_no_rows_family(aep: AepSimulator) -> None:
    aep.add_batch(
        SimBatch("F", int(time.time() * 1000) - 1000, "failed", [], {"p.json": validation_file(BAD_DATE)})
    )
    exporter = run_polls(config(aep))
    text = exporter.snapshot.text.decode()
    assert "ingestion_failed_rows" not in text  # not even its HELP and TYPE lines
    assert failure_series(exporter)
