"""The unstructured source against its simulator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.records import Reason
from exporter.simulators.unstructured import SimJob, UnstructuredSimulator
from tests.conftest import failed_key, failure_series, poll_holding_until_counted, run_polls

HOUR = 3600.0


@pytest.fixture
def unstructured() -> Iterator[UnstructuredSimulator]:
    simulator = UnstructuredSimulator(api_key="k-123").start()
    try:
        yield simulator
    finally:
        simulator.stop()


def source(sim: UnstructuredSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "sources": [
            {
                "name": "un",
                "kind": "unstructured",
                "base_url": sim.url,
                "api_key": sim.api_key,
                "tenant": "acme",
                "timeout": "2s",
                **extra,
            }
        ]
    }


def job(
    sim: UnstructuredSimulator, workflow: str, status: str, age: float, failed: list[tuple[str, str]]
) -> SimJob:
    return sim.add_job(SimJob(str(uuid.uuid4()), workflow, status, time.time() - age, failed))


def test_reads_failed_files_of_recent_finished_jobs_with_the_api_key(
    unstructured: UnstructuredSimulator,
) -> None:
    wf = unstructured.add_workflow("kb", "sharepoint")
    job(unstructured, wf, "COMPLETED", HOUR, [("a.pdf", "PDF file is corrupted")])
    job(unstructured, wf, "failed", 2 * HOUR, [("b.pdf", "Unsupported file type")])  # lower case
    job(unstructured, wf, "IN_PROGRESS", 60, [("c.pdf", "x")])
    job(unstructured, wf, "SCHEDULED", 60, [])
    job(unstructured, wf, "COMPLETED", 30 * HOUR, [("d.pdf", "x")])  # outside the lookback
    exporter = run_polls(source(unstructured, lookback="1d"))
    assert exporter.states["un"].up is True
    assert failure_series(exporter) == {
        failed_key("un", "acme", "sharepoint", "PARSE_ERROR", "0"): 1,
        failed_key("un", "acme", "sharepoint", "UNSUPPORTED_FORMAT", "0"): 1,
    }
    assert all(r.headers["unstructured-api-key"] == "k-123" for r in unstructured.requests)


def test_failed_files_are_fetched_only_for_jobs_that_can_have_them(
    unstructured: UnstructuredSimulator,
) -> None:
    wf = unstructured.add_workflow("kb", "s3")
    clean = job(unstructured, wf, "COMPLETED", HOUR, [])
    with_errors = job(unstructured, wf, "COMPLETED", HOUR, [("a.pdf", "timed out")])
    failed = job(unstructured, wf, "FAILED", HOUR, [("b.pdf", "timed out")])
    run_polls(source(unstructured))
    fetched = {r.match["id"] for r in unstructured.calls("/failed-files$")}
    assert fetched == {with_errors.job_id, failed.job_id}
    detailed = {r.match["id"] for r in unstructured.calls("/details$")}
    assert clean.job_id in detailed and failed.job_id not in detailed  # FAILED needs no details


def test_a_document_listed_by_several_jobs_of_a_workflow_has_derived_retries(
    unstructured: UnstructuredSimulator,
) -> None:
    wf1 = unstructured.add_workflow("kb", "confluence")
    wf2 = unstructured.add_workflow("other", "confluence")
    for age in (5 * HOUR, 3 * HOUR, HOUR):
        job(unstructured, wf1, "COMPLETED", age, [("a.pdf", "OCR failed: blank page")])
    job(unstructured, wf2, "COMPLETED", HOUR, [("a.pdf", "OCR failed: blank page")])  # other workflow
    exporter = run_polls(source(unstructured))
    assert failure_series(exporter) == {
        failed_key("un", "acme", "confluence", "OCR_FAILED", "2"): 1,
        failed_key("un", "acme", "confluence", "OCR_FAILED", "0"): 1,
    }


def test_platform_is_the_source_connector_type_cached_else_unstructured(
    unstructured: UnstructuredSimulator,
) -> None:
    wf = unstructured.add_workflow("kb", "google_drive")
    bare = unstructured.add_workflow("adhoc", None)
    job(unstructured, wf, "COMPLETED", HOUR, [("a", "timed out")])
    job(unstructured, bare, "COMPLETED", HOUR, [("b", "timed out")])
    exporter = run_polls(source(unstructured), lambda: None)
    assert failure_series(exporter) == {
        failed_key("un", "acme", "google_drive", "TIMEOUT", "0"): 1,
        failed_key("un", "acme", "unstructured", "TIMEOUT", "0"): 1,
    }
    assert len(unstructured.calls(f"/workflows/{wf}$")) == 1  # cached across polls
    assert len(unstructured.calls("/sources/")) == 1


def test_a_jobs_files_are_counted_while_other_jobs_are_still_answering(
    unstructured: UnstructuredSimulator,
) -> None:
    wf = unstructured.add_workflow("kb", "sharepoint")
    first = job(unstructured, wf, "FAILED", 2 * HOUR, [("first.pdf", "timed out")])
    others = [job(unstructured, wf, "FAILED", HOUR, [(f"other-{i}.pdf", "timed out")]) for i in range(4)]
    # The other jobs' files are answered only once the first job's are counted.
    result = poll_holding_until_counted(
        source(unstructured),
        unstructured,
        "/failed-files$",
        "first.pdf",
        when=lambda r: first.job_id not in r.path,
    )
    assert result.counts == {("acme", "sharepoint", "TIMEOUT", "0"): 1 + len(others)}
    # Asked once in the poll, though five of its jobs had failed files to count.
    assert len(unstructured.calls(f"/workflows/{wf}$")) == 1


def test_only_the_configured_workflows_are_listed(unstructured: UnstructuredSimulator) -> None:
    wf = unstructured.add_workflow("kb", "s3")
    other = unstructured.add_workflow("other", "s3")
    job(unstructured, wf, "FAILED", HOUR, [("a", "timed out")])
    job(unstructured, other, "FAILED", HOUR, [("b", "timed out")])
    exporter = run_polls(source(unstructured, workflow_ids=[wf]))
    assert sum(failure_series(exporter).values()) == 1
    assert [r.query for r in unstructured.calls("/jobs/$")] == [{"workflow_id": [wf]}]


@pytest.mark.parametrize(("api_key", "reason"), [("wrong", Reason.AUTH)])
def test_a_wrong_key_is_auth(unstructured: UnstructuredSimulator, api_key: str, reason: Reason) -> None:
    exporter = run_polls(source(unstructured, api_key=api_key))
    assert exporter.states["un"].errors[reason] == 1


def test_a_job_that_vanished_fails_only_itself(unstructured: UnstructuredSimulator) -> None:
    wf = unstructured.add_workflow("kb", "s3")
    job(unstructured, wf, "FAILED", HOUR, [("a", "timed out")])
    gone = job(unstructured, wf, "FAILED", HOUR, [("b", "timed out")])
    unstructured.inject(f"/jobs/{gone.job_id}/failed-files", status=404, body='{"detail": "Job not found"}')
    exporter = run_polls(source(unstructured))
    state = exporter.states["un"]
    assert (state.up, state.errors[Reason.HTTP_ERROR]) == (False, 1)
    assert sum(failure_series(exporter).values()) == 1


@pytest.mark.parametrize("said", ["COMPLETED_WITH_ERRORS", "completed_with_errors", "Completed_With_Errors"])
def test_a_completed_job_whose_details_say_it_had_errors_is_read_without_node_counts(
    unstructured: UnstructuredSimulator, said: str
) -> None:
    wf = unstructured.add_workflow("kb", "s3")
    quiet = job(unstructured, wf, "COMPLETED", HOUR, [("a.pdf", "timed out")])
    quiet.node_failures, quiet.processing_status = 0, said  # the status alone says so
    exporter = run_polls(source(unstructured))
    assert failure_series(exporter) == {failed_key("un", "acme", "s3", "TIMEOUT", "0"): 1}
    assert len(unstructured.calls(f"/jobs/{quiet.job_id}/failed-files")) == 1
