"""The endpoints of README, HTTP endpoints, reading only a small read-only view of the exporter."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol

from aiohttp import web

from exporter import __version__
from exporter.pipeline.render import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    Body,
    Snapshot,
    render_process,
)
from exporter.pipeline.state import SourceState
from exporter.redact import Redactor
from exporter.serving.failures import (
    BadQuery,
    FailureIndex,
    as_csv,
    as_json,
    group,
    groups_as_csv,
    groups_as_json,
    parse_query,
    search,
)
from exporter.serving.triage import triage_page

INDEX = """<!doctype html>
<html><head><title>ingestion-failure-exporter</title></head>
<body><h1>ingestion-failure-exporter {version}</h1>
<ul>
<li><a href="metrics">/metrics</a> &mdash; Prometheus metrics</li>
<li><a href="sources">/sources</a> &mdash; state of every source (JSON)</li>
<li><a href="healthz">/healthz</a> &mdash; liveness</li>
<li><a href="readyz">/readyz</a> &mdash; readiness (every source polled once)</li>
<li><a href="failures?format=html">/failures</a> &mdash; which files failed (also as JSON and CSV)</li>
</ul></body></html>
"""

# Reloads the configuration; the problems of a rejected one, or none.
Reload = Callable[[], Awaitable[list[str]]]


class ExporterView(Protocol):
    """What the endpoints read of the running exporter, and nothing else."""

    @property
    def snapshot(self) -> Snapshot: ...

    @property
    def ready(self) -> bool: ...

    @property
    def states(self) -> Mapping[str, SourceState]: ...

    @property
    def redactor(self) -> Redactor: ...

    @property
    def details_enabled(self) -> bool: ...

    @property
    def dashboard_url(self) -> str | None: ...

    def on_publish(self, listener: Callable[[Snapshot], None]) -> None: ...


def _weighted(header: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """The entries of an Accept-style header: (value, parameters, q), q defaulting to 1."""
    for entry in header.split(","):
        value, *raw_params = (part.strip() for part in entry.split(";"))
        params = {}
        for raw in raw_params:
            key, _, param = raw.partition("=")
            params[key.strip().lower()] = param.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        if value:
            yield value.lower(), params, q


def wants_openmetrics(accept: str) -> bool:
    """Whether the scraper prefers OpenMetrics 1.0.0 to the text format (RFC 9110 weights)."""
    best_openmetrics, best_text = 0.0, 0.0
    for media, params, q in _weighted(accept):
        if media == "application/openmetrics-text" and params.get("version", "1.0.0") == "1.0.0":
            best_openmetrics = max(best_openmetrics, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return best_openmetrics > 0 and best_openmetrics >= best_text


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether gzip is acceptable: named with q > 0, or ``*`` with q > 0 and gzip not named."""
    named: float | None = None
    anything = 0.0
    for coding, _, q in _weighted(accept_encoding):
        if coding in ("gzip", "x-gzip"):
            named = q if named is None else max(named, q)
        elif coding == "*":
            anything = q
    return (named if named is not None else anything) > 0


class Bodies:
    """Response bodies, made off the event loop once per snapshot, format and encoding: joining and
    compressing are O(all series). A published snapshot's bodies are made at once (``refresh``),
    for every kind scrapers have asked for. While one is being made, scrapes get the previous
    one (a poll's result is at most that long late), so that no scrape waits for it; only the
    very first body of each kind is waited for."""

    def __init__(self) -> None:
        self._ready: dict[tuple[bool, bool], tuple[Snapshot, Body]] = {}
        self._making: dict[tuple[bool, bool], tuple[Snapshot, asyncio.Future[Body]]] = {}
        self._order: dict[tuple[bool, bool], int] = {}  # of the ready body, by when it was asked for
        self._asked = itertools.count()

    def refresh(self, snapshot: Snapshot) -> None:
        """A new snapshot: make the bodies scrapers will ask for, before they ask (a scraper
        that comes once a minute must not be served what was current at its previous scrape)."""
        for kind in list(self._ready):
            self._making_of(kind, snapshot)

    def _making_of(self, kind: tuple[bool, bool], snapshot: Snapshot) -> asyncio.Future[Body]:
        making = self._making.get(kind)
        if making is None or making[0] is not snapshot:
            made = asyncio.ensure_future(asyncio.to_thread(snapshot.body, *kind))
            made.add_done_callback(functools.partial(self._made, kind, snapshot, next(self._asked)))
            making = self._making[kind] = (snapshot, made)
        return making[1]

    async def get(self, snapshot: Snapshot, openmetrics: bool, gzipped: bool) -> Body:
        kind = (openmetrics, gzipped)
        ready = self._ready.get(kind)
        if ready is not None and ready[0] is snapshot:
            return ready[1]
        making = self._making_of(kind, snapshot)
        if ready is not None:
            return ready[1]
        # A scrape that gives up must not cancel the work the others wait for.
        return await asyncio.shield(making)

    def _made(
        self, kind: tuple[bool, bool], snapshot: Snapshot, order: int, made: asyncio.Future[Body]
    ) -> None:
        making = self._making.get(kind)
        if making is not None and making[0] is snapshot:
            del self._making[kind]
        # Serve it even if a newer one is being made meanwhile (publishes faster than bodies are
        # made must not starve scrapers), but never in place of a newer one made already.
        if not made.cancelled() and made.exception() is None and order > self._order.get(kind, -1):
            self._ready[kind] = (snapshot, made.result())
            self._order[kind] = order

    def shows(self, snapshot: Snapshot) -> bool:
        """Whether every body served now is this snapshot's."""
        return all(ready is snapshot for ready, _ in self._ready.values())


