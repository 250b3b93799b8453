"""The /failures drill-down: what its details cost per record, and how fast a page is answered.

    python bench/drilldown.py [--records N]      # part of make bench

1. memory: a poll of N records aggregated with the details kept, vs without them (the counts
   alone), both with tracemalloc; the difference per record is the drill-down's cost.
2. latency: pages of /failures over N records of one source, each query's median, from the
   per-label index (ours) vs a scan of every record per request that filters, sorts and cuts
   (the baseline). The index is built once per poll; its build time is reported too.
3. group_by on every key, ours vs counting every record per request with a message's pattern
   worked out in one pass by its definition (the baseline); then the worst case of
   group_by=message, where every message names its file: the first request, a later one, and
   the first after the next poll (which finds 1 % new files).
Figures go to docs/performance.md by hand; nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import functools
import gc
import random
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

from run import MESSAGES  # the scrape and aggregation benchmarks' messages

from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.pipeline.result import PollResult, failures_order
from exporter.records import FailureRecord
from exporter.serving.failures import GROUP_KEYS, LaneIndex, Query, Row, group, search
from exporter.serving.patterns import pattern_in_one_pass

PLATFORMS = ["sharepoint", "servicenow", "confluence", "itglue", "web"]
TENANTS = 200


# Messages that name their file, as the platforms word them: one message, one pattern per file.
OWN_MESSAGES = [
    "Access to the path 'C:\\Data\\HR\\{name}' is denied.",  # Commvault
    "Failed to download https://contoso.sharepoint.com/sites/kb/Shared%20Documents/{name}.",  # Rezolve
    "Cannot open /mnt/nfs/share/kb/{name}",
    "Document {uuid} exceeded 1000 pages",  # Unstructured
    "Error in performing post items web request for item {i}. "
    "[Error code [Forbidden], Status code [403] [Forbidden]]",  # Commvault
    "[2018-00-23T22:07:01Z] is not a valid date-time for field 'timestamp' in row {i}",  # AEP
]


def one_record(rng: random.Random, i: int, own_messages: bool = False) -> FailureRecord:
    tenant = f"{rng.randrange(TENANTS):08x}-5717-4562-b3fc-2c963f66afa6"
    platform = rng.choice(PLATFORMS)
    name = f"{rng.choice(['contract', 'policy', 'invoice', 'scan'])}-{i:06d}.pdf"
    if own_messages:
        uuid = f"{i:08x}-1b2c-4d5e-8f90-0a1b2c3d4e5f"
        message = OWN_MESSAGES[i % len(OWN_MESSAGES)].format(name=name, uuid=uuid, i=i)
    else:
        message = rng.choice(MESSAGES).format(n=rng.randrange(50))
    return FailureRecord(
        tenant=tenant,
        platform=platform,
        identity=(tenant, platform, f"file-{i:06d}"),
        message=message,
        retry_count=rng.randrange(8),
        failed_at=1.7e9 + rng.random() * 86400,
        scope=f"{tenant}/{platform}",
        name=name,
        location=f"https://contoso.{platform}.example/sites/kb/Shared Documents/{name}",
    )


def poll(
    count: int, details: DetailLimits | None, *, first: int = 0, own_messages: bool = False
) -> PollResult:
    """Records ``first`` to ``first + count`` made and dropped one by one, as a source's parser does."""
    aggregator = PollAggregator(
        classifier=Classifier(),
        retry_count_cap=5,
        max_series=10**9,
        owns_tenant=lambda _: True,
        deadline=float("inf"),
        details=details,
        seen_at=1.7e9,
    )
    rng = random.Random(4)
    for i in range(first + count):
        made = one_record(rng, i, own_messages)  # each file the same in every poll
        if i >= first:
            aggregator.add(made)
    return aggregator.finish(None)


