"""The FailureRecords table in Azure Table Storage, read directly with azure-data-tables.

One record per entity: tenant = ``PartitionKey``, identity = (``PartitionKey``, ``RowKey``).
Only the needed columns are selected; pages are followed by continuation until none is left
(an empty page may still carry one).

Reads are incremental (``incremental``): between full reads, a poll asks only for entities whose
``Timestamp`` (set by the service on every insert and update) is at or after the latest one seen,
minus an overlap; the lane keeps the rest. Deleted entities leave no trace, so they are found,
and counted resolved, at the next full read.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.data.tables import TableClient
from pydantic import Field, SecretStr, field_validator, model_validator

from exporter.configtypes import (
    Frozen,
    IncrementalReads,
    SecretFile,
    SourceConfig,
    check_http_url,
    field_problem,
)
from exporter.records import FailureRecord, PollError, Reason, as_count, excerpt, text_of
from exporter.sources.base import RecordSink, Source, parse_timestamp
from exporter.sources.platforms import PLATFORMS

DEFAULT_CONTENT_TYPES = {
    f"{platform}_{kind}": platform for platform in PLATFORMS for kind in ("article", "attachment")
}
# Azure allows at most 15 comparisons in one $filter.
FILTER_COMPARISONS = 15


class TableColumns(Frozen):
    """Names of the entity properties the exporter reads."""

    platform_type: str = "platform_type"
    content_type: str = "content_type"
    error_type: str = "error_type"
    error_message: str = "error_message"
    failed_at: str = "failed_at"
    retry_count: str = "retry_count"
    file_name: str = "file_name"
    source_url: str = "source_url"


def selected(columns: TableColumns) -> list[str]:
    """The properties a poll asks for: the keys, the configured columns, and ``Timestamp``."""
    return [
        "PartitionKey",
        "RowKey",
        *columns.model_dump().values(),
        # A system property: the service's time of the entity's latest change.
        "Timestamp",
    ]


class AzureTableConfig(SourceConfig):
    secret_fields = ("connection_string",)

    kind: Literal["azure_table"]
    connection_string: SecretStr | None = None
    connection_string_file: SecretFile = None
    account_url: str | None = None
    table_name: str = Field(default="FailureRecords", pattern=r"^[A-Za-z][A-Za-z0-9]{2,62}$")
    tenants: tuple[str, ...] = ()
    columns: TableColumns = TableColumns()
    content_types: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CONTENT_TYPES))
    page_size: int = Field(default=1000, ge=1, le=1000)
    incremental: IncrementalReads = IncrementalReads()

    @field_validator("account_url")
    @classmethod
    def _account_url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value)

    def secret_values(self) -> list[str]:
        """The account key and SAS token inside the connection string too: errors name them alone."""
        whole = self.secret("connection_string")
        if whole is None:
            return []
        parts = dict(part.partition("=")[::2] for part in whole.split(";") if "=" in part)
        inner = [parts.get(k, "") for k in ("AccountKey", "SharedAccessSignature")]
        return [whole, *(v for v in inner if v)]

    @model_validator(mode="after")
    def _one_way_in(self) -> AzureTableConfig:
        connection_string = self.connection_string or self.connection_string_file
        if (connection_string is None) == (self.account_url is None):
            raise field_problem(
                "connection_string", "give connection_string (or connection_string_file) or account_url"
            )
        if connection_string is not None:
            try:
                TableClient.from_connection_string(
                    connection_string.get_secret_value(), table_name=self.table_name
                )
            except ValueError:
                raise field_problem("connection_string", "not a valid storage connection string") from None
        return self

    def open(self) -> AzureTableSource:
        return AzureTableSource(self)

    def incremental_reads(self) -> IncrementalReads:
        return self.incremental


class AzureTableSource(Source[AzureTableConfig]):
    def __init__(self, config: AzureTableConfig) -> None:
        super().__init__(config)
        self._select = selected(config.columns)
        options: dict[str, Any] = {
            "retry_total": 2,
            "connection_timeout": config.timeout,
            "read_timeout": config.timeout,
        }
        connection_string = config.secret("connection_string")
        if connection_string:
            self._table = TableClient.from_connection_string(
                connection_string, table_name=config.table_name, **options
            )
        else:
            from azure.identity import DefaultAzureCredential

            self._table = TableClient(
                endpoint=str(config.account_url),
                table_name=config.table_name,
                credential=DefaultAzureCredential(),
                **options,
            )

    async def aclose(self) -> None:
        self._table.close()

    async def poll(self, out: RecordSink) -> None:
        # The SDK is synchronous: read in a thread of the poll's own, and tell it to stop if the
        # poll is abandoned (poll_timeout, a stop) so that it does not keep reading for nobody.
        # A daemon thread: a request stuck in the SDK must not hold up the process's exit.
        loop = asyncio.get_running_loop()
        read: asyncio.Future[None] = loop.create_future()
        abandoned = threading.Event()

        def settle(error: BaseException | None) -> None:
            if read.done():
                return
            if error is None:
                read.set_result(None)
            else:
                read.set_exception(error)

        def run() -> None:
            error: BaseException | None = None
            try:
                self._read_all(out, abandoned)
            except BaseException as exc:  # handed to the poll, which counts it
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=run, name=f"table {self.config.name}", daemon=True).start()
        try:
            await read
        finally:
            abandoned.set()

    def _read_all(self, out: RecordSink, abandoned: threading.Event) -> None:
        since = out.since
        try:
            # With an allow-list, a shard asks only for its own tenants' partitions.
            tenants = tuple(t for t in self.config.tenants if out.wants(t))
            moment = None if since is None else datetime.fromtimestamp(since, UTC)
            for entity in self._entities(moment, tenants if self.config.tenants else None):
                if abandoned.is_set():
                    return
                out.add(self._to_record(entity))
                changed = getattr(entity, "metadata", {}).get("timestamp")
                if isinstance(changed, datetime):
                    out.changed_at(changed.timestamp())
        except AzureError as exc:
            raise table_error(exc, self.config.table_name) from None

    def _entities(self, since: datetime | None, tenants: tuple[str, ...] | None) -> Iterator[dict[str, Any]]:
        """Every entity (``tenants`` None), or those of ``tenants``; changed since ``since``."""
        per_page = self.config.page_size
        # The SDK substitutes @parameters between spaces: hence the spaced parentheses.
        changed = "Timestamp ge @since"
        if tenants is None:
            if since is None:
                yield from self._table.list_entities(select=self._select, results_per_page=per_page)
            else:
                yield from self._table.query_entities(
                    changed, parameters={"since": since}, select=self._select, results_per_page=per_page
                )
            return
        per_query = FILTER_COMPARISONS - (since is not None)
        for start in range(0, len(tenants), per_query):
            group = tenants[start : start + per_query]
            query = " or ".join(f"PartitionKey eq @p{i}" for i in range(len(group)))
            parameters: dict[str, Any] = {f"p{i}": tenant for i, tenant in enumerate(group)}
            if since is not None:
                query = f"( {query} ) and {changed}"
                parameters["since"] = since
            yield from self._table.query_entities(
                query, parameters=parameters, select=self._select, results_per_page=per_page
            )

    def _to_record(self, entity: dict[str, Any]) -> FailureRecord:
        columns = self.config.columns
        tenant, file_id = str(entity["PartitionKey"]), str(entity["RowKey"])
        reported = plain(entity.get(columns.error_type))
        return FailureRecord(
            tenant=tenant,
            platform=self._platform_of(entity),
            identity=(tenant, file_id),
            reported_type=reported if isinstance(reported, str) else None,
            message=str(plain(entity.get(columns.error_message)) or ""),
            retry_count=as_count(plain(entity.get(columns.retry_count))),
            failed_at=parse_timestamp(plain(entity.get(columns.failed_at))),
            name=text_of(plain(entity.get(columns.file_name))),
            location=text_of(plain(entity.get(columns.source_url))),
        )

    def _platform_of(self, entity: dict[str, Any]) -> str:
        columns = self.config.columns
        platform = plain(entity.get(columns.platform_type))
        if isinstance(platform, str) and platform:
            return platform
        content_type = plain(entity.get(columns.content_type))
        if isinstance(content_type, str) and content_type:
            return self.config.content_types.get(content_type, content_type)
        return "unknown"


def plain(value: Any) -> Any:
    """An entity property's value, unwrapped from EntityProperty for 64-bit and typed values."""
    return getattr(value, "value", value)


def table_error(exc: AzureError, table: str) -> PollError:
    """One reason (docs/reference.md, Counting) for every way the table service can fail,
    with what the service said."""
    said = excerpt(str(exc.message or "").split("\n", 1)[0]) if isinstance(exc, HttpResponseError) else ""
    where = f"table {table!r}"
    if isinstance(exc, ResourceNotFoundError):
        return PollError(Reason.HTTP_ERROR, f"{where} not found (HTTP 404)")
    if isinstance(exc, ClientAuthenticationError):
        return PollError(Reason.AUTH, f"{where}: authentication failed: {said}")
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
        return PollError(Reason.TIMEOUT, f"{where}: no answer in time")
    if isinstance(exc, DecodeError):
        return PollError(Reason.INVALID_RESPONSE, f"{where}: unreadable answer")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return PollError(Reason.CONNECTION, f"{where}: {type(exc).__name__}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        reason = {401: Reason.AUTH, 403: Reason.AUTH, 429: Reason.RATE_LIMITED}.get(status, Reason.HTTP_ERROR)
        return PollError(reason, f"{where}: HTTP {status}: {said}")
    return PollError(Reason.INTERNAL, f"{where}: {type(exc).__name__}")
