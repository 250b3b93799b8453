"""Adobe Experience Platform: failed files of failed batches, and the failed rows of partially
ingested ones, created within the lookback.

Every call carries ``Authorization: Bearer``, ``x-api-key``, ``x-gw-ims-org-id`` and
``x-sandbox-name``; the token is static or comes from IMS OAuth server-to-server (client
credentials), renewed before it expires. Batches come from the Catalog
(``GET /data/foundation/catalog/batches?status=…&createdAfter=…``, paged with ``start``/``limit``,
an object keyed by batch id), in two reads at once: failed batches (``failed,failure``) and
finished ones (``success,active``), of which those with a failed record count above 0 are
partially ingested (docs/reference.md, Platforms). The Catalog cannot filter on ``metrics.failedRecordCount``
(its ``property`` filter takes top-level fields only), so the second read asks for the few
fields it needs of every finished batch and keeps the partial ones itself.

A failed batch's files come from the Data Access API
(``GET /data/foundation/export/batches/{id}/failed``, paged, ``_links.next``). Each failed file
is downloaded once, at most ``max_download_bytes``, and classified by its first validation error.
The batches one poll found have their files listed by the next while it reads the Catalog; the
listing of a batch that has left the Catalog since is dropped, whatever it says. Adobe has
deprecated that API: where it answers 403, 404, 410 or 501, the batch is one record from its
Catalog errors, and the poll says so in one warning.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from exporter.configtypes import Duration, HttpSourceConfig, SecretFile, check_http_url, field_problem
from exporter.records import FailureRecord, PollError, Reason, decimal
from exporter.sources.base import RecordSink, cancel, gather_parts
from exporter.sources.http import (
    ClientCredentials,
    HttpStatusError,
    IssuedToken,
    Response,
    SingleTenantSource,
)

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
FAILED_STATUSES = ("failed", "failure")
# A batch whose bad rows were skipped ends "success"; "active" is the same state's other spelling.
FINISHED_STATUSES = ("success", "active")
# The Catalog's top-level fields a poll reads (``failedRecordCount`` is also inside ``metrics``).
PROPERTIES = "status,created,errors,metrics,failedRecordCount"
# What the deprecated Data Access API answers where it no longer serves a batch's failed files.
EXPORT_GONE = frozenset({403, 404, 410, 501})
MARKERS = ("_SUCCESS",)
DEFAULT_SCOPES = "openid,AdobeID,read_organizations,additional_info.projectedProductContext,session"
_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


class AepConfig(HttpSourceConfig):
    secret_fields = ("api_key", "access_token", "client_secret")

    kind: Literal["aep"]
    base_url: str = "https://platform.adobe.io"
    api_key: SecretStr | None = None
    api_key_file: SecretFile = None
    org_id: str = Field(min_length=1)
    sandbox: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    access_token: SecretStr | None = None
    access_token_file: SecretFile = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_file: SecretFile = None
    ims_url: str = "https://ims-na1.adobelogin.com/ims/token/v3"
    scopes: str = DEFAULT_SCOPES
    lookback: Duration = 86400.0
    max_download_bytes: int = Field(default=1024 * 1024, ge=1)
    page_size: int = Field(default=100, ge=1, le=100)

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AepConfig:
        check_http_url(self.ims_url)
        oauth = self.client_id is not None or self.client_secret is not None
        if (self.access_token is None) == (not oauth):
            raise field_problem(
                "access_token", "give access_token (or access_token_file), or client_id and client_secret"
            )
        if oauth and (self.client_id is None or self.client_secret is None):
            missing = "client_id" if self.client_id is None else "client_secret"
            raise field_problem(missing, "OAuth server-to-server needs both client_id and client_secret")
        if self.api_key is None and self.client_id is None:
            raise field_problem("api_key", "field required (with OAuth it defaults to client_id)")
        return self

    def open(self) -> AepSource:
        return AepSource(self)


@dataclass(frozen=True, slots=True)
class BatchError:
    """An entry of a batch's ``errors[]``."""

    code: str
    description: str
    rows: int | None  # its ``recordCount``, where given


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    created: float
    errors: tuple[BatchError, ...]
    failed_rows: int | None  # ``failedRecordCount``, under ``metrics`` or at the top level

    @property
    def first_error(self) -> str:
        """What a batch-level record is classified by: its first error's description, else code."""
        return (self.errors[0].description or self.errors[0].code) if self.errors else ""

    @classmethod
    def of(cls, batch_id: str, batch: dict[str, Any]) -> Batch:
        errors = batch.get("errors")
        return cls(
            batch_id,
            batch["created"] / 1000,
            tuple(
                BatchError(
                    str(error.get("code") or ""),
                    str(error.get("description") or ""),
                    catalog_count(error, "recordCount"),
                )
                for error in (errors if isinstance(errors, list) else ())
                if isinstance(error, dict)
            ),
            failed_record_count(batch),
        )