def kept_bytes(action: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes still allocated by what ``action`` returns (not its peak)."""
    gc.collect()
    tracemalloc.start()
    kept = action()
    gc.collect()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return current, kept


def median_ms(action: Callable[[], Any], repeat: int = 15) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def scan(result: PollResult, query: Query) -> tuple[int, list[Row]]:
    """The baseline: every record looked at, filtered, sorted and cut, for each request."""
    needle = query.q.casefold()
    found = []
    for key, detail in result.details.items():
        entry = result.entries[key]
        tenant, platform, error_type, _ = entry.labels
        if query.tenants and tenant not in query.tenants:
            continue
        if query.platforms and platform not in query.platforms:
            continue
        if query.error_types and error_type not in query.error_types:
            continue
        if detail.retry_count < query.min_retry_count:
            continue
        if needle and not any(
            needle in text.casefold() for text in (detail.name, detail.location, detail.message)
        ):
            continue
        found.append(Row("bench", entry, detail, result.rows.get(key)))
    found.sort(key=lambda row: failures_order(row.entry, row.detail))
    return len(found), found[query.offset : query.offset + query.limit]


def count_by(result: PollResult, by: str) -> Counter[str]:
    """The baseline of group_by: every record looked at and its key worked out, each request."""
    counts: Counter[str] = Counter()
    for key, detail in result.details.items():
        if by == "message":
            counts[pattern_in_one_pass(detail.message)] += 1  # as at first, each request
        elif by == "source":
            counts["bench"] += 1
        else:
            counts[result.entries[key].labels[("tenant", "platform", "error_type").index(by)]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    count = args.records
    limits = DetailLimits(max_records=10**9, message_max_chars=512)
    counts_only, _ = kept_bytes(lambda: poll(count, None))
    with_details, result = kept_bytes(lambda: poll(count, limits))
    rows = [
        (
            f"memory of a {count:,}-record poll",
            "counts only (no drill-down)",
            f"{counts_only / 2**20:.1f} MiB",
        ),
        (
            "",
            "counts and details (ours)",
            f"{with_details / 2**20:.1f} MiB; details "
            f"{(with_details - counts_only) / count:.0f} bytes/record",
        ),
    ]
    started = time.perf_counter()
    index = LaneIndex("bench", result)
    built = (time.perf_counter() - started) * 1000
    some_tenant = next(iter(result.entries.values()))[0][0]
    queries = {
        "first page, no filter": Query(),
        "one tenant": Query(tenants=frozenset({some_tenant})),
        "one error type": Query(error_types=frozenset({"ACCESS_DENIED"})),
        "tenant and platform": Query(tenants=frozenset({some_tenant}), platforms=frozenset({"sharepoint"})),
        "q=invoice (every record read)": Query(q="invoice"),
        "page at offset 50,000": Query(offset=50_000),
    }
    rows.append((f"/failures over {count:,} records", "index built once per poll", f"{built:.0f} ms"))
    text, starts = index._searchable()
    searchable = (len(text) + 8 * len(starts)) / 2**20
    rows.append(("", "searchable text, made at the first q", f"{searchable:.1f} MiB"))
    for name, query in queries.items():
        ours = median_ms(functools.partial(search, [index], query))
        baseline = median_ms(functools.partial(scan, result, query), repeat=5)
        assert search([index], query).total == scan(result, query)[0]
        rows.append(
            (
                name,
                "scan every record (baseline) / per-label index (ours)",
                f"{baseline:.1f} ms / {ours:.1f} ms",
            )
        )
    for by in GROUP_KEYS:
        # A fresh index for each: its first grouping by message works out every message's pattern.
        fresh = LaneIndex("bench", result)
        started = time.perf_counter()
        grouped = group([fresh], Query(group_by=by, limit=1000))
        first = (time.perf_counter() - started) * 1000
        ours = median_ms(functools.partial(group, [fresh], Query(group_by=by, limit=1000)))
        baseline = median_ms(functools.partial(count_by, result, by), repeat=3)
        expected = count_by(result, by)
        assert grouped.everyone == len(expected) and {g.key: g.count for g in grouped.groups} == dict(
            expected.most_common(1000)
        )
        rows.append(
            (
                f"group_by={by} ({len(expected):,} groups)",
                "count every record, each request (baseline) / ours, first request / ours, later",
                f"{baseline:.1f} ms / {first:.1f} ms / {ours:.1f} ms",
            )
        )
    rows.extend(every_message_its_own(count, limits))
    print("| benchmark | variant | result |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {' | '.join(row)} |")


def every_message_its_own(count: int, limits: DetailLimits) -> list[tuple[str, str, str]]:
    """group_by=message where no two files share a message: a pattern to work out per record."""
    result = poll(count, limits, own_messages=True)
    next_result = poll(count, limits, first=count // 100, own_messages=True)
    index = LaneIndex("bench", result)
    query = Query(group_by="message", limit=1000)
    started = time.perf_counter()
    grouped = group([index], query)
    first = (time.perf_counter() - started) * 1000
    later = median_ms(functools.partial(group, [index], query), repeat=5)
    next_index = LaneIndex("bench", next_result, previous=index)
    started = time.perf_counter()
    group([next_index], query)
    after_poll = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    expected = count_by(result, "message")
    baseline = (time.perf_counter() - started) * 1000
    assert {g.key: g.count for g in grouped.groups} == dict(expected)
    return [
        (
            f"group_by=message, {count:,} messages each naming its file ({len(expected)} groups)",
            "count every record, each request (baseline) / ours, first request / ours, later / "
            "ours, first after a poll with 1 % new files",
            f"{baseline:.1f} ms / {first:.1f} ms / {later:.1f} ms / {after_poll:.1f} ms",
        )
    ]


if __name__ == "__main__":
    main()
