"""Counting that survives restarts (``state_dir``): what a restarted exporter resumes, and every
kind of state it does not resume, each in one log line and never fatal. On the core tests'
scripted source and controlled clock; the restarts are new exporters on the same directory."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from exporter.config import ConfigError, build_settings
from exporter.pipeline import lane, persist
from exporter.records import PollError, Reason
from tests.test_core import START, Core, record

SP = "sharepoint"


def stateful(directory: Path, **settings: Any) -> Core:
    return Core(state_dir=str(directory), **settings)


def shown(core: Core, name: str, **labels: str) -> float | None:
    return core.value(name, tenant="t1", platform=SP, **labels)


def discovered(core: Core, error_type: str = "PARSE_ERROR") -> float | None:
    return shown(core, "ingestion_failed_files_discovered_total", error_type=error_type)


def resolved(core: Core) -> float | None:
    return shown(core, "ingestion_failed_files_resolved_total")


def first_seen(core: Core) -> dict[str, float]:
    result = core.exporter.states["s"].result
    assert result is not None
    return {detail.id.rsplit("/", 1)[-1]: detail.first_seen for detail in result.details.values()}


def close(core: Core) -> None:
    core.run(core.exporter.aclose())


def counted_before_a_stop(directory: Path) -> Core:
    """A first run: a baseline of a and b, then c discovered and a resolved; then stopped."""
    core = stateful(directory)
    core.source.records = [record("a"), record("b")]
    core.poll()
    core.source.records = [record("b"), record("c")]
    core.poll()
    assert (discovered(core), resolved(core)) == (1, 1)
    close(core)
    return core


def test_a_restart_resumes_counters_records_and_first_seen(tmp_path: Path) -> None:
    before = counted_before_a_stop(tmp_path)
    seen = first_seen(before)
    assert seen == {"b": START + 60, "c": START + 120}

    core = stateful(tmp_path)
    # Before its first poll: the counters go on from their stored values, and the records are shown.
    assert (discovered(core), resolved(core)) == (1, 1)
    assert shown(core, "ingestion_failed_files", error_type="PARSE_ERROR", retry_count="0") == 2
    # While it was down, c was resolved and d and e appeared: the first poll counts them.
    core.source.records = [record("b"), record("d"), record("e")]
    core.poll()
    assert (discovered(core), resolved(core)) == (3, 2)
    assert first_seen(core) == {"b": START + 60, "d": START + 60, "e": START + 60}


def test_records_carried_over_from_a_failed_part_are_resumed_too(tmp_path: Path) -> None:
    core = stateful(tmp_path)
    core.source.records = [record("a"), record("b", platform="servicenow")]
    core.poll()
    # The servicenow part fails: b is carried over from the previous poll, and written so.
    core.source.failed_parts = {"t1/servicenow": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    core.poll()
    close(core)
    again = stateful(tmp_path)
    assert sorted(first_seen(again)) == ["a", "b"]


def test_without_a_state_dir_a_restart_is_a_new_baseline(tmp_path: Path) -> None:
    core = Core()
    core.source.records = [record("a")]
    core.poll()
    core.source.records = [record("a"), record("b")]
    core.poll()
    close(core)
    again = Core()
    again.source.records = [record("a"), record("b"), record("c")]
    again.poll()
    assert discovered(again) == 0  # c appeared while it was down: never counted
    assert not list(tmp_path.iterdir())


def test_the_state_file_is_readable_by_the_exporters_user_only(tmp_path: Path) -> None:
    counted_before_a_stop(tmp_path)
    [state] = tmp_path.iterdir()
    assert state.name == "s.state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_a_held_increment_survives_a_restart(tmp_path: Path) -> None:
    core = stateful(tmp_path, counter_birth_delay=120)
    core.poll()
    core.source.records = [record("a", error_type="ACCESS_DENIED")]
    core.poll()
    assert discovered(core, "ACCESS_DENIED") == 0
    close(core)
    # Born at START + 120, shown from START + 240: the restart is at START + 180.
    again = Core(state_dir=str(tmp_path), counter_birth_delay=120, start=START + 180)
    assert discovered(again, "ACCESS_DENIED") == 0  # shown as of the exporter's clock
    again.source.records = [record("a", error_type="ACCESS_DENIED")]
    again.poll(after=0)
    assert discovered(again, "ACCESS_DENIED") == 0
    again.poll(after=61)
    assert discovered(again, "ACCESS_DENIED") == 1


def test_a_series_born_in_the_first_poll_after_a_restart_is_born_at_zero(tmp_path: Path) -> None:
    counted_before_a_stop(tmp_path)
    core = stateful(tmp_path, counter_birth_delay=120)
    core.source.records = [
        record("b"),
        record("c"),
        *(record(f"x{i}", error_type="ACCESS_DENIED") for i in range(12)),
    ]
    core.poll()
    assert discovered(core, "ACCESS_DENIED") == 0
    core.poll(after=121)
    assert discovered(core, "ACCESS_DENIED") == 12


def damage(path: Path, how: str) -> str:
    """Spoil a written state file in one way; what the log line says of it."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    header = json.loads(lines[0])
    if how == "truncated":
        path.write_bytes(data[:-10])
        return "truncated"
    if how == "cut in its header":
        path.write_bytes(lines[0][:20])
        return "cut short"
    if how == "garbage":
        path.write_bytes(os.urandom(4096))
        return "not a state file"
    if how == "empty":
        path.write_bytes(b"")
        return "empty"
    if how == "another version":
        header["version"] = 99
    elif how == "another source":
        header["source"] = "other"
    elif how == "other settings":
        header["fingerprint"] = "0" * 64
    elif how == "bad header":
        header["discovered"] = [["t1", SP, "PARSE_ERROR", "many"]]
    elif how == "records missing":
        trailer = json.loads(lines[-2])
        trailer["records"] += 1
        lines[-2] = json.dumps(trailer).encode()
        path.write_bytes(b"\n".join(lines))
        return "records where"
    elif how == "bad record":
        lines[1] = b'[[["t1", 5], 0, null, 0, null]]'
        path.write_bytes(b"\n".join(lines))
        return "corrupt records"
    elif how == "bad time":
        lines[1] = b'[[["t1", "sharepoint", "b"], 0, "yesterday", 0, null]]'
        path.write_bytes(b"\n".join(lines))
        return "corrupt records"
    elif how == "unreadable":
        path.unlink()
        path.mkdir()
        return "cannot read"
    lines[0] = json.dumps(header).encode()
    path.write_bytes(b"\n".join(lines))
    return {
        "another version": "format version 99",
        "another source": "written for source 'other'",
        "other settings": "other settings",
        "bad header": "corrupt",
    }[how]


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "cut in its header",
        "garbage",
        "empty",
        "another version",
        "another source",
        "other settings",
        "bad header",
        "records missing",
        "bad record",
        "bad time",
        "unreadable",
    ],
)
def test_a_state_that_cannot_be_resumed_is_one_log_line_and_a_fresh_start(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    counted_before_a_stop(tmp_path)
    said = damage(tmp_path / "s.state", how)
    caplog.set_level(logging.INFO, logger="exporter.pipeline.persist")
    core = stateful(tmp_path)
    [line] = [r for r in caplog.records if r.name == "exporter.pipeline.persist"]
    assert line.levelno == logging.WARNING
    assert "source s:" in line.getMessage() and said in line.getMessage(), line.getMessage()
    assert "starts afresh" in line.getMessage()
    # Fresh: nothing shown, and the first poll is a baseline.
    assert core.exporter.states["s"].result is None and discovered(core) is None
    core.source.records = [record("b"), record("c"), record("d")]
    core.poll()
    assert (discovered(core), resolved(core)) == (0, 0)


def test_a_state_older_than_state_max_age_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counted_before_a_stop(tmp_path)
    core = Core(state_dir=str(tmp_path), state_max_age="1h", start=START + 3 * 3600)
    assert core.exporter.states["s"].result is None
    assert any("state_max_age" in r.getMessage() for r in caplog.records)


def test_a_missing_state_is_an_info_line_and_a_fresh_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="exporter.pipeline.persist")
    core = stateful(tmp_path)
    [line] = [r for r in caplog.records if r.name == "exporter.pipeline.persist"]
    assert line.levelno == logging.INFO and "no saved state" in line.getMessage()
    assert core.exporter.states["s"].result is None


