"""The metrics (docs/reference.md, Counting) as exposition bytes, the kube-state-metrics way: a
lane renders its own samples when its poll ends, and a scrape only joins every lane's block under
each family's header, once per family. Sample lines are the same in both formats; only the headers differ."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from prometheus_client import ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from exporter.build import build_labels
from exporter.pipeline.state import DURATION_BUCKETS, SourceState, shown
from exporter.records import Reason

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
GZIP_LEVEL = 3  # a third of level 6's time for 12 % more bytes (docs/performance.md)

SOURCE = ("source",)
TENANT_PLATFORM = ("source", "tenant", "platform")


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of docs/reference.md, Counting: its type, name, help and label names."""

    kind: type[GaugeMetricFamily] | type[CounterMetricFamily] | type[HistogramMetricFamily]
    name: str
    help: str
    labels: tuple[str, ...]

    def empty(self) -> Any:
        """A fresh family with no samples (a prometheus_client *MetricFamily)."""
        return self.kind(self.name, self.help, labels=list(self.labels))


FAILED = Family(
    GaugeMetricFamily,
    "ingestion_failed_files",
    "Failure records in the source's latest successful poll.",
    ("source", "tenant", "platform", "error_type", "retry_count"),
)
FAILED_ROWS = Family(
    GaugeMetricFamily,
    "ingestion_failed_rows",
    "Rows (records inside files or batches) the current failure records stand for, where the "
    "platform reports it.",
    ("source", "tenant", "platform", "error_type"),
)
DISCOVERED = Family(
    CounterMetricFamily,
    "ingestion_failed_files_discovered",
    "Distinct failure records first seen since the process started.",
    ("source", "tenant", "platform", "error_type"),
)
RESOLVED = Family(
    CounterMetricFamily,
    "ingestion_failed_files_resolved",
    "Failure records present in one successful poll and gone in the next.",
    TENANT_PLATFORM,
)
OLDEST = Family(
    GaugeMetricFamily,
    "ingestion_failed_files_oldest_timestamp_seconds",
    "Smallest failed_at among the current failure records.",
    TENANT_PLATFORM,
)
NEWEST = Family(
    GaugeMetricFamily,
    "ingestion_failed_files_newest_timestamp_seconds",
    "Largest failed_at among the current failure records.",
    TENANT_PLATFORM,
)
UP = Family(
    GaugeMetricFamily, "ingestion_source_up", "1 if the latest poll succeeded completely, else 0.", SOURCE
)
LAST_SUCCESS = Family(
    GaugeMetricFamily,
    "ingestion_source_last_success_timestamp_seconds",
    "End of the latest successful poll.",
    SOURCE,
)
DURATION = Family(
    HistogramMetricFamily, "ingestion_source_poll_duration_seconds", "Duration of polls.", SOURCE
)
ERRORS = Family(
    CounterMetricFamily, "ingestion_source_poll_errors", "Failed polls, by reason.", ("source", "reason")
)
SCANNED = Family(
    GaugeMetricFamily, "ingestion_source_records_scanned", "Records read in the latest poll.", SOURCE
)
DROPPED = Family(
    GaugeMetricFamily,
    "ingestion_source_series_dropped",
    "Label sets dropped by max_series_per_source in the latest poll.",
    SOURCE,
)
INFO = Family(GaugeMetricFamily, "ingestion_source_info", "One per enabled source.", ("source", "kind"))
INTERVAL = Family(
    GaugeMetricFamily,
    "ingestion_source_poll_interval_seconds",
    "The source's configured poll interval.",
    SOURCE,
)
BUILD = Family(
    GaugeMetricFamily,
    "ingestion_exporter_build_info",
    "Version of the exporter, the commit it runs from where known, and its Python's version.",
    ("version", "revision", "python_version"),
)
RELOAD_OK = Family(
    GaugeMetricFamily,
    "ingestion_exporter_config_last_reload_successful",
    "1 if the latest (re)load of the configuration succeeded, else 0.",
    (),
)
RELOAD_AT = Family(
    GaugeMetricFamily,
    "ingestion_exporter_config_last_reload_success_timestamp_seconds",
    "Time of the latest successful (re)load of the configuration.",
    (),
)
# As kube-state-metrics names them: an alert compares the shards up with the shards there are.
SHARD_ORDINAL = Family(
    GaugeMetricFamily,
    "ingestion_exporter_shard_ordinal",
    "This exporter's shard (shard.index).",
    (),
)
TOTAL_SHARDS = Family(
    GaugeMetricFamily,
    "ingestion_exporter_total_shards",
    "How many shards the sources' tenants are split across (shard.total).",
    (),
)
STATE_WRITTEN = Family(
    GaugeMetricFamily,
    "ingestion_exporter_state_last_write_success_timestamp_seconds",
    "Time of the latest complete write of a source's state to state_dir.",
    (),
)
STATE_WRITE_ERRORS = Family(
    CounterMetricFamily,
    "ingestion_exporter_state_write_errors",
    "Writes of a source's state to state_dir that failed.",
    (),
)

