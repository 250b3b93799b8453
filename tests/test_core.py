"""The counting core of docs/reference.md, Counting (aggregation, state, rendering), driven poll by poll with a
controlled clock and a source whose every poll the test scripts. No network, no sleeps: these are
the fast tests that the mutation run uses."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exporter.config import build_settings
from exporter.pipeline.aggregate import MAX_LABEL_CHARS, safe_label
from exporter.pipeline.shard import shard_of
from exporter.records import FailureRecord, PollError, Reason
from exporter.runtime import Exporter
from exporter.sources.base import RecordSink, Source
from tests.conftest import ROOT, parse_exposition, series, series_key

T = TypeVar("T")
START = 1_765_000_000.0
SP, SN = "sharepoint", "servicenow"


class Clock:
    """The one clock of a test: the exporter's wall clock and the event loop's clock at once, moved
    only by the test (so a timer fires when the test moves time past it, not when time passes)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedSource(Source[Any]):
    """A source whose next poll returns what the test put in it: records, failed parts, or an
    error for the whole poll. A poll takes ``takes`` seconds of the controlled clock."""

    def __init__(self, config: Any, clock: Clock) -> None:
        super().__init__(config)
        self.clock = clock
        self.records: list[FailureRecord] = []
        self.failed_parts: dict[str, PollError] = {}
        self.error: BaseException | None = None
        self.takes = 0.0
        self.hang = False
        self.abandoned = False
        self.warnings: list[str] = []

    async def poll(self, out: RecordSink) -> None:
        self.clock.advance(self.takes)
        if self.hang:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.abandoned = True
                raise
        if self.error is not None:
            raise self.error
        for warning in self.warnings:
            out.warn(warning)
        for scope, error in self.failed_parts.items():
            out.fail(scope, error)
        for record in self.records:
            if record.scope not in self.failed_parts:
                out.add(record)


def record(
    file_id: str,
    *,
    tenant: str = "t1",
    platform: str = SP,
    message: str = "",
    error_type: str | None = "PARSE_ERROR",
    retry: int = 0,
    failed_at: float | None = None,
) -> FailureRecord:
    return FailureRecord(
        tenant=tenant,
        platform=platform,
        identity=(tenant, platform, file_id),
        message=message,
        reported_type=error_type,
        retry_count=retry,
        failed_at=failed_at,
        scope=f"{tenant}/{platform}",
    )