def test_a_state_dir_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as raised:
        build_settings({"state_dir": str(blocker / "state")}, {})
    [problem] = raised.value.problems
    assert problem.startswith("state_dir: cannot create or write") and str(blocker / "state") in problem


def test_a_state_dir_is_created_readable_by_the_exporters_user_only(tmp_path: Path) -> None:
    settings = build_settings({"state_dir": str(tmp_path / "new" / "state")}, {})
    assert settings.state_dir == tmp_path / "new" / "state"
    assert stat.S_IMODE((tmp_path / "new" / "state").stat().st_mode) == 0o700


def state_writes(core: Core) -> tuple[float | None, float | None]:
    samples = core.samples()
    return (
        samples.get(("ingestion_exporter_state_write_errors_total", frozenset())),
        samples.get(("ingestion_exporter_state_last_write_success_timestamp_seconds", frozenset())),
    )


def test_a_failed_write_is_counted_and_logged_polling_goes_on_and_the_next_write_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    core = stateful(directory)
    assert state_writes(core) == (0, None)
    core.source.records = [record("a")]
    core.poll()
    assert state_writes(core) == (0, START + 60)
    # The directory is gone, a file in its place: every write fails (even for root).
    (directory / "s.state").unlink()
    directory.rmdir()
    directory.write_text("")
    core.source.records = [record("a"), record("b")]
    assert core.poll()
    assert state_writes(core) == (1, START + 60)
    assert core.value("ingestion_source_up") == 1
    assert any(
        r.levelno == logging.ERROR and r.getMessage().startswith("source s: cannot write its state")
        for r in caplog.records
    )
    # The exporter's other families are shown beside the state's.
    assert core.samples()[("ingestion_exporter_config_last_reload_successful", frozenset())] == 1
    directory.unlink()
    directory.mkdir()
    core.poll()
    assert state_writes(core) == (1, START + 180)
    assert (directory / "s.state").exists()


