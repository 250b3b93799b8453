"""The simulators speak the vendors' schemas, not only the fields our sources happen to read.

Unstructured publishes its models (PyPI ``unstructured-client``): every answer of the simulator
is validated against them. Commvault and Adobe publish field tables, not models: the models here
are written from those tables (the reference notes name the pages), and they forbid fields the
vendor does not document, so the simulators cannot drift into inventing a schema.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict
from unstructured_client.models import shared

from exporter.simulators import aep as aep_sim
from exporter.simulators import commvault as commvault_sim
from exporter.simulators import unstructured as unstructured_sim
from exporter.simulators.aep import CATALOG, AepSimulator
from exporter.simulators.commvault import CommvaultSimulator
from exporter.simulators.unstructured import UnstructuredSimulator


@pytest.fixture
def unstructured() -> Iterator[UnstructuredSimulator]:
    sim = UnstructuredSimulator().start()
    unstructured_sim.seed_demo(sim, random.Random(7))
    sim.evolve(random.Random(8))
    try:
        yield sim
    finally:
        sim.stop()


def test_every_unstructured_answer_validates_against_the_published_models(
    unstructured: UnstructuredSimulator,
) -> None:
    client = httpx.Client(
        base_url=f"{unstructured.url}/api/v1", headers={"unstructured-api-key": unstructured.api_key}
    )
    jobs = client.get("/jobs/").json()
    assert len(jobs) > 3
    statuses = set()
    for listed in jobs:
        job = shared.JobInformation.model_validate(listed)
        statuses.add(job.status)
        assert shared.JobInformation.model_validate(client.get(f"/jobs/{job.id}").json()) == job
        shared.JobDetails.model_validate(client.get(f"/jobs/{job.id}/details").json())
        shared.JobFailedFiles.model_validate(client.get(f"/jobs/{job.id}/failed-files").json())
        workflow = shared.WorkflowInformation.model_validate(
            client.get(f"/workflows/{job.workflow_id}").json()
        )
        assert workflow.workflow_nodes and workflow.created_at
        for source_id in workflow.sources:
            shared.SourceConnectorInformation.model_validate(client.get(f"/sources/{source_id}").json())
    # JobStatus is an upper-case enum in the published schema; the simulator's jobs follow it.
    assert statuses <= set(shared.JobStatus) and shared.JobStatus.COMPLETED in statuses


class Vendor(BaseModel):
    """A documented object: an undocumented field is an error."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CommvaultSubclient(Vendor):
    clientName: str
    clientId: int
    appName: str
    instanceName: str
    backupsetName: str
    subclientName: str
    subclientId: int
    backupsetId: int
    instanceId: int
    applicationId: int


class CommvaultJobSummary(Vendor):
    """``GET /Job`` ``jobs[].jobSummary`` (api.commvault.com SP34 and cvpysdk ``job.py``)."""

    jobId: int
    status: str
    localizedStatus: str
    jobType: str
    localizedOperationName: str
    appTypeName: str
    backupLevelName: str
    backupSetName: str
    subclientName: str
    destClientName: str
    subclient: CommvaultSubclient
    jobStartTime: int
    jobEndTime: int
    lastUpdateTime: int
    jobElapsedTime: int
    percentComplete: int
    totalNumOfFiles: int
    totalFailedFiles: int
    totalFailedFolders: int
    sizeOfApplication: int
    sizeOfMediaOnDisk: int
    percentSavings: float
    isVisible: bool
    isAged: bool
    jobSubmitErrorCode: int
    currentPhaseName: str
    pendingReason: str


class CommvaultJob(Vendor):
    jobSummary: CommvaultJobSummary


class CommvaultJobList(Vendor):
    totalRecordsWithoutPaging: int
    jobs: list[CommvaultJob]


