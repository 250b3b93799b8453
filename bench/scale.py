"""Scale benchmarks: each target beside its baseline in the same run, as a ratio next to its bound.

    python bench/scale.py [--only table,fanout,...] [--entities N]

table    a poll of a 100k-entity FailureRecords table in Azurite after 100 rows changed, read
         incrementally, vs a full read of the same table (bound: 0.10); and the full read vs the
         bare azure-data-tables floor (listing the same columns, nothing else).

Nothing here asserts: the figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import json
import multiprocessing
import os
import platform
import queue
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import aggregate, records, timed  # noqa: E402  # the other benchmarks' helpers
from soak import free_port  # noqa: E402

from exporter.config import build_settings  # noqa: E402
from exporter.runtime import Exporter, tune_garbage_collection  # noqa: E402
from exporter.simulators.table import (  # noqa: E402
    azurite_connection_string,
    failure_entity,
    fresh_table,
    start_azurite,
)
from exporter.sources.azure_table import TableColumns, selected  # noqa: E402

AZURITE = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-table"
Row = tuple[str, str, str, str, str]  # target, variant, result, ratio, bound


def median_of(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def bench_table(entities: int, changed: int, repeat: int) -> list[Row]:
    port = free_port()
    emulator = start_azurite(AZURITE, port)
    try:
        connection = azurite_connection_string(port)
        table = fresh_table(connection, "ScaleFailures")
        per_tenant = 100  # one transaction per tenant
        tenants = entities // per_tenant
        loaded = time.perf_counter()
        for t in range(tenants):
            table.submit_transaction(
                [
                    (
                        "upsert",
                        failure_entity(
                            f"tenant-{t:05d}",
                            f"file-{i:03d}",
                            error_type="",
                            error_message="Unable to parse document content",
                            failed_at=1.7e9 + i,
                            retry_count=i % 7,
                            platform_type=("sharepoint", "servicenow", "confluence")[t % 3],
                        ),
                    )
                    for i in range(per_tenant)
                ]
            )
        loaded = time.perf_counter() - loaded
        columns = selected(TableColumns())  # what the source asks for

        def floor() -> None:
            for _ in table.list_entities(select=columns, results_per_page=1000):
                pass

        floors = []
        for _ in range(repeat):
            start = time.perf_counter()
            floor()
            floors.append(time.perf_counter() - start)

        def exporter(reconcile_every: int) -> Exporter:
            config = {
                "name": "table",
                "kind": "azure_table",
                "connection_string": connection,
                "table_name": table.table_name,
                "timeout": "60s",
                # The table was written long before, in real life: an overlap of a second.
                "incremental": {"reconcile_every": reconcile_every, "overlap": "1s"},
            }
            return Exporter(build_settings({"poll_timeout": "10m", "sources": [config]}, {}))

        full_reads, incremental_reads, scanned = [], [], []
        rng_row = 0

        async def polls() -> None:
            nonlocal rng_row
            full, partial = exporter(1), exporter(10**6)
            try:
                await partial.poll_all()  # its first poll: a full read
                # Steady state: each incremental read also reads again what changed within the
                # overlap before the latest change seen (here, the previous round's changes).
                for round in range(repeat + 1):
                    timed = round > 0
                    await asyncio.sleep(1.5)  # past the overlap
                    start = time.perf_counter()
                    assert await full.poll_all()
                    if timed:
                        full_reads.append(time.perf_counter() - start)
                    for _ in range(changed):  # rows spread over the table, each a new retry
                        t, i = rng_row % tenants, (rng_row * 7) % per_tenant
                        rng_row += 1
                        table.update_entity(
                            {"PartitionKey": f"tenant-{t:05d}", "RowKey": f"file-{i:03d}", "retry_count": 9}
                        )
                    start = time.perf_counter()
                    assert await partial.poll_all()
                    if timed:
                        incremental_reads.append(time.perf_counter() - start)
                        result = partial.states["table"].result
                        assert result is not None
                        scanned.append(result.scanned)
                full_count = sum(full.states["table"].result.counts.values())  # type: ignore[union-attr]
                partial_count = sum(partial.states["table"].result.counts.values())  # type: ignore[union-attr]
                assert full_count == partial_count == entities, (full_count, partial_count)
            finally:
                await full.aclose()
                await partial.aclose()

        asyncio.run(polls())
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    bare, full_read, incremental = median_of(floors), median_of(full_reads), median_of(incremental_reads)
    return [
        (
            f"table poll, {entities:,} entities (loaded in {loaded:.0f} s)",
            "bare azure-data-tables listing (floor)",
            f"{bare:.2f} s",
            "",
            "",
        ),
        ("", "full read (baseline)", f"{full_read:.2f} s", f"{full_read / bare:.2f}x the floor", ""),
        (
            "",
            f"incremental read after {changed} changed rows (ours), {median_of(scanned):.0f} entities read",
            f"{incremental:.3f} s",
            f"{incremental / full_read:.3f} of a full read",
            "at most 0.10",
        ),
    ]


def serve_in_child(build: Callable[[], Any], latency: float, ports: Any, stop: Any) -> None:
    """A simulator in a process of its own (its CPU is not the exporter's), every answer after
    ``latency`` seconds, as a distant platform's."""
    simulator = build()
    simulator.inject(".*", delay=latency)
    simulator.start()
    ports.put(simulator.port)
    stop.wait()
    simulator.stop()


class Served:
    """A simulator built by ``build`` (a picklable function) in a child process."""

    def __init__(self, build: Callable[[], Any], latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        ports, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=serve_in_child, args=(build, latency, ports, self._stop))
        self._process.start()
        self.port: int = ports.get(timeout=120)

    def close(self) -> None:
        self._stop.set()
        self._process.join(timeout=30)


def answered_once(simulator: Any, handler: str) -> None:
    """Make ``handler``'s answers once per path: the simulator's own CPU (building 200 items'
    JSON at every request) must not be what the benchmark measures."""
    build = getattr(simulator, handler)
    answers: dict[str, Any] = {}

    def cached(request: Any) -> Any:
        if request.path not in answers:
            answers[request.path] = build(request)
        return answers[request.path]

    for index, (method, pattern, bound) in enumerate(simulator._routes):
        if getattr(bound, "__name__", "") == handler:
            simulator._routes[index] = (method, pattern, cached)


def commvault_simulator(jobs: int = 500, items: int = 200) -> Any:
    from exporter.simulators.commvault import CommvaultSimulator, SimJob

    simulator = CommvaultSimulator()
    answered_once(simulator, "_failed_items")
    now = time.time()
    for j in range(jobs):
        entities = [(f"C:\\Data\\share-{j}\\doc-{i:03d}.docx", "Access is denied.") for i in range(items)]
        simulator.add_job(
            SimJob(50_000 + j, "Windows File System", f"client-{j % 20}", "default", now - 60, entities)
        )
    return simulator


def bare_commvault(base: str, pages: int, jobs: list[int], concurrency: int) -> None:
    """The floor: one aiohttp session that logs in, reads the job pages one after another, then
    asks for every job's failed items, ``concurrency`` in flight on keep-alive connections,
    parsing each answer's JSON and nothing else."""
    import aiohttp

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base, connector=connector) as session:
            login = {"username": "svc-monitor", "password": base64.b64encode(b"demo-password").decode()}
            async with session.post("/Login", json=login) as answer:
                token = json.loads(await answer.read())["token"]
            for page in range(pages):
                headers = {"Authtoken": token, "limit": "100", "offset": str(page * 100)}
                async with session.get("/Job", headers=headers) as answer:
                    json.loads(await answer.read())

            async def items(job: int) -> None:
                path = f"/Job/{job}/FailedItems"
                async with gate, session.get(path, headers={"Authtoken": token}) as answer:
                    json.loads(await answer.read())

            await asyncio.gather(*(items(job) for job in jobs))

    asyncio.run(run())


