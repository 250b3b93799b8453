"""The running exporter: one lane per enabled source, and the snapshot of their blocks that
/metrics serves. It builds the lanes from the settings and swaps the snapshot when a lane
publishes; polling, counting and rendering happen in the lanes."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exporter.config import Settings
from exporter.configtypes import SourceConfig
from exporter.pipeline.aggregate import DetailLimits
from exporter.pipeline.classify import Classifier
from exporter.pipeline.lane import Lane, LaneSettings
from exporter.pipeline.persist import StateStore
from exporter.pipeline.render import Blocks, Snapshot, StateWrites, render_exporter
from exporter.pipeline.shard import tenant_owner
from exporter.pipeline.state import SourceState
from exporter.redact import Redactor
from exporter.sources import build_source
from exporter.sources.base import Source

SourceFactory = Callable[[SourceConfig], Source[Any]]

# A poll makes hundreds of thousands of short-lived objects (records, their tuples). At CPython's
# default first threshold (700 allocations) a poll of 100,000 records ran 520 collections, and
# the full ones held the event loop for 60 to 130 ms each, in the middle of the poll's fan-out.
# Every 10,000 allocations, the collector takes a third of that CPU (docs/performance.md,
# "Garbage collection"); cycles are still found, a few thousand objects later.
GC_THRESHOLDS = (10_000, 10, 10)


def tune_garbage_collection() -> None:
    """The collector's thresholds for a process that polls: set once, by the program."""
    gc.set_threshold(*GC_THRESHOLDS)


def lane_settings(settings: Settings) -> dict[str, LaneSettings]:
    """What each enabled source's lane is built from, in configuration order."""
    rules = tuple((r.pattern, r.error_type) for r in settings.classifier.rules)
    wanted = settings.failure_details
    details = (
        DetailLimits(wanted.max_records_per_source, wanted.message_max_chars) if wanted.enabled else None
    )
    return {
        config.name: LaneSettings(
            source=config,
            interval=settings.interval_of(config),
            stale_after=settings.stale_after_of(config),
            poll_timeout=settings.poll_timeout,
            retry_count_cap=settings.retry_count_cap,
            max_series=settings.max_series_per_source,
            shard_index=settings.shard.index,
            shard_total=settings.shard.total,
            rules=rules,
            details=details,
        )
        for config in settings.enabled_sources()
    }


@dataclass(frozen=True, slots=True)
class Changes:
    """What applying a configuration did to the lanes, by source name."""

    kept: tuple[str, ...]
    started: tuple[Lane, ...]  # new sources, and changed ones started afresh
    stopped: tuple[Lane, ...]  # removed sources, and the old lanes of changed ones


