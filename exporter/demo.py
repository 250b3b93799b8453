"""``--demo``: the simulators, seeded with data that changes, and a configuration reading them."""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from exporter.simulators import aep, commvault, rezolve, unstructured
from exporter.simulators.base import Simulator
from exporter.simulators.table import AZURITE, seed_demo_table

log = logging.getLogger(__name__)

DEMO_LISTEN = "127.0.0.1:9890"
EVOLVE_EVERY_SECONDS = 10.0
# Where the demo looks for a table emulator; by default Azurite's own defaults.
TABLE_ENV = "DEMO_AZURITE_CONNECTION_STRING"


class Evolving(Protocol):
    def evolve(self, rng: random.Random) -> None: ...


def table_address(connection_string: str) -> tuple[str, int]:
    match = re.search(r"TableEndpoint=([^;]+)", connection_string)
    if not match:
        return "127.0.0.1", 10002  # UseDevelopmentStorage=true
    endpoint = urlsplit(match.group(1))
    return endpoint.hostname or "127.0.0.1", endpoint.port or 10002


def emulator_listening(host: str, port: int, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.3):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)


class Demo:
    """Starts the simulators and keeps their data moving until stopped (or, with ``evolve``
    false, keeps it steady: the soak benchmark's data)."""

    def __init__(self, seed: int = 42, *, evolve: bool = True) -> None:
        self._rng = random.Random(seed)
        self._moving = evolve
        self._stop = threading.Event()
        self.simulators: list[Simulator] = []
        self._evolving: list[Evolving] = []

    def start(self) -> dict[str, Any]:
        """Start everything; returns the configuration document that reads it."""
        rng = self._rng
        rz = self._keep(rezolve.RezolveSimulator().start())
        rezolve.seed_demo(rz, rng)
        cv = self._keep(commvault.CommvaultSimulator().start())
        commvault.seed_demo(cv, rng)
        un = self._keep(unstructured.UnstructuredSimulator().start())
        unstructured.seed_demo(un, rng)
        ae = self._keep(aep.AepSimulator().start())
        aep.seed_demo(ae, rng)
        sources = [
            rz.source_config("rezolve-demo"),
            cv.source_config("commvault-demo", tenant="acme"),
            un.source_config("unstructured-demo", tenant="acme"),
            ae.source_config("aep-demo"),
        ]
        table = os.environ.get(TABLE_ENV, AZURITE)
        host, port = table_address(table)
        # An emulator named explicitly may still be starting (docker compose): give it a moment.
        if emulator_listening(host, port, wait_seconds=10.0 if TABLE_ENV in os.environ else 0.0):
            try:
                seed_demo_table(table, "FailureRecords", rng)
                sources.append({"name": "failure-table", "kind": "azure_table", "connection_string": table})
            except Exception as exc:  # the demo runs without the table rather than not at all
                log.warning("the table emulator is listening but could not be seeded: %s", exc)
        else:
            log.info("no table emulator on %s:%d: the demo runs without a table source", host, port)
        if self._moving:
            threading.Thread(target=self._evolve, name="demo-evolve", daemon=True).start()
        return {"listen_address": DEMO_LISTEN, "poll_interval": "15s", "sources": sources}

    def _keep(self, simulator: Any) -> Any:
        self.simulators.append(simulator)
        self._evolving.append(simulator)
        return simulator

    def _evolve(self) -> None:
        while not self._stop.wait(EVOLVE_EVERY_SECONDS):
            for simulator in self._evolving:
                simulator.evolve(self._rng)

    def stop(self) -> None:
        self._stop.set()
        for simulator in self.simulators:
            simulator.stop()
