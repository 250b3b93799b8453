"""Adobe Experience Platform: failed files of failed batches created within the lookback.

Every call carries ``Authorization: Bearer``, ``x-api-key``, ``x-gw-ims-org-id`` and
``x-sandbox-name``; the token is static or comes from IMS OAuth server-to-server (client
credentials), renewed before it expires. Failed batches come from the Catalog
(``GET /data/foundation/catalog/batches?status=failed,failure&createdAfter=…``, paged with
``start``/``limit``, an object keyed by batch id); their failed files from the Data Access API
(``GET /data/foundation/export/batches/{id}/failed``, paged, ``_links.next``). Each failed file
is downloaded once, at most ``max_download_bytes``, and classified by its first validation error.
The batches one poll found have their files listed by the next while it reads the Catalog; the
listing of a batch that has left the Catalog since is dropped, whatever it says.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from exporter.configtypes import Duration, HttpSourceConfig, SecretFile, check_http_url
from exporter.records import FailureRecord, PollError, Reason
from exporter.sources.base import RecordSink, cancel, gather_parts
from exporter.sources.http import (
    HttpClient,
    HttpStatusError,
    Issued,
    IssuedToken,
    Response,
    SingleTenantSource,
)

CATALOG = "/data/foundation/catalog"
EXPORT = "/data/foundation/export"
FAILED_STATUSES = ("failed", "failure")
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
            raise ValueError("give access_token (or access_token_file), or client_id and client_secret")
        if oauth and (self.client_id is None or self.client_secret is None):
            raise ValueError("OAuth server-to-server needs both client_id and client_secret")
        if self.api_key is None and self.client_id is None:
            raise ValueError("api_key is required (with OAuth it defaults to client_id)")
        return self

    def open(self) -> AepSource:
        return AepSource(self)


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    created: float
    first_error: str


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
        # IMS is Adobe's identity service, not the Platform: it gets none of the Platform headers.
        self._ims = HttpClient(
            config.ims_url,
            timeout=config.timeout,
            max_concurrency=1,
            max_response_bytes=config.max_response_bytes,
            headers={"accept": "application/json"},
        )
        self._token = IssuedToken(
            self._renew_token if config.client_id is not None else None, config.secret("access_token")
        )
        # (batch id, file name) -> its first error: a file already classified is never
        # downloaded again. Only entries still seen in the latest poll are kept.
        self._classified: dict[tuple[str, str], str] = {}
        # The failed batches the latest poll found: the next one lists their files early.
        self._batches_seen: list[str] = []

    async def aclose(self) -> None:
        await super().aclose()
        await self._ims.aclose()

    def default_tenant(self) -> str:
        return self.config.sandbox

    async def read(self, out: RecordSink) -> None:
        discovery = asyncio.ensure_future(self._failed_batches())  # first in line for a connection
        # A failed batch stays failed: the batches the latest poll found are listed while the
        # catalog is read, not a round trip after it. One that left the catalog costs a listing.
        early = {
            batch_id: asyncio.ensure_future(self._failed_files(batch_id)) for batch_id in self._batches_seen
        }
        try:
            batches = await discovery
        except BaseException:
            await cancel(early.values())
            raise
        found = {b.batch_id for b in batches}
        await cancel(listing for batch_id, listing in early.items() if batch_id not in found)
        self._batches_seen = [b.batch_id for b in batches]
        kept: dict[tuple[str, str], str] = {}
        read: set[str] = set()

        async def count(batch: Batch) -> None:
            # Counted as each batch's files are in, while the other batches' are on the way.
            for record in await self._records_of(batch, early.get(batch.batch_id)):
                out.add(record)
                kept[(batch.batch_id, record.identity[1])] = record.message
            read.add(batch.batch_id)

        await gather_parts(out, [(f"batch:{b.batch_id}", count(b)) for b in batches])
        # A batch whose part failed this time keeps its files' classifications for the next.
        unread = found - read
        kept.update({key: message for key, message in self._classified.items() if key[0] in unread})
        self._classified = kept

    async def _failed_batches(self) -> list[Batch]:
        since_ms = int((time.time() - self.config.lookback) * 1000)
        batches: dict[str, Batch] = {}
        start = 0
        while True:
            params = {
                "status": ",".join(FAILED_STATUSES),
                "createdAfter": str(since_ms),
                "orderBy": "desc:created",
                "limit": str(self.config.page_size),
                "start": str(start),
                "properties": "status,created,errors",
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
                if status in FAILED_STATUSES and isinstance(created, int | float) and created > since_ms:
                    batches[batch_id] = Batch(batch_id, created / 1000, first_batch_error(batch))
            if len(page) < self.config.page_size:
                return list(batches.values())
            start += len(page)

    async def _records_of(self, batch: Batch, listing: Awaitable[list[str]] | None) -> list[FailureRecord]:
        files = await (listing or self._failed_files(batch.batch_id))
        if not files:
            return [self._record(batch, "", batch.first_error)]
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

    def _record(self, batch: Batch, name: str, message: str) -> FailureRecord:
        return FailureRecord(
            tenant=self.tenant,
            platform="aep",
            identity=(batch.batch_id, name),
            message=message,
            failed_at=batch.created,
            scope=f"batch:{batch.batch_id}",
            name=name or batch.batch_id,  # a batch-level record is named by its batch
            location=batch.batch_id,
        )

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
        def send(token: str) -> Awaitable[Response]:
            return self._http.request(method, url, headers={"authorization": f"Bearer {token}"}, **kwargs)

        return await self._token.send(send)

    async def _renew_token(self) -> Issued:
        """IMS client credentials; renewed a tenth of its lifetime (at most 5 min) early."""
        self._ims.deadline = self._http.deadline
        try:
            response = await self._ims.request(
                "POST",
                self.config.ims_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.config.client_id,
                    "client_secret": self.config.secret("client_secret"),
                    "scope": self.config.scopes,
                },
            )
        except HttpStatusError as exc:
            # IMS refuses credentials with 400 and an OAuth error code, not with 401.
            if exc.status == 400 and oauth_error(exc.body) in REFUSED_CREDENTIALS:
                raise PollError(
                    Reason.AUTH, f"the token service refused the credentials: {exc.detail}"
                ) from None
            raise
        body = response.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        lifetime = body.get("expires_in") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise PollError(Reason.AUTH, "the token service answered without an access_token")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self.secret_issued(token)
        return Issued(token, renew_at=time.time() + seconds - min(seconds / 10, 300.0))


# OAuth 2.0 error codes (RFC 6749 section 5.2) by which IMS refuses a client.
REFUSED_CREDENTIALS = frozenset({"invalid_client", "invalid_scope", "unauthorized_client", "invalid_grant"})


def oauth_error(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else None


def is_failed_file(entry: dict[str, Any]) -> bool:
    name = entry.get("name")
    length = str(entry.get("length", "")).strip()
    return isinstance(name, str) and bool(name) and name not in MARKERS and length != "0"


def first_batch_error(batch: dict[str, Any]) -> str:
    errors = batch.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("description") or errors[0].get("code") or "")
    return ""
