"""Runs polls: one source, one poll at a time, its outcome recorded and the snapshot re-rendered."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from exporter.aggregate import PollAggregator
from exporter.classify import Classifier
from exporter.config import Settings
from exporter.records import PollError, Reason
from exporter.snapshot import Snapshot, render
from exporter.sources import AnySourceConfig, build_source
from exporter.sources.base import Source
from exporter.sources.http import poll_deadline
from exporter.state import SourceState

log = logging.getLogger(__name__)


def shard_of(source: str, tenant: str, total: int) -> int:
    """The shard that owns (source, tenant): a hash that is the same on every machine."""
    digest = hashlib.sha256(f"{source}\x1f{tenant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % total


class Exporter:
    """The configured sources, their states and the snapshot that /metrics serves."""

    def __init__(
        self,
        settings: Settings,
        source_factory: Callable[[AnySourceConfig], Source[Any]] = build_source,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redactor = settings.redactor()
        self._clock = clock
        self.classifier = Classifier((r.pattern, r.error_type) for r in settings.classifier.rules)
        self.configs = {c.name: c for c in settings.enabled_sources()}
        self.sources = {name: source_factory(c) for name, c in self.configs.items()}
        self.states = {
            name: SourceState(
                name=name,
                kind=c.kind,
                interval=settings.interval_of(c),
                stale_after=settings.stale_after_of(c),
            )
            for name, c in self.configs.items()
        }
        self._render_lock = threading.Lock()
        self.snapshot: Snapshot = render(list(self.states.values()))

    @property
    def ready(self) -> bool:
        return all(state.attempted for state in self.states.values())

    def owns(self, source: str, tenant: str) -> bool:
        shard = self.settings.shard
        return shard.total == 1 or shard_of(source, tenant, shard.total) == shard.index

    async def poll(self, name: str) -> bool:
        """Poll one source once; True if it succeeded completely."""
        config, source, state = self.configs[name], self.sources[name], self.states[name]
        timeout = self.settings.poll_timeout
        aggregator = PollAggregator(
            classifier=self.classifier,
            retry_count_cap=self.settings.retry_count_cap,
            max_series=self.settings.max_series_per_source,
            owns_tenant=lambda tenant: self.owns(name, tenant),
            tenant=config.tenant,
            platform=config.platform,
        )
        started = self._clock()
        error: PollError | None = None
        deadline = poll_deadline.set(asyncio.get_running_loop().time() + timeout)
        try:
            async with asyncio.timeout(timeout):
                await source.poll(aggregator)
        except TimeoutError:
            error = PollError(Reason.TIMEOUT, f"the poll ran past poll_timeout ({timeout:g}s)")
        except PollError as exc:
            error = exc
        except Exception as exc:  # the boundary: a bug in a source is counted, not fatal
            log.exception("source %s: unexpected error during poll", name)
            error = PollError(Reason.INTERNAL, f"{type(exc).__name__}: {exc}")
        finally:
            poll_deadline.reset(deadline)
        ended = self._clock()
        if error is None:
            state.record_result(aggregator.finish(state.result), aggregator.failures, started, ended)
            for scope, part_error in aggregator.failures.items():
                log.warning("source %s: part %s failed: %s", name, scope, part_error)
        else:
            state.record_failure(error, started, ended)
            log.warning("source %s: poll failed: %s", name, error)
        self.rerender()
        return error is None and not aggregator.failures

    async def poll_all(self) -> bool:
        """Poll every source once, concurrently; True if every one succeeded completely."""
        outcomes = await asyncio.gather(*(self.poll(name) for name in self.configs))
        return all(outcomes)

    def rerender(self) -> None:
        with self._render_lock:
            self.snapshot = render(list(self.states.values()))

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()
