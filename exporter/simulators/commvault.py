"""Simulator of the Commvault REST web service: login, job listing, failed items (both shapes)."""

from __future__ import annotations

import base64
import binascii
import random
import secrets
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response

CSV_COLUMNS = ["Item Type", "Item Name", "Team Name", "Path", "Status", "Reason", "GUID"]


@dataclass
class SimJob:
    job_id: int
    app_type: str
    client: str
    subclient: str
    ended: float  # 0 while running
    items: list[tuple[str, str]] = field(default_factory=list)  # (entity, reason)
    csv: bool = False
    status: str = "Completed w/ one or more errors"
    visible: bool = True

    def summary(self) -> dict[str, Any]:
        """A ``jobSummary`` with the fields real responses carry, not only those our source reads."""
        running = not self.ended
        end = int(self.ended)
        start = int(self.ended or time.time()) - 600
        status = "Running" if running else self.status
        return {
            "jobId": self.job_id,
            "status": status,
            "localizedStatus": status,
            "jobType": "Backup",
            "localizedOperationName": "Backup",
            "appTypeName": self.app_type,
            "backupLevelName": "Incremental",
            "backupSetName": "defaultBackupSet",
            "subclientName": self.subclient,
            "destClientName": self.client,
            "subclient": {
                "clientName": self.client,
                "clientId": 2,
                "appName": self.app_type,
                "instanceName": "DefaultInstanceName",
                "backupsetName": "defaultBackupSet",
                "subclientName": self.subclient,
                "subclientId": 7,
                "backupsetId": 3,
                "instanceId": 1,
                "applicationId": 33,
            },
            "jobStartTime": start,
            "jobEndTime": end,
            "lastUpdateTime": int(self.ended or time.time()),
            "jobElapsedTime": (end - start) if end else 0,
            "percentComplete": 40 if running else 100,
            "totalNumOfFiles": 120 + len(self.items),
            "totalFailedFiles": len(self.items),
            "totalFailedFolders": 0,
            "sizeOfApplication": 266793,
            "sizeOfMediaOnDisk": 0,
            "percentSavings": 100.0,
            "isVisible": self.visible,
            "isAged": False,
            "jobSubmitErrorCode": 0,
            "currentPhaseName": "Backup" if running else "",
            "pendingReason": "",
        }

    def failed_items(self) -> dict[str, Any]:
        if not self.csv:
            return {
                "isFailedItemsCSV": False,
                "failedItems": [{"failureReason": r, "entity": e} for e, r in self.items],
            }
        rows = []
        for entity, reason in self.items:
            path, _, name = entity.rpartition("\\")
            rows.append(
                {
                    "row": [
                        "File",
                        name,
                        self.subclient,
                        path,
                        "Failed",
                        reason,
                        f"guid-{zlib.crc32(entity.encode()):08x}",
                    ]
                }
            )
        return {"isFailedItemsCSV": True, "failedItemsCSV": {"columns": CSV_COLUMNS, "rows": rows}}


