"""Fixtures that start real servers on free loopback ports: simulators, Azurite, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.simulators.rezolve import RezolveFile, RezolveSimulator
from exporter.simulators.table import azurite_connection_string
from exporter.simulators.table import start_azurite as azurite_process

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-table"
DEBIAN_BIN = ROOT / ".tools" / "debian" / "usr" / "bin"
TENANT_A = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
TENANT_B = "9b2d7c1e-0f4a-4d6b-8e3c-5a1b2c3d4e5f"


def debian_tool(name: str) -> str:
    """Prometheus, promtool, Alertmanager or amtool, unpacked from Debian's packages by `make test`.
    Missing is a failure, never a skip."""
    path = DEBIAN_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not at {path}: run `make test`, which unpacks it from Debian's packages")
    return str(path)


def debian_alertmanager(*args: str) -> list[str]:
    """The command that runs Debian's Alertmanager with ``args``. The binary reads its default
    notification templates from /usr/share/prometheus/alertmanager, a path built into it, and the
    package is unpacked into the project, not installed: so it runs in a mount namespace of its
    own, where /usr/share is the unpacked package's. Nothing outside that process sees the mount."""
    binary = debian_tool("prometheus-alertmanager")
    share = DEBIAN_BIN.parent / "share"
    return [
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", 'mount --bind "$0" /usr/share && exec "$@"', str(share), binary, *args,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, deadline_seconds: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {deadline_seconds}s")


