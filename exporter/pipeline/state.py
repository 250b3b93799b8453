"""What the exporter knows of each source between polls: results, counters, health."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from dataclasses import dataclass, field

from exporter.pipeline.result import PollResult
from exporter.records import PollError, Reason

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# Per counter series: when the increments that came with its birth are shown, and how many.
# Per (tenant, platform, error_type) born with increments: when they are shown, and how many.
# Only discovered series are: a (tenant, platform) and its resolved series are born, at 0, in the
# poll that first shows its records, and none of them can be resolved before a later poll.
Held = dict[tuple[str, str, str], tuple[float, int]]


def shown(value: int, held: tuple[float, int] | None, now: float) -> int:
    """A counter's value as /metrics shows it at ``now``: its birth's increments are held back
    until their moment (docs/reference.md, "Counters born at zero")."""
    if held is not None and now < held[0]:
        return value - held[1]
    return value


@dataclass
class SourceState:
    """One source's state; only its own poller writes it, between renders."""

    name: str
    kind: str
    interval: float
    stale_after: float
    result: PollResult | None = None
    result_at: float | None = None
    stale: bool = False
    up: bool | None = None
    last_poll_start: float | None = None
    last_poll_end: float | None = None
    last_success: float | None = None
    last_error: PollError | None = None
    # What the latest poll warned of without failing (docs/reference.md, Platforms: AEP's fallback).
    warnings: tuple[str, ...] = ()
    discovered: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    resolved: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: dict[Reason, int] = field(default_factory=lambda: dict.fromkeys(Reason, 0))
    duration_buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    duration_sum: float = 0.0
    duration_count: int = 0
    # A counter series is first shown at 0, and what came with its birth this much later:
    # rate() and increase() ignore a series' first sample.
    birth_delay: float = 0.0
    held: Held = field(default_factory=dict)

    def record_result(
        self,
        result: PollResult,
        failures: dict[str, PollError],
        started: float,
        ended: float,
        warnings: tuple[str, ...] = (),
    ) -> None:
        """A poll that read at least part of the source; failures lists the parts that failed."""
        self._count_changes(self.result, result, ended)
        self.result, self.result_at, self.stale = result, ended, False
        self.warnings = warnings
        if failures:
            self._record_failed(next(iter(failures.values())))
        else:
            self.up, self.last_success, self.last_error = True, ended, None
        self._record_duration(started, ended)

    def record_failure(self, error: PollError, started: float, ended: float) -> None:
        self._record_failed(error)
        self.warnings = ()
        self._record_duration(started, ended)
        if self.result_at is not None and ended - self.result_at > self.stale_after:
            self.stale = True

    def _record_failed(self, error: PollError) -> None:
        self.up, self.last_error = False, error
        self.errors[error.reason] += 1

    def _record_duration(self, started: float, ended: float) -> None:
        elapsed = max(ended - started, 0.0)
        self.last_poll_start, self.last_poll_end = started, ended
        index = bisect.bisect_left(DURATION_BUCKETS, elapsed)
        if index < len(DURATION_BUCKETS):
            self.duration_buckets[index] += 1
        self.duration_sum += elapsed
        self.duration_count += 1

    def release(self, now: float) -> None:
        """Forget the held increments that are shown by ``now``."""
        held = self.held
        for key in [key for key, (at, _) in held.items() if at <= now]:
            del held[key]

    def next_release(self) -> float | None:
        """The next moment a held increment is due to be shown, if any is held."""
        return min((at for at, _ in self.held.values()), default=None)

    def _count_changes(self, previous: PollResult | None, current: PollResult, now: float) -> None:
        """Discovered and resolved records; the first result is the baseline (counts stay 0).
        A series born in this poll holds back what it counted until ``now + birth_delay``."""
        discovered, resolved = self.discovered, self.resolved
        # A Counter keeps insertion order: the series born in this poll are those after these.
        known_discovered = len(discovered)
        for tenant, platform, error_type, _ in current.counts:
            discovered[(tenant, platform, error_type)] += 0
            resolved[(tenant, platform)] += 0
        if previous is not None:
            # Set differences of the keys, in C: most records are in both polls.
            for key in current.entries.keys() - previous.entries.keys():
                discovered[current.entries[key].labels[:3]] += 1
            for key in previous.entries.keys() - current.entries.keys():
                labels = previous.entries[key].labels
                resolved[(labels[0], labels[1])] += 1
        self.release(now)
        if self.birth_delay > 0:
            release = now + self.birth_delay
            for born in itertools.islice(discovered, known_discovered, None):
                if discovered[born] > 0:
                    self.held[born] = (release, discovered[born])
