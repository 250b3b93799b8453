"""Serving benchmarks (called by run.py), each beside its baseline in the same run:

1. concurrent scrapers against 100k series while sources poll: the aiohttp server vs the
   previous design (http.server threads serving the same snapshot);
2. the CPU cost of one source's poll render when 10 sources hold 10k series each: rendering only
   the polled lane vs rendering every source in both formats (the design before lanes);
3. scrape latency while a 100k-series lane renders vs between renders.

The scrapers run in another process (asyncio, raw keep-alive connections, reading whole bodies),
so that the client's work is not counted against the server's event loop.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from exporter.config import build_settings
from exporter.pipeline.lane import Lane
from exporter.pipeline.render import OPENMETRICS_CONTENT_TYPE, lane_families, render_lane
from exporter.pipeline.result import PollResult
from exporter.pipeline.state import SourceState
from exporter.records import FailureRecord
from exporter.runtime import Exporter
from exporter.serving.server import ServerLimits, WebServer
from exporter.sources.base import RecordSink, Source

PLATFORMS = ("sharepoint", "servicenow", "confluence", "itglue", "web")
TYPES = ("ACCESS_DENIED", "FILE_TOO_LARGE", "PARSE_ERROR", "TIMEOUT", "NOT_FOUND")
RETRIES = 5
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)

Row = tuple[str, str, str]


def label_sets(series: int, seed: int) -> Iterator[tuple[str, str, str, int]]:
    per_tenant = len(PLATFORMS) * len(TYPES) * RETRIES
    for i in range(series):
        tenant, rest = divmod(i, per_tenant)
        platform, rest = divmod(rest, len(TYPES) * RETRIES)
        error_type, retry = divmod(rest, RETRIES)
        yield f"tenant-{seed}-{tenant:05d}", PLATFORMS[platform], TYPES[error_type], retry


def seed_of(name: str) -> int:
    return sum(map(ord, name))


class ReplaySource(Source[Any]):
    """A source that finds one failure per label set, a page of 500 at a time, as paged APIs do;
    like a real source's parser, it makes each record as it reads it and keeps none."""

    def __init__(self, config: Any, series: int) -> None:
        super().__init__(config)
        self._series = series

    async def poll(self, out: RecordSink) -> None:
        found = label_sets(self._series, seed_of(self.config.name))
        for i, (tenant, platform, error_type, retry) in enumerate(found, 1):
            out.add(
                FailureRecord(
                    tenant=tenant,
                    platform=platform,
                    identity=(tenant, platform, error_type, str(retry)),
                    message="",
                    reported_type=error_type,
                    retry_count=retry,
                    failed_at=1.7e9 + i,
                )
            )
            if i % 500 == 0:
                await asyncio.sleep(0)


def exporter_with(lanes: int, series_per_lane: int) -> Exporter:
    sources = [
        {
            "name": f"source-{i}",
            "kind": "rezolve",
            "base_url": "http://127.0.0.1:9",
            "token": "unused",
            "tenants": [{"tenant_id": "t", "rezolve_domain": "d"}],
        }
        for i in range(lanes)
    ]
    settings = build_settings({"max_series_per_source": series_per_lane, "sources": sources}, {})
    return Exporter(settings, source_factory=lambda config: ReplaySource(config, series_per_lane))


