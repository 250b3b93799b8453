"""The metrics of SPEC section 4, rendered once per change and served as bytes."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from exporter import __version__
from exporter.records import Reason
from exporter.state import DURATION_BUCKETS, SourceState

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

SOURCE = ["source"]
TENANT_PLATFORM = ["source", "tenant", "platform"]


class StateCollector:
    """A prometheus_client collector that reads the sources' states (no long-lived metrics)."""

    def __init__(self, states: Sequence[SourceState]) -> None:
        self._states = states

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._failure_families()
        yield from self._health_families()
        build = GaugeMetricFamily(
            "ingestion_exporter_build_info", "Version of the exporter.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build

    def _failure_families(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily(
            "ingestion_failed_files",
            "Failure records in the source's latest successful poll.",
            labels=["source", "tenant", "platform", "error_type", "retry_count"],
        )
        discovered = CounterMetricFamily(
            "ingestion_failed_files_discovered",
            "Distinct failure records first seen since the process started.",
            labels=["source", "tenant", "platform", "error_type"],
        )
        resolved = CounterMetricFamily(
            "ingestion_failed_files_resolved",
            "Failure records present in one successful poll and gone in the next.",
            labels=TENANT_PLATFORM,
        )
        oldest = GaugeMetricFamily(
            "ingestion_failed_files_oldest_timestamp_seconds",
            "Smallest failed_at among the current failure records.",
            labels=TENANT_PLATFORM,
        )
        newest = GaugeMetricFamily(
            "ingestion_failed_files_newest_timestamp_seconds",
            "Largest failed_at among the current failure records.",
            labels=TENANT_PLATFORM,
        )
        for state in self._states:
            name = state.name
            for (tenant, platform, error_type), value in sorted(state.discovered.items()):
                discovered.add_metric([name, tenant, platform, error_type], value)
            for (tenant, platform), value in sorted(state.resolved.items()):
                resolved.add_metric([name, tenant, platform], value)
            result = state.result
            if result is None or state.stale:
                continue
            for labels, count in sorted(result.counts.items()):
                failed.add_metric([name, *labels], count)
            for pair, ts in sorted(result.oldest.items()):
                oldest.add_metric([name, *pair], ts)
            for pair, ts in sorted(result.newest.items()):
                newest.add_metric([name, *pair], ts)
        yield from (failed, discovered, resolved, oldest, newest)

    def _health_families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ingestion_source_up",
            "1 if the latest poll succeeded completely, else 0.",
            labels=SOURCE,
        )
        last_success = GaugeMetricFamily(
            "ingestion_source_last_success_timestamp_seconds",
            "End of the latest successful poll.",
            labels=SOURCE,
        )
        duration = HistogramMetricFamily(
            "ingestion_source_poll_duration_seconds", "Duration of polls.", labels=SOURCE
        )
        errors = CounterMetricFamily(
            "ingestion_source_poll_errors", "Failed polls, by reason.", labels=["source", "reason"]
        )
        scanned = GaugeMetricFamily(
            "ingestion_source_records_scanned", "Records read in the latest poll.", labels=SOURCE
        )
        dropped = GaugeMetricFamily(
            "ingestion_source_series_dropped",
            "Label sets dropped by max_series_per_source in the latest poll.",
            labels=SOURCE,
        )
        info = GaugeMetricFamily(
            "ingestion_source_info", "One per enabled source.", labels=["source", "kind"]
        )
        for state in self._states:
            name = state.name
            info.add_metric([name, state.kind], 1)
            if state.up is not None:
                up.add_metric([name], 1 if state.up else 0)
            if state.last_success is not None:
                last_success.add_metric([name], state.last_success)
            cumulative, buckets = 0, []
            for bound, count in zip(DURATION_BUCKETS, state.duration_buckets, strict=True):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", state.duration_count))
            duration.add_metric([name], buckets, state.duration_sum)
            for reason in Reason:
                errors.add_metric([name, reason.value], state.errors[reason])
            if state.result is not None:
                scanned.add_metric([name], state.result.scanned)
                dropped.add_metric([name], state.result.dropped)
        yield from (up, last_success, duration, errors, scanned, dropped, info)


@dataclass(frozen=True)
class Snapshot:
    """The exposition as bytes, in both formats; replaced whole when any source changes."""

    text: bytes
    openmetrics: bytes

    @cached_property
    def text_gzip(self) -> bytes:
        return gzip.compress(self.text, compresslevel=6)

    @cached_property
    def openmetrics_gzip(self) -> bytes:
        return gzip.compress(self.openmetrics, compresslevel=6)


def render(states: Sequence[SourceState]) -> Snapshot:
    collector = StateCollector(states)
    return Snapshot(
        text=generate_latest(collector),
        openmetrics=openmetrics.generate_latest(collector),  # type: ignore[no-untyped-call]
    )
