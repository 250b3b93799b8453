"""A source's lane: its source, its aggregation, its state and its own rendered blocks.

A poll runs the source into a fresh aggregator, records the outcome in the lane's state, renders
the lane's blocks off the event loop and only then publishes them; with a state store, it then
writes the state. A counter increment held back at a series' birth is shown by a render of its
own when it is due. Nothing here reads another lane, and nothing outside writes this one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.configtypes import SourceConfig
from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.pipeline.persist import StateStore, settings_fingerprint
from exporter.pipeline.render import Blocks, pause_for_scrapes, render_lane
from exporter.pipeline.result import PollResult
from exporter.pipeline.state import SourceState
from exporter.records import PollError, Reason
from exporter.sources.base import Source

log = logging.getLogger(__name__)
_serials = itertools.count(1)


@dataclass(frozen=True)
class LaneSettings:
    """Everything that decides what a lane counts. Equal settings on reload: the lane is kept."""

    source: SourceConfig  # validated and frozen, so comparable
    interval: float
    stale_after: float
    poll_timeout: float
    retry_count_cap: int
    max_series: int
    shard_index: int
    shard_total: int
    rules: tuple[tuple[str, str], ...]
    details: DetailLimits | None = None  # None: the drill-down is off

    @property
    def name(self) -> str:
        return self.source.name


def incremental_since(config: SourceConfig, previous: PollResult | None) -> float | None:
    """Where an incremental source's next poll reads from; None for a full read: the first poll,
    every ``reconcile_every``-th, and any poll with no change seen yet to start from."""
    incremental = config.incremental_reads()
    if incremental is None or previous is None or previous.watermark is None:
        return None
    if previous.since_full_read + 1 >= incremental.reconcile_every:
        return None
    return float(previous.watermark - incremental.overlap)


class Lane:
    """One source, polled one poll at a time; ``blocks`` are what /metrics shows of it."""

    def __init__(
        self,
        settings: LaneSettings,
        source: Source[Any],
        *,
        classifier: Classifier,
        owns_tenant: Callable[[str], bool],
        publish: Callable[[], None],
        clock: Callable[[], float] = time.time,
        birth_delay: float,
        store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self._classifier = classifier
        self._owns_tenant = owns_tenant
        self._publish = publish
        self._clock = clock
        self._store = store
        self.fingerprint = settings_fingerprint(settings)
        self.state = SourceState(
            name=settings.name,
            kind=settings.source.kind,
            interval=settings.interval,
            stale_after=settings.stale_after,
            birth_delay=birth_delay,
        )
        self.blocks: Blocks = render_lane(self.state, clock())
        # True once a poll's outcome is in the published blocks (/readyz).
        self.published = False
        self._running: asyncio.Task[bool] | None = None
        self._stopped = False
        # The state is changed (a poll's outcome recorded, held increments released) and read (a
        # render, a write to the store) in worker threads: one at a time.
        self._state_lock = asyncio.Lock()
        self._release: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._unsaved = False
        # Names this lane's scheduler job: a changed source's new lane gets a job of its own.
        self.job_id = f"{settings.name}#{next(_serials)}"

    @property
    def name(self) -> str:
        return self.settings.name

    async def poll(self) -> bool:
        """Poll the source once; True if it succeeded completely. A poll cut short by ``stop``
        ends quietly: the lane is being discarded, and nothing of the poll is kept."""
        if self._stopped:
            return False
        self._running = asyncio.ensure_future(self._poll())
        try:
            return await self._running
        except asyncio.CancelledError:
            if self._stopped:
                return False
            raise
        finally:
            self._running = None

    def resume(self) -> None:
        """At start, with a state store: go on from the source's saved state if it can be
        resumed (its counters, records and first_seen)."""
        saved = self._store.load(self.name, self.fingerprint) if self._store is not None else None
        if saved is not None:
            now = self._clock()
            saved.restore(self.state, now)
            self.blocks = render_lane(self.state, now)

    async def stop(self) -> None:
        """No more polls: the one in flight is cancelled, then the source's connections closed."""
        self._stopped = True
        if self._release is not None:
            self._release.cancel()
        for task in (self._running, self._releasing):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        await self.source.aclose()

    async def save(self) -> None:
        """Write the state to the store, if it changed since it was last written (at shutdown)."""
        async with self._state_lock:
            await self._save()

    async def _save(self) -> None:
        store = self._store
        if store is None or not self._unsaved or self.state.result is None:
            return
        try:
            await asyncio.to_thread(store.save, self.state, self.fingerprint, pause_for_scrapes)
        except OSError as exc:
            store.failed(self.name, exc)
        else:
            self._unsaved = False
            store.written(self._clock())
        self._publish()

    async def _render(self) -> None:
        """Render and publish the lane's blocks, then wait for the next held increment."""
        # Rendering is O(this lane's series): off the event loop, so other lanes' I/O and every
        # scrape go on meanwhile; the state lock keeps the state still while the thread reads it.
        self.blocks = await asyncio.to_thread(render_lane, self.state, self._clock())
        self._publish()
        if self._release is not None:
            self._release.cancel()
        due = self.state.next_release()
        self._release = (
            asyncio.get_running_loop().call_later(max(due - self._clock(), 0.0), self._release_due)
            if due is not None and not self._stopped
            else None
        )

    def _release_due(self) -> None:
        self._release = None
        self._releasing = asyncio.ensure_future(self._render_released())

    async def _render_released(self) -> None:
        async with self._state_lock:
            self.state.release(self._clock())
            await self._render()

    async def _poll(self) -> bool:
        name, timeout = self.name, self.settings.poll_timeout
        config = self.settings.source
        started = self._clock()
        previous = self.state.result
        aggregator = PollAggregator(
            since=incremental_since(config, previous),
            classifier=self._classifier,
            retry_count_cap=self.settings.retry_count_cap,
            max_series=self.settings.max_series,
            owns_tenant=self._owns_tenant,
            deadline=asyncio.get_running_loop().time() + timeout,
            tenant=config.tenant,
            platform=config.platform,
            details=self.settings.details,
            earlier=previous.details if previous is not None else None,
            seen_at=started,
            keep_identities=self._store is not None,
        )
        error: PollError | None = None
        try:
            async with asyncio.timeout(timeout):
                await self.source.poll(aggregator)
        except TimeoutError:
            error = PollError(Reason.TIMEOUT, f"the poll ran past poll_timeout ({timeout:g}s)")
        except PollError as exc:
            error = exc
        except Exception as exc:  # the boundary: a bug in a source is counted, not fatal
            log.exception("source %s: unexpected error during poll", name)
            error = PollError(Reason.INTERNAL, f"{type(exc).__name__}: {exc}")
        ended = self._clock()
        async with self._state_lock:
            if error is None:
                self.state.record_result(
                    aggregator.finish(self.state.result),
                    aggregator.failures,
                    started,
                    ended,
                    tuple(aggregator.warnings),
                )
                self._unsaved = True
                for scope, part_error in aggregator.failures.items():
                    log.warning("source %s: part %s failed: %s", name, scope, part_error)
                for warning in aggregator.warnings:
                    log.warning("source %s: %s", name, warning)
            else:
                self.state.record_failure(error, started, ended)
                log.warning("source %s: poll failed: %s", name, error)
            await self._render()
            self.published = True
            await self._save()
        return error is None and not aggregator.failures