class Loop:
    """An event loop in a thread: the exporter's, where its lanes poll and the server runs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, work: Any, timeout: float = 600) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class PreviousDesign:
    """The server before this design: http.server, a thread per connection, same snapshot."""

    def __init__(self, exporter: Exporter) -> None:
        made: list[tuple[Any, bytes]] = []  # the latest snapshot and its body, as it cached them

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                snapshot = exporter.snapshot
                if not made or made[0][0] is not snapshot:
                    made[:] = [(snapshot, snapshot.body(True, True).complete(b""))]
                body = made[0][1]
                self.send_response(200)
                self.send_header("Content-Type", OPENMETRICS_CONTENT_TYPE)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def scrapers(port: int, clients: int, seconds: float, every: float, out: Any) -> None:
    """In another process: ``clients`` keep-alive scrapers for ``seconds``, each starting a scrape
    every ``every`` seconds (0: back to back); the (start, latency) of every scrape."""

    async def one(until: float, offset: float) -> tuple[list[tuple[float, float]], int]:
        seen: list[tuple[float, float]] = []
        errors = 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(offset)  # spread over the interval, as Prometheus spreads its targets
        request = (
            f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {PROMETHEUS_ACCEPT}\r\n"
            "Accept-Encoding: gzip\r\n\r\n"
        ).encode()
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, StopIteration):
                errors += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            seen.append((started, time.monotonic() - started))
            await asyncio.sleep(max(0.0, started + every - time.monotonic()))
        writer.close()
        return seen, errors

    async def all_of_them() -> tuple[list[tuple[float, float]], int]:
        until = time.monotonic() + seconds
        results = await asyncio.gather(*(one(until, every * i / clients) for i in range(clients)))
        return [s for seen, _ in results for s in seen], sum(e for _, e in results)

    out.put(asyncio.run(all_of_them()))


def load(
    port: int, clients: int, seconds: float, every: float = 0.0
) -> tuple[list[tuple[float, float]], int]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=scrapers, args=(port, clients, seconds, every, queue))
    process.start()
    result = queue.get(timeout=seconds + 120)
    process.join(30)
    return result  # type: ignore[no-any-return]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def keep_polling(exporter: Exporter, every: float, stop: threading.Event) -> Any:
    async def polls() -> int:
        count = 0
        lanes = list(exporter.lanes.values())
        while not stop.is_set():
            await lanes[count % len(lanes)].poll()
            count += 1
            await asyncio.sleep(every)
        return count

    return polls()


def one_design(design: str, clients: int, seconds: float, every: float, out: Any) -> None:
    """In a process of its own, so that neither design inherits the other's heap or threads."""
    exporter = exporter_with(10, 10_000)
    loop = Loop()
    loop.run(exporter.poll_all())
    server: Any
    gc.freeze()  # as the program does once it has started (exporter/cli.py)
    if design == "ours":
        server = WebServer(exporter, "127.0.0.1", 0, limits=ServerLimits())
        loop.run(server.start())
    else:
        server = PreviousDesign(exporter)
    series = sum(len(s.result.counts) for s in exporter.states.values() if s.result)
    stop = threading.Event()
    polling = asyncio.run_coroutine_threadsafe(keep_polling(exporter, 2.0, stop), loop.loop)
    latencies, errors = load(server.port, clients, seconds, every)
    stop.set()
    polls = polling.result(60)
    if design == "ours":
        loop.run(server.stop())
    else:
        server.stop()
    loop.close()
    out.put(([latency for _, latency in latencies], errors, polls, series))


def bench_concurrent_scrapes(clients: int, seconds: float, every: float) -> list[Row]:
    rows: list[Row] = []
    context = multiprocessing.get_context("fork")
    for design in ("previous", "ours"):
        queue = context.Queue()
        process = context.Process(target=one_design, args=(design, clients, seconds, every, queue))
        process.start()
        values, errors, polls, series = queue.get(timeout=seconds + 300)
        process.join(30)
        first = design == "previous"
        pace = f"each every {every:g} s" if every else "back to back"
        what = f"{clients} scrapers ({pace}) for {seconds:.0f} s, {series:,} series, OpenMetrics + gzip"
        figures = (
            f"{len(values):,} scrapes, {errors} errors, {polls} polls meanwhile; "
            f"p50 {percentile(values, 0.5) * 1000:.1f} ms, p99 {percentile(values, 0.99) * 1000:.1f} ms"
        )
        label = "http.server threads (previous design)" if first else "aiohttp, lanes (ours)"
        rows.append((what if first else "", label, figures))
    return rows


