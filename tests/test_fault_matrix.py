"""Every HTTP kind under every fault, one test per cell, against the real simulators over HTTP.

Each cell runs the same story. A baseline poll sees records ``a`` and ``b``. The world then
changes to ``b`` and ``c`` while the victim's data path breaks. While the faulted poll is in
flight, ``/metrics`` answers over HTTP with the previous series. The poll counts its reason once,
sets ``up`` to 0, keeps the last values and leaves a bystander source untouched. One more faulted
poll past ``stale_after`` drops the victim's series. Then the fault clears and the next poll
counts exactly one discovered (``c``) and one resolved (``a``): nothing the failure hid is
counted twice. Faults that a retry absorbs (502, 503, a 429 with ``Retry-After``) succeed in the
same poll and count the change at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate

import httpx
import pytest

from exporter.config import build_settings
from exporter.records import Reason
from exporter.runtime import Exporter
from exporter.serving.server import WebServer
from exporter.simulators.base import Simulator
from exporter.simulators.rezolve import RezolveSimulator
from tests.conftest import parse_exposition, series
from tests.kinds import KINDS, Kind, rezolve_simulator

START = 1_800_000_000.0
STALE_AFTER = 60.0


@dataclass(frozen=True)
class Fault:
    """A way for the data path to break: how to apply it, and the reason it must count (None
    when a retry absorbs it and the poll succeeds)."""

    apply: Callable[[Simulator, str], None]
    reason: Reason | None
    clear: Callable[[Simulator], None] = lambda sim: sim.clear_faults()


def http_date(seconds_from_now: float) -> str:
    import time

    return formatdate(time.time() + seconds_from_now, usegmt=True)


OVER_CAP = b"[" + b" " * 1_100_000 + b"]"

FAULTS: dict[str, Fault] = {
    "refused": Fault(lambda sim, path: sim.pause(), Reason.CONNECTION, clear=lambda sim: sim.resume()),
    "reset-mid-body": Fault(lambda sim, path: sim.inject(path, mode="reset"), Reason.CONNECTION),
    "timeout-mid-body": Fault(lambda sim, path: sim.inject(path, mode="stall"), Reason.TIMEOUT),
    "500": Fault(
        lambda sim, path: sim.inject(path, status=500, body='{"detail": "Internal Server Error"}'),
        Reason.HTTP_ERROR,
    ),
    "502-then-ok": Fault(lambda sim, path: sim.inject(path, status=502, body="Bad Gateway", times=1), None),
    "503-then-ok": Fault(lambda sim, path: sim.inject(path, status=503, times=2), None),
    "429-retry-after-seconds": Fault(
        lambda sim, path: sim.inject(path, status=429, headers={"Retry-After": "1"}, times=1), None
    ),
    "429-retry-after-date": Fault(
        lambda sim, path: sim.inject(path, status=429, headers={"Retry-After": http_date(1)}, times=1), None
    ),
    "429-beyond-the-poll": Fault(
        lambda sim, path: sim.inject(path, status=429, headers={"Retry-After": "3600"}),
        Reason.RATE_LIMITED,
    ),
    "401": Fault(
        lambda sim, path: sim.inject(path, status=401, body='{"message": "token is not valid"}'),
        Reason.AUTH,
    ),
    "truncated-json": Fault(
        lambda sim, path: sim.inject(path, status=200, body='{"data": [{"name": "a.js'),
        Reason.INVALID_RESPONSE,
    ),
    "list-for-object": Fault(
        lambda sim, path: sim.inject(path, status=200, body="[]"), Reason.INVALID_RESPONSE
    ),
    "null-body": Fault(lambda sim, path: sim.inject(path, status=200, body="null"), Reason.INVALID_RESPONSE),
    "over-size-cap": Fault(
        lambda sim, path: sim.inject(path, status=200, body=OVER_CAP), Reason.INVALID_RESPONSE
    ),
    "slow-trickle": Fault(lambda sim, path: sim.inject(path, mode="trickle", delay=0.05), Reason.TIMEOUT),
}


@pytest.fixture
def bystander() -> Iterator[RezolveSimulator]:
    sim = rezolve_simulator().start()
    KINDS["rezolve"].world(sim, ["x", "y", "z"], START - 60)
    try:
        yield sim
    finally:
        sim.stop()


class Clock:
    """The exporter's wall clock, moved by the test (the event loop keeps real time, which the
    network needs): staleness is reached by moving it, not by waiting."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def victim_value(text: str, name: str, **labels: str) -> float:
    found = series(parse_exposition(text), name)
    return sum(v for key, v in found.items() if ("source", "victim") in key and set(labels.items()) <= key)