# The exposition's order: every lane's families, then the exporter's own.
LANE_FAMILIES: tuple[Family, ...] = (
    FAILED,
    FAILED_ROWS,
    DISCOVERED,
    RESOLVED,
    OLDEST,
    NEWEST,
    UP,
    LAST_SUCCESS,
    DURATION,
    ERRORS,
    SCANNED,
    DROPPED,
    INFO,
    INTERVAL,
)
EXPORTER_FAMILIES: tuple[Family, ...] = (
    BUILD,
    RELOAD_OK,
    RELOAD_AT,
    SHARD_ORDINAL,
    TOTAL_SHARDS,
    STATE_WRITTEN,
    STATE_WRITE_ERRORS,
)
FAMILIES = LANE_FAMILIES + EXPORTER_FAMILIES
# Families that only some setups have samples of (state_dir; a platform that reports rows): left
# out entirely, headers too, where none has.
OPTIONAL_FAMILIES = frozenset({FAILED_ROWS, STATE_WRITTEN, STATE_WRITE_ERRORS})

# One lane's (or the exporter's) sample lines, per family name; absent families have none.
Blocks = Mapping[str, bytes]


class _Families:
    """A prometheus_client collector over metric families that are already built."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _without_headers(rendered: bytes) -> bytes:
    """The sample lines of one family as prometheus_client renders it (HELP and TYPE first)."""
    return rendered.split(b"\n", 2)[2]


# Samples rendered between two pauses of a render (see render_blocks).
CHUNK = 500
PAUSE_SECONDS = 0.0002


def _chunks(family: Metric) -> Iterator[Metric]:
    for start in range(0, len(family.samples), CHUNK):
        part = Metric(family.name, family.documentation, family.type)
        part.samples = family.samples[start : start + CHUNK]
        yield part


def render_blocks(families: Iterable[Metric], pause: Callable[[], None] | None = None) -> Blocks:
    """Sample lines per family, rendered (and escaped) by prometheus_client's text encoder.

    With ``pause``, the render stops briefly every CHUNK samples: rendering in a worker thread
    holds the GIL, and a pause is when the event loop's thread takes it to answer scrapes,
    instead of waiting for the interpreter's switch interval at every step of each scrape.
    """
    blocks = {}
    for family in families:
        parts = []
        for part in _chunks(family):
            parts.append(_without_headers(generate_latest(_Families([part]))))
            if pause is not None:
                pause()
        if parts:
            blocks[family.name] = b"".join(parts)
    return blocks


def pause_for_scrapes() -> None:
    """A moment in which a worker thread leaves the GIL to the event loop (see render_blocks)."""
    time.sleep(PAUSE_SECONDS)


def _headers(encode: Callable[[Any], bytes]) -> dict[str, bytes]:
    """Each family's HELP and TYPE lines in one format (OpenMetrics' trailer left out)."""
    return {f.name: encode(_Families([f.empty()])).removesuffix(b"# EOF\n") for f in FAMILIES}


TEXT_HEADERS = _headers(generate_latest)
OPENMETRICS_HEADERS = _headers(openmetrics.generate_latest)


K = TypeVar("K", bound=tuple[str, ...])
V = TypeVar("V")


def _in_order(items: Mapping[K, V], pause: Callable[[], None] | None) -> Iterator[tuple[K, V]]:
    """A mapping's items sorted by key, pausing every CHUNK items. Sorted per tenant (the keys'
    first element) and then tenant by tenant: the same order as one sort, without one long
    uninterruptible sort of every key."""
    by_tenant: dict[str, list[tuple[K, V]]] = {}
    for count, item in enumerate(items.items(), 1):
        by_tenant.setdefault(item[0][0], []).append(item)
        if pause is not None and count % CHUNK == 0:
            pause()
    emitted = 0
    for tenant in sorted(by_tenant):
        for item in sorted(by_tenant[tenant]):
            yield item
            emitted += 1
            # Every CHUNK items, not every tenant: thousands of small tenants would otherwise
            # pause thousands of times (a 2,000-tenant source spent most of its render asleep).
            if pause is not None and emitted % CHUNK == 0:
                pause()


def lane_families(
    state: SourceState, now: float, pause: Callable[[], None] | None = None
) -> Iterator[Metric]:
    """One source's samples of every lane family, its counters as they are shown at ``now``."""
    name = state.name
    families = {f.name: f.empty() for f in LANE_FAMILIES}
    discovered, resolved = families[DISCOVERED.name], families[RESOLVED.name]
    for triple, value in _in_order(state.discovered, pause):
        discovered.add_metric([name, *triple], shown(value, state.held.get(triple), now))
    for pair, value in _in_order(state.resolved, pause):
        resolved.add_metric([name, *pair], value)
    result = state.result
    if result is not None and not state.stale:
        for labels, count in _in_order(result.counts, pause):
            families[FAILED.name].add_metric([name, *labels], count)
        for triple, rows in _in_order(result.failed_rows, pause):
            families[FAILED_ROWS.name].add_metric([name, *triple], rows)
        for pair, ts in _in_order(result.oldest, pause):
            families[OLDEST.name].add_metric([name, *pair], ts)
        for pair, ts in _in_order(result.newest, pause):
            families[NEWEST.name].add_metric([name, *pair], ts)
    if state.up is not None:
        families[UP.name].add_metric([name], 1 if state.up else 0)
    if state.last_success is not None:
        families[LAST_SUCCESS.name].add_metric([name], state.last_success)
    cumulative, buckets = 0, []
    for bound, count in zip(DURATION_BUCKETS, state.duration_buckets, strict=True):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", state.duration_count))
    families[DURATION.name].add_metric([name], buckets, state.duration_sum)
    for reason in Reason:
        families[ERRORS.name].add_metric([name, reason.value], state.errors[reason])
    if result is not None:
        families[SCANNED.name].add_metric([name], result.scanned)
        families[DROPPED.name].add_metric([name], result.dropped)
    families[INFO.name].add_metric([name, state.kind], 1)
    families[INTERVAL.name].add_metric([name], state.interval)
    return iter(families.values())


