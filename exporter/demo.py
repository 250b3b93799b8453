"""``--demo``: the simulators, seeded with data that changes, and a configuration reading them."""

from __future__ import annotations

import logging
import random
import socket
import threading
from typing import Any

from exporter.simulators.base import Simulator
from exporter.simulators.rezolve import RezolveSimulator, seed_demo
from exporter.simulators.table import AZURITE, seed_demo_table

log = logging.getLogger(__name__)

DEMO_LISTEN = "127.0.0.1:9890"
EVOLVE_EVERY_SECONDS = 10.0


def azurite_running(host: str = "127.0.0.1", port: int = 10002) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


class Demo:
    """Starts the simulators and keeps their data moving until stopped."""

    def __init__(self, seed: int = 42) -> None:
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self.simulators: list[Simulator] = []
        self._evolvers: list[RezolveSimulator] = []

    def start(self) -> dict[str, Any]:
        """Start everything; returns the configuration document that reads it."""
        rezolve = RezolveSimulator().start()
        self.simulators.append(rezolve)
        self._evolvers.append(rezolve)
        tenants = seed_demo(rezolve, self._rng)
        sources: list[dict[str, Any]] = [
            {
                "name": "rezolve-demo",
                "kind": "rezolve",
                "base_url": rezolve.url,
                "token": rezolve.token,
                "tenants": [{"tenant_id": t, "rezolve_domain": d} for t, d in tenants],
            }
        ]
        if azurite_running():
            try:
                seed_demo_table(AZURITE, "FailureRecords", self._rng)
                sources.append({"name": "failure-table", "kind": "azure_table", "connection_string": AZURITE})
            except Exception as exc:  # the demo runs without the table rather than not at all
                log.warning("Azurite is listening but could not be seeded: %s", exc)
        else:
            log.info("no table emulator on 127.0.0.1:10002: the demo runs without a table source")
        threading.Thread(target=self._evolve, name="demo-evolve", daemon=True).start()
        return {"listen_address": DEMO_LISTEN, "poll_interval": "15s", "sources": sources}

    def _evolve(self) -> None:
        while not self._stop.wait(EVOLVE_EVERY_SECONDS):
            for simulator in self._evolvers:
                simulator.evolve(self._rng)

    def stop(self) -> None:
        self._stop.set()
        for simulator in self.simulators:
            simulator.stop()
