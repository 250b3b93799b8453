"""Simulator of the Rezolve ``POST /v2/azure/failed-files`` endpoint, as its page documents it."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from exporter.simulators.base import SimRequest, SimResponse, Simulator, json_response

# The vendor's contract as the simulator knows it, apart from the source's: a wrong path or
# platform in the source fails a test instead of moving the simulator with it.
PATH = "/v2/azure/failed-files"
PLATFORMS = ("sharepoint", "servicenow", "confluence", "itglue", "web")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class RezolveFile:
    file_id: str
    file_name: str
    error_type: str
    error_message: str
    failed_at: float
    retry_count: int = 0

    def as_json(self, platform: str) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_name": self.file_name,
            "source_url": f"https://contoso.{platform}.example/{self.file_name}",
            "error_type": self.error_type,
            "error_message": self.error_message,
            "failed_at": iso(self.failed_at),
            "retry_count": self.retry_count,
        }


# Realistic failures: (error_type as the service reports it, message, file name).
# Some types are not usable (lower case, free text), so the exporter classifies the message.
CATALOGUE = (
    ("FILE_TOO_LARGE", "File exceeds maximum size limit of 50MB", "board-pack.pdf"),
    ("PARSE_ERROR", "Unable to parse document content", "corrupted-file.docx"),
    ("ACCESS_DENIED", "Insufficient permissions to access file", "restricted-access.pdf"),
    ("UNSUPPORTED_FORMAT", "File format .vsdx is not supported for ingestion", "network.vsdx"),
    ("ENCODING_ERROR", "'utf-8' codec can't decode byte 0xa0 in position 12", "legacy.txt"),
    ("TIMEOUT", "Processing timed out after 300 seconds", "scan-0042.tiff"),
    ("NETWORK_ERROR", "Connection reset by peer while downloading", "handbook.pdf"),
    ("OCR_FAILED", "OCR engine returned no text for scanned page 3", "invoice-scan.png"),
    ("VECTOR_EMBEDDING_FAILED", "Embedding service rejected chunk 17", "faq.html"),
    (
        "error",
        "The process cannot access the file because it is being used by another process",
        "budget.xlsx",
    ),
    ("", "Item not found: it may have been deleted", "old-policy.docx"),
)


class RezolveSimulator(Simulator):
    """Enforces the documented headers, body, and status codes (400, 401, 403, 422)."""

    def __init__(self, token: str = "demo-rezolve-token", port: int = 0) -> None:
        super().__init__(port=port)
        self.token = token
        self.tenants: dict[str, str] = {}  # tenant id -> rezolve domain
        self.files: dict[tuple[str, str], dict[str, RezolveFile]] = {}
        self.route("POST", PATH, self._failed_files)

    def source_config(self, name: str, **extra: Any) -> dict[str, Any]:
        """A ``rezolve`` source reading this simulator, for every tenant it knows."""
        with self.lock:
            tenants = [{"tenant_id": t, "rezolve_domain": d} for t, d in self.tenants.items()]
        return {
            "name": name,
            "kind": "rezolve",
            "base_url": self.url,
            "token": self.token,
            "tenants": tenants,
            **extra,
        }

    def add_tenant(self, tenant_id: str, domain: str) -> None:
        with self.lock:
            self.tenants[tenant_id] = domain

    def put(self, tenant_id: str, platform: str, file: RezolveFile) -> None:
        with self.lock:
            self.files.setdefault((tenant_id, platform), {})[file.file_id] = file

    def remove(self, tenant_id: str, platform: str, file_id: str) -> None:
        with self.lock:
            self.files.get((tenant_id, platform), {}).pop(file_id, None)

    def _failed_files(self, request: SimRequest) -> SimResponse:
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return json_response(401, {"detail": "Not authenticated"})
        if authorization.removeprefix("Bearer ") != self.token:
            return json_response(401, {"detail": "Invalid or expired token"})
        if "application/json" not in request.headers.get("content-type", ""):
            return json_response(400, {"detail": "content-type must be application/json"})
        if "application/json" not in request.headers.get("accept", ""):
            return json_response(400, {"detail": "accept must be application/json"})
        tenant_header = request.headers.get("x-tenantid", "")
        try:
            uuid.UUID(tenant_header)
        except ValueError:
            return json_response(400, {"detail": "x-tenantid must be a tenant UUID"})
        try:
            body = request.json()
        except ValueError:
            return json_response(400, {"detail": "Invalid request body"})
        missing = _missing_fields(body)
        if missing:
            return json_response(422, {"detail": missing})
        platform = body["platform_type"]
        if platform not in PLATFORMS:
            return json_response(
                422,
                {
                    "detail": [
                        {
                            "loc": ["body", "platform_type"],
                            "msg": "value is not a valid enumeration member",
                            "type": "type_error.enum",
                        }
                    ]
                },
            )
        tenant_id = body["pinecone_config"]["tenant_id"]
        with self.lock:
            known = self.tenants.get(tenant_id)
            if tenant_header != tenant_id or known != body["pinecone_config"]["rezolve_domain"]:
                return json_response(403, {"detail": "Insufficient permissions"})
            files = [f.as_json(platform) for f in self.files.get((tenant_id, platform), {}).values()]
        return json_response(
            200,
            {
                "success": True,
                "message": "Failed files retrieved successfully",
                "data": {"failed_files": files, "total": len(files), "platform_type": platform},
                "timestamp": iso(time.time()),
            },
        )

    def evolve(self, rng: random.Random) -> None:
        """One step of the demo's life: new failures, retries, and resolutions."""
        with self.lock:
            for (tenant_id, platform), files in list(self.files.items()):
                for file_id, file in list(files.items()):
                    roll = rng.random()
                    if roll < 0.08:
                        del files[file_id]
                    elif roll < 0.25:
                        files[file_id] = replace(
                            file, retry_count=file.retry_count + 1, failed_at=time.time()
                        )
                if rng.random() < 0.6:
                    self.put(tenant_id, platform, random_file(rng, time.time()))