def render_lane(state: SourceState, now: float) -> Blocks:
    """A lane's blocks: done when its poll ends (and when a held increment is due), in a worker
    thread, touching no other lane."""
    return render_blocks(lane_families(state, now, pause_for_scrapes), pause_for_scrapes)


@dataclass(frozen=True, slots=True)
class StateWrites:
    """With ``state_dir``: how the writes of the sources' states went."""

    errors: int = 0
    last_success: float | None = None


def render_exporter(
    reload_successful: bool,
    reload_success_at: float | None,
    state_writes: StateWrites | None = None,
    *,
    shard: tuple[int, int] = (0, 1),
) -> Blocks:
    """The exporter's own families: its build, the state of its configuration, its shard and,
    with ``state_dir``, the writes of the sources' states."""
    build, ok, at = BUILD.empty(), RELOAD_OK.empty(), RELOAD_AT.empty()
    build.add_metric(list(build_labels()), 1)
    ok.add_metric([], 1 if reload_successful else 0)
    if reload_success_at is not None:
        at.add_metric([], reload_success_at)
    ordinal, total = SHARD_ORDINAL.empty(), TOTAL_SHARDS.empty()
    ordinal.add_metric([], shard[0])
    total.add_metric([], shard[1])
    families = [build, ok, at, ordinal, total]
    if state_writes is not None:
        written, errors = STATE_WRITTEN.empty(), STATE_WRITE_ERRORS.empty()
        if state_writes.last_success is not None:
            written.add_metric([], state_writes.last_success)
        errors.add_metric([], state_writes.errors)
        families += [written, errors]
    return render_blocks(families)


