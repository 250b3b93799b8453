"""Rezolve ingestion service: ``POST /v2/azure/failed-files`` per tenant and platform.

Bearer token; headers ``accept``, ``content-type`` and ``x-tenantid``; the body names the
tenant's Pinecone configuration and the platform. One record per entry of
``data.failed_files``; identity is (tenant, platform, ``file_id``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr

from exporter.configtypes import Frozen, HttpSourceConfig, SecretFile
from exporter.records import FailureRecord, PollError, Reason, as_count, text_of
from exporter.sources.base import RecordSink, gather_parts, parse_timestamp
from exporter.sources.http import HttpSource
from exporter.sources.platforms import PLATFORMS

PATH = "/v2/azure/failed-files"


class RezolveTenant(Frozen):
    tenant_id: str = Field(min_length=1)
    rezolve_domain: str = Field(min_length=1)
    platforms: tuple[str, ...] = Field(default=PLATFORMS, min_length=1)


class RezolveConfig(HttpSourceConfig):
    secret_fields = ("token",)
    required_secrets = (("token",),)

    kind: Literal["rezolve"]
    token: SecretStr | None = None
    token_file: SecretFile = None
    tenants: tuple[RezolveTenant, ...] = Field(min_length=1)

    def open(self) -> RezolveSource:
        return RezolveSource(self)


class RezolveSource(HttpSource[RezolveConfig]):
    def __init__(self, config: RezolveConfig) -> None:
        super().__init__(config, {"authorization": f"Bearer {config.secret('token')}"})

    async def fetch(self, out: RecordSink) -> None:
        parts = [
            (f"{tenant.tenant_id}/{platform}", self._failed_files(tenant, platform))
            for tenant in self.config.tenants
            if out.wants(tenant.tenant_id)
            for platform in tenant.platforms
        ]
        for _, records in await gather_parts(out, parts):
            for record in records:
                out.add(record)

    async def _failed_files(self, tenant: RezolveTenant, platform: str) -> list[FailureRecord]:
        body = await self._http.json(
            "POST",
            PATH,
            headers={"x-tenantid": tenant.tenant_id},
            json={
                "pinecone_config": {
                    "rezolve_domain": tenant.rezolve_domain,
                    "tenant_id": tenant.tenant_id,
                },
                "platform_type": platform,
            },
        )
        scope = f"{tenant.tenant_id}/{platform}"
        return [to_record(entry, tenant.tenant_id, platform, scope) for entry in failed_files(body)]


def failed_files(body: Any) -> list[dict[str, Any]]:
    """The ``data.failed_files`` list of a response, checked for its documented shape."""
    if not isinstance(body, dict):
        raise PollError(Reason.INVALID_RESPONSE, "the response is not a JSON object")
    if body.get("success") is False:
        raise PollError(Reason.HTTP_ERROR, f"the service answered success=false: {body.get('message')!r}")
    data = body.get("data")
    entries = data.get("failed_files") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("file_id"), str | int) for e in entries
    ):
        raise PollError(Reason.INVALID_RESPONSE, "data.failed_files is missing or not a list of files")
    return entries


def to_record(entry: dict[str, Any], tenant: str, platform: str, scope: str) -> FailureRecord:
    reported = entry.get("error_type")
    return FailureRecord(
        tenant=tenant,
        platform=platform,
        identity=(tenant, platform, str(entry["file_id"])),
        reported_type=reported if isinstance(reported, str) else None,
        message=str(entry.get("error_message") or ""),
        retry_count=as_count(entry.get("retry_count")),
        failed_at=parse_timestamp(entry.get("failed_at")),
        scope=scope,
        name=text_of(entry.get("file_name")),
        location=text_of(entry.get("source_url")),
    )
