"""Counters born at zero: a new discovered or resolved series is first shown at 0, and what came
with its birth ``counter_birth_delay`` later, by a render of its own (no poll needed). Driven on
the controlled clock of the core tests: time moves only when the test moves it."""

from __future__ import annotations

import asyncio
from typing import Any

from exporter.config import build_settings
from exporter.pipeline.state import SourceState, shown
from tests.test_core import Core, record

DELAY = 120.0


def births(**settings: Any) -> Core:
    return Core(counter_birth_delay=DELAY, **settings)


def discovered(core: Core, error_type: str = "ACCESS_DENIED", tenant: str = "t1") -> float | None:
    return core.value(
        "ingestion_failed_files_discovered_total", tenant=tenant, platform="sharepoint", error_type=error_type
    )


async def settle() -> None:
    """Let every timer that is due fire, and whatever it started finish."""
    for _ in range(3):
        await asyncio.sleep(0)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others)


def access_denied(*ids: str) -> list[Any]:
    return [record(i, error_type="ACCESS_DENIED") for i in ids]


def test_a_new_series_is_shown_at_zero_then_at_its_count_after_the_delay_and_not_before() -> None:
    core = births()
    core.source.records = [record("p1")]
    core.poll()  # the baseline: PARSE_ERROR only
    core.source.records = [record("p1"), *access_denied("a1", "a2", "a3")]

    async def scenario() -> None:
        await core.exporter.poll("s")
        assert discovered(core) == 0
        # The gauges show the records at once.
        assert (
            core.value(
                "ingestion_failed_files",
                tenant="t1",
                platform="sharepoint",
                error_type="ACCESS_DENIED",
                retry_count="0",
            )
            == 3
        )
        core.clock.advance(DELAY - 1)
        await settle()
        assert discovered(core) == 0
        core.clock.advance(2)
        await settle()
        assert discovered(core) == 3

    core.run(scenario())


def test_a_resolved_series_is_born_at_zero_with_its_records_so_its_first_resolution_shows_at_once() -> None:
    core = births()
    core.poll()
    core.source.records = [record("a1", tenant="t2")]
    core.poll(after=1)
    # Born with t2's first records, at 0; nothing of t2 can be resolved in the poll that shows it.
    assert core.value("ingestion_failed_files_resolved_total", tenant="t2", platform="sharepoint") == 0
    core.source.records = []
    core.poll(after=1)
    assert core.value("ingestion_failed_files_resolved_total", tenant="t2", platform="sharepoint") == 1


def test_held_increments_are_shown_from_the_moment_they_are_due() -> None:
    state = SourceState(name="s", kind="rezolve", interval=60, stale_after=180, birth_delay=DELAY)
    state.held[("t1", "sharepoint", "ACCESS_DENIED")] = (1000.0, 3)
    assert shown(5, (1000.0, 3), 999.9) == 2
    assert shown(5, (1000.0, 3), 1000.0) == 5
    state.release(999.9)
    assert state.next_release() == 1000.0
    state.release(1000.0)
    assert (state.held, state.next_release()) == ({}, None)


def test_a_delay_under_a_second_is_kept_to_by_the_lanes_own_render() -> None:
    core = Core(counter_birth_delay="500ms")
    core.poll()
    core.source.records = access_denied("a1")

    async def scenario() -> None:
        await core.exporter.poll("s")
        assert discovered(core) == 0
        core.clock.advance(0.6)
        await settle()
        assert discovered(core) == 1

    core.run(scenario())


def test_a_delay_of_one_second_holds_a_birth_for_one_second() -> None:
    core = Core(counter_birth_delay="1s")
    core.poll()
    core.source.records = access_denied("a1")
    core.poll()
    assert discovered(core) == 0
    core.poll(after=1)
    assert discovered(core) == 1


def test_later_increments_of_a_shown_series_are_shown_at_once() -> None:
    core = births()
    core.poll()
    core.source.records = access_denied("a1", "a2", "a3")

    async def scenario() -> None:
        await core.exporter.poll("s")
        assert discovered(core) == 0
        core.clock.advance(30)
        core.source.records = access_denied("a1", "a2", "a3", "a4", "a5")
        await core.exporter.poll("s")
        assert discovered(core) == 2  # already shown at 0: the new ones at once, the birth's held
        core.clock.advance(DELAY - 30 + 1)
        await settle()
        assert discovered(core) == 5
        core.source.records = access_denied("a1", "a2", "a3", "a4", "a5", "a6")
        await core.exporter.poll("s")
        assert discovered(core) == 6

    core.run(scenario())


def test_a_series_born_at_the_baseline_holds_nothing_and_counts_at_once() -> None:
    core = births()
    core.source.records = access_denied("a1")
    core.poll()
    assert discovered(core) == 0
    assert core.exporter.states["s"].next_release() is None
    core.source.records = access_denied("a1", "a2")
    core.poll(after=1)
    assert discovered(core) == 1


def test_a_resolved_record_of_a_shown_series_is_shown_at_once() -> None:
    core = births()
    core.source.records = access_denied("a1", "a2")
    core.poll()
    core.source.records = access_denied("a1")
    core.poll(after=1)
    assert core.value("ingestion_failed_files_resolved_total", tenant="t1", platform="sharepoint") == 1


def test_a_zero_delay_shows_a_new_series_count_at_once() -> None:
    core = Core(counter_birth_delay="0s")
    core.poll()
    core.source.records = access_denied("a1", "a2")
    core.poll()
    assert discovered(core) == 2
    assert core.exporter.states["s"].next_release() is None


def test_a_series_born_just_before_a_reload_still_gets_its_held_increments() -> None:
    core = births()
    # Unchanged source (its lane is kept); the new delay applies to series born from now on.
    document = {"counter_birth_delay": "10m", "sources": [core.source_document("s")]}
    core.poll()
    core.source.records = access_denied("a1", "a2", "a3")

    async def scenario() -> None:
        lane = core.exporter.lanes["s"]
        await core.exporter.poll("s")
        core.clock.advance(DELAY / 2)
        changes = await core.exporter.apply(build_settings(document, {}))
        assert changes.kept == ("s",) and core.exporter.lanes["s"] is lane
        await settle()
        assert discovered(core) == 0
        core.clock.advance(DELAY / 2 + 1)
        await settle()
        assert discovered(core) == 3
        core.source.records = [
            *access_denied("a1", "a2", "a3"),
            record("b1", tenant="t2", error_type="ACCESS_DENIED"),
        ]
        await core.exporter.poll("s")
        assert discovered(core, tenant="t2") == 0
        core.clock.advance(DELAY + 1)
        await settle()
        assert discovered(core, tenant="t2") == 0  # born under the new delay
        core.clock.advance(600)
        await settle()
        assert discovered(core, tenant="t2") == 1

    core.run(scenario())


def test_a_stopped_lane_renders_nothing_more_when_its_held_increments_fall_due() -> None:
    core = births()
    core.poll()
    core.source.records = access_denied("a1")

    async def scenario() -> None:
        await core.exporter.poll("s")
        lane = core.exporter.lanes["s"]
        blocks = lane.blocks
        await core.exporter.aclose()
        core.clock.advance(DELAY + 1)
        await settle()
        assert lane.blocks is blocks

    core.run(scenario())