class CommvaultSimulator(Simulator):
    """``Authtoken`` required everywhere but ``/Login``; ``limit``/``offset`` paging headers."""

    def __init__(self, username: str = "svc-monitor", password: str = "demo-password", port: int = 0) -> None:
        super().__init__(port=port)
        self.username, self.password = username, password
        self.tokens: set[str] = set()
        self.logins = 0
        self.jobs: dict[int, SimJob] = {}
        self.route("POST", "/Login", self._login)
        self.route("GET", "/Job", self._list_jobs)
        self.route("GET", r"/Job/(?P<id>\d+)", self._one_job)
        self.route("GET", r"/Job/(?P<id>\d+)/FailedItems", self._failed_items)

    def source_config(self, name: str, **extra: Any) -> dict[str, Any]:
        """A ``commvault`` source that logs in to this simulator."""
        return {
            "name": name,
            "kind": "commvault",
            "base_url": self.url,
            "username": self.username,
            "password": self.password,
            **extra,
        }

    def add_job(self, job: SimJob) -> SimJob:
        with self.lock:
            self.jobs[job.job_id] = job
        return job

    def expire_tokens(self) -> None:
        """As after 30 idle minutes: every issued token is refused with 401."""
        with self.lock:
            self.tokens.clear()

    def issue_token(self) -> str:
        token = f"QSDK {secrets.token_hex(32)}"
        with self.lock:
            self.tokens.add(token)
        return token

    def _login(self, request: SimRequest) -> SimResponse:
        body = request.json()
        try:
            password = base64.b64decode(body.get("password", ""), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            password = None
        if body.get("username") != self.username or password != self.password:
            return json_response(
                200, {"errList": [{"errorCode": 1116, "errLogMessage": "Invalid Username or Password"}]}
            )
        with self.lock:
            self.logins += 1
        return json_response(200, {"token": self.issue_token(), "userName": self.username, "aliasName": "1"})

    def _authorized(self, request: SimRequest) -> bool:
        with self.lock:
            return request.headers.get("authtoken") in self.tokens

    def _list_jobs(self, request: SimRequest) -> SimResponse:
        if not self._authorized(request):
            return json_response(401, {"errorMessage": "Access denied", "errorCode": 5})
        lookup = float(request.arg("completedJobLookupTime") or 31536000)
        finished_only = (request.arg("jobCategory") or "").lower() == "finished"
        limit = int(request.headers.get("limit", "100"))
        offset = int(request.headers.get("offset", "0"))
        now = time.time()
        with self.lock:
            matching = [
                j
                for j in sorted(self.jobs.values(), key=lambda j: j.job_id)
                if (j.ended or not finished_only) and (not j.ended or now - j.ended <= lookup)
            ]
            page = matching[offset : offset + limit]
            return json_response(
                200,
                {
                    "totalRecordsWithoutPaging": len(matching),
                    "jobs": [{"jobSummary": j.summary()} for j in page],
                },
            )

    def _one_job(self, request: SimRequest) -> SimResponse:
        if not self._authorized(request):
            return json_response(401, {"errorMessage": "Access denied", "errorCode": 5})
        with self.lock:
            job = self.jobs.get(int(request.match["id"]))
            jobs = [{"jobSummary": job.summary()}] if job else []
        return json_response(200, {"totalRecordsWithoutPaging": len(jobs), "jobs": jobs})

    def _failed_items(self, request: SimRequest) -> SimResponse:
        if not self._authorized(request):
            return json_response(401, {"errorMessage": "Access denied", "errorCode": 5})
        with self.lock:
            job = self.jobs.get(int(request.match["id"]))
            if job is None:
                return json_response(200, {"errorCode": 2, "errorMessage": "Job not found"})
            return json_response(200, job.failed_items())

    def evolve(self, rng: random.Random) -> None:
        """A new backup job ends: some items fail again, some are fixed, some are new."""
        with self.lock:
            template = rng.choice(list(self.jobs.values())) if self.jobs else None
            if template is None:
                return
            items = [item for item in template.items if rng.random() > 0.3]
            items += [random_item(rng) for _ in range(rng.randrange(0, 3))]
            job_id = max(self.jobs) + 1
            self.jobs[job_id] = SimJob(
                job_id,
                template.app_type,
                template.client,
                template.subclient,
                time.time(),
                items,
                template.csv,
            )


REASONS = (
    "Access is denied.",
    "The process cannot access the file because it is being used by another process.",
    "The system cannot find the file specified.",
    "Access to the path '{path}' is denied.",
    "Error in performing post items web request. [Error code [Forbidden], Status code [403] [Forbidden]]",
    "Failed to read file. The file or directory is corrupted and unreadable.",
    "Request throttled by Microsoft Graph (429 Too Many Requests)",
)


def random_item(rng: random.Random) -> tuple[str, str]:
    path = f"C:\\Data\\{rng.choice(['Finance', 'HR', 'Legal', 'Shared'])}\\doc-{rng.randrange(1000):03d}.docx"
    return path, rng.choice(REASONS).format(path=path)


def seed_demo(simulator: CommvaultSimulator, rng: random.Random) -> None:
    now = time.time()
    job_id = 45970
    for app, client, subclient, csv in [
        ("Windows File System", "fileserver01", "default", False),
        ("Microsoft Teams", "teams-tenant", "WikiTestTeam1", True),
        ("Exchange Mailbox", "exch01", "mailboxes", False),
    ]:
        items = [random_item(rng) for _ in range(rng.randrange(3, 8))]
        for age in (20 * 3600, 8 * 3600, 3600):
            job_id += 1
            kept = [i for i in items if rng.random() > 0.2]
            simulator.add_job(SimJob(job_id, app, client, subclient, now - age, kept, csv))
    simulator.add_job(SimJob(job_id + 1, "Windows File System", "fileserver02", "default", 0, []))  # running