def poll_seconds(
    config: dict[str, Any], repeat: int, shard: dict[str, int] | None = None, **top: Any
) -> tuple[float, Exporter]:
    """The median time of ``repeat`` polls of one source (the first is its baseline), with the
    top-level settings ``top``."""
    document: dict[str, Any] = {"poll_timeout": "10m", "sources": [config], **top}
    if shard is not None:
        document["shard"] = shard
    exporter = Exporter(build_settings(document, {}))
    samples = []

    async def polls() -> None:
        try:
            for _ in range(repeat):
                start = time.perf_counter()
                assert await exporter.poll_all()
                samples.append(time.perf_counter() - start)
        finally:
            await exporter.aclose()

    asyncio.run(polls())
    return median_of(samples), exporter


def bench_commvault(jobs: int, items: int, latency: float, concurrency: int, repeat: int) -> list[Row]:
    served = Served(functools.partial(commvault_simulator, jobs, items), latency)
    try:
        base = f"http://127.0.0.1:{served.port}"
        config = {
            "name": "commvault",
            "kind": "commvault",
            "base_url": base,
            "username": "svc-monitor",
            "password": "demo-password",
            "max_concurrency": concurrency,
            "timeout": "60s",
        }
        ours, exporter = poll_seconds(config, repeat)
        result = exporter.states["commvault"].result
        assert result is not None and len(result.entries) == jobs * items
        # The same requests: a login, the job pages one after another, then the failed items.
        pages = -(-jobs // 100)
        requests = 1 + pages + jobs
        floors = []
        for _ in range(repeat):
            start = time.perf_counter()
            bare_commvault(base, pages, [50_000 + j for j in range(jobs)], concurrency)
            floors.append(time.perf_counter() - start)
        floor = median_of(floors)
    finally:
        served.close()
    ideal = requests / concurrency * latency
    return fanout_rows(
        f"Commvault poll, {jobs} jobs x {items} items, {latency * 1000:.0f} ms a response",
        requests,
        concurrency,
        ideal,
        floor,
        ours,
    )


def unstructured_simulator(jobs: int, files: int) -> Any:
    from exporter.simulators.unstructured import SimJob, UnstructuredSimulator

    simulator = UnstructuredSimulator()
    workflow = simulator.add_workflow("ingest", "sharepoint")
    now = time.time()
    for j in range(jobs):
        failed = [(f"doc-{j}-{f}.pdf", "Unable to parse document content") for f in range(files)]
        simulator.add_job(SimJob(f"job-{j:04d}", workflow, "FAILED", now - 600, failed))
    answered_once(simulator, "_failed_files")
    return simulator


def bench_unstructured(jobs: int, files: int, latency: float, concurrency: int, repeat: int) -> list[Row]:
    served = Served(functools.partial(unstructured_simulator, jobs, files), latency)
    try:
        config = {
            "name": "unstructured",
            "kind": "unstructured",
            "base_url": f"http://127.0.0.1:{served.port}",
            "api_key": "demo-unstructured-key",
            "max_concurrency": concurrency,
            "timeout": "60s",
        }
        ours, exporter = poll_seconds(config, repeat)
        result = exporter.states["unstructured"].result
        assert result is not None and len(result.entries) == jobs * files
        # The same API read by the shipped http_json example: what the convenience costs.
        configured, exporter = poll_seconds(unstructured_example(config), repeat)
        result = exporter.states["unstructured"].result
        assert result is not None and len(result.entries) == jobs * files
    finally:
        served.close()
    requests = 1 + jobs  # the job list, then each failed job's files (its workflow is known by now)
    title = f"Unstructured poll, {jobs} failed jobs x {files} files, {latency * 1000:.0f} ms a response"
    rows = fanout_rows(title, requests, concurrency, requests / concurrency * latency, None, ours)
    variant = "the same through http_json (examples/unstructured.yaml)"
    return [*rows, ("", variant, f"{configured:.2f} s", f"{configured / ours:.2f}x ours", "at most 1.15x")]


def unstructured_example(native: dict[str, Any]) -> dict[str, Any]:
    """The shipped http_json example, reading what the ``native`` source reads."""
    path = Path(__file__).resolve().parent.parent / "examples" / "unstructured.yaml"
    [source] = yaml.safe_load(path.read_text())["sources"]
    del source["api_key_file"]
    keep = ("name", "base_url", "api_key", "max_concurrency", "timeout")
    return {**source, **{key: native[key] for key in keep}}


def aep_simulator(batches: int, files: int) -> Any:
    from exporter.simulators.aep import AepSimulator, SimBatch, validation_file

    simulator = AepSimulator()
    created = int((time.time() - 3600) * 1000)
    content = validation_file("[2018-00-23T22:07:01Z] is not a valid date-time")
    for b in range(batches):
        names = {f"part-{f:03d}.json": content for f in range(files)}
        simulator.add_batch(SimBatch(f"batch-{b:04d}", created - b, "failed", [], names))
    return simulator


def bench_aep(batches: int, files: int, latency: float, concurrency: int, repeat: int) -> list[Row]:
    served = Served(functools.partial(aep_simulator, batches, files), latency)
    try:
        url = f"http://127.0.0.1:{served.port}"
        config = {
            "name": "aep",
            "kind": "aep",
            "base_url": url,
            "org_id": "ABCDEF123@AdobeOrg",
            "sandbox": "prod",
            "client_id": "demo-client-id",
            "client_secret": "demo-client-secret",
            "ims_url": f"{url}/ims/token/v3",
            "max_concurrency": concurrency,
            "timeout": "60s",
        }
        cold = [poll_seconds(config, 1)[0] for _ in range(repeat)]  # a first poll downloads every file
        warm, exporter = poll_seconds(config, repeat + 1)  # later polls download nothing again
        result = exporter.states["aep"].result
        assert result is not None and len(result.entries) == batches * files
    finally:
        served.close()
    pages = -(-batches // 100)
    first = 1 + pages + batches + batches * files  # token, batch pages, listings, downloads
    later = pages + batches  # the page, and the listings (those of known batches meanwhile)
    title = f"AEP first poll, {batches} failed batches x {files} files, {latency * 1000:.0f} ms a response"
    return [
        *fanout_rows(title, first, concurrency, first / concurrency * latency, None, median_of(cold)),
        *fanout_rows(
            "AEP later polls (classified files are not downloaded again)",
            later,
            concurrency,
            later / concurrency * latency,
            None,
            warm,
        ),
    ]


def fanout_rows(
    title: str, requests: int, concurrency: int, ideal: float, floor: float | None, ours: float
) -> list[Row]:
    rows: list[Row] = [
        (title, f"ideal: {requests:,} requests / {concurrency} x latency", f"{ideal:.2f} s", "", "")
    ]
    if floor is not None:
        baseline = f"bare aiohttp client, {concurrency} in flight, JSON parsed (floor)"
        rows.append(("", baseline, f"{floor:.2f} s", f"{floor / ideal:.2f}x", ""))
    rows.append(("", "the exporter's poll (ours)", f"{ours:.2f} s", f"{ours / ideal:.2f}x", "at most 1.3x"))
    return rows


def straightforward_aggregate(items: list[Any], classify: Callable[[str], str]) -> dict[Any, int]:
    """The baseline: each record on its own, as one would first write it: classify its message
    (with the same memoized classifier as ours, so that the ratio is the aggregation's alone),
    digest its identity, count its label set, keep its detail."""
    counts: dict[Any, int] = {}
    entries: dict[bytes, Any] = {}
    oldest: dict[tuple[str, str], float] = {}
    details: dict[bytes, Any] = {}
    for record in items:
        error_type = classify(record.message)
        key = hashlib.blake2b("\x1f".join(record.identity).encode(), digest_size=12).digest()
        if key in entries:
            continue
        retry = f"{record.retry_count}" if record.retry_count < 5 else "5+"
        labels = (record.tenant, record.platform, error_type, retry)
        counts[labels] = counts.get(labels, 0) + 1
        entries[key] = (labels, record.failed_at, record.scope)
        pair = (record.tenant, record.platform)
        oldest[pair] = min(oldest.get(pair, record.failed_at), record.failed_at)
        details[key] = ("/".join(record.identity), record.name, record.location, record.message[:512])
    return counts


def bench_aggregation(count: int, tenants: int, repeat: int) -> list[Row]:
    from exporter.config import Settings
    from exporter.pipeline.aggregate import DetailLimits
    from exporter.pipeline.classify import Classifier

    items = records(count, tenants)
    details = DetailLimits(max_records=10**9, message_max_chars=512)  # on, as by default
    label_sets = len(aggregate(items, Classifier(), details).counts)

    baseline = timed(
        lambda: straightforward_aggregate(items, Classifier().classify), repeat, time.process_time
    )
    mine = timed(lambda: aggregate(items, Classifier(), details), repeat, time.process_time)
    rows: list[Row] = [
        (
            f"aggregate {count:,} parsed records of {tenants:,} tenants ({label_sets:,} label sets), "
            "details on, CPU time",
            "straightforward, record by record, the same memoized classifier (baseline)",
            f"{count / baseline:,.0f} records/s",
            "",
            "",
        ),
        (
            "",
            "PollAggregator (ours), no series cap",
            f"{count / mine:,.0f} records/s",
            f"{baseline / mine:.1f}x the baseline",
            "at least 200,000 records/s",
        ),
    ]
    cap = Settings.model_fields["max_series_per_source"].default
    if label_sets > cap:
        capped = timed(lambda: aggregate(items, Classifier(), details, cap), repeat, time.process_time)
        rows.append(
            (
                "",
                f"PollAggregator (ours), the default series cap ({cap:,} label sets kept)",
                f"{count / capped:,.0f} records/s",
                f"{baseline / capped:.1f}x the baseline",
                "at least 200,000 records/s",
            )
        )
    return rows


def rezolve_simulator(tenants: int, platforms: tuple[str, ...], files: int) -> Any:
    from exporter.simulators.rezolve import RezolveFile, RezolveSimulator

    simulator = RezolveSimulator(token="bench-token")
    now = time.time()
    for t in range(tenants):
        tenant = str(uuid.UUID(int=t + 1))
        simulator.add_tenant(tenant, f"t{t}.rezolve.ai")
        for kind in platforms:
            for f in range(files):
                simulator.put(
                    tenant,
                    kind,
                    RezolveFile(
                        f"file-{f}",
                        f"file-{f}.pdf",
                        "parse_error",
                        "Unable to parse document content",
                        now - f,
                        f % 3,
                    ),
                )
    answered_once(simulator, "_failed_files")
    return simulator


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rezolve_source(
    name: str, port: int, tenants: range, platforms: tuple[str, ...], **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "rezolve",
        "base_url": f"http://127.0.0.1:{port}",
        "token": "bench-token",
        "timeout": "60s",
        "tenants": [
            {
                "tenant_id": str(uuid.UUID(int=t + 1)),
                "rezolve_domain": f"t{t}.rezolve.ai",
                "platforms": list(platforms),
            }
            for t in tenants
        ],
        **extra,
    }


PLATFORMS = ("sharepoint", "servicenow", "confluence", "itglue", "web")


def bench_tenants(tenants: int, files: int, latency: float, concurrency: int, shards: int) -> list[Row]:
    from exporter.pipeline.shard import shard_of

    served = Served(functools.partial(rezolve_simulator, tenants, PLATFORMS, files), latency)
    rows: list[Row] = []
    try:
        # Retry counts 0 to 2 make three label sets a tenant and platform: a cap above them, so
        # that every record is counted and a shard's records are its share of them.
        config = rezolve_source(
            "rezolve",
            served.port,
            range(tenants),
            PLATFORMS,
            max_concurrency=concurrency,
        )
        top: dict[str, Any] = {"max_series_per_source": tenants * len(PLATFORMS) * 3}
        requests = tenants * len(PLATFORMS)
        ideal = requests / concurrency * latency
        before = rss_mib()
        whole, exporter = poll_seconds(config, 2, **top)
        result = exporter.states["rezolve"].result
        assert result is not None
        records = len(result.entries)
        assert records == tenants * len(PLATFORMS) * files, records
        grown = rss_mib() - before
        rows += [
            (
                f"{tenants:,} Rezolve tenants x {len(PLATFORMS)} platforms, one source, "
                f"{latency * 1000:.0f} ms a response",
                f"ideal: {requests:,} requests / {concurrency} x latency",
                f"{ideal:.2f} s",
                "",
                "",
            ),
            (
                "",
                f"the exporter's poll (ours): {records:,} records, {len(result.counts):,} series",
                f"{whole:.2f} s, {whole / records * 1e6:.0f} us a record, +{grown:.0f} MiB",
                f"{whole / ideal:.2f}x the ideal",
                "",
            ),
        ]
        del exporter
        # Sharding at scale: each shard polls only its own tenants.
        ids = [str(uuid.UUID(int=t + 1)) for t in range(tenants)]
        for index in range(shards):
            took, shard = poll_seconds(config, 2, {"index": index, "total": shards}, **top)
            owned = sum(shard_of("rezolve", t, shards) == index for t in ids)
            shard_result = shard.states["rezolve"].result
            assert shard_result is not None
            shard_records = len(shard_result.entries)
            rows.append(
                (
                    "" if index else f"the same, {shards} shards",
                    f"shard {index}: {owned * len(PLATFORMS):,} requests, {shard_records:,} records",
                    f"{took:.2f} s",
                    f"{took / whole:.2f} of the unsharded poll",
                    f"its share: {owned / tenants:.2f}",
                )
            )
    finally:
        served.close()
    return rows


def bench_sources(sources: int, tenants: int, interval: float, seconds: float, latency: float) -> list[Row]:
    from exporter.scheduler import build_scheduler, jitter_for

    served = Served(functools.partial(rezolve_simulator, sources * tenants, ("sharepoint",), 5), latency)
    try:
        document = {
            "poll_interval": f"{interval}s",
            "sources": [
                rezolve_source(
                    f"source-{i}", served.port, range(i * tenants, (i + 1) * tenants), ("sharepoint",)
                )
                for i in range(sources)
            ],
        }
        before = rss_mib()
        exporter = Exporter(build_settings(document, {}))
        first: dict[str, float] = {}
        started = time.time()

        async def run() -> None:
            scheduler = build_scheduler(exporter.lanes.values())
            scheduler.start()
            await asyncio.sleep(seconds)
            scheduler.shutdown(wait=False)
            await exporter.aclose()

        asyncio.run(run())
        states = exporter.states.values()
        polls = sorted(state.duration_count for state in states)
        for state in states:
            first[state.name] = (state.last_poll_start or started) - started
        durations = sorted(
            (state.duration_sum / state.duration_count) for state in states if state.duration_count
        )
        records = sum(len(state.result.entries) for state in states if state.result is not None)
        grown = rss_mib() - before
    finally:
        served.close()
    expected = seconds / interval
    return [
        (
            f"{sources} sources in one process, each {tenants} tenants, every {interval:.0f} s "
            f"(jitter {jitter_for(interval):.0f} s), for {seconds:.0f} s",
            f"polls per source (about {expected:.0f} expected)",
            f"min {polls[0]}, median {polls[len(polls) // 2]}, max {polls[-1]}",
            f"least polled: {polls[0] / expected:.2f} of its schedule",
            "no source starved",
        ),
        (
            "",
            "mean poll time per source, memory",
            f"median {durations[len(durations) // 2] * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms; "
            f"{records:,} records, +{grown:.0f} MiB",
            "",
            "",
        ),
    ]


BENCHES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "tenants": lambda a: bench_tenants(2_000, 5, 0.005, 8, 3),
    "sources": lambda a: bench_sources(200, 10, 10.0, 60.0, 0.005),
    "aggregation": lambda a: [*bench_aggregation(200_000, 50, 5), *bench_aggregation(200_000, 2_000, 5)],
    "table": lambda a: bench_table(a.entities, a.changed, a.repeat),
    "commvault": lambda a: bench_commvault(500, 200, 0.02, 8, a.repeat),
    "unstructured": lambda a: bench_unstructured(200, 100, 0.02, 8, a.repeat),
    "aep": lambda a: bench_aep(50, 20, 0.02, 8, a.repeat),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| target | variant | result | ratio | bound |\n| --- | --- | --- | --- | --- |")
    context = multiprocessing.get_context("spawn")
    for name in args.only.split(","):
        # Each target in a fresh process: none is measured among what another left in memory
        # (the collector walks all of it, and a run's order changed a target by a fifth).
        rows = context.Queue()
        child = context.Process(target=run_target, args=(name, args, rows))
        child.start()
        while True:
            try:
                found = rows.get(timeout=1)
                break
            except queue.Empty:
                if not child.is_alive():
                    raise SystemExit(f"{name}: the benchmark's process ended with {child.exitcode}") from None
        for row in found:
            print(f"| {' | '.join(row)} |", flush=True)
        child.join()


def run_target(name: str, args: argparse.Namespace, rows: Any) -> None:
    tune_garbage_collection()  # as the program does at start
    rows.put(BENCHES[name](args))


if __name__ == "__main__":
    main()
