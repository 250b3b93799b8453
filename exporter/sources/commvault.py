"""Commvault REST web service: failed items of backup jobs that ended within the lookback.

``POST /Login`` (base64 password) gives the ``Authtoken`` header, renewed by logging in once
more on a 401; or a static ``authtoken``. Jobs come from ``GET /Job`` (paged with the ``limit``
and ``offset`` *headers* until ``totalRecordsWithoutPaging``) or a fixed ``job_ids`` list;
failed items from ``GET /Job/{id}/FailedItems``, as a ``failedItems`` list or as
``failedItemsCSV`` columns and rows. An item that failed in several jobs is one record whose
``retry_count`` is the number of other jobs it failed in.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from exporter.configtypes import Duration, HttpSourceConfig, SecretFile, field_problem
from exporter.records import PollError, Reason, decimal
from exporter.sources.base import RecordSink, RepeatedFailures, basename, cancel, gather_parts, slug
from exporter.sources.http import Issued, IssuedToken, Response, SingleTenantSource

REASON_COLUMNS = ("reason", "failure reason", "failurereason", "error", "error message", "message")
# Commvault tokens as issued: QSDK (login), SAML, and Bearer (v4 access tokens); passed on as they are.
TOKEN_PREFIXES = ("QSDK ", "SAML ", "Bearer ")


class CommvaultConfig(HttpSourceConfig):
    secret_fields = ("password", "authtoken")
    required_secrets = (("password", "authtoken"),)

    kind: Literal["commvault"]
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFile = None
    authtoken: SecretStr | None = None
    authtoken_file: SecretFile = None
    lookback: Duration = 86400.0
    job_ids: tuple[int, ...] = ()
    page_size: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _login_needs_a_username(self) -> CommvaultConfig:
        if self.authtoken is None and self.authtoken_file is None and not self.username:
            raise field_problem("username", "field required to log in with a password")
        return self

    def secret_values(self) -> list[str]:
        """The password as sent to /Login (base64) too: a server may echo its request."""
        password = self.secret("password")
        sent = [base64.b64encode(password.encode()).decode()] if password else []
        return [*super().secret_values(), *sent]

    def open(self) -> CommvaultSource:
        return CommvaultSource(self)


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    platform: str
    client: str
    subclient: str
    ended: float
    may_have_failures: bool


def check_logical_error(body: Any, what: str) -> None:
    """Commvault answers many failures with 200 and an error in the body."""
    if not isinstance(body, dict):
        raise PollError(Reason.INVALID_RESPONSE, f"{what}: the response is not a JSON object")
    nested = body.get("error")
    errors = body.get("errList") or (nested.get("errList") if isinstance(nested, dict) else None)
    code = body.get("errorCode")
    if errors or (isinstance(code, int) and code != 0):
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        message = first.get("errLogMessage") or body.get("errorMessage") or f"errorCode {code}"
        raise PollError(Reason.HTTP_ERROR, f"{what}: {message}")


def number(value: Any, what: str) -> float:
    """A numeric field that may come as a number or a string of digits."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    digits = decimal(value) if isinstance(value, str) else None
    if digits is not None:
        return float(digits)
    raise PollError(Reason.INVALID_RESPONSE, f"GET /Job: {what} is not a number: {value!r:.40}")


def job_from_summary(summary: dict[str, Any]) -> Job:
    nested = summary.get("subclient")
    subclient: dict[str, Any] = nested if isinstance(nested, dict) else {}
    failed = [summary.get("totalFailedFiles"), summary.get("totalFailedFolders")]
    counted = [n for n in failed if isinstance(n, int)]
    status = str(summary.get("status") or "").lower()
    return Job(
        job_id=int(number(summary["jobId"], "jobId")),
        platform=slug(str(summary.get("appTypeName") or "unknown")),
        client=str(subclient.get("clientName") or summary.get("destClientName") or ""),
        subclient=str(subclient.get("subclientName") or summary.get("subclientName") or ""),
        ended=number(summary.get("jobEndTime") or 0, "jobEndTime"),
        # No failure counts (not every agent fills them) or a status other than a clean
        # "Completed": look at the job's failed items.
        may_have_failures=sum(counted) > 0 or not counted or status != "completed",
    )


