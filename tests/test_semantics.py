"""The metric semantics of docs/reference.md, Counting, driven through the Rezolve simulator over HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest

from exporter.config import build_settings
from exporter.pipeline.render import Snapshot, render_lane
from exporter.runtime import Exporter
from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import (
    TENANT_A,
    TENANT_B,
    parse_exposition,
    rezolve_file,
    rezolve_source,
    run_polls,
    series,
)

SP = "sharepoint"
SN = "servicenow"


def exporter_for(simulator: RezolveSimulator, **settings: Any) -> Exporter:
    document = {"sources": [rezolve_source(simulator, **settings.pop("source", {}))], **settings}
    return Exporter(build_settings(document, {}))


def poll(exporter: Exporter) -> bool:
    run_polls(exporter)
    return all(state.up for state in exporter.states.values())


def samples(exporter: Exporter) -> dict[Any, float]:
    return parse_exposition(exporter.snapshot.text.decode())


def labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset({"source": "rezolve-test", **kv}.items())


def test_gauges_count_records_by_labels_with_the_retry_cap(rezolve: RezolveSimulator) -> None:
    now = time.time()
    for i, retry in enumerate([0, 4, 5, 9]):
        rezolve.put(TENANT_A, SP, rezolve_file(f"f{i}", "FILE_TOO_LARGE", "", now - i * 100, retry))
    exporter = exporter_for(rezolve)
    assert poll(exporter)
    failed = series(samples(exporter), "ingestion_failed_files")
    base = {"tenant": TENANT_A, "platform": SP, "error_type": "FILE_TOO_LARGE"}
    assert failed == {
        labels(**base, retry_count="0"): 1,
        labels(**base, retry_count="4"): 1,
        labels(**base, retry_count="5+"): 2,
    }
    oldest = series(samples(exporter), "ingestion_failed_files_oldest_timestamp_seconds")
    newest = series(samples(exporter), "ingestion_failed_files_newest_timestamp_seconds")
    assert oldest == {labels(tenant=TENANT_A, platform=SP): pytest.approx(int(now) - 300, abs=1)}
    assert newest == {labels(tenant=TENANT_A, platform=SP): pytest.approx(int(now), abs=1)}


def test_first_poll_is_the_baseline_then_new_and_gone_records_count(rezolve: RezolveSimulator) -> None:
    now = time.time()
    rezolve.put(TENANT_A, SP, rezolve_file("a", "PARSE_ERROR", "", now, 0))
    rezolve.put(TENANT_A, SP, rezolve_file("b", "PARSE_ERROR", "", now, 0))
    exporter = exporter_for(rezolve)

    def change() -> None:
        found = samples(exporter)
        assert series(found, "ingestion_failed_files_discovered_total") == {
            labels(tenant=TENANT_A, platform=SP, error_type="PARSE_ERROR"): 0
        }
        assert series(found, "ingestion_failed_files_resolved_total") == {
            labels(tenant=TENANT_A, platform=SP): 0
        }
        rezolve.remove(TENANT_A, SP, "a")
        rezolve.put(TENANT_A, SP, rezolve_file("c", "TIMEOUT", "", now, 0))
        rezolve.put(TENANT_A, SN, rezolve_file("d", "TIMEOUT", "", now, 0))
        # A retried record is the same record: not discovered again.
        rezolve.put(TENANT_A, SP, rezolve_file("b", "PARSE_ERROR", "", now, 1))

    run_polls(exporter, change)
    # The two TIMEOUT series are born in the second poll: first shown at 0 (rate() and increase()
    # ignore a series' first sample), their records counter_birth_delay (2m) later.
    found = samples(exporter)
    assert series(found, "ingestion_failed_files_discovered_total") == {
        labels(tenant=TENANT_A, platform=SP, error_type="PARSE_ERROR"): 0,
        labels(tenant=TENANT_A, platform=SP, error_type="TIMEOUT"): 0,
        labels(tenant=TENANT_A, platform=SN, error_type="TIMEOUT"): 0,
    }
    assert series(found, "ingestion_failed_files_resolved_total") == {
        labels(tenant=TENANT_A, platform=SP): 1,  # an existing series: shown at once
        labels(tenant=TENANT_A, platform=SN): 0,
    }
    later = Snapshot([render_lane(exporter.states["rezolve-test"], time.time() + 121)]).text.decode()
    later = parse_exposition(later)
    assert series(later, "ingestion_failed_files_discovered_total") == {
        labels(tenant=TENANT_A, platform=SP, error_type="PARSE_ERROR"): 0,
        labels(tenant=TENANT_A, platform=SP, error_type="TIMEOUT"): 1,
        labels(tenant=TENANT_A, platform=SN, error_type="TIMEOUT"): 1,
    }


def test_a_failed_part_keeps_its_previous_series_and_sets_up_to_0(rezolve: RezolveSimulator) -> None:
    now = time.time()
    rezolve.put(TENANT_A, SP, rezolve_file("a", "PARSE_ERROR", "", now, 0))
    rezolve.put(TENANT_A, SN, rezolve_file("b", "TIMEOUT", "", now, 0))
    exporter = exporter_for(rezolve)

    def break_servicenow() -> None:
        rezolve.remove(TENANT_A, SP, "a")
        rezolve.put(TENANT_A, SP, rezolve_file("c", "PARSE_ERROR", "", now, 0))
        rezolve.remove(TENANT_A, SN, "b")  # not seen: that part fails
        rezolve.inject(status=500, when=lambda request: request.json()["platform_type"] == SN)

    run_polls(exporter, break_servicenow)
    found = samples(exporter)
    assert series(found, "ingestion_failed_files") == {
        labels(tenant=TENANT_A, platform=SP, error_type="PARSE_ERROR", retry_count="0"): 1,
        labels(tenant=TENANT_A, platform=SN, error_type="TIMEOUT", retry_count="0"): 1,  # kept
    }
    assert found[("ingestion_source_up", labels())] == 0
    assert found[("ingestion_source_poll_errors_total", labels(reason="http_error"))] == 1
    assert series(found, "ingestion_failed_files_resolved_total")[labels(tenant=TENANT_A, platform=SN)] == 0


def test_series_beyond_the_cap_are_dropped_and_counted(rezolve: RezolveSimulator) -> None:
    now = time.time()
    for i, kind in enumerate(["PARSE_ERROR", "TIMEOUT", "OCR_FAILED", "OCR_FAILED"]):
        rezolve.put(TENANT_A, SP, rezolve_file(f"f{i}", kind, "", now, 0))
    exporter = exporter_for(rezolve, max_series_per_source=2)
    poll(exporter)
    found = samples(exporter)
    assert len(series(found, "ingestion_failed_files")) == 2
    assert found[("ingestion_source_series_dropped", labels())] == 1
    assert found[("ingestion_source_records_scanned", labels())] == 4


def test_label_overrides_replace_derived_tenant_and_platform(rezolve: RezolveSimulator) -> None:
    rezolve.put(TENANT_A, SP, rezolve_file("a", "PARSE_ERROR", "", time.time(), 0))
    exporter = exporter_for(rezolve, source={"tenant": "acme", "platform": "kb"})
    poll(exporter)
    assert series(samples(exporter), "ingestion_failed_files") == {
        labels(tenant="acme", platform="kb", error_type="PARSE_ERROR", retry_count="0"): 1
    }


def test_shards_split_tenants_with_nothing_on_two_and_nothing_lost(rezolve: RezolveSimulator) -> None:
    now = time.time()
    tenants = [
        {"tenant_id": t, "rezolve_domain": d, "platforms": [SP]}
        for t, d in [(TENANT_A, "acme.rezolve.ai"), (TENANT_B, "globex.rezolve.ai")]
    ]
    for tenant in (TENANT_A, TENANT_B):
        rezolve.put(tenant, SP, rezolve_file("x", "PARSE_ERROR", "", now, 0))
    unsharded = exporter_for(rezolve, source={"tenants": tenants})
    poll(unsharded)
    whole = series(samples(unsharded), "ingestion_failed_files")
    parts = []
    for index in range(3):
        exporter = exporter_for(rezolve, source={"tenants": tenants}, shard={"index": index, "total": 3})
        poll(exporter)
        parts.append(series(samples(exporter), "ingestion_failed_files"))
    union: dict[Any, float] = {}
    for part in parts:
        assert not set(part) & set(union)
        union.update(part)
    assert union == whole and len(whole) == 2


def test_disabled_sources_export_nothing(rezolve: RezolveSimulator) -> None:
    settings = build_settings(
        {"sources": [rezolve_source(rezolve), rezolve_source(rezolve, name="off", enabled=False)]}, {}
    )
    exporter = Exporter(settings)
    poll(exporter)
    text = exporter.snapshot.text.decode()
    assert 'source="off"' not in text and 'source="rezolve-test"' in text
    assert not rezolve.calls(".*", "GET")  # and the simulator saw POSTs only from the enabled one