def cpu_seconds(action: Any, repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        action()
        samples.append(time.process_time() - started)
    return statistics.median(samples)


def synthetic_state(name: str, series: int) -> SourceState:
    state = SourceState(name=name, kind="rezolve", interval=300, stale_after=900)
    counts = {(t, p, e, str(r)): 1 for t, p, e, r in label_sets(series, seed_of(name))}
    pairs = {(t, p) for t, p, _, _ in counts}
    result = PollResult(
        entries={},
        counts=counts,
        oldest=dict.fromkeys(pairs, 1.7e9),
        newest=dict.fromkeys(pairs, 1.8e9),
        scanned=series,
        dropped=0,
    )
    state.record_result(result, {}, 0, 1)
    for t, p, e, _ in counts:
        state.discovered[(t, p, e)] += 1
    return state


def bench_poll_render(lanes: int, series: int) -> list[Row]:
    states = [synthetic_state(f"source-{i}", series) for i in range(lanes)]

    class Everything:
        def collect(self) -> Any:
            for state in states:
                yield from lane_families(state, time.time())

    def before() -> None:
        generate_latest(Everything())
        openmetrics.generate_latest(Everything())  # type: ignore[no-untyped-call]

    everything = cpu_seconds(before)
    one = cpu_seconds(lambda: render_lane(states[0], time.time()))
    return [
        (
            f"CPU of one source's poll render, {lanes} sources x {series:,} series",
            "render every source, both formats (before lanes)",
            f"{everything:.2f} s",
        ),
        ("", "render the polled lane only (ours)", f"{one:.2f} s ({everything / one:.1f}x less)"),
    ]


def scrapes_around(
    port: int, loop: Loop, work: Callable[[], Awaitable[Any]], seconds: float
) -> tuple[list[float], list[float], int, int]:
    """Scrapes from another process for ``seconds`` while ``work`` runs on the exporter's loop
    once a second: the latencies of the scrapes during a run of it and between runs, how many
    runs there were, and how many scrapes failed."""
    runs: list[tuple[float, float]] = []
    stop = threading.Event()

    async def now_and_then() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            started = time.monotonic()
            await work()
            runs.append((started, time.monotonic()))

    running = asyncio.run_coroutine_threadsafe(now_and_then(), loop.loop)
    latencies, errors = load(port, 1, seconds)
    stop.set()
    running.result(60)

    def during(start: float, latency: float) -> bool:
        return any(a < start + latency and start < b for a, b in runs)

    busy = [latency for start, latency in latencies if during(start, latency)]
    idle = [latency for start, latency in latencies if not during(start, latency)]
    return busy, idle, len(runs), errors


def bench_scrape_during_render(seconds: float) -> list[Row]:
    exporter = exporter_with(1, 100_000)
    loop = Loop()
    loop.run(exporter.poll_all())
    server = WebServer(exporter, "127.0.0.1", 0)
    loop.run(server.start())
    lane: Lane = next(iter(exporter.lanes.values()))
    busy, idle, renders, errors = scrapes_around(
        server.port, loop, lambda: asyncio.to_thread(render_lane, lane.state, time.time()), seconds
    )
    loop.run(server.stop())
    loop.close()
    p50_busy, p50_idle = statistics.median(busy), statistics.median(idle)
    return [
        (
            f"scrape latency around a 100k-series lane render ({renders} renders, {errors} errors)",
            f"between renders ({len(idle)} scrapes)",
            f"p50 {p50_idle * 1000:.1f} ms, p99 {percentile(idle, 0.99) * 1000:.1f} ms",
        ),
        (
            "",
            f"during a render ({len(busy)} scrapes)",
            f"p50 {p50_busy * 1000:.1f} ms, p99 {percentile(busy, 0.99) * 1000:.1f} ms "
            f"({p50_busy / p50_idle:.2f}x)",
        ),
    ]
