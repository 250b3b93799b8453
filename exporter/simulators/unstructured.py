"""Simulator of the Unstructured Platform API: jobs, details, failed files, workflows, sources."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SimJob:
    job_id: str
    workflow_id: str
    status: str  # JobStatus is upper case in the published schema; some docs show lower case
    created: float
    failed: list[tuple[str, str]] = field(default_factory=list)  # (document, error)
    processed: int = 10
    # What its details say, where they differ from its failed files: node counts without the
    # failures, a status spelt otherwise.
    node_failures: int | None = None
    processing_status: str | None = None

    def info(self, workflow_name: str) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "workflow_id": self.workflow_id,
            "workflow_name": workflow_name,
            "status": self.status,
            "created_at": iso(self.created),
            "runtime": None,
            "job_type": "scheduled",
        }

    def details(self) -> dict[str, Any]:
        failures = len(self.failed) if self.node_failures is None else self.node_failures
        status = self.status.upper()
        processing = "COMPLETED_WITH_ERRORS" if status == "COMPLETED" and self.failed else status
        if self.processing_status is not None:
            processing = self.processing_status
        return {
            "id": self.job_id,
            "processing_status": "SUCCESS" if processing == "COMPLETED" else processing,
            "node_stats": [
                {
                    "node_name": "Partitioner",
                    "node_type": "partition",
                    "node_subtype": "vlm",
                    "ready": 0,
                    "in_progress": 0,
                    "success": self.processed - failures,
                    "failure": failures,
                },
                {
                    "node_name": "Embedder",
                    "node_type": "embed",
                    "node_subtype": "openai",
                    "ready": 0,
                    "in_progress": 0,
                    "success": self.processed - failures,
                    "failure": 0,
                },
            ],
            "message": None,
        }


class UnstructuredSimulator(Simulator):
    """``unstructured-api-key`` on every request; bare, unpaged lists; 404 for unknown jobs."""

    def __init__(self, api_key: str = "demo-unstructured-key", port: int = 0) -> None:
        super().__init__(port=port)
        self.api_key = api_key
        self.workflows: dict[str, tuple[str, list[str]]] = {}  # id -> (name, source ids)
        self.connectors: dict[str, str] = {}  # source id -> type
        self.jobs: dict[str, SimJob] = {}
        self.created = time.time() - 30 * 86400  # when the workflows and connectors were made
        self.route("GET", "/api/v1/jobs/", self._list_jobs)
        self.route("GET", r"/api/v1/jobs/(?P<id>[^/]+)", self._one_job)
        self.route("GET", r"/api/v1/jobs/(?P<id>[^/]+)/details", self._details)
        self.route("GET", r"/api/v1/jobs/(?P<id>[^/]+)/failed-files", self._failed_files)
        self.route("GET", r"/api/v1/workflows/(?P<id>[^/]+)", self._workflow)
        self.route("GET", r"/api/v1/sources/(?P<id>[^/]+)", self._connector)

    def source_config(self, name: str, **extra: Any) -> dict[str, Any]:
        """An ``unstructured`` source reading this simulator."""
        return {"name": name, "kind": "unstructured", "base_url": self.url, "api_key": self.api_key, **extra}

    def add_workflow(self, name: str, connector_type: str | None) -> str:
        workflow_id = str(uuid.uuid4())
        with self.lock:
            sources = []
            if connector_type is not None:
                source_id = str(uuid.uuid4())
                self.connectors[source_id] = connector_type
                sources.append(source_id)
            self.workflows[workflow_id] = (name, sources)
        return workflow_id

    def add_job(self, job: SimJob) -> SimJob:
        with self.lock:
            self.jobs[job.job_id] = job
        return job

    def _refused(self, request: SimRequest) -> SimResponse | None:
        key = request.headers.get("unstructured-api-key")
        if not key:
            return json_response(
                401, {"detail": "API key is missing, please provide an API key in the header."}
            )
        if key != self.api_key:
            return json_response(401, {"detail": "Invalid API key"})
        return None

    def _list_jobs(self, request: SimRequest) -> SimResponse:
        if refused := self._refused(request):
            return refused
        workflow, status = request.arg("workflow_id"), request.arg("status")
        with self.lock:
            jobs = [
                j.info(self.workflows.get(j.workflow_id, ("?", []))[0])
                for j in self.jobs.values()
                if (workflow is None or j.workflow_id == workflow)
                and (status is None or j.status.lower() == status.lower())
            ]
        return json_response(200, jobs)

    def _job(self, request: SimRequest) -> SimJob | SimResponse:
        if refused := self._refused(request):
            return refused
        with self.lock:
            job = self.jobs.get(request.match["id"])
        return job if job is not None else json_response(404, {"detail": "Job not found"})

    def _one_job(self, request: SimRequest) -> SimResponse:
        job = self._job(request)
        if isinstance(job, SimResponse):
            return job
        with self.lock:
            name = self.workflows.get(job.workflow_id, ("?", []))[0]
        return json_response(200, job.info(name))

    def _details(self, request: SimRequest) -> SimResponse:
        job = self._job(request)
        return job if isinstance(job, SimResponse) else json_response(200, job.details())

    def _failed_files(self, request: SimRequest) -> SimResponse:
        job = self._job(request)
        if isinstance(job, SimResponse):
            return job
        return json_response(200, {"failed_files": [{"document": d, "error": e} for d, e in job.failed]})

    def _workflow(self, request: SimRequest) -> SimResponse:
        if refused := self._refused(request):
            return refused
        with self.lock:
            found = self.workflows.get(request.match["id"])
        if found is None:
            return json_response(404, {"detail": "Workflow not found"})
        name, sources = found
        return json_response(
            200,
            {
                "id": request.match["id"],
                "name": name,
                "sources": sources,
                "destinations": [],
                "workflow_type": "basic",
                "workflow_nodes": [
                    {"name": "Partitioner", "type": "partition", "subtype": "vlm"},
                    {"name": "Embedder", "type": "embed", "subtype": "openai"},
                ],
                "schedule": None,
                "status": "active",
                "created_at": iso(self.created),
                "updated_at": None,
                "reprocess_all": False,
            },
        )

    def _connector(self, request: SimRequest) -> SimResponse:
        if refused := self._refused(request):
            return refused
        with self.lock:
            kind = self.connectors.get(request.match["id"])
        if kind is None:
            return json_response(404, {"detail": "Source not found"})
        return json_response(
            200,
            {
                "id": request.match["id"],
                "name": f"{kind} source",
                "type": kind,
                "config": {"client_secret": "never-exported"},
                "created_at": iso(self.created),
                "updated_at": None,
            },
        )

    def evolve(self, rng: random.Random) -> None:
        """Each workflow runs again: most failures recur, some are fixed, some are new."""
        with self.lock:
            for workflow_id in list(self.workflows):
                previous = [j for j in self.jobs.values() if j.workflow_id == workflow_id]
                last = max(previous, key=lambda j: j.created).failed if previous else []
                failed = [f for f in last if rng.random() > 0.25] + [
                    random_failure(rng) for _ in range(rng.randrange(0, 2))
                ]
                job = SimJob(
                    str(uuid.uuid4()),
                    workflow_id,
                    rng.choice(["COMPLETED", "COMPLETED", "FAILED"]),
                    time.time(),
                    failed,
                )
                self.jobs[job.job_id] = job


ERRORS = (
    "Error processing document: PDF file is corrupted and cannot be parsed",
    "Partitioning timed out after 600 seconds",
    "Unsupported file type: application/x-msaccess",
    "Embedding request failed: rate limit exceeded (429)",
    "OCR failed: image resolution too low",
    "403 Forbidden: the connector's service principal lacks Sites.Read.All permission",
    "File size 412 MB exceeds the 250 MB limit",
)


def random_failure(rng: random.Random) -> tuple[str, str]:
    folder = rng.choice(["contracts", "policies", "scans", "manuals"])
    return f"{folder}/doc-{rng.randrange(500):03d}.pdf", rng.choice(ERRORS)


def seed_demo(simulator: UnstructuredSimulator, rng: random.Random) -> None:
    now = time.time()
    for name, connector in [("sharepoint-kb", "sharepoint"), ("s3-archive", "s3"), ("adhoc", None)]:
        workflow_id = simulator.add_workflow(name, connector)
        failed = [random_failure(rng) for _ in range(rng.randrange(2, 6))]
        for age, status in [(18 * 3600, "COMPLETED"), (6 * 3600, "FAILED"), (1800, "COMPLETED")]:
            kept = [f for f in failed if rng.random() > 0.2]
            simulator.add_job(SimJob(str(uuid.uuid4()), workflow_id, status, now - age, kept))
        simulator.add_job(SimJob(str(uuid.uuid4()), workflow_id, "IN_PROGRESS", now - 60, []))