def random_file(rng: random.Random, now: float) -> RezolveFile:
    error_type, message, name = rng.choice(CATALOGUE)
    file_id = f"file-{rng.randrange(16**8):08x}"
    return RezolveFile(
        file_id,
        f"{file_id}-{name}",
        error_type,
        message,
        now - rng.uniform(0, 86400 * 3),
        rng.choice((0, 0, 1, 2, 3, 6)),
    )


def seed_demo(simulator: RezolveSimulator, rng: random.Random) -> list[tuple[str, str]]:
    """Two tenants with failures on every platform; returns (tenant id, domain) pairs."""
    tenants = [
        ("3fa85f64-5717-4562-b3fc-2c963f66afa6", "acme.rezolve.ai"),
        ("9b2d7c1e-0f4a-4d6b-8e3c-5a1b2c3d4e5f", "globex.rezolve.ai"),
    ]
    now = time.time()
    for tenant_id, domain in tenants:
        simulator.add_tenant(tenant_id, domain)
        for platform in PLATFORMS:
            for _ in range(rng.randrange(2, 9)):
                simulator.put(tenant_id, platform, random_file(rng, now))
    return tenants


def _missing_fields(body: Any) -> list[dict[str, Any]]:
    def missing(*loc: str) -> dict[str, Any]:
        return {"loc": ["body", *loc], "msg": "field required", "type": "value_error.missing"}

    if not isinstance(body, dict):
        return [missing("pinecone_config"), missing("platform_type")]
    problems = []
    config = body.get("pinecone_config")
    if not isinstance(config, dict):
        problems.append(missing("pinecone_config"))
    else:
        problems += [
            missing("pinecone_config", f)
            for f in ("rezolve_domain", "tenant_id")
            if not isinstance(config.get(f), str)
        ]
    if not isinstance(body.get("platform_type"), str):
        problems.append(missing("platform_type"))
    return problems
