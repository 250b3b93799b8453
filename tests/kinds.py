"""The HTTP kinds as the kind-wide tests run them (the fault matrix, hostile bodies, every kind):
one entry a kind. Adding a kind adds its entry here; ``test_every_http_kind_has_an_entry`` fails
until it has one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.base import SimRequest, Simulator
from exporter.simulators.commvault import CommvaultSimulator
from exporter.simulators.commvault import SimJob as CommvaultJob
from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from exporter.simulators.unstructured import SimJob as UnstructuredJob
from exporter.simulators.unstructured import UnstructuredSimulator
from tests.conftest import TENANT_A as TENANT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ONE_PLATFORM = [{"tenant_id": TENANT, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}]
# Bodies of the wrong shape for any JSON request: each kind adds its own near misses.
WRONG = ("[]", '"text"', "null", "42", '{"unexpected": true}')


@dataclass(frozen=True)
class Kind:
    """One HTTP kind: a simulator of its platform, a source reading it, and how to make exactly
    some files its failures."""

    name: str
    simulator: Callable[[], Simulator]  # a new one, not started
    source: Callable[[Any, str], dict[str, Any]]  # (simulator, name): a source of exactly the world
    # (simulator, names, failed_at): exactly these files are the platform's failures now.
    world: Callable[[Any, Sequence[str], float], None]
    data_path: str  # the request that carries the failures, where faults hit
    logins: Callable[[Any], int]  # how many times the source authenticated (0: a static secret)
    # Per request (a path pattern): bodies of the wrong shape, each a poll's invalid_response.
    wrong_shapes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Which requests of a path answer a wrong shape (None: all of them).
    wrong_shape_when: Callable[[SimRequest], bool] | None = None


def rezolve_simulator() -> RezolveSimulator:
    sim = RezolveSimulator(token="kinds-token")
    sim.add_tenant(TENANT, "acme.rezolve.ai")
    return sim


def rezolve_world(sim: RezolveSimulator, names: Sequence[str], failed_at: float) -> None:
    with sim.lock:
        sim.files.clear()
        for name in names:
            sim.put(
                TENANT,
                "sharepoint",
                RezolveFile(name, f"{name}.pdf", "PARSE_ERROR", "unparseable", failed_at, 1),
            )


def commvault_world(sim: CommvaultSimulator, names: Sequence[str], failed_at: float) -> None:
    with sim.lock:
        items = [(f"C:\\share\\{name}.docx", "Access is denied.") for name in names]
        sim.jobs[7] = CommvaultJob(7, "Windows File System", "fs01", "default", failed_at, items)


def unstructured_world(sim: UnstructuredSimulator, names: Sequence[str], failed_at: float) -> None:
    with sim.lock:
        if not sim.workflows:
            sim.add_workflow("kb", "s3")
        workflow = next(iter(sim.workflows))
        failed = [(f"docs/{name}.pdf", "PDF file is corrupted") for name in names]
        sim.jobs["job-1"] = UnstructuredJob("job-1", workflow, "COMPLETED", failed_at, failed)


def http_json_source(sim: UnstructuredSimulator, name: str) -> dict[str, Any]:
    """The shipped example that reads the Unstructured API as an ``http_json`` source."""
    [source] = yaml.safe_load((EXAMPLES / "unstructured.yaml").read_text())["sources"]
    del source["api_key_file"]
    return {**source, "name": name, "base_url": sim.url, "api_key": sim.api_key}


def aep_world(sim: AepSimulator, names: Sequence[str], failed_at: float) -> None:
    files = {f"{name}.json": validation_file("is not a valid date-time") for name in names}
    sim.add_batch(SimBatch("BATCH1", int(failed_at * 1000), "failed", [], files))


def listing(request: SimRequest) -> bool:
    """An AEP request that lists a batch's failed files, not one that downloads a file."""
    return request.arg("path") is None


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "rezolve",
            rezolve_simulator,
            lambda sim, name: {**sim.source_config(name), "tenants": ONE_PLATFORM},
            rezolve_world,
            "/failed-files$",
            lambda sim: 0,
            {
                "/failed-files$": (
                    *WRONG,
                    '{"success": true, "data": null}',
                    '{"success": true, "data": {"failed_files": {"file_id": "a"}}}',
                    '{"success": true, "data": {"failed_files": [{"file_id": null}]}}',
                )
            },
        ),
        Kind(
            "commvault",
            CommvaultSimulator,
            lambda sim, name: sim.source_config(name, lookback="1d"),
            commvault_world,
            "/FailedItems$",
            lambda sim: sim.logins,
            {
                "^/Job$": (
                    *WRONG[:3],
                    '{"jobs": [{"jobSummary": {"jobId": "abc"}}]}',
                    '{"jobs": [{"jobSummary": {"jobId": 1, "jobEndTime": "yesterday"}}]}',
                    '{"jobs": "none"}',
                ),
                "/FailedItems$": (
                    *WRONG[:4],
                    '{"failedItems": [1, 2]}',
                    '{"isFailedItemsCSV": true, "failedItemsCSV": {"columns": "Reason", "rows": []}}',
                    '{"isFailedItemsCSV": true, "failedItemsCSV": {"columns": ["Reason"], "rows": [{"row": "x"}]}}',
                ),
            },
        ),
        Kind(
            "unstructured",
            UnstructuredSimulator,
            lambda sim, name: sim.source_config(name, lookback="1d"),
            unstructured_world,
            "/failed-files$",
            lambda sim: 0,
            {
                "/api/v1/jobs/$": (
                    '{"jobs": []}',
                    '"text"',
                    "[1]",
                    '[{"id": 1, "workflow_id": "w", "status": "COMPLETED", "created_at": "2099-01-01T00:00:00Z"}]',
                ),
                "/details$": (*WRONG[:3], '{"node_stats": [{"failure": "many"}]}', '{"node_stats": "x"}'),
                "/failed-files$": (*WRONG, '{"failed_files": [{"error": "x"}]}', '{"failed_files": [1]}'),
            },
        ),
        Kind(
            "http_json",
            UnstructuredSimulator,
            http_json_source,
            unstructured_world,
            "/failed-files$",
            lambda sim: 0,
            {
                "/api/v1/jobs/$": ('{"jobs": []}', '"text"', "null"),
                "/failed-files$": (*WRONG, '{"failed_files": [{"error": "x"}]}', '{"failed_files": [1]}'),
            },
        ),
        Kind(
            "aep",
            AepSimulator,
            lambda sim, name: sim.source_config(name, lookback="1d"),
            aep_world,
            "/failed$",
            lambda sim: sim.tokens_issued,
            {
                "/catalog/batches$": (*WRONG[:4], '{"B1": "failed"}'),
                "/export/batches/BATCH1/failed$": (
                    *WRONG,
                    '{"data": [1, 2]}',
                    '{"data": [{"name": 5, "length": "1"}]}',
                ),
            },
            wrong_shape_when=listing,
        ),
    )
}


@contextlib.contextmanager
def running(names: Sequence[str] = (), failed_at: float = 0.0) -> Iterator[dict[str, Any]]:
    """A started simulator of every kind; with ``names``, those failed at ``failed_at``."""
    started: dict[str, Any] = {}
    try:
        for kind in KINDS.values():
            started[kind.name] = kind.simulator().start()
            if names:
                kind.world(started[kind.name], names, failed_at)
        yield started
    finally:
        for sim in started.values():
            sim.stop()