def failed_files(text: str, source: str) -> float:
    return sum(
        v
        for key, v in series(parse_exposition(text), "ingestion_failed_files").items()
        if ("source", source) in key
    )


def errors(text: str) -> dict[str, float]:
    found = series(parse_exposition(text), "ingestion_source_poll_errors_total")
    return {dict(key)["reason"]: v for key, v in found.items() if ("source", "victim") in key and v}


def up(text: str, source: str) -> float | None:
    return parse_exposition(text).get(("ingestion_source_up", frozenset({("source", source)})))


async def scrape(client: httpx.AsyncClient, exporter: Exporter | None = None) -> str:
    """GET /metrics; with ``exporter``, until the body shows its latest snapshot (a scrape right
    after a poll may get the previous body while the new one is made)."""
    for _ in range(500):
        response = await client.get("/metrics")
        assert response.status_code == 200
        # The snapshot, then the process metrics of the moment.
        if exporter is None or response.content.startswith(exporter.snapshot.text):
            return response.text
        await asyncio.sleep(0.01)
    raise AssertionError("/metrics never showed the latest snapshot")


@pytest.mark.parametrize("fault_name", list(FAULTS))
@pytest.mark.parametrize("kind_name", list(KINDS))
def test_fault_matrix(kind_name: str, fault_name: str, bystander: RezolveSimulator) -> None:
    kind, fault = KINDS[kind_name], FAULTS[fault_name]
    sim = kind.simulator().start()
    try:
        kind.world(sim, ["a", "b"], START - 600)
        document = {
            "poll_timeout": "2s",
            "stale_after": f"{STALE_AFTER:g}s",
            "sources": [
                {**kind.source(sim, "victim"), "timeout": "1s", "max_response_bytes": 1_000_000},
                KINDS["rezolve"].source(bystander, "bystander"),
            ],
        }
        clock = Clock()
        exporter = Exporter(build_settings(document, {}), clock=clock)
        asyncio.run(story(exporter, clock, kind, fault, sim))
    finally:
        sim.stop()


async def story(exporter: Exporter, clock: Clock, kind: Kind, fault: Fault, sim: Simulator) -> None:
    server = await WebServer(exporter, "127.0.0.1", 0).start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5)
    try:
        await exporter.poll_all()
        baseline = await scrape(client, exporter)
        assert (up(baseline, "victim"), failed_files(baseline, "victim")) == (1, 2)
        assert failed_files(baseline, "bystander") == 3
        logins = kind.logins(sim)

        kind.world(sim, ["b", "c"], START - 600)
        fault.apply(sim, kind.data_path)
        clock.now += 1
        polling = asyncio.create_task(exporter.poll_all())
        during = await scrape(client)  # the exporter keeps serving while the victim's poll is stuck
        assert failed_files(during, "victim") == 2 and failed_files(during, "bystander") == 3
        await polling
        after = await scrape(client, exporter)
        assert up(after, "bystander") == 1 and failed_files(after, "bystander") == 3

        if fault.reason is None:  # a retry absorbed it: the change is counted at once
            assert (up(after, "victim"), errors(after)) == (1, {})
            assert failed_files(after, "victim") == 2
            assert victim_value(after, "ingestion_failed_files_discovered_total") == 1
            assert victim_value(after, "ingestion_failed_files_resolved_total") == 1
            assert len(sim.calls(kind.data_path)) >= 3  # baseline, the refused try, the retry
            return

        assert (up(after, "victim"), errors(after)) == (0, {fault.reason.value: 1})
        assert failed_files(after, "victim") == 2  # the last values, kept
        assert victim_value(after, "ingestion_failed_files_discovered_total") == 0
        assert victim_value(after, "ingestion_failed_files_resolved_total") == 0
        if fault.reason is Reason.AUTH:  # re-authenticated once if it can, then gave up
            assert kind.logins(sim) == (logins + 1 if logins else 0)

        clock.now += STALE_AFTER  # past stale_after since the last success, still failing
        await exporter.poll_all()
        stale = await scrape(client, exporter)
        assert failed_files(stale, "victim") == 0 and failed_files(stale, "bystander") == 3
        assert (up(stale, "victim"), errors(stale)) == (0, {fault.reason.value: 2})

        fault.clear(sim)
        clock.now += 1
        await exporter.poll_all()
        recovered = await scrape(client, exporter)
        assert (up(recovered, "victim"), failed_files(recovered, "victim")) == (1, 2)
        assert victim_value(recovered, "ingestion_failed_files_discovered_total") == 1
        assert victim_value(recovered, "ingestion_failed_files_resolved_total") == 1
        assert errors(recovered) == {fault.reason.value: 2}
    finally:
        await client.aclose()
        await server.stop()
        await exporter.aclose()
