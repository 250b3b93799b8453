"""Benchmarks of the exporter's hot paths, each beside its baseline in the same run.

    make bench            # or: python bench/run.py [--records N] [--series N]

1. scrape: HTTP scrapes over loopback of our server, which serves the snapshot rendered once
   per poll, vs prometheus_client's own HTTP server rendering the same collector per scrape;
   then the serving benchmarks of serving.py (concurrent scrapers, per-lane renders).
2. classification: the memoized classifier, vs the same rules evaluated for every record.
3. aggregation memory: the same records counted as they are made (the streaming aggregator keeps
   labels, timestamp and a digest per identity), vs kept in a list and counted afterwards.
Figures go to docs/performance.md by hand; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import functools
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import serving

from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.pipeline.render import Snapshot, lane_families, render_exporter, render_lane
from exporter.pipeline.state import SourceState
from exporter.records import FailureRecord
from exporter.serving.server import WebServer

MESSAGES = [
    "Access to the path 'C:\\Data\\HR\\file-{n}.docx' is denied.",
    "File exceeds maximum size limit of 50MB",
    "Unable to parse document content",
    "The process cannot access the file because it is being used by another process.",
    "Request throttled by Microsoft Graph (429 Too Many Requests)",
    "Embedding service rejected chunk {n}",
    "Something odd happened on item {n}",
]


def iter_records(count: int, tenants: int, seed: int = 1) -> Iterator[FailureRecord]:
    """``count`` records with realistic repetition, made one at a time as a source's parser makes them."""
    rng = random.Random(seed)
    for i in range(count):
        message = rng.choice(MESSAGES).format(n=rng.randrange(50))
        yield FailureRecord(
            tenant=f"tenant-{rng.randrange(tenants)}",
            platform=rng.choice(["sharepoint", "servicenow", "confluence"]),
            identity=(f"tenant-{i % tenants}", f"file-{i}"),
            message=message,
            retry_count=rng.randrange(8),
            failed_at=1.7e9 + rng.random() * 86400,
        )


def records(count: int, tenants: int, seed: int = 1) -> list[FailureRecord]:
    return list(iter_records(count, tenants, seed))


def aggregate(
    items: Iterable[FailureRecord],
    classifier: Classifier,
    details: DetailLimits | None = None,
    max_series: int = 10**9,
) -> Any:
    aggregator = PollAggregator(
        classifier=classifier,
        retry_count_cap=5,
        max_series=max_series,
        owns_tenant=lambda _: True,
        deadline=float("inf"),
        details=details,
    )
    for record in items:
        aggregator.add(record)
    return aggregator.finish(None)


def timed(action: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of ``repeat`` runs, by ``clock`` (wall time unless told otherwise)."""
    samples = []
    for _ in range(repeat):
        gc.collect()
        start = clock()
        action()
        samples.append(clock() - start)
    return statistics.median(samples)


def bench_scrape(series_per_source: int, sources: int, scrapes: int) -> list[tuple[str, str, str]]:
    import httpx
    from prometheus_client import CollectorRegistry, start_http_server

    from exporter.config import build_settings
    from exporter.runtime import Exporter

    states = []
    tenants = max(1, series_per_source // 126)  # 3 platforms x 7 types x 6 retry buckets each
    for s in range(sources):
        state = SourceState(name=f"source-{s}", kind="rezolve", interval=300, stale_after=900)
        state.record_result(
            aggregate(records(series_per_source * 4, tenants, seed=s), Classifier()), {}, 0, 1
        )
        states.append(state)
    series = sum(len(s.result.counts) for s in states if s.result)

    ours = Exporter(build_settings({}, {}))
    ours.snapshot = Snapshot(
        [*(render_lane(state, time.time()) for state in states), render_exporter(True, 0.0)]
    )
    loop = serving.Loop()
    server = WebServer(ours, "127.0.0.1", 0)
    loop.run(server.start())

    class EveryLane:
        """The same families, built and rendered on every scrape."""

        def collect(self) -> Any:
            for state in states:
                yield from lane_families(state, time.time())

    registry = CollectorRegistry()
    registry.register(EveryLane())
    baseline_server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    baseline_port = baseline_server.server_address[1]
    results = {}
    with httpx.Client() as client:
        for name, port in (("baseline", baseline_port), ("ours", server.port)):
            url = f"http://127.0.0.1:{port}/metrics"
            for encoding in ("identity", "gzip"):
                headers = {"accept-encoding": encoding}
                client.get(url, headers=headers)  # warm up
                results[name, encoding] = timed(functools.partial(client.get, url, headers=headers), scrapes)
    loop.run(server.stop())
    loop.close()
    baseline_server.shutdown()
    size = len(ours.snapshot.text) // 1024

    def ms(name: str) -> str:
        return f"{results[name, 'identity'] * 1000:.1f} ms; gzip {results[name, 'gzip'] * 1000:.1f} ms"

    return [
        (
            f"HTTP scrape, {series:,} failure series ({size:,} KiB)",
            "prometheus_client server, render per scrape (baseline)",
            ms("baseline"),
        ),
        (
            "",
            "pre-rendered snapshot (ours)",
            ms("ours"),
        ),
    ]


def bench_classify(count: int) -> list[tuple[str, str, str]]:
    items = records(count, 50)
    plain = Classifier()
    plain.classify = plain._classify  # type: ignore[assignment]  # the same rules, not memoized
    baseline = timed(lambda: aggregate(items, plain), 3)
    ours = timed(lambda: aggregate(items, Classifier()), 3)
    return [
        (
            f"aggregate {count:,} records",
            "classify every record (baseline)",
            f"{baseline:.2f} s ({count / baseline:,.0f}/s)",
        ),
        ("", "memoized classification (ours)", f"{ours:.2f} s ({count / ours:,.0f}/s)"),
    ]


def peak_bytes(action: Callable[[], Any]) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    kept = action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, kept


def bench_memory(count: int) -> list[tuple[str, str, str]]:
    """The peak memory of one poll's aggregation, on the same records made in the same order:
    kept in a list and then counted (baseline), or counted as they are made (ours)."""
    classifier = Classifier()

    def keep_records() -> Any:
        kept = records(count, 50, seed=2)
        return kept, aggregate(kept, classifier)

    def streaming() -> Any:
        return aggregate(iter_records(count, 50, seed=2), classifier)

    baseline, (_, counted) = peak_bytes(keep_records)
    ours, result = peak_bytes(streaming)
    assert result.counts == counted.counts  # the same poll, counted the same
    return [
        (
            f"memory of a {count:,}-record poll ({len(result.counts):,} label sets)",
            "keep the records, then count them (baseline)",
            f"{baseline / 2**20:.1f} MiB",
        ),
        ("", "count each record as it is made (ours)", f"{ours / 2**20:.1f} MiB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument(
        "--series", type=int, default=5_000, help="failure series per source in the scrape benchmark"
    )
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--scrapers", type=int, default=50, help="concurrent scrapers in the serving bench")
    parser.add_argument("--serving-seconds", type=float, default=30.0)
    args = parser.parse_args()
    rows = [
        *bench_scrape(args.series, args.sources, args.scrapes),
        *serving.bench_concurrent_scrapes(args.scrapers, args.serving_seconds, 0.2),
        *serving.bench_concurrent_scrapes(args.scrapers, args.serving_seconds, 0.0),
        *serving.bench_poll_render(10, 10_000),
        *serving.bench_scrape_during_render(args.serving_seconds / 2),
        *bench_classify(args.records),
        *bench_memory(args.records),
    ]
    print("| benchmark | variant | result |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