def eventually(check: Callable[[], Any], deadline_seconds: float = 20.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (no fixed sleeps in tests)."""
    deadline = time.monotonic() + deadline_seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {deadline_seconds}s (last: {last!r})")


@dataclass
class Listening:
    """A program started by ``listening``; ``out`` and ``err`` hold what it printed, once stopped."""

    url: str
    process: subprocess.Popen[str]
    out: str = ""
    err: str = ""


@contextlib.contextmanager
def listening(
    argv: list[str],
    cwd: Path,
    *,
    listen_flag: str = "--listen",
    ready_seconds: float = 20.0,
    auth: tuple[str, str] | None = None,
) -> Iterator[Listening]:
    """Run ``argv`` on a free loopback port until it is ready (``/readyz`` answers 200), then stop
    it, the process it started and no other, with SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [*argv, listen_flag, f"127.0.0.1:{port}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Listening(f"http://127.0.0.1:{port}", process)
    try:
        wait_for_port(port, process=process)
        eventually(lambda: httpx.get(f"{running.url}/readyz", auth=auth).status_code == 200, ready_seconds)
        yield running
    finally:
        process.terminate()
        running.out, running.err = process.communicate(timeout=30)


@dataclass(frozen=True)
class Azurite:
    port: int

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.port)


def start_azurite(port: int, *options: str) -> subprocess.Popen[bytes]:
    """Azurite's table service on ``port``, once it listens. Missing is a failure, never a skip."""
    if not AZURITE_BIN.exists():
        pytest.fail(f"Azurite is not installed at {AZURITE_BIN}: run `make test`, which installs it")
    return azurite_process(AZURITE_BIN, port, *options)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """The real Azure Table emulator, shared by the session."""
    port = free_port()
    process = start_azurite(port)
    try:
        yield Azurite(port)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def rezolve() -> Iterator[RezolveSimulator]:
    simulator = RezolveSimulator(token="test-token").start()
    simulator.add_tenant(TENANT_A, "acme.rezolve.ai")
    simulator.add_tenant(TENANT_B, "globex.rezolve.ai")
    try:
        yield simulator
    finally:
        simulator.stop()


def rezolve_file(file_id: str, error_type: str, message: str, failed_at: float, retry: int) -> RezolveFile:
    return RezolveFile(file_id, f"{file_id}.pdf", error_type, message, failed_at, retry)


def rezolve_source(simulator: RezolveSimulator, **overrides: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "name": "rezolve-test",
        "kind": "rezolve",
        "base_url": simulator.url,
        "token": simulator.token,
        "timeout": "2s",
        "tenants": [
            {
                "tenant_id": TENANT_A,
                "rezolve_domain": "acme.rezolve.ai",
                "platforms": ["sharepoint", "servicenow"],
            },
        ],
    }
    source.update(overrides)
    return source


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str,
    config: dict[str, Any] | None = None,
    tmp_path: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> CliResult:
    """Run the real console program in a subprocess."""
    argv = [sys.executable, "-m", "exporter", *args]
    if config is not None:
        assert tmp_path is not None
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        argv += ["--config", str(path)]
    completed = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a text exposition keyed by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def series(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str
) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


def run_polls(target: dict[str, Any] | Any, *between: Callable[[], Any]) -> Any:
    """Poll every source of an exporter (or of one built from a configuration document), then
    for each step change the world and poll again, all in one event loop (an HTTP client
    belongs to the loop it first ran in)."""
    import asyncio

    from exporter.config import build_settings
    from exporter.runtime import Exporter

    exporter = target if isinstance(target, Exporter) else Exporter(build_settings(target, {}))

    async def run() -> None:
        try:
            await exporter.poll_all()
            for step in between:
                step()
                await exporter.poll_all()
        finally:
            await exporter.aclose()

    asyncio.run(run())
    return exporter


def poll_holding_until_counted(
    document: dict[str, Any], simulator: Any, path: str, first: str, **matching: Any
) -> Any:
    """Poll the document's one source once, the simulator holding the answers to ``path`` (and
    ``matching``) until the record whose identity ends with ``first`` is counted. A source that
    counts only after its last answer never counts it: the held parts time out and fail. The
    poll's result."""
    import asyncio
    import threading

    from exporter.config import build_settings
    from exporter.pipeline.aggregate import PollAggregator
    from exporter.pipeline.classify import Classifier
    from exporter.records import FailureRecord
    from exporter.sources import build_source

    counted = threading.Event()

    class Watched(PollAggregator):
        def add(self, record: FailureRecord) -> None:
            super().add(record)
            if record.identity[-1] == first:
                counted.set()

    [config] = build_settings(document, {}).sources
    source = build_source(config)
    out = Watched(
        classifier=Classifier(), retry_count_cap=5, max_series=1000, owns_tenant=lambda _: True, deadline=1e18
    )
    simulator.inject(path, hold=counted, **matching)

    async def run() -> None:
        try:
            await source.poll(out)
        finally:
            await source.aclose()

    try:
        asyncio.run(run())
    finally:
        counted.set()  # nothing stays held past the test
    assert not out.failures, out.failures
    return out.finish(None)


def failure_series(exporter: Any) -> dict[frozenset[tuple[str, str]], float]:
    return series(parse_exposition(exporter.snapshot.text.decode()), "ingestion_failed_files")


def series_key(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def failed_key(
    source: str, tenant: str, platform: str, error_type: str, retry_count: str = "0"
) -> frozenset[tuple[str, str]]:
    """The labels of one ``ingestion_failed_files`` series."""
    return series_key(
        source=source, tenant=tenant, platform=platform, error_type=error_type, retry_count=retry_count
    )


class Served:
    """A running exporter process; its stderr goes to a file, so a chatty log never blocks it."""

    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process, self.url, self._log = process, url, log

    def stderr(self) -> str:
        return self._log.read_text()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start the real program in serve mode on a free port: ``serve(config, *flags, scheme=...)``."""
    started: list[subprocess.Popen[str]] = []

    def start(config: dict[str, Any], *extra: str, scheme: str = "http") -> Served:
        port = free_port()
        path = tmp_path / f"config-{port}.yml"
        path.write_text(yaml.safe_dump(config))
        log = tmp_path / f"stderr-{port}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "--config",
                    str(path),
                    "--listen",
                    f"127.0.0.1:{port}",
                    *extra,
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        started.append(process)
        wait_for_port(port, process=process)
        return Served(process, f"{scheme}://127.0.0.1:{port}", log)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class Webhook:
    """Collects what Alertmanager posts, by path (= receiver)."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def alerts(self, path: str) -> list[dict[str, Any]]:
        return [alert for p, body in list(self.received) if p == path for alert in body["alerts"]]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            hook.received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