def test_a_state_write_pauses_for_scrapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[int] = []
    monkeypatch.setattr(lane, "pause_for_scrapes", lambda: pauses.append(1))
    core = stateful(tmp_path)
    core.source.records = [record(f"r{i}") for i in range(2 * persist.CHUNK)]
    core.poll()
    assert len(pauses) == 2  # one after each full chunk of records
    assert (tmp_path / "s.state").exists()


def test_a_full_disk_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = stateful(tmp_path)
    core.source.records = [record("a")]
    core.poll()
    written = (tmp_path / "s.state").read_bytes()

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(persist.os, "fsync", full)
    core.source.records = [record("a"), record("b")]
    core.poll()
    assert state_writes(core)[0] == 1
    assert (tmp_path / "s.state").read_bytes() == written
    assert [p.name for p in tmp_path.iterdir()] == ["s.state"]  # no temporary file left


def test_nothing_unchanged_is_written_again_at_shutdown(tmp_path: Path) -> None:
    core = stateful(tmp_path)
    core.source.records = [record("a")]
    core.poll()
    before = (tmp_path / "s.state").stat().st_mtime_ns
    core.clock.advance(5)
    close(core)
    assert (tmp_path / "s.state").stat().st_mtime_ns == before
    # Nor a resumed state that no poll changed.
    close(stateful(tmp_path))
    assert (tmp_path / "s.state").stat().st_mtime_ns == before


def test_leftovers_of_interrupted_writes_are_removed_at_start(tmp_path: Path) -> None:
    counted_before_a_stop(tmp_path)
    leftover = tmp_path / ".s.state.abc123.tmp"
    leftover.write_bytes(b"half a state")
    core = stateful(tmp_path)
    assert not leftover.exists()
    assert discovered(core) == 1


def test_no_configured_secret_is_written_to_the_state(tmp_path: Path) -> None:
    core = stateful(tmp_path, source={"token": "s3cr3t-rezolve-token"})
    core.source.records = [record("a")]
    core.poll()
    assert b"s3cr3t-rezolve-token" not in (tmp_path / "s.state").read_bytes()


def test_a_changed_secret_is_changed_settings_and_the_state_is_not_resumed(tmp_path: Path) -> None:
    core = stateful(tmp_path, source={"token": "old-token-value"})
    core.source.records = [record("a")]
    core.poll()
    assert stateful(tmp_path, source={"token": "old-token-value"}).exporter.states["s"].result is not None
    assert stateful(tmp_path, source={"token": "new-token-value"}).exporter.states["s"].result is None


def test_row_counts_survive_a_restart(tmp_path: Path) -> None:
    core = stateful(tmp_path)
    core.source.records = [record("a")._replace(rows=5), record("b")._replace(rows=7), record("c")]
    core.poll()
    assert shown(core, "ingestion_failed_rows", error_type="PARSE_ERROR") == 12
    close(core)
    again = stateful(tmp_path)
    result = again.exporter.states["s"].result
    assert result is not None
    assert sorted(result.rows.values()) == [5, 7]  # c has none, and none is made up for it
    assert shown(again, "ingestion_failed_rows", error_type="PARSE_ERROR") == 12


def test_a_state_written_before_row_counts_is_still_resumed(tmp_path: Path) -> None:
    counted_before_a_stop(tmp_path)
    path = tmp_path / "s.state"
    lines = path.read_bytes().split(b"\n")
    header = json.loads(lines[0])
    assert header["version"] == persist.VERSION == 2
    header["version"] = 1  # what the exporter wrote before: the same, without row counts
    path.write_bytes(b"\n".join([json.dumps(header).encode(), *lines[1:]]))
    again = stateful(tmp_path)
    assert (discovered(again), resolved(again)) == (1, 1)
    assert sorted(first_seen(again)) == ["b", "c"]


def test_a_damaged_row_count_is_a_corrupt_state(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    core = stateful(tmp_path)
    core.source.records = [record("a")._replace(rows=5)]
    core.poll()
    close(core)
    path = tmp_path / "s.state"
    path.write_bytes(path.read_bytes().replace(b"false], 5]]", b'false], "5"]]'))
    with caplog.at_level(logging.WARNING):
        again = stateful(tmp_path)
    assert again.exporter.states["s"].result is None
    assert "corrupt records (a row count of '5')" in caplog.text