class Core:
    """An exporter with scripted sources, polled one step at a time."""

    scripted: type[ScriptedSource] = ScriptedSource

    def __init__(self, names: tuple[str, ...] = ("s",), start: float = START, **settings: Any) -> None:
        self.clock = Clock(start)
        self.sources: dict[str, ScriptedSource] = {}
        overrides = settings.pop("source", {})
        # What is counted, shown at once: the tests of counters born at zero set a birth delay.
        settings.setdefault("counter_birth_delay", 0)
        document = {"sources": [{**self.source_document(name), **overrides} for name in names], **settings}
        self.exporter = Exporter(build_settings(document, {}), source_factory=self._build, clock=self.clock)

    def source_document(self, name: str) -> dict[str, Any]:
        """A source's configuration: what it is configured as, since the scripted source is read."""
        return {
            "name": name,
            "kind": "rezolve",
            "base_url": "http://127.0.0.1:9",
            "token": "unused",
            "tenants": [{"tenant_id": "t1", "rezolve_domain": "t1.example"}],
        }

    def _build(self, config: Any) -> Source[Any]:
        source = self.scripted(config, self.clock)
        self.sources[config.name] = source
        return source

    @property
    def source(self) -> ScriptedSource:
        return self.sources["s"]

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` in an event loop whose clock is the test's clock."""

        def loop_on_the_test_clock() -> asyncio.AbstractEventLoop:
            loop = asyncio.new_event_loop()
            loop.time = self.clock  # type: ignore[method-assign]
            return loop

        with asyncio.Runner(loop_factory=loop_on_the_test_clock) as runner:
            return runner.run(work)

    def poll(self, after: float = 60.0, name: str = "s") -> bool:
        self.clock.advance(after)
        return self.run(self.exporter.poll(name))

    def poll_all(self) -> bool:
        return self.run(self.exporter.poll_all())

    def samples(self) -> dict[Any, float]:
        return parse_exposition(self.exporter.snapshot.text.decode())

    def series(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return series(self.samples(), name)

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, series_key(source="s", **labels)))


def failed(tenant: str = "t1", platform: str = SP, error_type: str = "PARSE_ERROR", retry: str = "0") -> Any:
    return series_key(source="s", tenant=tenant, platform=platform, error_type=error_type, retry_count=retry)


def discovered(tenant: str = "t1", platform: str = SP, error_type: str = "PARSE_ERROR") -> Any:
    return series_key(source="s", tenant=tenant, platform=platform, error_type=error_type)


def pair(tenant: str = "t1", platform: str = SP) -> Any:
    return series_key(source="s", tenant=tenant, platform=platform)


@pytest.fixture
def core() -> Iterator[Core]:
    yield Core()


# --- gauges -----------------------------------------------------------------------------------


def test_gauges_count_records_per_label_set(core: Core) -> None:
    core.source.records = [
        record("a"),
        record("b"),
        record("c", error_type="TIMEOUT"),
        record("d", platform=SN),
        record("e", tenant="t2", retry=2),
    ]
    assert core.poll() is True
    assert core.series("ingestion_failed_files") == {
        failed(): 2,
        failed(error_type="TIMEOUT"): 1,
        failed(platform=SN): 1,
        failed(tenant="t2", retry="2"): 1,
    }
    assert core.value("ingestion_source_records_scanned") == 5
    assert core.value("ingestion_source_series_dropped") == 0


def test_a_record_repeated_within_one_poll_counts_once(core: Core) -> None:
    core.source.records = [record("a"), record("a", error_type="TIMEOUT")]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(): 1}
    assert core.value("ingestion_source_records_scanned") == 2


@pytest.mark.parametrize(
    ("cap", "retries", "labels"),
    [
        (5, [0, 4, 5, 9], {"0": 1, "4": 1, "5+": 2}),
        (3, [0, 2, 3, 7], {"0": 1, "2": 1, "3+": 2}),
        (1, [0, 1, 2], {"0": 1, "1+": 2}),
        (12, [-1, 11, 12], {"0": 1, "11": 1, "12+": 1}),
    ],
)
def test_retry_count_labels_follow_the_configured_cap(
    cap: int, retries: list[int], labels: dict[str, int]
) -> None:
    core = Core(retry_count_cap=cap)
    core.source.records = [record(f"f{i}", retry=r) for i, r in enumerate(retries)]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(retry=label): n for label, n in labels.items()}


def test_oldest_and_newest_failed_at_per_tenant_and_platform(core: Core) -> None:
    core.source.records = [
        record("a", failed_at=START - 300),
        record("b", failed_at=START - 100, error_type="TIMEOUT"),
        record("c", failed_at=START - 200),
        record("d", platform=SN),  # no failed_at: no timestamps for its pair
    ]
    core.poll()
    assert core.series("ingestion_failed_files_oldest_timestamp_seconds") == {pair(): START - 300}
    assert core.series("ingestion_failed_files_newest_timestamp_seconds") == {pair(): START - 100}


def test_series_beyond_the_cap_are_dropped_and_the_dropped_label_sets_counted() -> None:
    core = Core(max_series_per_source=2)
    core.source.records = [
        record("a"),
        record("b", error_type="TIMEOUT"),
        record("c", error_type="OCR_FAILED", failed_at=START),
        record("d", error_type="OCR_FAILED"),
        record("e", error_type="NOT_FOUND"),
        record("f"),  # a label set already kept still counts at the cap
    ]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(): 2, failed(error_type="TIMEOUT"): 1}
    assert core.value("ingestion_source_series_dropped") == 2
    assert core.value("ingestion_source_records_scanned") == 6
    # A dropped record leaves no trace in the timestamps either.
    assert core.series("ingestion_failed_files_oldest_timestamp_seconds") == {}


def test_the_series_cap_is_exactly_the_configured_number() -> None:
    core = Core(max_series_per_source=3)
    core.source.records = [record(f"f{i}", error_type=f"TYPE_{i}") for i in range(4)]
    core.poll()
    assert len(core.series("ingestion_failed_files")) == 3
    assert core.value("ingestion_source_series_dropped") == 1


def test_label_overrides_replace_the_derived_tenant_and_platform() -> None:
    core = Core(source={"tenant": "acme", "platform": "kb"})
    core.source.records = [record("a"), record("b", tenant="t2", platform=SN)]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(tenant="acme", platform="kb"): 2}


def test_free_text_is_classified_and_configured_rules_come_first() -> None:
    rules = [{"pattern": "(?i)quota", "error_type": "QUOTA_EXCEEDED"}]
    core = Core(classifier={"rules": rules})
    core.source.records = [
        record("a", error_type=None, message="Quota exceeded, request timed out"),
        record("b", error_type="not well formed", message="Request timed out"),
        record("c", error_type="FILE_TOO_LARGE", message="quota"),  # the platform's type wins
    ]
    core.poll()
    assert core.series("ingestion_failed_files") == {
        failed(error_type="QUOTA_EXCEEDED"): 1,
        failed(error_type="TIMEOUT"): 1,
        failed(error_type="FILE_TOO_LARGE"): 1,
    }


# --- discovered and resolved --------------------------------------------------------------------


def test_the_first_successful_poll_is_the_baseline_with_every_counter_at_zero(core: Core) -> None:
    core.source.records = [record("a"), record("b", platform=SN, error_type="TIMEOUT")]
    core.poll()
    assert core.series("ingestion_failed_files_discovered_total") == {
        discovered(): 0,
        discovered(platform=SN, error_type="TIMEOUT"): 0,
    }
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 0, pair(platform=SN): 0}


def test_a_failed_first_poll_leaves_the_baseline_to_the_first_successful_one(core: Core) -> None:
    core.source.error = PollError(Reason.CONNECTION, "refused")
    assert core.poll() is False
    core.source.error = None
    core.source.records = [record("a")]
    core.poll()
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 0}
    core.source.records = [record("a"), record("b")]
    core.poll()
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 1}


def test_new_records_are_discovered_and_gone_ones_resolved_once_each(core: Core) -> None:
    core.source.records = [record("a"), record("b"), record("c", platform=SN)]
    core.poll()
    core.source.records = [
        record("b", retry=1, error_type="TIMEOUT"),  # the same record, retried and retyped
        record("d"),
        record("e", error_type="TIMEOUT"),
        record("f", tenant="t2"),
    ]
    core.poll()
    core.poll()  # nothing changed: nothing more is counted
    assert core.series("ingestion_failed_files_discovered_total") == {
        discovered(): 1,
        discovered(error_type="TIMEOUT"): 1,
        discovered(platform=SN): 0,
        discovered(tenant="t2"): 1,
    }
    assert core.series("ingestion_failed_files_resolved_total") == {
        pair(): 1,
        pair(platform=SN): 1,
        pair(tenant="t2"): 0,
    }
    assert core.series("ingestion_failed_files") == {
        failed(error_type="TIMEOUT", retry="1"): 1,
        failed(error_type="TIMEOUT"): 1,
        failed(): 1,
        failed(tenant="t2"): 1,
    }


def test_discovered_and_resolved_add_up_within_a_poll_and_across_polls(core: Core) -> None:
    core.source.records = [record("a"), record("b"), record("c")]
    core.poll()
    core.source.records = [record("d"), record("e")]
    core.poll()
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 2}
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 3}
    core.source.records = [record("f")]
    core.poll()
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 3}
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 5}


def test_counters_keep_their_series_when_the_records_are_gone(core: Core) -> None:
    core.source.records = [record("a")]
    core.poll()
    core.source.records = []
    core.poll()
    assert core.series("ingestion_failed_files") == {}
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 0}
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 1}


def test_a_partial_poll_counts_the_changes_of_the_part_that_succeeded(core: Core) -> None:
    core.source.records = [record("a1"), record("a2"), record("b1", platform=SN)]
    core.poll()
    core.source.records = [record("a2"), record("a3"), record("a4", error_type="TIMEOUT")]
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    assert core.poll() is False
    assert core.series("ingestion_failed_files_discovered_total") == {
        discovered(): 1,
        discovered(error_type="TIMEOUT"): 1,
        discovered(platform=SN): 0,
    }
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 1, pair(platform=SN): 0}
    assert core.series("ingestion_failed_files") == {
        failed(): 2,
        failed(error_type="TIMEOUT"): 1,
        failed(platform=SN): 1,  # the failed part's record is kept, not resolved
    }
    assert core.value("ingestion_source_up") == 0
    assert core.value("ingestion_source_poll_errors_total", reason="http_error") == 1
    assert core.value("ingestion_source_last_success_timestamp_seconds") == START + 60


def test_a_failed_part_is_kept_across_failed_polls_and_counted_once_it_recovers(core: Core) -> None:
    core.source.records = [record("a"), record("b1", platform=SN), record("b2", platform=SN)]
    core.poll()
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.TIMEOUT, "slow")}
    core.poll()
    core.poll()
    assert core.series("ingestion_failed_files")[failed(platform=SN)] == 2
    assert core.value("ingestion_source_poll_errors_total", reason="timeout") == 2
    core.source.failed_parts = {}
    core.source.records = [record("a"), record("b2", platform=SN), record("b3", platform=SN)]
    assert core.poll() is True
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 0, pair(platform=SN): 1}
    assert core.series("ingestion_failed_files_discovered_total")[discovered(platform=SN)] == 1


def test_a_failed_part_keeps_its_records_timestamps(core: Core) -> None:
    core.source.records = [record("a", failed_at=START - 50), record("b", platform=SN, failed_at=START - 900)]
    core.poll()
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    core.poll()
    assert core.series("ingestion_failed_files_oldest_timestamp_seconds") == {
        pair(): START - 50,
        pair(platform=SN): START - 900,
    }


def test_a_partial_poll_refreshes_the_data_and_the_stale_clock() -> None:
    core = Core(stale_after="10m")
    core.source.records = [record("a"), record("b", platform=SN)]
    core.poll()
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    core.poll(after=400)
    core.source.failed_parts, core.source.error = {}, PollError(Reason.AUTH, "HTTP 401")
    core.poll(after=400)  # 800 s after the first poll, 400 s after the partial one
    assert set(core.series("ingestion_failed_files")) == {failed(), failed(platform=SN)}


# --- failed polls, staleness, health -------------------------------------------------------------


def test_a_failed_poll_keeps_the_series_until_stale_after_then_drops_them() -> None:
    core = Core(stale_after="10m")
    core.source.records = [record("a", failed_at=START)]
    core.poll()
    core.source.error = PollError(Reason.AUTH, "HTTP 401")
    core.poll(after=600)  # exactly stale_after: kept
    assert core.series("ingestion_failed_files") == {failed(): 1}
    assert core.value("ingestion_source_up") == 0
    core.poll(after=1)
    samples = core.samples()
    assert series(samples, "ingestion_failed_files") == {}
    assert series(samples, "ingestion_failed_files_oldest_timestamp_seconds") == {}
    assert series(samples, "ingestion_failed_files_newest_timestamp_seconds") == {}
    # Counters and health stay: they are about the source, not its last result.
    assert series(samples, "ingestion_failed_files_discovered_total") == {discovered(): 0}
    assert samples[("ingestion_source_poll_errors_total", series_key(source="s", reason="auth"))] == 2
    last_success = ("ingestion_source_last_success_timestamp_seconds", series_key(source="s"))
    assert samples[last_success] == START + 60
    assert core.exporter.states["s"].stale


def test_a_success_after_staleness_brings_the_series_back_and_counts_nothing_twice() -> None:
    core = Core(stale_after="5m")
    core.source.records = [record("a"), record("b")]
    core.poll()
    core.source.error = PollError(Reason.CONNECTION, "refused")
    core.poll(after=301)
    assert core.series("ingestion_failed_files") == {}
    core.source.error = None
    core.source.records = [record("a"), record("b"), record("c")]
    assert core.poll() is True
    assert core.series("ingestion_failed_files") == {failed(): 3}
    assert core.series("ingestion_failed_files_discovered_total") == {discovered(): 1}
    assert core.series("ingestion_failed_files_resolved_total") == {pair(): 0}
    assert core.value("ingestion_source_up") == 1
    assert not core.exporter.states["s"].stale


def test_stale_after_defaults_to_three_intervals() -> None:
    core = Core(poll_interval="1m")
    assert core.exporter.states["s"].interval == 60
    core.source.records = [record("a")]
    core.poll()
    core.source.error = PollError(Reason.CONNECTION, "refused")
    core.poll(after=180)
    assert core.series("ingestion_failed_files") == {failed(): 1}
    core.poll(after=1)
    assert core.series("ingestion_failed_files") == {}


def test_up_and_last_success_follow_the_latest_poll(core: Core) -> None:
    assert core.value("ingestion_source_up") is None  # no poll has ended yet
    assert core.value("ingestion_source_last_success_timestamp_seconds") is None
    core.source.takes = 2.0
    core.poll()
    assert core.value("ingestion_source_up") == 1
    assert core.value("ingestion_source_last_success_timestamp_seconds") == START + 62
    core.source.error = PollError(Reason.RATE_LIMITED, "HTTP 429")
    core.poll()
    assert core.value("ingestion_source_up") == 0
    assert core.value("ingestion_source_last_success_timestamp_seconds") == START + 62
    state = core.exporter.states["s"]
    assert (state.last_poll_start, state.last_poll_end) == (START + 122, START + 124)
    assert state.last_error is not None and state.last_error.detail == "HTTP 429"


def test_every_reason_is_exported_from_zero_and_each_failed_poll_counts_once(core: Core) -> None:
    assert {labels: v for labels, v in core.series("ingestion_source_poll_errors_total").items()} == {
        series_key(source="s", reason=reason.value): 0 for reason in Reason
    }
    for reason in (Reason.AUTH, Reason.AUTH, Reason.INVALID_RESPONSE):
        core.source.error = PollError(reason, "x")
        core.poll()
    errors = core.series("ingestion_source_poll_errors_total")
    assert (
        errors[series_key(source="s", reason="auth")] == 2
        and errors[series_key(source="s", reason="invalid_response")] == 1
    )
    assert sum(errors.values()) == 3


def test_a_partial_failure_counts_the_first_failed_part_once() -> None:
    core = Core()
    core.source.failed_parts = {
        "t1/a": PollError(Reason.TIMEOUT, "slow"),
        "t1/b": PollError(Reason.HTTP_ERROR, "HTTP 500"),
    }
    core.poll()
    errors = core.series("ingestion_source_poll_errors_total")
    assert errors[series_key(source="s", reason="timeout")] == 1 and sum(errors.values()) == 1


def test_a_bug_in_a_source_is_counted_as_internal_not_raised(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    core.source.error = KeyError("surprise")
    assert core.poll() is False
    assert core.value("ingestion_source_poll_errors_total", reason="internal") == 1
    state = core.exporter.states["s"]
    assert state.last_error is not None and state.last_error.detail == "KeyError: 'surprise'"
    assert "source s: unexpected error during poll" in caplog.text


async def settle() -> None:
    """Let every callback that is due run (a timer that fired, the task it cancelled, ...)."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_a_poll_past_poll_timeout_is_abandoned_as_timeout() -> None:
    core = Core(poll_timeout="2m")
    core.source.hang = True

    async def scenario() -> bool:
        poll = asyncio.create_task(core.exporter.poll("s"))
        await settle()
        core.clock.advance(119)
        await settle()
        assert not core.source.abandoned  # within poll_timeout: still waiting for the source
        core.clock.advance(2)
        await settle()
        assert core.source.abandoned
        return await poll  # recorded and rendered (a worker thread: no timer to wait for)

    assert core.run(scenario()) is False
    state = core.exporter.states["s"]
    assert state.last_error is not None and state.last_error.reason is Reason.TIMEOUT
    assert state.last_error.detail == "the poll ran past poll_timeout (120s)"
    assert (state.last_poll_start, state.last_poll_end) == (START, START + 121)
    assert core.value("ingestion_source_poll_errors_total", reason="timeout") == 1


def test_the_poll_deadline_is_poll_timeout_from_the_start_of_the_poll() -> None:
    core = Core(poll_timeout="2m")
    seen: list[float] = []

    class Probe(ScriptedSource):
        async def poll(self, out: RecordSink) -> None:
            seen.append(out.deadline)

    core.exporter.lanes["s"].source = Probe(core.exporter.lanes["s"].settings.source, core.clock)
    core.poll(after=60)
    assert seen == [START + 60 + 120]


def test_failed_polls_and_parts_are_logged_with_the_source_and_the_reason(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    core.source.failed_parts = {"t1/x": PollError(Reason.HTTP_ERROR, "HTTP 502")}
    core.source.records = [record("a")]
    core.poll()
    core.source.error = PollError(Reason.AUTH, "HTTP 401")
    core.poll()
    core.source.error = KeyError("surprise")
    core.poll()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "source s: part t1/x failed: http_error: HTTP 502"),
        ("WARNING", "source s: poll failed: auth: HTTP 401"),
        ("ERROR", "source s: unexpected error during poll"),
        ("WARNING", "source s: poll failed: internal: KeyError: 'surprise'"),
    ]
    assert caplog.records[2].exc_info is not None  # the traceback of a bug is kept for its fix


def test_poll_durations_fill_the_histogram(core: Core) -> None:
    for takes in (0.05, 0.3, 7.0, 400.0):
        core.source.takes = takes
        core.poll()
    buckets = {
        dict(labels)["le"]: value
        for labels, value in core.series("ingestion_source_poll_duration_seconds_bucket").items()
    }
    assert buckets == {
        "0.05": 1,
        "0.1": 1,
        "0.25": 1,
        "0.5": 2,
        "1.0": 2,
        "2.5": 2,
        "5.0": 2,
        "10.0": 3,
        "30.0": 3,
        "60.0": 3,
        "120.0": 3,
        "300.0": 3,
        "+Inf": 4,
    }
    assert core.value("ingestion_source_poll_duration_seconds_count") == 4
    assert core.value("ingestion_source_poll_duration_seconds_sum") == pytest.approx(407.35)


def test_poll_all_is_true_only_when_every_source_succeeded_completely() -> None:
    core = Core(names=("s", "other"))
    assert core.poll_all() is True
    core.sources["other"].failed_parts = {"p": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    assert core.poll_all() is False
    core.sources["other"].failed_parts = {}
    core.sources["other"].error = PollError(Reason.AUTH, "HTTP 401")
    assert core.poll_all() is False


@pytest.mark.parametrize("broken", ["s", "other"])
def test_a_failing_source_never_blanks_another(broken: str) -> None:
    core = Core(names=("s", "other"), stale_after="1m")
    for source in core.sources.values():
        source.records = [record("a")]
    core.poll_all()
    working = "other" if broken == "s" else "s"
    core.sources[broken].error = PollError(Reason.CONNECTION, "refused")
    core.poll(after=120, name=broken)
    core.poll(after=0, name=working)
    gauges = series(core.samples(), "ingestion_failed_files")
    assert {dict(labels)["source"] for labels in gauges} == {working}


def test_a_source_not_yet_polled_never_hides_another() -> None:
    core = Core(names=("s", "other"))
    core.sources["other"].records = [record("a")]
    core.poll(name="other")
    gauges = series(core.samples(), "ingestion_failed_files")
    assert {dict(labels)["source"] for labels in gauges} == {"other"}


# --- readiness ----------------------------------------------------------------------------------


def test_ready_once_every_source_has_finished_an_attempt_even_a_failed_one() -> None:
    core = Core(names=("s", "other"))
    assert not core.exporter.ready
    core.source.error = PollError(Reason.AUTH, "HTTP 401")
    core.poll(name="s")
    assert not core.exporter.ready  # "other" has not finished a poll yet
    core.poll(name="other")
    assert core.exporter.ready


def test_ready_only_once_the_polls_outcome_is_on_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from exporter.pipeline import lane as lane_module

    core = Core()
    core.source.records = [record("a")]
    rendering, release = threading.Event(), threading.Event()
    real_render = lane_module.render_lane

    def slow_render(state: Any, now: float) -> Any:
        rendering.set()
        release.wait(10)
        return real_render(state, now)

    monkeypatch.setattr(lane_module, "render_lane", slow_render)

    async def scenario() -> None:
        poll = asyncio.create_task(core.exporter.poll("s"))
        await asyncio.to_thread(rendering.wait, 10)
        # The poll has ended and its state is recorded, but its blocks are not out yet.
        assert core.exporter.states["s"].last_poll_end is not None
        assert not core.exporter.ready
        assert core.series("ingestion_failed_files") == {}
        release.set()
        await poll
        assert core.exporter.ready
        assert core.series("ingestion_failed_files") == {failed(): 1}

    core.run(scenario())


# --- lanes --------------------------------------------------------------------------------------


def test_every_family_header_appears_once_with_each_lanes_samples_in_configuration_order() -> None:
    core = Core(names=("zeta", "alpha"))
    core.sources["zeta"].records = [record("z")]
    core.sources["alpha"].records = [record("a", error_type="TIMEOUT")]
    core.poll_all()
    text = core.exporter.snapshot.text.decode()
    for family in ("ingestion_failed_files", "ingestion_source_up", "ingestion_source_poll_duration_seconds"):
        assert text.count(f"# HELP {family} ") == 1 and text.count(f"# TYPE {family} ") == 1
    gauges = [line for line in text.splitlines() if line.startswith("ingestion_failed_files{")]
    assert [('source="zeta"' in line, 'source="alpha"' in line) for line in gauges] == [
        (True, False),
        (False, True),
    ]
    assert text.index('ingestion_source_info{kind="rezolve",source="zeta"}') < text.index(
        'ingestion_source_info{kind="rezolve",source="alpha"}'
    )


def test_a_poll_renders_only_its_own_lane() -> None:
    core = Core(names=("s", "other"))
    core.poll_all()
    untouched = core.exporter.lanes["other"].blocks
    before = core.exporter.snapshot
    core.source.records = [record("a")]
    core.poll(name="s")
    assert core.exporter.lanes["other"].blocks is untouched
    assert core.exporter.snapshot is not before  # a new snapshot, sharing the other lane's blocks
    assert core.exporter.snapshot.blocks[1] is untouched


def test_the_poll_interval_is_exported_per_source() -> None:
    core = Core(names=("s", "other"), poll_interval="90s")
    assert core.series("ingestion_source_poll_interval_seconds") == {
        series_key(source="s"): 90,
        frozenset({"source": "other"}.items()): 90,
    }


# --- sharding -----------------------------------------------------------------------------------


def test_shard_assignment_is_a_fixed_function_of_source_and_tenant() -> None:
    # sha256 of "source\x1ftenant" taken as a number: the same on every machine, in every release.
    assert [shard_of("s", f"tenant-{i}", 3) for i in range(8)] == SHARDS_OF_8
    assert [shard_of("rezolve-prod", f"tenant-{i}", 3) for i in range(8)] == [2, 1, 0, 1, 1, 2, 1, 2]
    assert [shard_of("s", f"tenant-{i}", 2) for i in range(8)] == SHARDS_OF_8_IN_2
    assert shard_of("a", "b", 1) == 0


SHARDS_OF_8 = [1, 1, 2, 2, 0, 0, 0, 0]
SHARDS_OF_8_IN_2 = [1, 0, 0, 1, 1, 0, 0, 1]


def test_shard_assignment_is_the_same_in_another_process() -> None:
    script = "from exporter.pipeline.shard import shard_of;print([shard_of('s', f'tenant-{i}', 3) for i in range(8)])"
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert out.strip() == str(SHARDS_OF_8)


@pytest.mark.parametrize("total", [2, 3])
def test_records_of_tenants_another_shard_owns_are_read_but_not_counted(total: int) -> None:
    tenants = [f"tenant-{i}" for i in range(8)]
    totals: dict[Any, float] = {}
    for index in range(total):
        core = Core(shard={"index": index, "total": total})
        core.source.records = [record(f"f-{t}", tenant=t) for t in tenants]
        core.poll()
        owned = {t for t in tenants if shard_of("s", t, total) == index}
        gauges = core.series("ingestion_failed_files")
        assert gauges == {failed(tenant=t): 1 for t in owned}
        assert core.value("ingestion_source_records_scanned") == 8
        assert not set(gauges) & set(totals)
        totals.update(gauges)
    assert len(totals) == 8


@pytest.mark.parametrize("configured", [None, "fixed"])
def test_a_source_is_told_which_tenants_its_shard_owns(configured: str | None) -> None:
    core = Core(shard={"index": 1, "total": 3}, source={"tenant": configured} if configured else {})
    seen: list[bool] = []

    class Probe(ScriptedSource):
        async def poll(self, out: RecordSink) -> None:
            seen.extend(out.wants(f"tenant-{i}") for i in range(8))

    core.exporter.lanes["s"].source = Probe(core.exporter.lanes["s"].settings.source, core.clock)
    core.poll()
    if configured is None:
        assert seen == [shard == 1 for shard in SHARDS_OF_8]
    else:  # the configured tenant replaces every derived one, so the answer is the same for all
        assert seen == [shard_of("s", "fixed", 3) == 1] * 8


# --- rendering ----------------------------------------------------------------------------------

GOLDEN_TEXT = """\
# HELP ingestion_failed_files Failure records in the source's latest successful poll.
# TYPE ingestion_failed_files gauge
ingestion_failed_files{error_type="PARSE_ERROR",platform="sharepoint",retry_count="0",source="s",tenant="t1"} 1.0
ingestion_failed_files{error_type="TIMEOUT",platform="sharepoint",retry_count="5+",source="s",tenant="t1"} 1.0
# HELP ingestion_failed_files_discovered_total Distinct failure records first seen since the process started.
# TYPE ingestion_failed_files_discovered_total counter
ingestion_failed_files_discovered_total{error_type="PARSE_ERROR",platform="sharepoint",source="s",tenant="t1"} 0.0
ingestion_failed_files_discovered_total{error_type="TIMEOUT",platform="sharepoint",source="s",tenant="t1"} 1.0
# HELP ingestion_failed_files_resolved_total Failure records present in one successful poll and gone in the next.
# TYPE ingestion_failed_files_resolved_total counter
ingestion_failed_files_resolved_total{platform="sharepoint",source="s",tenant="t1"} 0.0
# HELP ingestion_failed_files_oldest_timestamp_seconds Smallest failed_at among the current failure records.
# TYPE ingestion_failed_files_oldest_timestamp_seconds gauge
ingestion_failed_files_oldest_timestamp_seconds{platform="sharepoint",source="s",tenant="t1"} 1.7649997e+09
# HELP ingestion_failed_files_newest_timestamp_seconds Largest failed_at among the current failure records.
# TYPE ingestion_failed_files_newest_timestamp_seconds gauge
ingestion_failed_files_newest_timestamp_seconds{platform="sharepoint",source="s",tenant="t1"} 1.7649998e+09
# HELP ingestion_source_up 1 if the latest poll succeeded completely, else 0.
# TYPE ingestion_source_up gauge
ingestion_source_up{source="s"} 1.0
# HELP ingestion_source_last_success_timestamp_seconds End of the latest successful poll.
# TYPE ingestion_source_last_success_timestamp_seconds gauge
ingestion_source_last_success_timestamp_seconds{source="s"} 1.76500012e+09
# HELP ingestion_source_poll_duration_seconds Duration of polls.
# TYPE ingestion_source_poll_duration_seconds histogram
ingestion_source_poll_duration_seconds_bucket{le="0.05",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="0.1",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="0.25",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="0.5",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="1.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="2.5",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="5.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="10.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="30.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="60.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="120.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="300.0",source="s"} 2.0
ingestion_source_poll_duration_seconds_bucket{le="+Inf",source="s"} 2.0
ingestion_source_poll_duration_seconds_count{source="s"} 2.0
ingestion_source_poll_duration_seconds_sum{source="s"} 0.0
# HELP ingestion_source_poll_errors_total Failed polls, by reason.
# TYPE ingestion_source_poll_errors_total counter
ingestion_source_poll_errors_total{reason="auth",source="s"} 0.0
ingestion_source_poll_errors_total{reason="timeout",source="s"} 0.0
ingestion_source_poll_errors_total{reason="connection",source="s"} 0.0
ingestion_source_poll_errors_total{reason="http_error",source="s"} 0.0
ingestion_source_poll_errors_total{reason="rate_limited",source="s"} 0.0
ingestion_source_poll_errors_total{reason="invalid_response",source="s"} 0.0
ingestion_source_poll_errors_total{reason="internal",source="s"} 0.0
# HELP ingestion_source_records_scanned Records read in the latest poll.
# TYPE ingestion_source_records_scanned gauge
ingestion_source_records_scanned{source="s"} 2.0
# HELP ingestion_source_series_dropped Label sets dropped by max_series_per_source in the latest poll.
# TYPE ingestion_source_series_dropped gauge
ingestion_source_series_dropped{source="s"} 0.0
# HELP ingestion_source_info One per enabled source.
# TYPE ingestion_source_info gauge
ingestion_source_info{kind="rezolve",source="s"} 1.0
# HELP ingestion_source_poll_interval_seconds The source's configured poll interval.
# TYPE ingestion_source_poll_interval_seconds gauge
ingestion_source_poll_interval_seconds{source="s"} 300.0
# HELP ingestion_exporter_build_info Version of the exporter, the commit it runs from where known, and its Python's version.
# TYPE ingestion_exporter_build_info gauge
ingestion_exporter_build_info{python_version="PYTHON",revision="REVISION",version="VERSION"} 1.0
# HELP ingestion_exporter_config_last_reload_successful 1 if the latest (re)load of the configuration succeeded, else 0.
# TYPE ingestion_exporter_config_last_reload_successful gauge
ingestion_exporter_config_last_reload_successful 1.0
# HELP ingestion_exporter_config_last_reload_success_timestamp_seconds Time of the latest successful (re)load of the configuration.
# TYPE ingestion_exporter_config_last_reload_success_timestamp_seconds gauge
ingestion_exporter_config_last_reload_success_timestamp_seconds 1.765e+09
# HELP ingestion_exporter_shard_ordinal This exporter's shard (shard.index).
# TYPE ingestion_exporter_shard_ordinal gauge
ingestion_exporter_shard_ordinal 0.0
# HELP ingestion_exporter_total_shards How many shards the sources' tenants are split across (shard.total).
# TYPE ingestion_exporter_total_shards gauge
ingestion_exporter_total_shards 1.0
"""


def golden_core() -> Core:
    core = Core()
    core.source.records = [record("a", failed_at=START - 300)]
    core.poll()
    core.source.records = [
        record("a", failed_at=START - 300),
        record("b", error_type="TIMEOUT", retry=7, failed_at=START - 200),
    ]
    core.poll()
    return core


def test_the_text_exposition_is_exactly_the_documented_families() -> None:
    from exporter.build import build_labels

    version, revision, python = build_labels()
    expected = GOLDEN_TEXT.replace("VERSION", version).replace("REVISION", revision).replace("PYTHON", python)
    assert golden_core().exporter.snapshot.text.decode() == expected


def test_the_openmetrics_exposition_has_the_same_samples_and_ends_with_eof() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    snapshot = golden_core().exporter.snapshot
    text = snapshot.openmetrics.decode()
    assert text.endswith("# EOF\n")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }
    assert samples == parse_exposition(snapshot.text.decode())


def test_gzip_of_each_format_is_that_format() -> None:
    import gzip

    snapshot = golden_core().exporter.snapshot
    last = b"# a scrape's last part\n"
    assert gzip.decompress(snapshot.body(False, True).complete(last)) == snapshot.text + last
    assert snapshot.body(False, False).complete(last) == snapshot.text + last
    openmetrics = snapshot.openmetrics.removesuffix(b"# EOF\n") + last + b"# EOF\n"
    assert gzip.decompress(snapshot.body(True, True).complete(last)) == openmetrics
    assert snapshot.body(True, False).complete(last) == openmetrics
    # Each completion starts from the same state: one scrape's last part never leaks into another's.
    body = snapshot.body(True, True)
    assert body.complete(b"") != body.complete(last)
    assert gzip.decompress(body.complete(b"")) == snapshot.openmetrics


def test_a_disabled_source_is_never_polled_and_exports_nothing() -> None:
    core = Core(source={"enabled": False})
    assert core.exporter.states == {} and core.sources == {}
    assert "source=" not in core.exporter.snapshot.text.decode()


# --- redaction ----------------------------------------------------------------------------------


def test_the_exporter_redacts_every_configured_secret() -> None:
    core = Core(source={"token": "s3cr3t-token"})
    assert core.exporter.redactor.scrub("Bearer s3cr3t-token refused") == "Bearer <redacted> refused"


def test_a_secret_inside_another_is_redacted_whole() -> None:
    from exporter.redact import Redactor

    redactor = Redactor(["zz", "aazz", ""])
    assert redactor.scrub("key aazz and zz") == "key <redacted> and <redacted>"
    assert Redactor([]).scrub("nothing to hide") == "nothing to hide"


# --- reload -------------------------------------------------------------------------------------


def settings_of(*names: str, **overrides: Any) -> Any:
    sources = overrides.pop("sources", {})
    document = {
        "sources": [
            {
                "name": name,
                "kind": "rezolve",
                "base_url": "http://127.0.0.1:9",
                "token": f"token-of-{name}",
                "tenants": [{"tenant_id": "t1", "rezolve_domain": "t1.example"}],
                **sources.get(name, {}),
            }
            for name in names
        ],
        **overrides,
    }
    return build_settings(document, {})


def test_a_reload_keeps_unchanged_lanes_and_starts_changed_and_new_ones() -> None:
    core = Core(names=("kept", "changed", "removed"))
    for source in core.sources.values():
        source.records = [record("a")]
    core.poll_all()
    kept, changed, removed = (core.exporter.lanes[n] for n in ("kept", "changed", "removed"))
    same = {"token": "unused"}  # the values Core configures, so that "kept" compares equal
    wanted = settings_of(
        "kept",
        "changed",
        "added",
        sources={"kept": same, "changed": {**same, "timeout": "9s"}, "added": same},
    )
    changes = core.run(core.exporter.apply(wanted))
    assert changes.kept == ("kept",)
    assert [lane.name for lane in changes.started] == ["changed", "added"]
    assert set(changes.stopped) == {changed, removed}
    lanes = core.exporter.lanes
    assert (
        lanes["kept"] is kept
        and lanes["changed"] is not changed
        and list(lanes) == ["kept", "changed", "added"]
    )
    assert len({lane.job_id for lane in lanes.values()} | {changed.job_id}) == 4
    assert all(lane.job_id.startswith(f"{lane.name}#") for lane in lanes.values())
    # The removed source's series are gone at once; the kept one's state is untouched.
    assert {dict(labels)["source"] for labels in core.series("ingestion_source_info")} == {
        "kept",
        "changed",
        "added",
    }
    assert kept.state.result is not None and lanes["changed"].state.result is None
    # A stopped lane polls no more.
    assert core.run(removed.poll()) is False


def test_changed_classifier_rules_restart_every_lane_with_the_new_rules() -> None:
    core = Core()
    core.source.records = [record("a", error_type=None, message="quota reached")]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(error_type="UNKNOWN"): 1}
    rules = {"classifier": {"rules": [{"pattern": "quota", "error_type": "QUOTA_EXCEEDED"}]}}
    changes = core.run(core.exporter.apply(settings_of("s", sources={"s": {"token": "unused"}}, **rules)))
    assert changes.kept == () and [lane.name for lane in changes.started] == ["s"]
    lane = core.exporter.lanes["s"]
    lane.source = ScriptedSource(lane.settings.source, core.clock)
    lane.source.records = [record("a", error_type=None, message="quota reached")]
    core.poll()
    assert core.series("ingestion_failed_files") == {failed(error_type="QUOTA_EXCEEDED"): 1}


def test_a_reload_teaches_the_redactor_the_new_secrets_and_keeps_the_old() -> None:
    core = Core(source={"token": "old-secret"})
    core.run(core.exporter.apply(settings_of("s", sources={"s": {"token": "new-secret"}})))
    assert core.exporter.redactor.scrub("old-secret new-secret") == "<redacted> <redacted>"


def test_reload_outcomes_are_exported() -> None:
    core = Core()

    def reload_gauges() -> tuple[float | None, float | None]:
        samples = core.samples()
        return (
            samples.get(("ingestion_exporter_config_last_reload_successful", frozenset())),
            samples.get(("ingestion_exporter_config_last_reload_success_timestamp_seconds", frozenset())),
        )

    assert reload_gauges() == (1, START)
    core.clock.advance(100)
    core.exporter.record_reload(False)
    assert reload_gauges() == (0, START)
    core.clock.advance(100)
    core.exporter.record_reload(True)
    assert reload_gauges() == (1, START + 200)


# --- stopping -----------------------------------------------------------------------------------


def test_stopping_a_lane_cancels_its_poll_quietly_and_closes_its_source() -> None:
    core = Core()
    core.source.hang = True
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    core.source.aclose = aclose  # type: ignore[method-assign]
    lane = core.exporter.lanes["s"]

    async def scenario() -> bool:
        poll = asyncio.create_task(lane.poll())
        await settle()
        await lane.stop()
        assert core.source.abandoned and closed == [True]
        return await poll

    assert core.run(scenario()) is False
    assert not lane.published  # nothing of the cut poll is kept
    assert core.run(lane.poll()) is False


def test_a_lane_stops_cleanly_before_and_after_a_poll() -> None:
    never = Core().exporter.lanes["s"]
    Core().run(never.stop())
    core = Core()
    assert core.poll() is True
    core.run(core.exporter.aclose())
    assert core.run(core.exporter.lanes["s"].poll()) is False


# --- rendering in chunks ------------------------------------------------------------------------


def test_a_large_family_renders_exactly_as_prometheus_client_renders_it_whole() -> None:
    from prometheus_client.exposition import generate_latest

    from exporter.pipeline import render

    core = Core(max_series_per_source=5000)
    core.source.records = [
        record(f"f{i}", tenant=f"t{i % 7}", platform=f"p{i % 3}", retry=i % 4, error_type=f"TYPE_{i % 101}")
        for i in range(1200)
    ]
    core.poll()
    state = core.exporter.states["s"]
    pauses: list[int] = []
    chunked = render.render_blocks(
        render.lane_families(state, START, lambda: pauses.append(1)), lambda: pauses.append(1)
    )
    whole = render.render_blocks(render.lane_families(state, START))
    assert chunked == whole
    family = next(f for f in render.lane_families(state, START) if f.name == "ingestion_failed_files")
    assert len(family.samples) > 2 * render.CHUNK
    assert chunked["ingestion_failed_files"] == generate_latest(render._Families([family])).split(b"\n", 2)[2]  # type: ignore[arg-type]
    assert len(pauses) >= 2 * (len(family.samples) // render.CHUNK)


def test_sorting_tenant_by_tenant_is_the_order_of_one_sort() -> None:
    from exporter.pipeline.render import _in_order

    keys = {(f"t{i % 5}", f"p{i % 3}", f"e{i % 7}"): i for i in range(300)}
    pauses: list[int] = []
    assert list(_in_order(keys, lambda: pauses.append(1))) == sorted(keys.items())
    assert list(_in_order(keys, None)) == sorted(keys.items())
    assert pauses == []  # fewer items than a chunk


def test_sorting_many_small_tenants_pauses_per_chunk_not_per_tenant() -> None:
    from exporter.pipeline.render import CHUNK, _in_order

    keys = {(f"tenant-{i}", "p", "e"): i for i in range(10_000)}  # one label set each
    pauses: list[int] = []
    assert list(_in_order(keys, lambda: pauses.append(1))) == sorted(keys.items())
    assert len(pauses) == 2 * (len(keys) // CHUNK)  # while grouping, then while yielding


def test_a_lane_render_pauses_every_chunk_in_both_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from exporter.pipeline import render

    core = Core(max_series_per_source=5000)
    # 999 label sets over 4 tenants: the chunk boundaries fall differently for any other count.
    core.source.records = [
        record(
            f"f{i}",
            tenant=f"t{i % 4}",
            platform=f"p{i % 3}",
            retry=i % 4,
            error_type=f"TYPE_{i % 97}",
            failed_at=START - i,
        )
        for i in range(999)
    ]
    core.poll()
    state = core.exporter.states["s"]
    result = state.result
    assert result is not None and len(result.counts) == 999 and len(result.oldest) == 12

    def in_order_pauses(mapping: Any) -> int:
        return 2 * (len(mapping) // render.CHUNK)

    mappings = (state.discovered, state.resolved, result.counts, result.oldest, result.newest)
    building = sum(in_order_pauses(m) for m in mappings)
    families = list(render.lane_families(state, START))
    rendering = sum(-(-len(f.samples) // render.CHUNK) for f in families)
    pauses: list[int] = []
    monkeypatch.setattr(render, "pause_for_scrapes", lambda: pauses.append(1))
    render.render_lane(state, START)
    assert len(pauses) == building + rendering
    counted: list[int] = []
    list(render.lane_families(state, START, lambda: counted.append(1)))
    assert len(counted) == building


# --- label values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a\udcffb", "a\ufffdb"),
        ("x" * (MAX_LABEL_CHARS + 1), "x" * (MAX_LABEL_CHARS - 1) + "\u2026"),
        ("x" * MAX_LABEL_CHARS, "x" * MAX_LABEL_CHARS),
        ("ü" * 3, "ü" * 3),
    ],
)
def test_label_values_are_valid_utf8_and_bounded(value: str, expected: str) -> None:
    assert safe_label(value) == expected


def test_a_lone_surrogate_in_a_tenant_or_identity_fails_no_poll_and_no_shard(core: Core) -> None:
    sharded = Core(shard={"index": 0, "total": 2})
    for each in (core, sharded):
        each.source.records = [record("f\udcff", tenant="t\udcff")]
        assert each.poll() is True
    assert core.series("ingestion_failed_files") == {failed(tenant="t\ufffd"): 1}


def test_every_published_snapshot_is_handed_to_the_listeners_as_it_is_published(core: Core) -> None:
    published: list[Any] = []
    core.exporter.on_publish(published.append)
    core.poll()
    core.source.error = PollError(Reason.TIMEOUT, "slow")
    core.poll()
    assert len(published) == 2 and published[-1] is core.exporter.snapshot
    assert published[0] is not published[1]


def details(core: Core) -> dict[str, tuple[Any, ...]]:
    """Each record's drill-down detail, by id: what /failures serves."""
    from exporter.serving.failures import FailureIndex, Query, search

    page = search(FailureIndex().refresh(core.exporter.states), Query(), everything=True)
    return {row.detail.id: row.detail for row in page.rows}


def test_details_keep_when_each_record_was_first_seen_through_failed_parts(core: Core) -> None:
    core.source.records = [record("a"), record("b", platform=SN)]
    core.poll()  # the baseline: its start
    baseline = START + 60
    assert {i: d[5] for i, d in details(core).items()} == {f"t1/{SP}/a": baseline, f"t1/{SN}/b": baseline}
    core.source.records = [record("a"), record("c")]
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.TIMEOUT, "slow")}
    core.poll()
    assert {i: d[5] for i, d in details(core).items()} == {
        f"t1/{SP}/a": baseline,
        f"t1/{SP}/c": baseline + 60,  # new in this poll
        f"t1/{SN}/b": baseline,  # its part failed: carried over with the counts
    }
    core.source.failed_parts = {}
    core.source.records = [record("c")]
    core.poll()
    assert set(details(core)) == {f"t1/{SP}/c"}  # a and b resolved, with their counts


def test_details_of_a_stale_source_are_not_served_like_its_gauges(core: Core) -> None:
    core.source.records = [record("a")]
    core.poll()
    core.source.error = PollError(Reason.TIMEOUT, "slow")
    core.poll(after=core.exporter.lanes["s"].settings.stale_after + 1)
    assert core.series("ingestion_failed_files") == {} and details(core) == {}


def test_details_are_kept_only_for_counted_records() -> None:
    core = Core(max_series_per_source=1)
    core.source.records = [record("a"), record("b", error_type="TIMEOUT")]
    core.poll()
    assert set(details(core)) == {f"t1/{SP}/a"}  # b's label set is beyond the series cap


def test_no_details_are_kept_when_the_drill_down_is_off() -> None:
    core = Core(failure_details={"enabled": False})
    core.source.records = [record("a")]
    core.poll()
    assert core.exporter.states["s"].result.details == {}  # type: ignore[union-attr]
    assert core.exporter.details_enabled is False


def described(file_id: str, *, name: str, location: str, message: str = "", retry: int = 0) -> FailureRecord:
    return FailureRecord(
        tenant="t1",
        platform=SP,
        identity=("t1", SP, file_id),
        message=message,
        reported_type="PARSE_ERROR",
        retry_count=retry,
        scope=f"t1/{SP}",
        name=name,
        location=location,
    )


def test_details_hold_what_section_9_serves_with_messages_cut_and_folders_shared() -> None:
    core = Core(failure_details={"message_max_chars": 5})
    core.source.records = [
        described("a", name="a.pdf", location="https://x.example/kb/a.pdf", message="abcdefgh", retry=7),
        described("b", name="b.pdf", location="https://x.example/kb/b.pdf", message="abcdefgh"),
        described("c", name="c.pdf", location="elsewhere", message="xy"),
        described("d", name="", location="https://x.example/kb/", message=""),
        described("e", name="e.pdf", location="https://y.example/e.pdf", message="xy"),
    ]
    core.poll()
    seen = START + 60
    got = details(core)
    assert got == {
        f"t1/{SP}/a": (f"t1/{SP}/a", "a.pdf", "https://x.example/kb/", "abcde", 7, seen, True),
        f"t1/{SP}/b": (f"t1/{SP}/b", "b.pdf", "https://x.example/kb/", "abcde", 0, seen, True),
        f"t1/{SP}/c": (f"t1/{SP}/c", "c.pdf", "elsewhere", "xy", 0, seen, False),
        f"t1/{SP}/d": (f"t1/{SP}/d", "", "https://x.example/kb/", "", 0, seen, False),
        f"t1/{SP}/e": (f"t1/{SP}/e", "e.pdf", "https://y.example/", "xy", 0, seen, True),
    }
    # One copy of a repeated message and of a shared folder.
    assert got[f"t1/{SP}/a"].message is got[f"t1/{SP}/b"].message
    assert got[f"t1/{SP}/a"].kept_location is got[f"t1/{SP}/b"].kept_location
    assert [d.location for d in got.values()] == [
        "https://x.example/kb/a.pdf",
        "https://x.example/kb/b.pdf",
        "elsewhere",
        "https://x.example/kb/",
        "https://y.example/e.pdf",
    ]


def test_details_are_cut_at_max_records_also_when_a_failed_part_is_carried_over() -> None:
    core = Core(failure_details={"max_records_per_source": 2})
    core.source.records = [record("a"), record("b", platform=SN)]
    core.poll()
    result = core.exporter.states["s"].result
    assert result is not None and result.details_truncated is False and len(result.details) == 2
    core.source.records = [record("a"), record("c"), record("b", platform=SN)]
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.TIMEOUT, "slow")}
    core.poll()
    result = core.exporter.states["s"].result
    assert result is not None and result.details_truncated
    assert set(details(core)) == {f"t1/{SP}/a", f"t1/{SP}/c"}  # b's carried detail is beyond the cap
    assert sum(core.series("ingestion_failed_files").values()) == 3  # counts are never cut
    core.source.failed_parts = {}
    core.source.records = [record("a")]
    core.poll()
    result = core.exporter.states["s"].result
    assert result is not None and result.details_truncated is False


def test_details_stop_at_max_records_within_one_poll() -> None:
    core = Core(failure_details={"max_records_per_source": 2})
    core.source.records = [record("a"), record("b"), record("c")]
    core.poll()
    assert len(details(core)) == 2 and core.exporter.states["s"].result.details_truncated  # type: ignore[union-attr]


def test_a_carried_record_without_details_gets_none_and_one_beyond_the_series_cap_neither() -> None:
    core = Core(failure_details={"max_records_per_source": 1})
    core.source.records = [record("a"), record("b", platform=SN)]
    core.poll()  # b's detail is beyond the cap
    core.source.records = [record("a")]
    core.source.failed_parts = {f"t1/{SN}": PollError(Reason.TIMEOUT, "slow")}
    core.poll()  # b is carried over, and still has no detail
    assert set(details(core)) == {f"t1/{SP}/a"}

    capped = Core(max_series_per_source=1)
    capped.source.records = [record("b", platform=SN)]
    capped.poll()
    capped.source.records = [record("c")]
    capped.source.failed_parts = {f"t1/{SN}": PollError(Reason.TIMEOUT, "slow")}
    capped.poll()  # c takes the one series; b, carried over, is beyond the cap: not counted, no detail
    assert set(details(capped)) == {f"t1/{SP}/c"}


def test_the_sources_issued_secrets_reach_the_exporters_redactor(core: Core) -> None:
    core.source.secret_issued("a-token-issued-at-run-time")
    assert core.exporter.redactor.scrub("said a-token-issued-at-run-time") == "said <redacted>"


def test_a_reload_sets_whether_failures_are_served_and_the_dashboard_they_link_to() -> None:
    from exporter.config import build_settings
    from exporter.runtime import Exporter

    core = Core()
    assert core.exporter.details_enabled is True and core.exporter.dashboard_url is None
    grafana = "https://grafana.example/d/tenant"
    document = {
        "failure_details": {"enabled": False, "dashboard_url": grafana},
        "sources": [
            {
                "name": "s",
                "kind": "rezolve",
                "base_url": "http://127.0.0.1:9",
                "token": "unused",
                "tenants": [{"tenant_id": "t1", "rezolve_domain": "t1.example"}],
            }
        ],
    }
    assert Exporter(build_settings(document, {})).dashboard_url == grafana
    core.run(core.exporter.apply(build_settings(document, {})))
    assert core.exporter.details_enabled is False and core.exporter.dashboard_url == grafana
    document.pop("failure_details")
    core.run(core.exporter.apply(build_settings(document, {})))
    assert core.exporter.details_enabled is True and core.exporter.dashboard_url is None


def test_a_secret_that_contains_another_is_redacted_whole() -> None:
    from exporter.redact import Redactor

    redactor = Redactor(["password", "password-and-more"])
    redactor.add_issued("token-12345")
    redactor.add_issued("token-12345-longer")
    redactor.add_issued("a-token-12345")
    assert redactor.scrub("password-and-more token-12345-longer a-token-12345 token-12345") == (
        "<redacted> <redacted> <redacted> <redacted>"
    )
    redactor.add_issued("8-chars!")  # the shortest that counts
    redactor.add_issued("7-chars")
    assert redactor.scrub("8-chars! 7-chars") == "<redacted> 7-chars"


def test_only_the_latest_issued_secrets_are_kept() -> None:
    from exporter.redact import ISSUED_KEPT, Redactor

    redactor = Redactor([])
    for n in range(ISSUED_KEPT + 1):
        redactor.add_issued(f"issued-{n:04d}")
    assert redactor.scrub("issued-0000 issued-0001") == "issued-0000 <redacted>"


# --- incremental reads: only what changed, merged into the previous result ----------------------


class ChangingSource(ScriptedSource):
    """A table-like source: each record has the moment it last changed; a poll with ``since``
    sends only those changed at or after it, and says when each changed."""

    def __init__(self, config: Any, clock: Clock) -> None:
        super().__init__(config, clock)
        self.rows: dict[str, tuple[FailureRecord, float]] = {}
        self.asked: list[float | None] = []

    def put(self, row: FailureRecord, changed: float) -> None:
        self.rows[row.identity[-1]] = (row, changed)

    async def poll(self, out: RecordSink) -> None:
        since = out.since
        self.asked.append(since)
        for row, changed in self.rows.values():
            if since is None or changed >= since:
                out.add(row)
                out.changed_at(changed)


class Incremental(Core):
    """A table source, read incrementally, whose rows say when they changed."""

    scripted = ChangingSource

    def __init__(self, reconcile_every: int = 3, overlap: float = 10.0, **settings: Any) -> None:
        self.incremental = {"reconcile_every": reconcile_every, "overlap": overlap}
        super().__init__(**settings)

    def source_document(self, name: str) -> dict[str, Any]:
        from exporter.simulators.table import azurite_connection_string

        return {
            "name": name,
            "kind": "azure_table",
            "connection_string": azurite_connection_string(10002),
            "incremental": self.incremental,
        }

    @property
    def table(self) -> ChangingSource:
        source = self.sources["s"]
        assert isinstance(source, ChangingSource)
        return source

    def result(self) -> Any:
        result = self.exporter.states["s"].result
        assert result is not None
        return result


def test_an_incremental_poll_merges_what_changed_into_the_previous_result() -> None:
    core = Incremental(reconcile_every=3, overlap=10.0)
    core.table.put(record("a", failed_at=START - 30), 100.0)
    core.table.put(record("b", failed_at=START - 20), 200.0)
    core.table.put(record("c", failed_at=START - 10), 300.0)
    assert core.poll()
    first = core.result()
    assert (first.watermark, first.since_full_read, first.scanned) == (300.0, 0, 3)
    core.table.put(record("b", retry=1, failed_at=START - 20), 400.0)  # updated: a new label set
    core.table.put(record("d", failed_at=START - 50), 500.0)  # new
    assert core.poll()
    assert core.table.asked == [None, 290.0]  # the latest change seen, minus the overlap
    second = core.result()
    assert (second.watermark, second.since_full_read, second.scanned) == (500.0, 1, 3)  # c, b, d
    assert core.series("ingestion_failed_files") == {failed(): 3, failed(retry="1"): 1}
    assert (
        core.value(
            "ingestion_failed_files_discovered_total", tenant="t1", platform=SP, error_type="PARSE_ERROR"
        )
        == 1
    )  # d only
    assert core.value("ingestion_failed_files_resolved_total", tenant="t1", platform=SP) == 0
    assert (
        core.value("ingestion_failed_files_oldest_timestamp_seconds", tenant="t1", platform=SP) == START - 50
    )
    assert (
        core.value("ingestion_failed_files_newest_timestamp_seconds", tenant="t1", platform=SP) == START - 10
    )
    assert len(second.details) == 4


def test_a_deleted_record_stays_until_the_next_full_read_which_counts_it_resolved() -> None:
    core = Incremental(reconcile_every=3, overlap=10.0)
    for n, name in enumerate("abc"):
        core.table.put(record(name), 100.0 + n)
    assert core.poll()
    del core.table.rows["c"]  # the latest changed: the full read finds an earlier watermark
    assert core.poll() and core.poll()  # the second and third: incremental
    assert core.series("ingestion_failed_files") == {failed(): 3}
    assert core.value("ingestion_failed_files_resolved_total", tenant="t1", platform=SP) == 0
    assert core.result().since_full_read == 2
    assert core.poll()  # the fourth: a full read again
    assert core.table.asked == [None, 92.0, 92.0, None]
    assert core.series("ingestion_failed_files") == {failed(): 2}
    assert core.value("ingestion_failed_files_resolved_total", tenant="t1", platform=SP) == 1
    assert (core.result().since_full_read, core.result().watermark) == (0, 101.0)


def test_a_record_carried_by_an_incremental_poll_keeps_when_it_was_first_seen() -> None:
    core = Incremental(reconcile_every=5, overlap=1.0)
    core.table.put(record("a"), 100.0)
    assert core.poll()
    first_seen = next(iter(core.result().details.values()))[5]
    core.table.put(record("b"), 200.0)
    assert core.poll(after=60.0)
    details = {detail.id: detail.first_seen for detail in core.result().details.values()}
    assert details == {f"t1/{SP}/a": first_seen, f"t1/{SP}/b": first_seen + 60.0}


def test_nothing_changed_keeps_the_watermark_and_every_record() -> None:
    core = Incremental(reconcile_every=5, overlap=1.0)
    core.table.put(record("a"), 100.0)
    assert core.poll()
    core.table.rows.clear()  # a poll that sees no change (and would not see a deletion)
    assert core.poll()
    result = core.result()
    assert (result.watermark, result.since_full_read, result.scanned) == (100.0, 1, 0)
    assert core.series("ingestion_failed_files") == {failed(): 1}


def test_an_empty_table_is_read_whole_until_a_change_gives_a_watermark() -> None:
    core = Incremental(reconcile_every=5, overlap=1.0)
    assert core.poll() and core.poll()
    core.table.put(record("a"), 100.0)
    assert core.poll() and core.poll()
    assert core.table.asked == [None, None, None, 99.0]


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, None),  # the first poll
        ({"watermark": None, "since_full_read": 0}, None),  # nothing seen to start from
        ({"watermark": 500.0, "since_full_read": 0}, 200.0),
        ({"watermark": 500.0, "since_full_read": 1}, 200.0),
        ({"watermark": 500.0, "since_full_read": 2}, None),  # the third since a full read
    ],
)
def test_where_an_incremental_poll_reads_from(
    previous: dict[str, Any] | None, expected: float | None
) -> None:
    from exporter.configtypes import IncrementalReads
    from exporter.pipeline.lane import incremental_since
    from exporter.pipeline.result import PollResult
    from exporter.sources.azure_table import AzureTableConfig
    from exporter.sources.rezolve import RezolveConfig

    table = AzureTableConfig.model_construct(incremental=IncrementalReads(reconcile_every=3, overlap=300.0))
    result = None if previous is None else PollResult({}, {}, {}, {}, 0, 0, **previous)
    assert incremental_since(table, result) == expected
    # A kind that cannot read incrementally
    assert incremental_since(RezolveConfig.model_construct(), result) is None


def test_the_watermark_is_the_latest_change_whatever_the_order() -> None:
    from exporter.pipeline.aggregate import PollAggregator
    from exporter.pipeline.classify import Classifier

    aggregator = PollAggregator(
        classifier=Classifier(), retry_count_cap=5, max_series=10, owns_tenant=lambda _: True, deadline=0.0
    )
    for moment in (5.0, 9.0, 7.0):
        aggregator.changed_at(moment)
    assert aggregator.finish(None).watermark == 9.0


def test_a_failed_scope_keeps_the_previous_records_of_its_parts_and_no_others() -> None:
    from exporter.pipeline.aggregate import PollAggregator
    from exporter.pipeline.classify import Classifier
    from exporter.records import PollError, Reason

    def aggregator() -> PollAggregator:
        return PollAggregator(
            classifier=Classifier(),
            retry_count_cap=5,
            max_series=10,
            owns_tenant=lambda _: True,
            deadline=0.0,
            keep_identities=True,
        )

    first = aggregator()
    for file_id, scope in [
        ("a", "t1/x > job:1"),
        ("b", "t1/x > job:2"),
        ("c", "t1/xy > job:1"),
        ("d", "t1/x"),
    ]:
        first.add(record(file_id)._replace(scope=scope))
    previous = first.finish(None)
    second = aggregator()
    second.fail("t1/x", PollError(Reason.TIMEOUT, "the list of t1/x"))
    kept = second.finish(previous)
    assert sorted(key[2] for key in (entry.identity for entry in kept.entries.values())) == ["a", "b", "d"]


def test_the_newest_of_a_tenant_and_platform_is_the_latest_of_all_its_label_sets() -> None:
    from exporter.pipeline.aggregate import PollAggregator
    from exporter.pipeline.classify import Classifier

    aggregator = PollAggregator(
        classifier=Classifier(), retry_count_cap=5, max_series=10, owns_tenant=lambda _: True, deadline=0.0
    )
    aggregator.add(record("n", error_type="NOT_FOUND"))  # a label set with no time at all, first
    aggregator.add(record("a", error_type="PARSE_ERROR", failed_at=50.0))
    aggregator.add(record("b", error_type="TIMEOUT", failed_at=10.0))  # a later label set, older
    aggregator.add(record("c", error_type="TIMEOUT", failed_at=30.0))
    result = aggregator.finish(None)
    assert result.newest == {("t1", SP): 50.0} and result.oldest == {("t1", SP): 10.0}


def test_a_render_of_many_tenants_pauses_in_every_family_it_sorts(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter.pipeline import render

    core = Core(max_series_per_source=5000)
    core.source.records = [
        record(f"f{i}", tenant=f"tenant-{i}", failed_at=START - i)._replace(rows=i) for i in range(1200)
    ]
    core.poll()
    state = core.exporter.states["s"]
    counted: list[int] = []
    list(render.lane_families(state, START, lambda: counted.append(1)))
    # discovered, resolved, the counts, the rows, oldest and newest: 1,200 keys each, grouped then
    # yielded
    assert len(counted) == 6 * 2 * (1200 // render.CHUNK)


def test_build_info_names_the_version_the_commit_and_python() -> None:
    import platform
    import subprocess

    from exporter import __version__
    from exporter.build import PACKAGE, build_labels

    found = subprocess.run(
        ["git", "rev-parse", "--show-toplevel", "HEAD"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        check=True,
    )
    top, head = found.stdout.split()
    # Run from the checkout itself, its commit; from a copy inside it (mutation testing's), unknown.
    revision = head if Path(top).resolve() / "exporter" == PACKAGE else ""
    assert build_labels() == (__version__, revision, platform.python_version())


def test_the_shard_is_exported_as_kube_state_metrics_does() -> None:
    samples = Core(shard={"index": 2, "total": 3}).samples()
    assert samples[("ingestion_exporter_shard_ordinal", frozenset())] == 2
    assert samples[("ingestion_exporter_total_shards", frozenset())] == 3


def test_a_reload_shows_the_new_shard() -> None:
    core = Core()
    wanted = settings_of("s", sources={"s": {"token": "unused"}}, shard={"index": 1, "total": 2})
    core.run(core.exporter.apply(wanted))
    core.exporter.record_reload(True)
    samples = core.samples()
    assert samples[("ingestion_exporter_shard_ordinal", frozenset())] == 1
    assert samples[("ingestion_exporter_total_shards", frozenset())] == 2


def test_a_secret_of_eight_characters_is_redacted_inside_words_and_a_shorter_one_only_alone() -> None:
    from exporter.redact import Redactor

    redactor = Redactor(["8chars!!", "7chars!"])
    assert redactor.scrub("x8chars!!x") == "x<redacted>x"
    assert redactor.scrub("a7chars!b 7chars!") == "a7chars!b <redacted>"


def test_rows_are_summed_per_tenant_platform_and_error_type_over_retry_counts() -> None:
    core = Core()
    core.source.records = [
        record("a")._replace(rows=5),
        record("b", retry=2)._replace(rows=7),
        record("c"),  # no row count: counted as a file, not as rows
        record("d", error_type="TIMEOUT")._replace(rows=1),
    ]
    core.poll()
    rows = core.series("ingestion_failed_rows")
    assert rows == {
        series_key(source="s", tenant="t1", platform=SP, error_type="PARSE_ERROR"): 12,
        series_key(source="s", tenant="t1", platform=SP, error_type="TIMEOUT"): 1,
    }


def test_a_polls_warnings_are_logged_once_and_kept_until_the_next_poll(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core()
    core.source.warnings = ["the archive is read-only", "the archive is read-only", "another"]
    with caplog.at_level(logging.WARNING):
        core.poll()
    state = core.exporter.states["s"]
    assert state.warnings == ("the archive is read-only", "another")
    assert [r.getMessage() for r in caplog.records] == [
        "source s: the archive is read-only",
        "source s: another",
    ]
    core.source.warnings = []
    core.source.error = PollError(Reason.HTTP_ERROR, "HTTP 500")
    core.poll()
    assert state.warnings == ()
    core.source.error = None
    core.source.warnings = ["once more"]
    core.poll()
    core.source.warnings = []
    core.poll()
    assert state.warnings == ()


def test_a_failed_parts_records_keep_their_rows() -> None:
    core = Core()
    core.source.records = [record("a")._replace(rows=5), record("b", platform="servicenow")._replace(rows=2)]
    core.poll()
    core.source.failed_parts = {"t1/sharepoint": PollError(Reason.HTTP_ERROR, "HTTP 500")}
    core.source.records = [record("b", platform="servicenow")._replace(rows=3)]
    core.poll()
    result = core.exporter.states["s"].result
    assert result is not None and sorted(result.rows.values()) == [3, 5]
    assert core.series("ingestion_failed_rows") == {
        series_key(source="s", tenant="t1", platform=SP, error_type="PARSE_ERROR"): 5,
        series_key(source="s", tenant="t1", platform="servicenow", error_type="PARSE_ERROR"): 3,
    }


def test_a_revised_record_is_counted_with_its_rows_as_they_are_now() -> None:
    from exporter.pipeline.aggregate import PollAggregator
    from exporter.pipeline.classify import Classifier

    def revised(now: FailureRecord) -> Any:
        out = PollAggregator(
            classifier=Classifier(()),
            retry_count_cap=5,
            max_series=100,
            owns_tenant=lambda t: True,
            deadline=0.0,
        )
        out.add(record("a")._replace(rows=5))
        out.revise(now)
        return out.finish(None)

    assert revised(record("a", retry=1)).failed_rows == {}
    assert dict(revised(record("a", retry=1)._replace(rows=9)).failed_rows) == {("t1", SP, "PARSE_ERROR"): 9}


def test_the_process_metrics_in_each_format() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
    from prometheus_client.parser import text_string_to_metric_families

    from exporter.pipeline.render import render_process

    text = render_process(False).decode()
    openmetrics = render_process(True).decode()
    assert "# EOF" not in openmetrics  # the exposition's own trailer follows
    for families in (text_string_to_metric_families(text), openmetrics_families(openmetrics + "# EOF\n")):
        found = {f.name: f.samples[0].value for f in families}
        assert found["process_cpu_seconds"] > 0 and found["process_open_fds"] >= 3
        assert found["process_start_time_seconds"] > START - 10 * 365 * 86400


@pytest.mark.parametrize("gzipped", [False, True])
def test_an_answer_is_remade_for_a_new_body_or_when_its_process_metrics_are_a_second_old(
    gzipped: bool,
) -> None:
    import gzip

    from exporter.pipeline.render import make_body
    from exporter.serving.endpoints import Completed

    now = [100.0]
    completed = Completed(clock=lambda: now[0], max_age=1.0)
    body = make_body(b"a 1\n", b"# EOF\n", gzipped)
    first = completed.answer(body, True, gzipped)
    text = gzip.decompress(first) if gzipped else first
    assert text.startswith(b"a 1\n# HELP process_") and text.endswith(b"# EOF\n")
    now[0] += 0.9
    assert completed.answer(body, True, gzipped) is first  # the same bytes within the second
    assert completed.answer(body, False, gzipped) is not first  # another format: its own answer
    newer = make_body(b"a 2\n", b"# EOF\n", gzipped)
    remade = completed.answer(newer, True, gzipped)  # a new snapshot's body: at once
    assert (gzip.decompress(remade) if gzipped else remade).startswith(b"a 2\n")
    now[0] += 1.0
    again = completed.answer(newer, True, gzipped)
    assert again is not remade and (gzip.decompress(again) if gzipped else again).startswith(b"a 2\n")


def test_a_secret_inside_a_longer_one_is_redacted_after_it_whatever_their_alphabetical_order() -> None:
    from exporter.redact import Redactor

    # "secret-value" sorts after "a-long-secret-value": only the length decides which goes first.
    assert Redactor(["secret-value", "a-long-secret-value"]).scrub("[a-long-secret-value]") == "[<redacted>]"


def test_the_failures_index_hands_a_lanes_patterns_on_to_its_next_result(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.serving import failures

    index = failures.FailureIndex()
    grouped = failures.Query(group_by="message")
    core.source.records = [record("a", message="Timed out after 30 s")]
    core.poll()
    [first] = index.refresh(core.exporter.states)
    assert index.refresh(core.exporter.states) == [first]  # no new result, no new index
    failures.group([first], grouped)
    worked: list[str] = []
    real = failures.message_pattern
    monkeypatch.setattr(failures, "message_pattern", lambda message: worked.append(message) or real(message))
    core.source.records = [record("a", message="Timed out after 30 s"), record("b", message="Gone")]
    core.poll()
    [second] = index.refresh(core.exporter.states)
    assert second is not first
    assert [(g["key"], g["count"]) for g in failures.group([second], grouped).items()] == [
        ("Gone", 1),
        ("Timed out after <n> s", 1),
    ]
    assert worked == ["Gone"]
