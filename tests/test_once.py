"""``--once`` end to end: the real program against the Rezolve simulator and an Azurite table."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.simulators.rezolve import RezolveSimulator
from exporter.simulators.table import failure_entity, fresh_table
from tests.conftest import (
    TENANT_A,
    Azurite,
    free_port,
    parse_exposition,
    rezolve_file,
    rezolve_source,
    run_cli,
)

T0 = 1_765_535_400.0  # 2025-12-12T10:30:00Z


def seed(rezolve: RezolveSimulator, azurite: Azurite) -> str:
    rezolve.put(
        TENANT_A,
        "sharepoint",
        rezolve_file("file-001", "FILE_TOO_LARGE", "File exceeds maximum size limit of 50MB", T0, 3),
    )
    rezolve.put(
        TENANT_A,
        "sharepoint",
        rezolve_file("file-002", "PARSE_ERROR", "Unable to parse document content", T0 - 4500, 2),
    )
    rezolve.put(
        TENANT_A,
        "sharepoint",
        rezolve_file("file-003", "ACCESS_DENIED", "Insufficient permissions", T0 - 6300, 7),
    )
    rezolve.put(
        TENANT_A,
        "servicenow",
        rezolve_file("kb-9", "unknown", "Processing timed out after 300 seconds", T0, 5),
    )
    table = fresh_table(azurite.connection_string, "FailureRecordsOnce")
    table.upsert_entity(
        failure_entity(
            "acme",
            "row-1",
            error_type="OCR_FAILED",
            error_message="",
            failed_at=T0,
            retry_count=0,
            content_type="confluence_attachment",
        )
    )
    table.upsert_entity(
        failure_entity(
            "acme",
            "row-2",
            error_type="",
            error_message="Access is denied.",
            failed_at=T0 + 10,
            retry_count=12,
            platform_type="web",
        )
    )
    return table.table_name


EXPECTED = """\
# HELP ingestion_failed_files Failure records in the source's latest successful poll.
# TYPE ingestion_failed_files gauge
ingestion_failed_files{{error_type="TIMEOUT",platform="servicenow",retry_count="5+",source="rezolve",tenant="{a}"}} 1.0
ingestion_failed_files{{error_type="ACCESS_DENIED",platform="sharepoint",retry_count="5+",source="rezolve",tenant="{a}"}} 1.0
ingestion_failed_files{{error_type="FILE_TOO_LARGE",platform="sharepoint",retry_count="3",source="rezolve",tenant="{a}"}} 1.0
ingestion_failed_files{{error_type="PARSE_ERROR",platform="sharepoint",retry_count="2",source="rezolve",tenant="{a}"}} 1.0
ingestion_failed_files{{error_type="OCR_FAILED",platform="confluence",retry_count="0",source="table",tenant="acme"}} 1.0
ingestion_failed_files{{error_type="ACCESS_DENIED",platform="web",retry_count="5+",source="table",tenant="acme"}} 1.0
# HELP ingestion_failed_files_discovered_total Distinct failure records first seen since the process started.
# TYPE ingestion_failed_files_discovered_total counter
ingestion_failed_files_discovered_total{{error_type="TIMEOUT",platform="servicenow",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_discovered_total{{error_type="ACCESS_DENIED",platform="sharepoint",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_discovered_total{{error_type="FILE_TOO_LARGE",platform="sharepoint",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_discovered_total{{error_type="PARSE_ERROR",platform="sharepoint",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_discovered_total{{error_type="OCR_FAILED",platform="confluence",source="table",tenant="acme"}} 0.0
ingestion_failed_files_discovered_total{{error_type="ACCESS_DENIED",platform="web",source="table",tenant="acme"}} 0.0
# HELP ingestion_failed_files_resolved_total Failure records present in one successful poll and gone in the next.
# TYPE ingestion_failed_files_resolved_total counter
ingestion_failed_files_resolved_total{{platform="servicenow",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_resolved_total{{platform="sharepoint",source="rezolve",tenant="{a}"}} 0.0
ingestion_failed_files_resolved_total{{platform="confluence",source="table",tenant="acme"}} 0.0
ingestion_failed_files_resolved_total{{platform="web",source="table",tenant="acme"}} 0.0
# HELP ingestion_failed_files_oldest_timestamp_seconds Smallest failed_at among the current failure records.
# TYPE ingestion_failed_files_oldest_timestamp_seconds gauge
ingestion_failed_files_oldest_timestamp_seconds{{platform="servicenow",source="rezolve",tenant="{a}"}} 1.7655354e+09
ingestion_failed_files_oldest_timestamp_seconds{{platform="sharepoint",source="rezolve",tenant="{a}"}} 1.7655291e+09
ingestion_failed_files_oldest_timestamp_seconds{{platform="confluence",source="table",tenant="acme"}} 1.7655354e+09
ingestion_failed_files_oldest_timestamp_seconds{{platform="web",source="table",tenant="acme"}} 1.76553541e+09
# HELP ingestion_failed_files_newest_timestamp_seconds Largest failed_at among the current failure records.
# TYPE ingestion_failed_files_newest_timestamp_seconds gauge
ingestion_failed_files_newest_timestamp_seconds{{platform="servicenow",source="rezolve",tenant="{a}"}} 1.7655354e+09
ingestion_failed_files_newest_timestamp_seconds{{platform="sharepoint",source="rezolve",tenant="{a}"}} 1.7655354e+09
ingestion_failed_files_newest_timestamp_seconds{{platform="confluence",source="table",tenant="acme"}} 1.7655354e+09
ingestion_failed_files_newest_timestamp_seconds{{platform="web",source="table",tenant="acme"}} 1.76553541e+09
# HELP ingestion_source_up 1 if the latest poll succeeded completely, else 0.
# TYPE ingestion_source_up gauge
ingestion_source_up{{source="rezolve"}} 1.0
ingestion_source_up{{source="table"}} 1.0
"""


def test_once_prints_exactly_the_spec_series(
    tmp_path: Path, rezolve: RezolveSimulator, azurite: Azurite
) -> None:
    table = seed(rezolve, azurite)
    tenants = [
        {
            "tenant_id": TENANT_A,
            "rezolve_domain": "acme.rezolve.ai",
            "platforms": ["sharepoint", "servicenow"],
        }
    ]
    config = {
        "sources": [
            rezolve_source(rezolve, name="rezolve", tenants=tenants),
            {
                "name": "table",
                "kind": "azure_table",
                "connection_string": azurite.connection_string,
                "table_name": table,
            },
        ]
    }
    result = run_cli("--once", config=config, tmp_path=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(EXPECTED.format(a=TENANT_A))
    samples = parse_exposition(result.stdout)
    names = {name for name, _ in samples}
    assert names == {
        "ingestion_failed_files",
        "ingestion_failed_files_discovered_total",
        "ingestion_failed_files_resolved_total",
        "ingestion_failed_files_oldest_timestamp_seconds",
        "ingestion_failed_files_newest_timestamp_seconds",
        "ingestion_source_up",
        "ingestion_source_last_success_timestamp_seconds",
        "ingestion_source_poll_duration_seconds_bucket",
        "ingestion_source_poll_duration_seconds_count",
        "ingestion_source_poll_duration_seconds_sum",
        "ingestion_source_poll_errors_total",
        "ingestion_source_records_scanned",
        "ingestion_source_series_dropped",
        "ingestion_source_info",
        "ingestion_exporter_build_info",
        "ingestion_source_poll_interval_seconds",
        "ingestion_exporter_config_last_reload_successful",
        "ingestion_exporter_config_last_reload_success_timestamp_seconds",
        "ingestion_exporter_shard_ordinal",
        "ingestion_exporter_total_shards",
    }
    assert samples[("ingestion_source_records_scanned", frozenset({("source", "rezolve")}))] == 4
    assert samples[("ingestion_source_info", frozenset({("source", "table"), ("kind", "azure_table")}))] == 1
    errors = {labels: v for (n, labels), v in samples.items() if n == "ingestion_source_poll_errors_total"}
    assert len(errors) == 14 and set(errors.values()) == {0}


@pytest.mark.parametrize("failure", ["missing-table", "refused"])
def test_a_failing_source_leaves_the_others_intact_and_exits_1(
    tmp_path: Path, rezolve: RezolveSimulator, azurite: Azurite, failure: str
) -> None:
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("f", "PARSE_ERROR", "", T0, 0))
    broken = (
        {
            "name": "table",
            "kind": "azure_table",
            "connection_string": azurite.connection_string,
            "table_name": "Missing",
        }
        if failure == "missing-table"
        else {**rezolve_source(rezolve, name="table"), "base_url": f"http://127.0.0.1:{free_port()}"}
    )
    config = {"sources": [rezolve_source(rezolve, name="rezolve"), broken]}
    result = run_cli("--once", config=config, tmp_path=tmp_path)
    assert result.code == 1
    samples = parse_exposition(result.stdout)
    reason = "http_error" if failure == "missing-table" else "connection"
    assert samples[("ingestion_source_up", frozenset({("source", "table")}))] == 0
    assert samples[("ingestion_source_up", frozenset({("source", "rezolve")}))] == 1
    assert (
        samples[("ingestion_source_poll_errors_total", frozenset({("source", "table"), ("reason", reason)}))]
        == 1
    )
    assert any(n == "ingestion_failed_files" and ("source", "rezolve") in labels for n, labels in samples)
    assert "Traceback" not in result.stderr


def test_once_logs_never_show_the_token(tmp_path: Path, rezolve: RezolveSimulator) -> None:
    rezolve.inject(status=401)
    result = run_cli(
        "--once", "--log-format", "json", config={"sources": [rezolve_source(rezolve)]}, tmp_path=tmp_path
    )
    assert result.code == 1
    assert '"level": "warning"' in result.stderr and "test-token" not in result.stderr + result.stdout


def discovered_of(result: str) -> dict[str, float]:
    """The discovered counters of a run's exposition, by error type (one tenant and platform)."""
    return {
        dict(labels)["error_type"]: value
        for (name, labels), value in parse_exposition(result).items()
        if name == "ingestion_failed_files_discovered_total"
    }


def test_once_with_a_state_dir_counts_what_changed_since_the_previous_run(
    rezolve: RezolveSimulator, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state"
    # Held increments are due 0.2 s after their birth: the next run, a process start later.
    config = {
        "state_dir": str(state_dir),
        "counter_birth_delay": "200ms",
        "sources": [rezolve_source(rezolve)],
    }
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("p1", "PARSE_ERROR", "Unable to parse", T0, 0))
    first = run_cli("--once", config=config, tmp_path=tmp_path)
    assert first.code == 0, first.stderr
    assert discovered_of(first.stdout) == {"PARSE_ERROR": 0}  # the first run is the baseline
    assert (state_dir / "rezolve-test.state").exists()

    rezolve.put(TENANT_A, "sharepoint", rezolve_file("p2", "PARSE_ERROR", "Unable to parse", T0, 0))
    for i in range(12):
        rezolve.put(TENANT_A, "sharepoint", rezolve_file(f"d{i}", "ACCESS_DENIED", "Access denied", T0, 0))
    second = run_cli("--once", config=config, tmp_path=tmp_path)
    assert second.code == 0, second.stderr
    # p2 in a series already shown: at once; the ACCESS_DENIED series is born in this run, at 0.
    assert discovered_of(second.stdout) == {"PARSE_ERROR": 1, "ACCESS_DENIED": 0}

    rezolve.remove(TENANT_A, "sharepoint", "p1")
    third = run_cli("--once", config=config, tmp_path=tmp_path)
    assert third.code == 0, third.stderr
    assert discovered_of(third.stdout) == {"PARSE_ERROR": 1, "ACCESS_DENIED": 12}
    samples = parse_exposition(third.stdout)
    assert (
        samples[
            (
                "ingestion_failed_files_resolved_total",
                frozenset({("source", "rezolve-test"), ("tenant", TENANT_A), ("platform", "sharepoint")}),
            )
        ]
        == 1
    )
    assert samples[("ingestion_exporter_state_write_errors_total", frozenset())] == 0


def test_once_without_a_state_dir_counts_nothing(rezolve: RezolveSimulator, tmp_path: Path) -> None:
    config = {"sources": [rezolve_source(rezolve)]}
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("p1", "PARSE_ERROR", "Unable to parse", T0, 0))
    assert discovered_of(run_cli("--once", config=config, tmp_path=tmp_path).stdout) == {"PARSE_ERROR": 0}
    rezolve.put(TENANT_A, "sharepoint", rezolve_file("p2", "PARSE_ERROR", "Unable to parse", T0, 0))
    again = run_cli("--once", config=config, tmp_path=tmp_path)
    assert discovered_of(again.stdout) == {"PARSE_ERROR": 0}
    assert "ingestion_exporter_state" not in again.stdout
