"""A hostile source answers JSON of the wrong shape: the poll fails as invalid_response, never as
an internal error, and other sources are untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.records import Reason
from tests.conftest import run_polls
from tests.kinds import KINDS, running

NOW = time.time()
CASES = [(kind.name, path, bodies) for kind in KINDS.values() for path, bodies in kind.wrong_shapes.items()]


@pytest.fixture
def sims() -> Iterator[dict[str, Any]]:
    with running(["a"], NOW - 60) as started:
        yield started


def config(name: str, sim: Any) -> dict[str, Any]:
    return {"sources": [{**KINDS[name].source(sim, name), "timeout": "2s"}]}


@pytest.mark.parametrize(("kind", "path", "body"), [(k, p, b) for k, p, bodies in CASES for b in bodies])
def test_a_wrong_shape_is_invalid_response(sims: dict[str, Any], kind: str, path: str, body: str) -> None:
    sim = sims[kind]
    sim.inject(path, status=200, body=body, when=KINDS[kind].wrong_shape_when)
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
    with running(["a"], NOW - 60) as started:
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
    sim.clear_faults()
    sim.inject(path, status=200, body=json.dumps(body), when=KINDS[kind].wrong_shape_when)
    try:
        state = run_polls(config(kind, sim)).states[kind]
    finally:
        sim.clear_faults()
    failed = {reason for reason, n in state.errors.items() if n}
    # A body of the wrong shape is invalid_response; one that says it failed (Commvault's errList
    # and errorCode in a 200) is http_error. Nothing is ever internal.
    assert failed <= {Reason.INVALID_RESPONSE, Reason.HTTP_ERROR}, state.last_error
    assert state.up is (not failed)
