"""Sharding at scale (docs/reference.md, Sharding): three shards over hundreds of tenants of every kind of
unit. Their union is the unsharded exporter's output with no series on two shards, and each
shard's polls do only its own share of the requests and reads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.config import build_settings
from exporter.pipeline.shard import shard_of
from exporter.runtime import Exporter
from exporter.simulators.commvault import CommvaultSimulator, SimJob
from exporter.simulators.rezolve import RezolveSimulator
from exporter.simulators.table import failure_entity, fresh_table
from tests.conftest import Azurite, parse_exposition, rezolve_file, run_polls

TENANTS = 300
PLATFORMS = ["sharepoint", "confluence"]
TABLE_TENANTS = 40
SHARDS = 3

pytestmark = pytest.mark.azurite

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def world(azurite: Azurite) -> Iterator[dict[str, Any]]:
    now = time.time()
    rezolve = RezolveSimulator(token="t").start()
    commvault = CommvaultSimulator().start()
    try:
        tenants = [str(uuid.UUID(int=i + 1)) for i in range(TENANTS)]
        for i, tenant in enumerate(tenants):
            rezolve.add_tenant(tenant, f"t{i}.rezolve.ai")
            for platform in PLATFORMS:
                for n in range(i % 4):  # some tenants have no failures on a platform
                    rezolve.put(tenant, platform, rezolve_file(f"f{n}", "PARSE_ERROR", "", now - n, n))
        for j in range(5):
            items = [(f"C:\\Data\\doc-{j}-{k}.docx", "Access is denied.") for k in range(20)]
            commvault.add_job(SimJob(7000 + j, "Windows File System", "fs-01", "default", now - 60, items))
        table = fresh_table(azurite.connection_string, f"Shards{uuid.uuid4().hex[:10]}")
        partitions = [f"table-tenant-{i}" for i in range(TABLE_TENANTS)]
        for partition in partitions:
            rows = [
                failure_entity(
                    partition,
                    f"row-{k}",
                    error_type="TIMEOUT",
                    error_message="",
                    failed_at=now,
                    retry_count=0,
                )
                for k in range(5)
            ]
            table.submit_transaction([("upsert", row) for row in rows])
        document = {
            "sources": [
                {
                    **rezolve.source_config("rezolve"),
                    "tenants": [
                        {"tenant_id": t, "rezolve_domain": f"t{i}.rezolve.ai", "platforms": PLATFORMS}
                        for i, t in enumerate(tenants)
                    ],
                    "max_concurrency": 16,
                },
                commvault.source_config("commvault"),
                {
                    "name": "table",
                    "kind": "azure_table",
                    "connection_string": azurite.connection_string,
                    "table_name": table.table_name,
                    "tenants": partitions,
                },
            ]
        }
        yield {"document": document, "rezolve": rezolve, "commvault": commvault, "tenants": tenants}
    finally:
        rezolve.stop()
        commvault.stop()


def polled(document: dict[str, Any], shard: dict[str, int] | None) -> tuple[Exporter, Samples]:
    exporter = run_polls(Exporter(build_settings({**document, **({"shard": shard} if shard else {})}, {})))
    assert all(state.up for state in exporter.states.values())
    return exporter, parse_exposition(exporter.snapshot.text.decode())


def per_series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


FAMILIES = (
    "ingestion_failed_files",
    "ingestion_failed_files_oldest_timestamp_seconds",
    "ingestion_failed_files_newest_timestamp_seconds",
    "ingestion_failed_files_discovered_total",
    "ingestion_failed_files_resolved_total",
)


def test_three_shards_export_the_unsharded_series_once_each_doing_its_share(world: dict[str, Any]) -> None:
    document, rezolve, commvault = world["document"], world["rezolve"], world["commvault"]
    before = len(rezolve.calls(".*", "POST"))
    whole, whole_samples = polled(document, None)
    unsharded_posts = len(rezolve.calls(".*", "POST")) - before
    assert unsharded_posts == TENANTS * len(PLATFORMS)

    parts: list[Samples] = []
    posts, commvault_calls, scanned = [], [], []
    for index in range(SHARDS):
        before, asked = len(rezolve.calls(".*", "POST")), len(commvault.calls(".*"))
        exporter, samples = polled(document, {"index": index, "total": SHARDS})
        parts.append(samples)
        posts.append(len(rezolve.calls(".*", "POST")) - before)
        commvault_calls.append(len(commvault.calls(".*")) - asked)
        result = exporter.states["table"].result
        assert result is not None
        scanned.append(result.scanned)

    for family in FAMILIES:
        expected = per_series(whole_samples, family)
        union: dict[frozenset[tuple[str, str]], float] = {}
        for samples in parts:
            part = per_series(samples, family)
            assert not set(part) & set(union), f"{family}: a series on two shards"
            union.update(part)
        assert union == expected, family
    assert sum(per_series(whole_samples, "ingestion_failed_files").values()) > 0

    # Rezolve: each shard asks for its own tenants only, and together exactly what one exporter asks.
    owned = [sum(shard_of("rezolve", t, SHARDS) == i for t in world["tenants"]) for i in range(SHARDS)]
    assert posts == [n * len(PLATFORMS) for n in owned] and sum(posts) == unsharded_posts
    assert all(n > 0 for n in owned)
    # A single-tenant source: one shard polls it, the others send it nothing.
    assert sorted(commvault_calls)[:2] == [0, 0] and max(commvault_calls) > 0
    # The table with an allow-list: each shard reads only its tenants' partitions.
    whole_result = whole.states["table"].result
    assert whole_result is not None
    assert sum(scanned) == whole_result.scanned == TABLE_TENANTS * 5
    assert max(scanned) < whole_result.scanned