def catalog_count(fields: Any, name: str) -> int | None:
    """A count a batch gives: a non-negative integer, or one written in digits; else None."""
    value = fields.get(name) if isinstance(fields, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value >= 0 else None
    return decimal(value) if isinstance(value, str) else None


def failed_record_count(batch: dict[str, Any]) -> int | None:
    """``metrics.failedRecordCount`` (where error diagnostics put it), else the top-level field."""
    found = catalog_count(batch.get("metrics"), "failedRecordCount")
    return found if found is not None else catalog_count(batch, "failedRecordCount")


def first_validation_message(content: bytes) -> str:
    """The first error message of a failed file: a JSON document, JSON lines, or what a
    truncated download still shows."""
    text = content.decode("utf-8", errors="replace")
    documents: list[Any] = []
    try:
        documents = [json.loads(text)]
    except ValueError:
        for line in text.splitlines():
            try:
                documents.append(json.loads(line))
            except ValueError:
                continue
    for document in documents:
        for key in ("_validationErrors", "_errors"):
            errors = document.get(key) if isinstance(document, dict) else None
            if isinstance(errors, dict):  # {"_errors": {"_streamingValidation": [...]}}
                errors = next((v for v in errors.values() if isinstance(v, list) and v), None)
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return str(errors[0].get("message") or errors[0].get("code") or "")
    match = _MESSAGE.search(text)
    if match:
        return str(json.loads(f'"{match.group(1)}"'))
    return ""


class AepSource(SingleTenantSource[AepConfig]):
    def __init__(self, config: AepConfig) -> None:
        super().__init__(
            config,
            {
                "x-api-key": config.secret("api_key") or config.client_id or "",
                "x-gw-ims-org-id": config.org_id,
                "x-sandbox-name": config.sandbox,
            },
        )
        # IMS, Adobe's identity service, issues the tokens of OAuth server-to-server.
        self._credentials: ClientCredentials | None = None
        if config.client_id is not None:
            self._credentials = ClientCredentials(
                self._http,
                config.ims_url,
                config.client_id,
                config.secret("client_secret") or "",
                config.scopes,
                issued=lambda token: self.secret_issued(token),
            )
        self._token = IssuedToken(self._credentials, config.secret("access_token"))
        # (batch id, file name) -> its first error: a file already classified is never
        # downloaded again. Only entries still seen in the latest poll are kept.
        self._classified: dict[tuple[str, str], str] = {}
        # The failed batches the latest poll found: the next one lists their files early.
        self._batches_seen: list[str] = []

    async def aclose(self) -> None:
        await super().aclose()
        if self._credentials is not None:
            await self._credentials.aclose()

    def default_tenant(self) -> str:
        return self.config.sandbox

    async def read(self, out: RecordSink) -> None:
        # First in line for a connection: the failed batches, then the finished ones.
        discovery = asyncio.ensure_future(self._batches(FAILED_STATUSES))
        finished = asyncio.ensure_future(self._batches(FINISHED_STATUSES))
        # A failed batch stays failed: the batches the latest poll found are listed while the
        # catalog is read, not a round trip after it. One that left the catalog costs a listing.
        early = {
            batch_id: asyncio.ensure_future(self._failed_files(batch_id)) for batch_id in self._batches_seen
        }
        try:
            batches = await discovery
            found = {b.batch_id for b in batches}
            await cancel(listing for batch_id, listing in early.items() if batch_id not in found)
            self._batches_seen = [b.batch_id for b in batches]
            kept: dict[tuple[str, str], str] = {}
            read: set[str] = set()
            refused: dict[str, int] = {}  # batch id -> what Data Access answered for it

            async def count_files(batch: Batch) -> None:
                # Counted as each batch's files are in, while the other batches' are on the way.
                try:
                    records = await self._records_of(batch, early.get(batch.batch_id))
                except HttpStatusError as exc:
                    if exc.status not in EXPORT_GONE:
                        raise
                    refused[batch.batch_id] = exc.status
                    records = [self._record(batch, "", batch.first_error, batch.failed_rows)]
                for record in records:
                    out.add(record)
                    kept[(batch.batch_id, record.identity[1])] = record.message
                read.add(batch.batch_id)

            await gather_parts(out, [(f"batch:{b.batch_id}", count_files(b)) for b in batches])
            # Like the failed batches' read, a failed read of the finished ones fails the poll.
            for batch in await finished:
                # A batch that failed and finished between the two reads is the failed one.
                if batch.batch_id not in found and batch.failed_rows:
                    for record in self._partial_records(batch):
                        out.add(record)
        except BaseException:
            await cancel([finished, *early.values()])
            raise
        if refused:
            out.warn(refused_warning(refused))
        # A batch whose part failed this time keeps its files' classifications for the next.
        unread = found - read
        kept.update({key: message for key, message in self._classified.items() if key[0] in unread})
        self._classified = kept

    async def _batches(self, statuses: Sequence[str]) -> list[Batch]:
        """The Catalog's batches of these statuses created within the lookback, every page."""
        since_ms = int((time.time() - self.config.lookback) * 1000)
        batches: dict[str, Batch] = {}
        start = 0
        while True:
            params = {
                "status": ",".join(statuses),
                "createdAfter": str(since_ms),
                "orderBy": "desc:created",
                "limit": str(self.config.page_size),
                "start": str(start),
                "properties": PROPERTIES,
            }
            page = await self._get_json(f"{CATALOG}/batches", params=params)
            if not isinstance(page, dict):
                raise PollError(Reason.INVALID_RESPONSE, "GET /batches: expected an object keyed by batch id")
            for batch_id, batch in page.items():
                if not isinstance(batch, dict):
                    raise PollError(
                        Reason.INVALID_RESPONSE, f"GET /batches: batch {batch_id} is not an object"
                    )
                created = batch.get("created")
                status = str(batch.get("status") or "").lower()
                if status in statuses and isinstance(created, int | float) and created > since_ms:
                    batches[batch_id] = Batch.of(batch_id, batch)
            if len(page) < self.config.page_size:
                return list(batches.values())
            start += len(page)

    async def _records_of(self, batch: Batch, listing: Awaitable[list[str]] | None) -> list[FailureRecord]:
        files = await (listing or self._failed_files(batch.batch_id))
        if not files:
            return [self._record(batch, "", batch.first_error, batch.failed_rows)]
        known = [self._classified.get((batch.batch_id, name)) for name in files]
        # The files not classified yet, downloaded together (the client's gate bounds them).
        fetched = iter(
            await asyncio.gather(
                *(
                    self._first_error_of(batch, name)
                    for name, message in zip(files, known, strict=True)
                    if message is None
                )
            )
        )
        return [
            self._record(batch, name, message if message is not None else next(fetched))
            for name, message in zip(files, known, strict=True)
        ]

    def _record(self, batch: Batch, name: str, message: str, rows: int | None = None) -> FailureRecord:
        """A failed file's record, or with no name the batch's own (named by its batch)."""
        return FailureRecord(
            tenant=self.tenant,
            platform="aep",
            identity=(batch.batch_id, name),
            message=message,
            failed_at=batch.created,
            scope=f"batch:{batch.batch_id}",
            name=name or batch.batch_id,
            location=batch.batch_id,
            rows=rows,
        )

    def _partial_records(self, batch: Batch) -> list[FailureRecord]:
        """A partially ingested batch: a record per error code it lists (entries of one code are
        one record, their rows summed), or one record when it lists none."""
        if not batch.errors:
            return [self._record(batch, "", "", batch.failed_rows)]
        by_code: dict[str, tuple[str, int | None]] = {}
        for error in batch.errors:
            message, rows = by_code.get(error.code, (error.description or error.code, None))
            if error.rows is not None:
                rows = error.rows + (rows or 0)
            by_code[error.code] = (message, rows)
        if len(batch.errors) == 1 and batch.errors[0].rows is None:
            # Its one error stands for every failed row the batch counts.
            by_code = {code: (message, batch.failed_rows) for code, (message, _) in by_code.items()}
        return [self._record(batch, code, message, rows) for code, (message, rows) in by_code.items()]

    async def _failed_files(self, batch_id: str) -> list[str]:
        """Names of the batch's failed files, without markers (``_SUCCESS``, empty files)."""
        names: list[str] = []
        target: str | None = f"{EXPORT}/batches/{batch_id}/failed"
        params: dict[str, str] | None = {"start": "0", "limit": str(self.config.page_size)}
        while target is not None:
            body = await self._get_json(target, params=params)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list) or not all(
                isinstance(f, dict) and isinstance(f.get("name"), str) for f in data
            ):
                raise PollError(
                    Reason.INVALID_RESPONSE, f"batch {batch_id}: failed-file listing is not a list of files"
                )
            fresh = [f for f in data if f["name"] not in names]
            names += [str(f["name"]) for f in fresh if is_failed_file(f)]
            following = ((body.get("_links") or {}).get("next") or {}).get("href")
            if following and fresh:
                # Follow the link's path and query on our own base URL: credentials never go to
                # a host the configuration did not name.
                parts = urlsplit(following)
                target, params = f"{parts.path}?{parts.query}" if parts.query else parts.path, None
            elif len(data) >= self.config.page_size and fresh and params is not None:
                params = {**params, "start": str(int(params["start"]) + len(data))}
            else:
                target = None
        return names

    async def _first_error_of(self, batch: Batch, name: str) -> str:
        response = await self._request(
            "GET",
            f"{EXPORT}/batches/{batch.batch_id}/failed",
            params={"path": name},
            max_bytes=self.config.max_download_bytes,
            truncate=True,
        )
        return first_validation_message(response.body) or batch.first_error

    async def _get_json(self, url: str, **kwargs: Any) -> Any:
        return (await self._request("GET", url, **kwargs)).json()

    async def _request(self, method: str, url: str, **kwargs: Any) -> Response:
        return await self._token.bearer(self._http, method, url, **kwargs)


def is_failed_file(entry: dict[str, Any]) -> bool:
    name = entry.get("name")
    length = str(entry.get("length", "")).strip()
    return isinstance(name, str) and bool(name) and name not in MARKERS and length != "0"


def refused_warning(refused: dict[str, int]) -> str:
    """The poll's one warning for the batches the Data Access API no longer serves."""
    statuses = ", ".join(f"HTTP {status} for {n}" for status, n in sorted(Counter(refused.values()).items()))
    example = min(refused)
    return (
        f"the Data Access API did not serve the failed files of {len(refused)} failed batch(es) "
        f"({statuses}; e.g. batch {example}): each is counted as one record from its Catalog errors"
    )