def test_commvault_job_summaries_carry_the_documented_fields() -> None:
    sim = CommvaultSimulator().start()
    try:
        commvault_sim.seed_demo(sim, random.Random(3))
        token = httpx.post(
            f"{sim.url}/Login", json={"username": sim.username, "password": _b64(sim.password)}
        ).json()["token"]
        listing = httpx.get(f"{sim.url}/Job", headers={"Authtoken": token}).json()
        jobs = CommvaultJobList.model_validate(listing).jobs
        assert len(jobs) == listing["totalRecordsWithoutPaging"] > 3
        running = [j.jobSummary for j in jobs if j.jobSummary.status == "Running"]
        assert running and all(s.jobEndTime == 0 and s.percentComplete < 100 for s in running)
        one = httpx.get(f"{sim.url}/Job/{jobs[0].jobSummary.jobId}", headers={"Authtoken": token}).json()
        assert CommvaultJobList.model_validate(one).jobs == jobs[:1]
    finally:
        sim.stop()


class AepRelatedObject(Vendor):
    type: str
    id: str


class AepMetrics(Vendor):
    inputByteSize: int
    inputFileCount: int
    inputRecordCount: int
    outputRecordCount: int
    failedRecordCount: int | None = None  # where error diagnostics put it; else at the top level


class AepBatchError(Vendor):
    code: str
    description: str
    recordCount: int | None = None
    rows: list[str] | None = None


class AepBatch(Vendor):
    """Catalog ``batchResponse`` (catalog.yaml), as the reference notes list its fields."""

    id: str
    status: str
    created: int
    updated: int
    started: int
    completed: int
    relatedObjects: list[AepRelatedObject]
    inputFormat: dict[str, Any]
    errors: list[AepBatchError]
    metrics: AepMetrics
    tags: dict[str, Any]
    imsOrg: str
    sandboxId: str
    createdClient: str
    createdUser: str
    version: str
    failedRecordCount: int | None = None  # catalog.yaml's top-level field

    @property
    def failed_rows(self) -> int | None:
        return (
            self.metrics.failedRecordCount
            if self.metrics.failedRecordCount is not None
            else (self.failedRecordCount)
        )


def test_aep_batches_carry_the_documented_fields_and_properties_cut_them() -> None:
    sim = AepSimulator().start()
    try:
        aep_sim.seed_demo(sim, random.Random(5))
        # The shapes partial ingestion leaves: the count at the top level, an error without one.
        sim.add_batch(
            aep_sim.SimBatch(
                "01TOPLEVELCOUNT",
                int(time.time() * 1000),
                "success",
                [{"code": "INGEST-1212-400", "description": "Required field 'identityMap' is missing"}],
                failed_rows=7,
                count_at_top=True,
            )
        )
        token = httpx.post(
            f"{sim.url}/ims/token/v3",
            data={
                "grant_type": "client_credentials",
                "client_id": sim.api_key,
                "client_secret": sim.client_secret,
            },
        ).json()["access_token"]
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-key": sim.api_key,
            "x-gw-ims-org-id": sim.org_id,
            "x-sandbox-name": sim.sandbox,
        }
        batches = httpx.get(f"{sim.url}{CATALOG}/batches", headers=headers).json()
        assert len(batches) == 8  # the demo's 4 failed and 3 partially ingested, and the one above
        parsed = {batch_id: AepBatch.model_validate(batch) for batch_id, batch in batches.items()}
        assert all(batch.id == batch_id for batch_id, batch in parsed.items())  # keyed by id
        partial = {i: b for i, b in parsed.items() if b.status == "success"}
        assert len(partial) == 4 and all((b.failed_rows or 0) > 0 and b.errors for b in partial.values())
        assert parsed["01TOPLEVELCOUNT"].failedRecordCount == 7
        assert parsed["01TOPLEVELCOUNT"].metrics.failedRecordCount is None
        assert any(e.recordCount is None for b in partial.values() for e in b.errors)
        assert any(e.recordCount is not None for b in partial.values() for e in b.errors)
        cut = httpx.get(
            f"{sim.url}{CATALOG}/batches", params={"properties": "status,created"}, headers=headers
        ).json()
        assert {tuple(sorted(b)) for b in cut.values()} == {("created", "status")}
    finally:
        sim.stop()


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()
