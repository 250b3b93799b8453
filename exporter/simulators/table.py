"""Seeding a FailureRecords table (Azurite in tests and the demo) with realistic entities."""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from exporter.simulators.rezolve import PLATFORMS, random_file

AZURITE = "UseDevelopmentStorage=true"
# The emulator's documented, public development account key (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def start_azurite(
    binary: Path, port: int, *options: str, wait_seconds: float = 30.0
) -> subprocess.Popen[bytes]:
    """Azurite's table service (``binary``) on 127.0.0.1:``port``, returned once it listens; in
    memory unless ``options`` give a ``--location``."""
    storage = list(options) if "--location" in options else ["--inMemoryPersistence", *options]
    process = subprocess.Popen(
        [
            str(binary),
            *storage,
            "--silent",
            "--skipApiVersionCheck",
            "--loose",
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + wait_seconds
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    raise RuntimeError(f"Azurite did not listen on 127.0.0.1:{port} (exit code {process.returncode})")


def failure_entity(
    tenant: str,
    file_id: str,
    *,
    error_type: str,
    error_message: str,
    failed_at: float,
    retry_count: int,
    platform_type: str | None = None,
    content_type: str | None = None,
) -> dict[str, Any]:
    """An entity as the Rezolve service stores it (docs/reference.md, Platforms)."""
    entity: dict[str, Any] = {
        "PartitionKey": tenant,
        "RowKey": file_id,
        "file_name": f"{file_id}.pdf",
        "source_url": f"https://files.example/{file_id}",
        "error_type": error_type,
        "error_message": error_message,
        "failed_at": datetime.fromtimestamp(failed_at, UTC),
        "retry_count": retry_count,
    }
    if platform_type is not None:
        entity["platform_type"] = platform_type
    if content_type is not None:
        entity["content_type"] = content_type
    return entity


def fresh_table(connection_string: str, name: str) -> TableClient:
    service = TableServiceClient.from_connection_string(connection_string)
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    return service.get_table_client(name)


def seed_demo_table(connection_string: str, name: str, rng: random.Random) -> int:
    """Demo data: two tenants, a mix of platform_type and content_type entities."""
    table = fresh_table(connection_string, name)
    count = 0
    for tenant in ("initech", "umbrella"):
        for platform in PLATFORMS:
            for _ in range(rng.randrange(1, 6)):
                file = random_file(rng, time.time())
                by_type = rng.random() < 0.5
                table.upsert_entity(
                    failure_entity(
                        tenant,
                        file.file_id,
                        error_type=file.error_type,
                        error_message=file.error_message,
                        failed_at=file.failed_at,
                        retry_count=file.retry_count,
                        platform_type=platform if by_type else None,
                        content_type=None
                        if by_type
                        else f"{platform}_{rng.choice(('article', 'attachment'))}",
                    )
                )
                count += 1
    return count
