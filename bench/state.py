"""State files (``state_dir``) at scale, each figure beside its baseline in the same run:

    python bench/state.py [--jobs 500] [--items 200] [--seconds 20]

write    a 100,000-record source's state written to disk (the Commvault shape: 500 jobs of 200
         failed items, details on), beside a full poll of that source (bound: well under 1 s)
read     the same state read back as a restart does, beside the full poll it spares (bound:
         faster than the poll)
scrapes  scrape latency while the state is written (once a second, in a worker thread as the
         lane writes it) beside scrapes between writes
memory   a 100,000-record poll's result with state_dir (each record's identity kept) beside one
         without

Nothing here asserts: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import timed  # noqa: E402  # the other benchmarks' helpers
from scale import Served, commvault_simulator, poll_seconds  # noqa: E402
from serving import Loop, percentile, scrapes_around  # noqa: E402

from exporter.config import build_settings  # noqa: E402
from exporter.pipeline.aggregate import DetailLimits, PollAggregator  # noqa: E402
from exporter.pipeline.classify import Classifier  # noqa: E402
from exporter.pipeline.render import pause_for_scrapes  # noqa: E402
from exporter.records import FailureRecord  # noqa: E402
from exporter.runtime import Exporter, tune_garbage_collection  # noqa: E402
from exporter.serving.server import WebServer  # noqa: E402

Row = tuple[str, str, str, str]  # target, variant, result, bound


def bench_state(jobs: int, items: int, seconds: float, repeat: int) -> list[Row]:
    served = Served(functools.partial(commvault_simulator, jobs, items), 0.02)
    config = {
        "name": "commvault",
        "kind": "commvault",
        "base_url": f"http://127.0.0.1:{served.port}",
        "username": "svc-monitor",
        "password": "demo-password",
        "timeout": "60s",
    }
    records = jobs * items
    with tempfile.TemporaryDirectory() as directory:
        try:
            poll, _ = poll_seconds(config, repeat)  # no state_dir: the poll alone
            settings = build_settings(
                {"poll_timeout": "10m", "state_dir": directory, "sources": [config]}, {}
            )
            exporter = Exporter(settings)
            loop = Loop()
            assert loop.run(exporter.poll_all())  # its state is written once here
        finally:
            served.close()
        lane = exporter.lanes["commvault"]
        store = exporter.store
        assert store is not None and lane.state.result is not None
        assert len(lane.state.result.entries) == records
        write = timed(lambda: store.save(lane.state, lane.fingerprint, pause_for_scrapes), repeat)
        write_cpu = timed(lambda: store.save(lane.state, lane.fingerprint), repeat, time.process_time)
        size = os.path.getsize(store.path_of("commvault"))
        read = timed(lambda: store.load("commvault", lane.fingerprint), repeat)
        saved = store.load("commvault", lane.fingerprint)
        assert saved is not None and len(saved.result.entries) == records
        server = WebServer(exporter, "127.0.0.1", 0)
        loop.run(server.start())
        busy, idle, writes, errors = scrapes_around(
            server.port,
            loop,
            lambda: asyncio.to_thread(store.save, lane.state, lane.fingerprint, pause_for_scrapes),
            seconds,
        )
        loop.run(server.stop())
        loop.run(exporter.aclose())
        loop.close()
    p50_busy, p50_idle = statistics.median(busy), statistics.median(idle)
    shape = f"{records:,} records ({jobs} Commvault jobs x {items} items, details on)"
    return [
        (f"state write, {shape}", "a full poll of the source (baseline)", f"{poll:.2f} s", ""),
        (
            "",
            "write: encode, fsync, rename (pauses for scrapes included)",
            f"{write:.2f} s ({write_cpu:.2f} s CPU without pauses; {write / poll:.2f} of the poll), "
            f"{size / 1e6:.1f} MB",
            "well under 1 s",
        ),
        ("", "read back at start", f"{read:.2f} s ({read / poll:.2f} of the poll)", "faster than the poll"),
        (
            f"scrape latency around state writes ({writes} writes, {errors} errors)",
            f"between writes ({len(idle)} scrapes)",
            f"p50 {p50_idle * 1000:.1f} ms, p99 {percentile(idle, 0.99) * 1000:.1f} ms",
            "",
        ),
        (
            "",
            f"during a write ({len(busy)} scrapes)",
            f"p50 {p50_busy * 1000:.1f} ms, p99 {percentile(busy, 0.99) * 1000:.1f} ms "
            f"({p50_busy / p50_idle:.2f}x)",
            "",
        ),
    ]


def bench_memory(records: int) -> list[Row]:
    """What a poll's result holds, with and without ``state_dir``: with it, each record's entry
    keeps the record's identity (its tuple and strings), for the state file."""
    kept = []
    for keep_identities in (False, True):
        gc.collect()
        tracemalloc.start()
        out = PollAggregator(
            classifier=Classifier(),
            retry_count_cap=5,
            max_series=10_000,
            owns_tenant=lambda _: True,
            deadline=float("inf"),
            details=DetailLimits(records, 512),
            keep_identities=keep_identities,
        )
        for i in range(records):  # made and dropped one by one, as a source's records are
            tenant, job, item = f"tenant-{i % 50}", i // 200, f"doc-{i % 200:03d}.docx"
            path = f"C:\\Data\\share-{job}\\{item}"
            out.add(
                FailureRecord(
                    tenant=tenant,
                    platform="windows_file_system",
                    identity=(tenant, str(job), path),
                    message="Access is denied.",
                    name=item,
                    location=path,
                )
            )
        result = out.finish(None)
        gc.collect()
        kept.append(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        del out, result
    without, with_state = kept
    return [
        (
            f"memory of a {records:,}-record poll's result, details on",
            "without state_dir (baseline)",
            f"{without / 2**20:.1f} MiB",
            "",
        ),
        (
            "",
            "with state_dir (identities kept)",
            f"{with_state / 2**20:.1f} MiB (+{(with_state - without) / records:.0f} bytes a record)",
            "",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tune_garbage_collection()  # as the program does at start
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| target | variant | result | bound |\n| --- | --- | --- | --- |")
    rows = bench_state(args.jobs, args.items, args.seconds, args.repeat) + bench_memory(
        args.jobs * args.items
    )
    for row in rows:
        print(f"| {' | '.join(row)} |", flush=True)


if __name__ == "__main__":
    main()
