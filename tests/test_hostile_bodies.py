"""A hostile source answers JSON of the wrong shape: the poll fails as invalid_response, never as
an internal error, and other sources are untouched."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.records import Reason
from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.commvault import CommvaultSimulator, SimJob
from exporter.simulators.rezolve import RezolveSimulator
from exporter.simulators.unstructured import SimJob as UnstructuredJob
from exporter.simulators.unstructured import UnstructuredSimulator
from tests.conftest import TENANT_A, rezolve_file, run_polls

NOW = time.time()
WRONG = ["[]", '"text"', "null", "42", '{"unexpected": true}']


@contextlib.contextmanager
def simulators() -> Iterator[dict[str, Any]]:
    """One Commvault job, one Unstructured job and one AEP batch, each with a failed file."""
    cv = CommvaultSimulator().start()
    cv.add_job(
        SimJob(1, "Windows File System", "fs01", "default", NOW - 60, [("C:\\a", "Access is denied.")])
    )
    un = UnstructuredSimulator().start()
    wf = un.add_workflow("kb", "s3")
    un.add_job(UnstructuredJob("j1", wf, "COMPLETED", NOW - 60, [("a.pdf", "timed out")]))
    ae = AepSimulator().start()
    ae.add_batch(SimBatch("B1", int((NOW - 60) * 1000), "failed", [], {"p.json": validation_file("x")}))
    rz = RezolveSimulator(token="hostile-token").start()
    rz.add_tenant(TENANT_A, "acme.rezolve.ai")
    rz.put(TENANT_A, "sharepoint", rezolve_file("f1", "PARSE_ERROR", "x", NOW - 60, 1))
    try:
        yield {"commvault": cv, "unstructured": un, "aep": ae, "rezolve": rz}
    finally:
        for sim in (cv, un, ae, rz):
            sim.stop()


@pytest.fixture
def sims() -> Iterator[dict[str, Any]]:
    with simulators() as started:
        yield started


CASES = [
    (
        "rezolve",
        "/failed-files$",
        [
            *WRONG,
            '{"success": true, "data": null}',
            '{"success": true, "data": {"failed_files": {"file_id": "a"}}}',
            '{"success": true, "data": {"failed_files": [{"file_id": null}]}}',
        ],
    ),
    (
        "commvault",
        "^/Job$",
        [
            *WRONG[:3],
            '{"jobs": [{"jobSummary": {"jobId": "abc"}}]}',
            '{"jobs": [{"jobSummary": {"jobId": 1, "jobEndTime": "yesterday"}}]}',
            '{"jobs": "none"}',
        ],
    ),
    (
        "commvault",
        "/FailedItems$",
        [
            *WRONG[:4],
            '{"failedItems": [1, 2]}',
            '{"isFailedItemsCSV": true, "failedItemsCSV": {"columns": "Reason", "rows": []}}',
            '{"isFailedItemsCSV": true, "failedItemsCSV": {"columns": ["Reason"], "rows": [{"row": "x"}]}}',
        ],
    ),
    (
        "unstructured",
        "/api/v1/jobs/$",
        [
            '{"jobs": []}',
            '"text"',
            "[1]",
            '[{"id": 1, "workflow_id": "w", "status": "COMPLETED", "created_at": "2099-01-01T00:00:00Z"}]',
        ],
    ),
    (
        "unstructured",
        "/details$",
        [*WRONG[:3], '{"node_stats": [{"failure": "many"}]}', '{"node_stats": "x"}'],
    ),
    (
        "unstructured",
        "/failed-files$",
        [*WRONG, '{"failed_files": [{"error": "x"}]}', '{"failed_files": [1]}'],
    ),
    ("aep", "/catalog/batches$", [*WRONG[:4], '{"B1": "failed"}']),
    (
        "aep",
        "/export/batches/B1/failed$",
        [*WRONG, '{"data": [1, 2]}', '{"data": [{"name": 5, "length": "1"}]}'],
    ),
]


def config(name: str, sim: Any) -> dict[str, Any]:
    source = sim.source_config(name, timeout="2s")
    if name == "rezolve":
        source["tenants"] = [{**source["tenants"][0], "platforms": ["sharepoint"]}]
    return {"sources": [source]}


@pytest.mark.parametrize(("kind", "path", "body"), [(k, p, b) for k, p, bodies in CASES for b in bodies])
def test_a_wrong_shape_is_invalid_response(sims: dict[str, Any], kind: str, path: str, body: str) -> None:
    sim = sims[kind]
    when = (lambda r: r.arg("path") is None) if kind == "aep" else None
    sim.inject(path, status=200, body=body, when=when)
    state = run_polls(config(kind, sim)).states[kind]
    assert state.up is False
    assert {reason for reason, n in state.errors.items() if n} == {Reason.INVALID_RESPONSE}, state.last_error


# Keys the four APIs use, so that generated bodies reach past the first shape check.
KEYS = [
    "jobs",
    "jobSummary",
    "jobId",
    "jobEndTime",
    "appTypeName",
    "subclient",
    "clientName",
    "failedItems",
    "isFailedItemsCSV",
    "failedItemsCSV",
    "columns",
    "rows",
    "row",
    "totalRecordsWithoutPaging",
    "errList",
    "errorCode",
    "errLogMessage",
    "error",
    "id",
    "workflow_id",
    "status",
    "created_at",
    "node_stats",
    "failure",
    "failed_files",
    "document",
    "data",
    "name",
    "length",
    "_links",
    "next",
    "href",
    "errors",
    "code",
    "description",
    "message",
    "success",
    "file_id",
    "file_name",
    "error_type",
    "error_message",
    "failed_at",
    "retry_count",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=24,
)


@pytest.fixture(scope="module")
def shared_sims() -> Iterator[dict[str, Any]]:
    with simulators() as started:
        yield started


@pytest.mark.parametrize(("kind", "path"), sorted({(k, p) for k, p, _ in CASES}))
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=JSON)
@example(body={"error": "text"})  # found by hand after the generated cases missed it
@example(body={"errList": "text", "errorCode": "5"})
def test_no_json_body_makes_a_poll_fail_as_anything_but_its_shape(
    shared_sims: dict[str, Any], kind: str, path: str, body: Any
) -> None:
    sim = shared_sims[kind]
    when = (lambda r: r.arg("path") is None) if kind == "aep" else None
    sim.clear_faults()
    sim.inject(path, status=200, body=json.dumps(body), when=when)
    try:
        state = run_polls(config(kind, sim)).states[kind]
    finally:
        sim.clear_faults()
    failed = {reason for reason, n in state.errors.items() if n}
    # A body of the wrong shape is invalid_response; one that says it failed (Commvault's errList
    # and errorCode in a 200) is http_error. Nothing is ever internal.
    assert failed <= {Reason.INVALID_RESPONSE, Reason.HTTP_ERROR}, state.last_error
    assert state.up is (not failed)