def failed_items(body: Any, what: str) -> list[tuple[str, str]]:
    """(entity, reason) pairs from either documented shape of FailedItems."""
    check_logical_error(body, what)
    csv = body.get("failedItemsCSV")
    if body.get("isFailedItemsCSV") or (csv is not None and "failedItems" not in body):
        return csv_items(csv, what)
    items = body.get("failedItems", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise PollError(Reason.INVALID_RESPONSE, f"{what}: failedItems is not a list of items")
    return [(str(i.get("entity") or i.get("path") or ""), str(i.get("failureReason") or "")) for i in items]


def csv_items(csv: Any, what: str) -> list[tuple[str, str]]:
    """Rows of ``failedItemsCSV``, mapped by column name (not position)."""
    if not isinstance(csv, dict) or not isinstance(csv.get("columns"), list):
        raise PollError(Reason.INVALID_RESPONSE, f"{what}: failedItemsCSV has no columns")
    index = {str(name).strip().lower(): i for i, name in enumerate(csv["columns"])}
    reason_at = next((index[c] for c in REASON_COLUMNS if c in index), None)

    def cell(row: list[Any], column: str | int | None) -> str:
        at = index.get(column) if isinstance(column, str) else column
        return str(row[at]) if at is not None and at < len(row) and row[at] is not None else ""

    items = []
    for entry in csv.get("rows") or []:
        row = entry.get("row") if isinstance(entry, dict) else entry
        if not isinstance(row, list):
            raise PollError(Reason.INVALID_RESPONSE, f"{what}: a failedItemsCSV row is not a list")
        path, name = cell(row, "path"), cell(row, "item name")
        entity = f"{path.rstrip(chr(92))}\\{name}" if path and name else (path or name or cell(row, "guid"))
        items.append((entity, cell(row, reason_at)))
    return items


class CommvaultSource(SingleTenantSource[CommvaultConfig]):
    def __init__(self, config: CommvaultConfig) -> None:
        super().__init__(config, {})
        static = config.secret("authtoken")
        # The token expires after 30 minutes idle: a login with the password gets a new one.
        self._token = IssuedToken(
            self._login if config.password is not None else None,
            static if static is None or static.startswith(TOKEN_PREFIXES) else f"QSDK {static}",
        )

    async def read(self, out: RecordSink) -> None:
        now = time.time()
        tenant = self.tenant
        seen: RepeatedFailures[tuple[str, str, str, str, str]] = RepeatedFailures(out, tenant)

        async def items_of(job: Job) -> None:
            # Counted as each job's answer comes, while the others are still on the way.
            scope = scope_of(job)
            # An item's location (docs/reference.md, Which files failed).
            folder = f"{job.client}/{job.subclient}:"
            for entity, message in await self._items_of(job):
                identity = (tenant, job.platform, job.client, job.subclient, entity)
                seen.add(identity, job.platform, message, job.ended, scope, basename(entity), folder + entity)

        # A page's jobs are asked for their items while the next page is on its way.
        parts: list[tuple[str, asyncio.Future[None]]] = []
        try:
            async for page in self._job_pages():
                parts += [
                    (scope_of(job), asyncio.ensure_future(items_of(job)))
                    for job in page
                    if job.ended > 0 and now - job.ended <= self.config.lookback and job.may_have_failures
                ]
        except BaseException:
            await cancel(started for _, started in parts)
            raise
        await gather_parts(out, parts)

    async def _job_pages(self) -> AsyncIterator[list[Job]]:
        if self.config.job_ids:
            bodies = await asyncio.gather(*(self._get(f"/Job/{i}") for i in self.config.job_ids))
            yield [job_from_summary(s) for body in bodies for s in summaries(body, "GET /Job/{id}")]
            return
        offset = 0
        params = {
            "completedJobLookupTime": str(int(self.config.lookback)),
            "jobCategory": "Finished",
            "jobFilter": "Backup",
        }
        while True:
            headers = {"limit": str(self.config.page_size), "offset": str(offset)}
            body = await self._get("/Job", params=params, headers=headers)
            page = summaries(body, "GET /Job")
            yield [job_from_summary(s) for s in page if s.get("isVisible", True) is not False]
            offset += len(page)
            total = body.get("totalRecordsWithoutPaging")
            if not page or len(page) < self.config.page_size or (isinstance(total, int) and offset >= total):
                return

    async def _items_of(self, job: Job) -> list[tuple[str, str]]:
        what = f"GET /Job/{job.job_id}/FailedItems"
        return failed_items(await self._get(f"/Job/{job.job_id}/FailedItems"), what)

    async def _get(self, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        def get(token: str) -> Awaitable[Response]:
            return self._http.request("GET", path, headers={**(headers or {}), "Authtoken": token}, **kwargs)

        body = (await self._token.send(get)).json()
        check_logical_error(body, f"GET {path}")
        return body

    async def _login(self) -> Issued:
        password = self.config.secret("password") or ""
        body = (
            await self._http.request(
                "POST",
                "/Login",
                json={
                    "username": self.config.username,
                    "password": base64.b64encode(password.encode()).decode(),
                },
            )
        ).json()
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            errors = body.get("errList") if isinstance(body, dict) else None
            first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
            raise PollError(Reason.AUTH, f"login refused: {first.get('errLogMessage') or 'no token'}")
        self.secret_issued(token)
        self.secret_issued(token.partition(" ")[2])  # the bare token, as an error may quote it
        return Issued(token)


def scope_of(job: Job) -> str:
    return f"job:{job.job_id}"


def summaries(body: Any, what: str) -> list[dict[str, Any]]:
    jobs = body.get("jobs", []) if isinstance(body, dict) else None
    if not isinstance(jobs, list):
        raise PollError(Reason.INVALID_RESPONSE, f"{what}: jobs is not a list")
    out = []
    for job in jobs:
        summary = job.get("jobSummary") if isinstance(job, dict) else None
        if not isinstance(summary, dict) or not isinstance(summary.get("jobId"), int | str):
            raise PollError(Reason.INVALID_RESPONSE, f"{what}: a job has no jobSummary.jobId")
        out.append(summary)
    return out
