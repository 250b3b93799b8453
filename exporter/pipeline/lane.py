"""A source's lane: its source, its aggregation, its state and its own rendered blocks.

A poll runs the source into a fresh aggregator, records the outcome in the lane's state, renders
the lane's blocks off the event loop and only then publishes them. Nothing here reads another
lane, and nothing outside writes this one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exporter.pipeline.aggregate import DetailLimits, PollAggregator, PollResult
from exporter.pipeline.classify import Classifier
from exporter.pipeline.render import Blocks, render_lane
from exporter.pipeline.state import SourceState
from exporter.records import PollError, Reason
from exporter.sources.base import Source

log = logging.getLogger(__name__)
_serials = itertools.count(1)


@dataclass(frozen=True)
class LaneSettings:
    """Everything that decides what a lane counts. Equal settings on reload: the lane is kept."""

    source: Any  # the source's validated configuration (frozen, so comparable)
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
        return str(self.source.name)


def incremental_since(config: Any, previous: PollResult | None) -> float | None:
    """Where an incremental source's next poll reads from; None for a full read: the first poll,
    every ``reconcile_every``-th, and any poll with no change seen yet to start from."""
    incremental = getattr(config, "incremental", None)
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
    ) -> None:
        self.settings = settings
        self.source = source
        self._classifier = classifier
        self._owns_tenant = owns_tenant
        self._publish = publish
        self._clock = clock
        self.state = SourceState(
            name=settings.name,
            kind=settings.source.kind,
            interval=settings.interval,
            stale_after=settings.stale_after,
        )
        self.blocks: Blocks = render_lane(self.state)
        # True once a poll's outcome is in the published blocks (/readyz).
        self.published = False
        self._running: asyncio.Task[bool] | None = None
        self._stopped = False
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

    async def stop(self) -> None:
        """No more polls: the one in flight is cancelled, then the source's connections closed."""
        self._stopped = True
        running = self._running
        if running is not None:
            running.cancel()
            await asyncio.wait([running])
        await self.source.aclose()

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
        if error is None:
            self.state.record_result(
                aggregator.finish(self.state.result), aggregator.failures, started, ended
            )
            for scope, part_error in aggregator.failures.items():
                log.warning("source %s: part %s failed: %s", name, scope, part_error)
        else:
            self.state.record_failure(error, started, ended)
            log.warning("source %s: poll failed: %s", name, error)
        # Rendering is O(this lane's series): off the event loop, so other lanes' I/O and every
        # scrape go on meanwhile. Only this poll writes this lane's state, so the thread reads it
        # undisturbed.
        self.blocks = await asyncio.to_thread(render_lane, self.state)
        self._publish()
        self.published = True
        return error is None and not aggregator.failures
