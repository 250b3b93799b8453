"""The azure_table source against Azurite, the real Table Storage emulator."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient

from exporter.config import build_settings
from exporter.records import Reason
from exporter.runtime import Exporter
from exporter.simulators.rezolve import RezolveSimulator
from exporter.simulators.table import failure_entity, fresh_table
from tests.conftest import (
    TENANT_A,
    Azurite,
    failed_key,
    failure_series,
    free_port,
    parse_exposition,
    rezolve_file,
    run_polls,
    series,
    start_azurite,
)

ONE_TENANT = {"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}

pytestmark = pytest.mark.azurite


@pytest.fixture
def table(azurite: Azurite) -> TableClient:
    return fresh_table(azurite.connection_string, f"Failures{uuid.uuid4().hex[:12]}")


def source(azurite: Azurite, table: TableClient, **extra: Any) -> dict[str, Any]:
    return {
        "name": "table",
        "kind": "azure_table",
        "connection_string": azurite.connection_string,
        "table_name": table.table_name,
        "timeout": "5s",
        **extra,
    }


def test_reads_every_page_of_a_large_table(azurite: Azurite, table: TableClient) -> None:
    now = time.time()
    operations = [
        (
            "upsert",
            failure_entity(
                f"tenant-{i % 3}",
                f"file-{i:05d}",
                error_type="PARSE_ERROR",
                error_message="",
                failed_at=now,
                retry_count=i % 7,
                platform_type="sharepoint",
            ),
        )
        for i in range(2500)
    ]
    for tenant in range(3):
        batch = [op for op in operations if op[1]["PartitionKey"] == f"tenant-{tenant}"]
        for start in range(0, len(batch), 100):
            table.submit_transaction(batch[start : start + 100])
    exporter = run_polls({"sources": [source(azurite, table, page_size=1000)]})
    state = exporter.states["table"]
    assert state.up is True
    assert state.result is not None and state.result.scanned == 2500
    assert sum(failure_series(exporter).values()) == 2500


def test_maps_columns_platforms_and_retry_counts(azurite: Azurite, table: TableClient) -> None:
    t = 1_765_535_400.0  # 2025-12-12T10:30:00Z
    table.upsert_entity(
        failure_entity(
            "acme",
            "f1",
            error_type="FILE_TOO_LARGE",
            error_message="",
            failed_at=t,
            retry_count=3,
            platform_type="confluence",
            content_type="sharepoint_article",
        )
    )
    table.upsert_entity(
        failure_entity(
            "acme",
            "f2",
            error_type="not a type",
            error_message="Access is denied.",
            failed_at=t - 60,
            retry_count=7,
            content_type="servicenow_attachment",
        )
    )
    table.upsert_entity(
        failure_entity(
            "acme",
            "f3",
            error_type="PARSE_ERROR",
            error_message="",
            failed_at=t + 60,
            retry_count=0,
            content_type="itglue_article",
        )
    )
    entity = failure_entity(
        "beta",
        "f4",
        error_type="TIMEOUT",
        error_message="",
        failed_at=t,
        retry_count=0,
        content_type="custom_type",
    )
    del entity["retry_count"]
    table.upsert_entity(entity)
    exporter = run_polls({"sources": [source(azurite, table)]})
    assert failure_series(exporter) == {
        failed_key(
            "table", "acme", "confluence", "FILE_TOO_LARGE", "3"
        ): 1,  # platform_type wins over content_type
        failed_key(
            "table", "acme", "servicenow", "ACCESS_DENIED", "5+"
        ): 1,  # unusable type: classified from message
        failed_key("table", "acme", "itglue", "PARSE_ERROR", "0"): 1,
        failed_key(
            "table", "beta", "custom_type", "TIMEOUT", "0"
        ): 1,  # unmapped content type, missing retry_count
    }
    samples = parse_exposition(exporter.snapshot.text.decode())
    oldest = series(samples, "ingestion_failed_files_oldest_timestamp_seconds")
    assert (
        oldest[frozenset({"source": "table", "tenant": "acme", "platform": "servicenow"}.items())] == t - 60
    )


def test_tenant_allow_list_and_custom_columns(azurite: Azurite, table: TableClient) -> None:
    for tenant in ["a", "b", "c"]:
        entity = failure_entity(
            tenant, "f", error_type="", error_message="", failed_at=time.time(), retry_count=1
        )
        entity["Kind"] = "ocr job"
        entity["Why"] = "OCR produced nothing"
        table.upsert_entity(entity)
    exporter = run_polls(
        {
            "sources": [
                source(
                    azurite,
                    table,
                    tenants=["a", "c"],
                    columns={"content_type": "Kind", "error_message": "Why"},
                    content_types={"ocr job": "scanner"},
                )
            ]
        }
    )
    assert failure_series(exporter) == {
        failed_key("table", "a", "scanner", "OCR_FAILED", "1"): 1,
        failed_key("table", "c", "scanner", "OCR_FAILED", "1"): 1,
    }


def test_only_the_needed_columns_are_selected(azurite: Azurite, table: TableClient) -> None:
    from exporter.sources.azure_table import AzureTableSource

    config = build_settings({"sources": [source(azurite, table)]}, {}).sources[0]
    selected = AzureTableSource(config)._select  # type: ignore[arg-type]
    assert selected == [
        "PartitionKey",
        "RowKey",
        "platform_type",
        "content_type",
        "error_type",
        "error_message",
        "failed_at",
        "retry_count",
        "file_name",
        "source_url",
        "Timestamp",
    ]


def test_a_missing_table_is_a_failed_run_polls(azurite: Azurite) -> None:
    document = {
        "sources": [
            {
                "name": "table",
                "kind": "azure_table",
                "timeout": "5s",
                "connection_string": azurite.connection_string,
                "table_name": "NoSuchTable",
            }
        ]
    }
    state = run_polls(document).states["table"]
    assert state.up is False and state.errors[Reason.HTTP_ERROR] == 1 and state.result is None


def test_a_wrong_account_key_is_auth(azurite: Azurite, table: TableClient) -> None:
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    state = run_polls({"sources": [source(azurite, table, connection_string=wrong)]}).states["table"]
    assert state.up is False and state.errors[Reason.AUTH] == 1


def test_an_unreachable_service_is_connection(table: TableClient, azurite: Azurite) -> None:
    elsewhere = azurite.connection_string.replace(str(azurite.port), str(free_port()))
    state = run_polls({"sources": [source(azurite, table, connection_string=elsewhere)]}).states["table"]
    assert state.up is False and state.errors[Reason.CONNECTION] == 1


def test_a_malformed_connection_string_is_a_config_error() -> None:
    from exporter.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        build_settings(
            {"sources": [{"name": "t", "kind": "azure_table", "connection_string": "garbage"}]}, {}
        )
    assert caught.value.problems == ["sources[0].connection_string: not a valid storage connection string"]


def test_azurite_stopped_in_the_middle_of_a_read_then_restarted(tmp_path: Path) -> None:
    """The emulator goes away while a poll is paging through the table, then comes back. The poll
    fails as ``connection`` once, the last values stay, a bystander source is untouched, and the
    poll after the restart counts exactly what changed meanwhile. (Azurite in memory forgets its
    tables when it stops, and on disk it does not save the latest writes on SIGTERM: the table is
    written again after the restart, as it stands then.)"""
    port, debug = free_port(), tmp_path / "debug.log"
    emulator = start_azurite(port, "--debug", str(debug))
    rezolve = RezolveSimulator(token="t").start()
    try:
        azurite = Azurite(port)
        table = fresh_table(azurite.connection_string, "Restarted")
        entities = [
            failure_entity(
                "acme",
                f"file-{i:05d}",
                error_type="PARSE_ERROR",
                error_message="",
                failed_at=time.time(),
                retry_count=1,
                platform_type="sharepoint",
            )
            for i in range(2000)
        ]

        def write(rows: list[dict[str, Any]]) -> None:
            fresh_table(azurite.connection_string, "Restarted")
            for start in range(0, len(rows), 100):
                table.submit_transaction([("upsert", e) for e in rows[start : start + 100]])

        write(entities)
        rezolve.add_tenant(TENANT_A, "acme.rezolve.ai")
        rezolve.put(TENANT_A, "sharepoint", rezolve_file("r1", "PARSE_ERROR", "", time.time(), 0))
        document = {
            "sources": [
                # Small pages make the read long enough to stop the emulator in its middle. Every
                # poll reads the whole table, so that the deleted entity is seen at once.
                {**source(azurite, table, page_size=10, incremental={"reconcile_every": 1}), "timeout": "2s"},
                rezolve.source_config("bystander", tenants=[ONE_TENANT]),
            ]
        }
        exporter = Exporter(build_settings(document, {}))

        def queries() -> int:
            return debug.read_text().count("Operation=Table_QueryEntities") if debug.exists() else 0

        async def story() -> None:
            nonlocal emulator
            try:
                assert await exporter.poll_all()
                read = queries()
                polling = asyncio.create_task(exporter.poll_all())
                while queries() < read + 3:  # the read is under way: three pages served
                    await asyncio.sleep(0.005)
                emulator.terminate()
                await asyncio.to_thread(emulator.wait, 10)
                await polling
                stopped = exporter.states["table"]
                assert (stopped.up, {r: n for r, n in stopped.errors.items() if n}) == (
                    False,
                    {Reason.CONNECTION: 1},
                )
                assert sum(failure_series(exporter).values()) == 2000 + 1  # kept, and the bystander's
                assert exporter.states["bystander"].up is True

                emulator = start_azurite(port, "--debug", str(debug))
                await asyncio.to_thread(write, [*entities[1:], {**entities[1], "RowKey": "file-99999"}])
                assert await exporter.poll_all()
            finally:
                await exporter.aclose()

        asyncio.run(story())
        samples = parse_exposition(exporter.snapshot.text.decode())
        counted = {
            name: sum(v for k, v in series(samples, name).items() if ("source", "table") in k)
            for name in (
                "ingestion_failed_files",
                "ingestion_failed_files_discovered_total",
                "ingestion_failed_files_resolved_total",
            )
        }
        assert counted == {
            "ingestion_failed_files": 2000,
            "ingestion_failed_files_discovered_total": 1,
            "ingestion_failed_files_resolved_total": 1,
        }
    finally:
        rezolve.stop()
        emulator.terminate()
        emulator.wait(timeout=10)


def test_incremental_polls_read_what_changed_and_count_as_full_reads_do(
    azurite: Azurite, table: TableClient
) -> None:
    """Two exporters on one table: one reads only what changed between full reads every third
    poll, the other reads everything every time. Between full reads their series, discovered
    counts and /failures agree but for deleted entities, which the incremental one sees, and
    counts resolved, at its next full read."""

    def entity(i: int, retry: int = 1) -> dict[str, Any]:
        return failure_entity(
            f"tenant-{i // 100}",
            f"file-{i:04d}",
            error_type="PARSE_ERROR",
            error_message="",
            failed_at=1.7e9 + i,
            retry_count=retry,
            platform_type="sharepoint",
        )

    for start in range(0, 300, 100):
        table.submit_transaction([("upsert", entity(i)) for i in range(start, min(start + 100, 299))])
    # The last write alone: an incremental poll reads it again (it is the watermark), and the
    # changes since, but no whole batch that shares its Timestamp.
    table.upsert_entity(entity(299))
    incremental = {"reconcile_every": 3, "overlap": "10ms"}
    full = Exporter(
        build_settings({"sources": [source(azurite, table, incremental={"reconcile_every": 1})]}, {})
    )
    partial = Exporter(build_settings({"sources": [source(azurite, table, incremental=incremental)]}, {}))

    def counted(exporter: Exporter) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
        samples = parse_exposition(exporter.snapshot.text.decode())
        names = ("ingestion_failed_files", "ingestion_failed_files_discovered_total")
        return {name: series(samples, name) for name in names}

    def resolved(exporter: Exporter) -> float:
        samples = parse_exposition(exporter.snapshot.text.decode())
        return sum(series(samples, "ingestion_failed_files_resolved_total").values())

    def details(exporter: Exporter) -> set[str]:
        result = exporter.states["table"].result
        assert result is not None
        return {detail.id for detail in result.details.values()}

    def scanned(exporter: Exporter) -> int:
        result = exporter.states["table"].result
        assert result is not None
        return result.scanned

    async def story() -> None:
        try:
            for exporter in (full, partial):
                assert await exporter.poll_all()
            assert counted(partial) == counted(full) and scanned(partial) == 300
            # Two updated (a retry: a new label set), three new.
            await asyncio.sleep(0.05)
            table.upsert_entity(entity(7, retry=4))
            table.upsert_entity(entity(8, retry=4))
            table.submit_transaction([("upsert", entity(i)) for i in (900, 903, 906)])
            for exporter in (full, partial):
                assert await exporter.poll_all()
            assert counted(partial) == counted(full)
            assert details(partial) == details(full)
            assert scanned(partial) < 10 and scanned(full) == 303  # the changes, and the overlap
            # Two deleted: only a full read can tell.
            table.delete_entity("tenant-0", "file-0000")
            table.delete_entity("tenant-0", "file-0001")
            for exporter in (full, partial):
                assert await exporter.poll_all()
            assert sum(counted(partial)["ingestion_failed_files"].values()) == 303
            assert sum(counted(full)["ingestion_failed_files"].values()) == 301
            assert (resolved(partial), resolved(full)) == (0, 2)
            # The third poll since the full read is a full read again.
            for exporter in (full, partial):
                assert await exporter.poll_all()
            assert counted(partial) == counted(full) and resolved(partial) == resolved(full) == 2
            assert details(partial) == details(full) and scanned(partial) == 301
        finally:
            await full.aclose()
            await partial.aclose()

    asyncio.run(story())


def test_incremental_reads_with_a_tenant_allow_list(azurite: Azurite, table: TableClient) -> None:
    rows = [
        failure_entity(
            t, f"f-{t}-{i}", error_type="TIMEOUT", error_message="", failed_at=1.7e9, retry_count=0
        )
        for t in ("a", "b", "c")
        for i in range(5)
    ]
    table.submit_transaction([("upsert", e) for e in rows if e["PartitionKey"] == "a"])
    table.submit_transaction([("upsert", e) for e in rows if e["PartitionKey"] == "b"])
    table.submit_transaction([("upsert", e) for e in rows if e["PartitionKey"] == "c"])
    # Fifteen tenants in one filter at most: with the time comparison, fourteen.
    tenants = ["a", "c", *(f"absent-{i}" for i in range(20))]
    config = source(azurite, table, tenants=tenants, incremental={"overlap": "10ms"})
    exporter = Exporter(build_settings({"sources": [config]}, {}))

    async def story() -> None:
        try:
            assert await exporter.poll_all()
            await asyncio.sleep(0.05)
            table.upsert_entity({**rows[0], "RowKey": "new-a"})
            table.upsert_entity({**rows[5], "RowKey": "new-b"})  # not a tenant of this source
            assert await exporter.poll_all()
        finally:
            await exporter.aclose()

    asyncio.run(story())
    result = exporter.states["table"].result
    # new-a, and the last batch written before the first poll (its Timestamp is the watermark)
    assert result is not None and result.since_full_read == 1 and result.scanned <= 6
    assert sum(failure_series(exporter).values()) == 11  # a's five, c's five, and new-a