# How old the process metrics in an answer may be. Every scrape reading /proc and completing the
# body (the gzip stream on a copy of its compressor, or a copy of an uncompressed body) cost
# more than the rest of a scrape: back-to-back scrapers got a third of the answers they had
# before (docs/performance.md). Within a second the answer is the same bytes.
PROCESS_MAX_AGE = 1.0


class Completed:
    """What /metrics answers: a snapshot's body completed with the process metrics, remade when
    the body changes or the process metrics are ``max_age`` old."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_age: float = PROCESS_MAX_AGE) -> None:
        self._clock, self._max_age = clock, max_age
        self._answers: dict[tuple[bool, bool], tuple[Body, float, bytes]] = {}

    def answer(self, made: Body, openmetrics: bool, gzipped: bool) -> bytes:
        kind, now = (openmetrics, gzipped), self._clock()
        known = self._answers.get(kind)
        if known is not None and known[0] is made and now - known[1] < self._max_age:
            return known[2]
        body = made.complete(render_process(openmetrics))
        self._answers[kind] = (made, now, body)
        return body


def source_report(exporter: ExporterView) -> dict[str, Any]:
    scrub = exporter.redactor.scrub
    report: dict[str, Any] = {}
    for name, state in exporter.states.items():
        error = state.last_error
        report[name] = {
            "kind": state.kind,
            "interval_seconds": state.interval,
            "up": state.up,
            "stale": state.stale,
            "last_poll_start": state.last_poll_start,
            "last_poll_end": state.last_poll_end,
            "last_success": state.last_success,
            "last_error": None
            if error is None
            else {"reason": error.reason.value, "message": scrub(error.detail)},
            "records_scanned": None if state.result is None else state.result.scanned,
            "warnings": [scrub(warning) for warning in state.warnings],
        }
    return report


def routes(exporter: ExporterView, reload: Reload | None) -> list[web.RouteDef]:
    """The endpoints; ``POST /-/reload`` only with a reload (``--enable-lifecycle``)."""
    bodies = Bodies()
    exporter.on_publish(bodies.refresh)
    completed = Completed()

    async def metrics(request: web.Request) -> web.Response:
        openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
        gzipped = accepts_gzip(request.headers.get("Accept-Encoding", ""))
        made = await bodies.get(exporter.snapshot, openmetrics, gzipped)
        # The process metrics change between snapshots: read at most a second before.
        body = completed.answer(made, openmetrics, gzipped)
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return web.Response(body=body, headers={"Content-Type": content_type, **headers})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    # Ready once every source's first outcome is in what /metrics serves; then it stays ready
    # (a later poll's body being made is no reason to take the exporter out of service).
    latched = False

    async def readyz(request: web.Request) -> web.Response:
        nonlocal latched
        latched = latched or (exporter.ready and bodies.shows(exporter.snapshot))
        if latched:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def sources(request: web.Request) -> web.Response:
        return web.json_response(source_report(exporter), dumps=functools.partial(json.dumps, indent=2))

    index_of_failures = FailureIndex()

    async def failures(request: web.Request) -> web.Response:
        if not exporter.details_enabled:
            return web.Response(status=404, text="the failure details are off (failure_details.enabled)\n")
        try:
            query = parse_query(request.query.items(), request.headers.get("Accept", ""))
        except BadQuery as problem:
            return web.Response(status=400, text=f"{problem}\n")
        states = exporter.states
        # Indexing a new result and searching are O(records): off the event loop.
        scrub = exporter.redactor.scrub
        indexes = index_of_failures.refresh  # called in the worker thread: it may index a new result
        if query.format == "html":
            now, dashboard = time.time(), exporter.dashboard_url
            body = await asyncio.to_thread(
                lambda: triage_page(indexes(states), query, states, scrub=scrub, now=now, dashboard=dashboard)
            )
            return web.Response(body=body, content_type="text/html", charset="utf-8")
        if query.group_by:
            groups = await asyncio.to_thread(lambda: group(indexes(states), query, scrub=scrub))
            if query.format == "csv":
                return web.Response(body=groups_as_csv(groups), content_type="text/csv", charset="utf-8")
            return web.Response(body=groups_as_json(groups, query), content_type="application/json")
        page = await asyncio.to_thread(lambda: search(indexes(states), query, scrub=scrub))
        if query.format == "csv":
            return web.Response(body=as_csv(page), content_type="text/csv", charset="utf-8")
        return web.Response(body=as_json(page, query), content_type="application/json")

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=INDEX.format(version=__version__), content_type="text/html")

    table = [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/-/healthy", healthz),  # Prometheus' own spellings, which probes often use
        web.get("/readyz", readyz),
        web.get("/-/ready", readyz),
        web.get("/sources", sources),
        web.get("/failures", failures),
        web.get("/", index),
    ]
    if reload is not None:

        async def reload_configuration(request: web.Request) -> web.Response:
            problems = await reload()
            if problems:
                return web.Response(status=400, text="\n".join(problems) + "\n")
            return web.Response(text="configuration reloaded\n")

        table.append(web.post("/-/reload", reload_configuration))
    return table