# The exporter's own process (CPU, memory, file descriptors, start time), as prometheus-client
# reads it from /proc: fresh at every scrape, so never part of a snapshot.
_PROCESS = ProcessCollector(registry=None)


def render_process(as_openmetrics: bool) -> bytes:
    """The ``process_*`` families now, whole (headers included), in one format without its trailer."""
    encode: Callable[[Any], bytes] = openmetrics.generate_latest if as_openmetrics else generate_latest
    return encode(_Families(list(_PROCESS.collect()))).removesuffix(b"# EOF\n")


@dataclass(frozen=True)
class Body:
    """A snapshot's exposition in one format and encoding, all but its last part: the process
    metrics, which ``complete`` adds at each scrape. Gzipped, it is the compressor's output so far
    and its state: a scrape compresses only the last part, on a copy of that state, and the
    answer is one gzip stream (a scraper that reads only the first of several would lose data)."""

    start: bytes
    trailer: bytes
    compressor: Any = None  # zlib's compressor after ``start``, when gzipped

    def complete(self, last: bytes) -> bytes:
        if self.compressor is None:
            return self.start + last + self.trailer
        compressor = self.compressor.copy()
        end: bytes = compressor.compress(last + self.trailer) + compressor.flush()
        return self.start + end


def make_body(content: bytes, trailer: bytes, gzipped: bool) -> Body:
    if not gzipped:
        return Body(content, trailer)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip's framing
    return Body(compressor.compress(content), trailer, compressor)


@dataclass(frozen=True)
class Snapshot:
    """The exposition at one moment: the current blocks of every lane, then the exporter's.
    Replaced (not changed) whenever a lane publishes; bytes are joined and compressed on first use."""

    blocks: Sequence[Blocks]

    def _join(self, headers: Mapping[str, bytes], trailer: bytes) -> bytes:
        parts = []
        for family in FAMILIES:
            samples = [block[family.name] for block in self.blocks if family.name in block]
            if samples or family not in OPTIONAL_FAMILIES:
                parts.append(headers[family.name])
                parts.extend(samples)
        parts.append(trailer)
        return b"".join(parts)

    @cached_property
    def text(self) -> bytes:
        return self._join(TEXT_HEADERS, b"")

    @cached_property
    def openmetrics(self) -> bytes:
        return self._join(OPENMETRICS_HEADERS, b"# EOF\n")

    def body(self, as_openmetrics: bool, gzipped: bool) -> Body:
        """What a scrape of this format and encoding is served, less the process metrics. Made
        once per snapshot (O(all series): a worker thread's work)."""
        if as_openmetrics:
            return make_body(self.openmetrics.removesuffix(b"# EOF\n"), b"# EOF\n", gzipped)
        return make_body(self.text, b"", gzipped)
