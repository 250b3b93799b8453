"""One source of every kind in one real program: ``--once`` and ``--demo``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.simulators.aep import AepSimulator, SimBatch, validation_file
from exporter.simulators.commvault import CommvaultSimulator
from exporter.simulators.commvault import SimJob as CommvaultJob
from exporter.simulators.rezolve import RezolveSimulator
from exporter.simulators.table import failure_entity, fresh_table
from exporter.simulators.unstructured import SimJob as UnstructuredJob
from exporter.simulators.unstructured import UnstructuredSimulator
from exporter.sources import KINDS as SOURCE_KINDS
from tests.conftest import (
    ROOT,
    TENANT_A,
    Azurite,
    listening,
    parse_exposition,
    rezolve_file,
    rezolve_source,
    run_cli,
    series,
    series_key,
)
from tests.kinds import KINDS, http_json_source, running

NOW = time.time()


@pytest.fixture
def simulators() -> Iterator[dict[str, Any]]:
    with running() as started:
        yield started


def test_every_http_kind_has_an_entry_in_the_registry_of_kinds() -> None:
    assert {*KINDS, "azure_table"} == set(SOURCE_KINDS)


def test_once_with_every_kind_prints_exactly_the_spec_series(
    tmp_path: Path, rezolve: RezolveSimulator, azurite: Azurite, simulators: dict[str, Any]
) -> None:
    cv: CommvaultSimulator = simulators["commvault"]
    un: UnstructuredSimulator = simulators["unstructured"]
    ae: AepSimulator = simulators["aep"]
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f1", "FILE_TOO_LARGE", "", NOW - 60, 6))
    table = fresh_table(azurite.connection_string, "EveryKind")
    table.upsert_entity(
        failure_entity(
            "acme",
            "r1",
            error_type="",
            error_message="OCR engine failed",
            failed_at=NOW,
            retry_count=1,
            content_type="web_article",
        )
    )
    cv.add_job(
        CommvaultJob(
            1, "Windows File System", "fs01", "default", NOW - 7200, [("C:\\a", "Access is denied.")]
        )
    )
    cv.add_job(
        CommvaultJob(
            2, "Windows File System", "fs01", "default", NOW - 3600, [("C:\\a", "Access is denied.")]
        )
    )
    wf = un.add_workflow("kb", "sharepoint")
    un.add_job(
        UnstructuredJob("j1", wf, "COMPLETED", NOW - 600, [("a.pdf", "Embedding service rejected chunk")])
    )
    ae.add_batch(
        SimBatch(
            "B1",
            int((NOW - 600) * 1000),
            "failed",
            [],
            {"p.json": validation_file("is not a valid date-time")},
        )
    )
    one_platform = [{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai", "platforms": ["sharepoint"]}]
    table_source = {"name": "table", "kind": "azure_table", "connection_string": azurite.connection_string}
    config = {
        "sources": [
            rezolve_source(rezolve, name="rezolve", tenants=one_platform),
            {**table_source, "table_name": "EveryKind"},
            cv.source_config("commvault"),
            un.source_config("unstructured"),
            # The Unstructured example through http_json, on the same simulator: the same records.
            {**http_json_source(un, "json"), "tenant": "unstructured"},
            ae.source_config("aep"),
        ]
    }
    failures_file = tmp_path / "failures.json"
    result = run_cli("--once", "--failures", str(failures_file), config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr
    samples = parse_exposition(result.stdout)

    def failed(source: str, tenant: str, platform: str, error_type: str, retry: str) -> Any:
        return series_key(
            source=source, tenant=tenant, platform=platform, error_type=error_type, retry_count=retry
        )

    assert series(samples, "ingestion_failed_files") == {
        failed("rezolve", TENANT_A, "sharepoint", "FILE_TOO_LARGE", "5+"): 1,
        failed("table", "acme", "web", "OCR_FAILED", "1"): 1,
        failed("commvault", "commvault", "windows_file_system", "ACCESS_DENIED", "1"): 1,
        failed("unstructured", "unstructured", "sharepoint", "VECTOR_EMBEDDING_FAILED", "0"): 1,
        failed("json", "unstructured", "sharepoint", "VECTOR_EMBEDDING_FAILED", "0"): 1,
        failed("aep", "prod", "aep", "SCHEMA_VALIDATION", "0"): 1,
    }
    up = series(samples, "ingestion_source_up")
    sources = ("rezolve", "table", "commvault", "unstructured", "json", "aep")
    assert up == {series_key(source=s): 1 for s in sources}
    kinds = {dict(labels)["kind"] for labels in series(samples, "ingestion_source_info")}
    assert kinds == set(SOURCE_KINDS)
    newest = series(samples, "ingestion_failed_files_newest_timestamp_seconds")
    assert newest[series_key(source="commvault", tenant="commvault", platform="windows_file_system")] == int(
        NOW - 3600
    )
    assert newest[series_key(source="aep", tenant="prod", platform="aep")] == pytest.approx(NOW - 600, abs=1)
    assert set(series(samples, "ingestion_failed_files_discovered_total").values()) == {0}

    # The drill-down holds exactly the records the gauges count, each named as docs/reference.md, Which files failed says.
    document = json.loads(failures_file.read_text())
    assert document["total"] == len(document["items"]) == 6 and document["truncated_sources"] == []
    counted: dict[Any, int] = {}
    for item in document["items"]:
        labels = {k: item[k] for k in ("source", "tenant", "platform", "error_type")}
        key = series_key(**labels, retry_count=item["retry_label"])
        counted[key] = counted.get(key, 0) + 1
    assert counted == series(samples, "ingestion_failed_files")
    described = {item["source"]: (item["id"], item["name"], item["location"]) for item in document["items"]}
    assert described == {
        "rezolve": (f"{TENANT_A}/sharepoint/f1", "f1.pdf", "https://contoso.sharepoint.example/f1.pdf"),
        "table": ("acme/r1", "r1.pdf", "https://files.example/r1"),
        "commvault": (
            "commvault/windows_file_system/fs01/default/C:\\a",
            "a",
            "fs01/default:C:\\a",
        ),
        "unstructured": (f"unstructured/{wf}/a.pdf", "a.pdf", wf),
        "json": (f"unstructured/{wf}/a.pdf", "a.pdf", wf),
        "aep": ("B1/p.json", "p.json", "B1"),
    }
    by_source = {item["source"]: item for item in document["items"]}
    assert by_source["rezolve"]["retry_count"] == 6 and by_source["rezolve"]["retry_label"] == "5+"
    assert by_source["commvault"]["message"] == "Access is denied."
    assert by_source["aep"]["message"] == "is not a valid date-time"
    # Newest failed_at first (the table's now, Rezolve's a minute ago, Commvault's an hour ago);
    # AEP and Unstructured (twice) failed at the same time, so by source.
    assert [item["source"] for item in document["items"]] == [
        "table",
        "rezolve",
        "aep",
        "json",
        "unstructured",
        "commvault",
    ]


def test_demo_serves_failure_series_for_the_four_http_platforms() -> None:
    with listening([sys.executable, "-m", "exporter", "--demo"], ROOT) as demo:
        samples = parse_exposition(httpx.get(f"{demo.url}/metrics").text)
        for source in ("rezolve-demo", "commvault-demo", "unstructured-demo", "aep-demo"):
            assert samples[("ingestion_source_up", series_key(source=source))] == 1
            assert any(
                n == "ingestion_failed_files" and ("source", source) in labels for n, labels in samples
            )
    assert f"metrics at {demo.url}/metrics" in demo.out
