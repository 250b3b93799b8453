"""Unstructured Platform API (``/api/v1``): failed files of jobs created within the lookback.

Every request carries ``unstructured-api-key``. Jobs come from ``GET /api/v1/jobs/`` (per
workflow, or all; a bare, unpaged list), finished ones only, statuses compared without case.
A job's failed files are fetched only when it can have any: a FAILED job, or one whose
``/details`` count failures or say COMPLETED_WITH_ERRORS. The ``platform`` label is the type of
the workflow's source connector (cached), else ``unstructured``. A document listed by several
jobs of one workflow is one record whose ``retry_count`` is the number of other such jobs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr

from exporter.configtypes import Duration, HttpSourceConfig, SecretFile
from exporter.records import PollError, Reason
from exporter.sources.base import RecordSink, RepeatedFailures, gather_parts, parse_timestamp, slug
from exporter.sources.http import SingleTenantSource

API = "/api/v1"
FINISHED = {"completed", "failed", "stopped", "finished", "completed_with_errors"}
DETAIL_STATUSES_WITH_FAILURES = {"completed_with_errors", "failed"}
DEFAULT_PLATFORM = "unstructured"


class UnstructuredConfig(HttpSourceConfig):
    secret_fields = ("api_key",)
    required_secrets = (("api_key",),)

    kind: Literal["unstructured"]
    base_url: str = "https://platform.unstructuredapp.io"
    api_key: SecretStr | None = None
    api_key_file: SecretFile = None
    workflow_ids: tuple[str, ...] = ()
    lookback: Duration = 86400.0

    def open(self) -> UnstructuredSource:
        return UnstructuredSource(self)


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    workflow_id: str
    status: str
    created: float


def as_list(body: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise PollError(Reason.INVALID_RESPONSE, f"{what}: expected a JSON list of objects")
    return body


class UnstructuredSource(SingleTenantSource[UnstructuredConfig]):
    def __init__(self, config: UnstructuredConfig) -> None:
        super().__init__(config, {"unstructured-api-key": config.secret("api_key") or ""})
        self._platforms: dict[str, str] = {}  # workflow id -> source connector type

    async def read(self, out: RecordSink) -> None:
        jobs = await self._recent_finished_jobs()
        seen: RepeatedFailures[tuple[str, str, str]] = RepeatedFailures(out, self.tenant)
        # Each workflow's platform is asked once a poll, by the first of its jobs with failures.
        platforms: dict[str, asyncio.Future[str]] = {}

        async def files_of(job: Job, scope: str) -> None:
            files = await self._failed_files(job)
            if not files:
                return
            asked = platforms.get(job.workflow_id)
            if asked is None:
                asked = platforms[job.workflow_id] = asyncio.ensure_future(self._platform_of(job.workflow_id))
            platform = await asked
            for document, message in files:
                # The document is the name, its workflow the location (docs/reference.md).
                identity = (self.tenant, job.workflow_id, document)
                seen.add(identity, platform, message, job.created, scope, document, job.workflow_id)

        scopes = [(f"job:{job.job_id}", job) for job in jobs]
        await gather_parts(out, [(scope, files_of(job, scope)) for scope, job in scopes])

    async def _recent_finished_jobs(self) -> list[Job]:
        queries = [{"workflow_id": w} for w in self.config.workflow_ids] or [{}]
        since = time.time() - self.config.lookback
        jobs: dict[str, Job] = {}
        for params in queries:
            for item in as_list(await self._http.json("GET", f"{API}/jobs/", params=params), "GET /jobs/"):
                created = parse_timestamp(item.get("created_at"))
                status = str(item.get("status") or "").lower()
                if created is None or created < since or status not in FINISHED:
                    continue
                job_id, workflow = item.get("id"), item.get("workflow_id")
                if not isinstance(job_id, str) or not isinstance(workflow, str):
                    raise PollError(Reason.INVALID_RESPONSE, "GET /jobs/: a job has no id or workflow_id")
                jobs[job_id] = Job(job_id, workflow, status, created)
        return list(jobs.values())

    async def _failed_files(self, job: Job) -> list[tuple[str, str]]:
        if job.status != "failed" and not await self._details_show_failures(job):
            return []
        body = await self._http.json("GET", f"{API}/jobs/{job.job_id}/failed-files")
        files = body.get("failed_files") if isinstance(body, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, dict) and "document" in f for f in files):
            raise PollError(Reason.INVALID_RESPONSE, f"job {job.job_id}: failed_files is not a list of files")
        return [(str(f["document"]), str(f.get("error") or "")) for f in files]

    async def _details_show_failures(self, job: Job) -> bool:
        details = await self._http.json("GET", f"{API}/jobs/{job.job_id}/details")
        if not isinstance(details, dict):
            raise PollError(Reason.INVALID_RESPONSE, f"job {job.job_id}: details are not an object")
        stats = details.get("node_stats") or []
        if not isinstance(stats, list) or not all(
            isinstance(s, dict) and isinstance(s.get("failure", 0), int) for s in stats
        ):
            raise PollError(Reason.INVALID_RESPONSE, f"job {job.job_id}: node_stats are not node counts")
        failures = sum(s.get("failure") or 0 for s in stats)
        status = str(details.get("processing_status") or "").lower()
        return failures > 0 or status in DETAIL_STATUSES_WITH_FAILURES

    async def _platform_of(self, workflow_id: str) -> str:
        """The workflow's source connector type; not knowing it never fails the poll."""
        if workflow_id in self._platforms:
            return self._platforms[workflow_id]
        try:
            workflow = await self._http.json("GET", f"{API}/workflows/{workflow_id}")
            sources = workflow.get("sources") if isinstance(workflow, dict) else None
            if not isinstance(sources, list) or not sources:
                platform = DEFAULT_PLATFORM
            else:
                connector = await self._http.json("GET", f"{API}/sources/{sources[0]}")
                kind = connector.get("type") if isinstance(connector, dict) else None
                platform = slug(kind) if isinstance(kind, str) and kind else DEFAULT_PLATFORM
        except PollError:
            return DEFAULT_PLATFORM  # not cached: the next poll asks again
        self._platforms[workflow_id] = platform
        return platform