class Exporter:
    """The lanes of the configured sources and the snapshot that /metrics serves."""

    def __init__(
        self,
        settings: Settings,
        source_factory: SourceFactory = build_source,
        clock: Callable[[], float] = time.time,
        redactor: Redactor | None = None,
    ) -> None:
        self.redactor = redactor or settings.redactor()
        self.details_enabled = settings.failure_details.enabled
        self.dashboard_url = settings.failure_details.dashboard_url
        self._source_factory = source_factory
        self._clock = clock
        self._rules = tuple((r.pattern, r.error_type) for r in settings.classifier.rules)
        self._classifier = Classifier(self._rules)
        self._birth_delay = settings.counter_birth_delay
        self._shard = (settings.shard.index, settings.shard.total)
        self.store: StateStore | None = None
        if settings.state_dir is not None:
            self.store = StateStore(settings.state_dir, settings.state_max_age, clock)
            self.store.remove_leftovers()
        self.lanes: dict[str, Lane] = {
            name: self._build_lane(wanted) for name, wanted in lane_settings(settings).items()
        }
        for lane in self.lanes.values():
            lane.resume()
        self._reload_successful, self._reload_success_at = True, clock()
        self._state_writes = self._current_state_writes()
        self._own_blocks = self._render_own()
        self.snapshot = self._current_snapshot()
        self._listeners: list[Callable[[Snapshot], None]] = []

    def on_publish(self, listener: Callable[[Snapshot], None]) -> None:
        """Call ``listener`` with every new snapshot, on the event loop, as it is published."""
        self._listeners.append(listener)

    def _build_lane(self, wanted: LaneSettings) -> Lane:
        source = self._source_factory(wanted.source)
        source.secret_issued = self.redactor.add_issued
        return Lane(
            wanted,
            source,
            classifier=self._classifier,
            owns_tenant=tenant_owner(wanted.name, wanted.shard_index, wanted.shard_total),
            publish=self._publish,
            clock=self._clock,
            birth_delay=self._birth_delay,
            store=self.store,
        )

    def _current_state_writes(self) -> StateWrites | None:
        return None if self.store is None else self.store.writes

    def _render_own(self) -> Blocks:
        return render_exporter(
            self._reload_successful, self._reload_success_at, self._state_writes, shard=self._shard
        )

    def _current_snapshot(self) -> Snapshot:
        return Snapshot((*(lane.blocks for lane in self.lanes.values()), self._own_blocks))

    def _publish(self) -> None:
        writes = self._current_state_writes()
        if writes != self._state_writes:  # a lane wrote its state, or failed to
            self._state_writes = writes
            self._own_blocks = self._render_own()
        # O(lanes): the snapshot only refers to each lane's current blocks.
        self.snapshot = self._current_snapshot()
        for listener in self._listeners:
            listener(self.snapshot)

    @property
    def states(self) -> Mapping[str, SourceState]:
        return {name: lane.state for name, lane in self.lanes.items()}

    @property
    def ready(self) -> bool:
        """Every lane has published the outcome of one finished poll (README, HTTP endpoints)."""
        return all(lane.published for lane in self.lanes.values())

    async def poll(self, name: str) -> bool:
        """Poll one source once; True if it succeeded completely."""
        return await self.lanes[name].poll()

    async def poll_all(self) -> bool:
        """Poll every source once, concurrently; True if every one succeeded completely."""
        outcomes = await asyncio.gather(*(lane.poll() for lane in self.lanes.values()))
        return all(outcomes)

    async def apply(self, settings: Settings) -> Changes:
        """A reloaded configuration (docs/reference.md, Command line): a source whose lane
        settings are unchanged keeps its lane (state, counters, health); a new or changed one gets
        a fresh lane (its first poll is its baseline); a removed one is stopped and its series
        disappear."""
        rules = tuple((r.pattern, r.error_type) for r in settings.classifier.rules)
        if rules != self._rules:
            self._rules, self._classifier = rules, Classifier(rules)
        self._shard = (settings.shard.index, settings.shard.total)  # shown with the reload's outcome
        self.redactor.add(settings.secret_values())
        self.details_enabled = settings.failure_details.enabled
        self.dashboard_url = settings.failure_details.dashboard_url
        self._birth_delay = settings.counter_birth_delay
        lanes: dict[str, Lane] = {}
        kept: list[str] = []
        started: list[Lane] = []
        for name, wanted in lane_settings(settings).items():
            current = self.lanes.get(name)
            if current is not None and current.settings == wanted:
                current.state.birth_delay = self._birth_delay
                lanes[name] = current
                kept.append(name)
            else:
                lanes[name] = self._build_lane(wanted)
                started.append(lanes[name])
        retired = [lane for name, lane in self.lanes.items() if lanes.get(name) is not lane]
        self.lanes = lanes
        self._publish()
        for lane in retired:
            await lane.stop()
        return Changes(tuple(kept), tuple(started), tuple(retired))

    def record_reload(self, successful: bool) -> None:
        """The outcome of a (re)load, for ``ingestion_exporter_config_last_reload_*``."""
        self._reload_successful = successful
        if successful:
            self._reload_success_at = self._clock()
        self._own_blocks = self._render_own()
        self._publish()

    async def aclose(self) -> None:
        """Stop every lane: polls in flight are cancelled, connections closed; then, with a
        state store, every state not yet written is written."""
        await asyncio.gather(*(lane.stop() for lane in self.lanes.values()))
        await asyncio.gather(*(lane.save() for lane in self.lanes.values()))
