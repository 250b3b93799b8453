"""The HTTP server under hostile clients, with real sockets and real TLS (trustme): clients that
connect and send nothing, idle by the thousand, trickle a request head, or arrive all at once.
The server runs in its own thread and loop with short timeouts, so the tests take seconds."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from exporter.config import build_settings
from exporter.runtime import Exporter
from exporter.serving.auth import TlsServerConfig, WebConfig
from exporter.serving.server import ServerLimits, WebServer
from tests.conftest import eventually

SHORT = ServerLimits(tls_handshake_timeout=1.0, request_head_timeout=1.0, idle_timeout=1.5)


class Running:
    """A WebServer on its own event loop in a thread."""

    def __init__(self, web_config: WebConfig | None = None, limits: ServerLimits = SHORT) -> None:
        self.exporter = Exporter(build_settings({}, {}))
        self.loop = asyncio.new_event_loop()
        self.server = WebServer(self.exporter, "127.0.0.1", 0, web_config, limits=limits)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.url = f"{self.server.scheme}://127.0.0.1:{self.server.port}"

    def tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def running() -> Iterator[Running]:
    server = Running()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[WebConfig, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    config = WebConfig(
        tls_server_config=TlsServerConfig(cert_file=folder / "cert.pem", key_file=folder / "key.pem")
    )
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return config, client


def silent_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), without sending anything."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def scrape(url: str, verify: Any = True) -> httpx.Response:
    # The timeout only keeps a broken server from hanging the suite: the old server never answered.
    return httpx.get(f"{url}/metrics", verify=verify, timeout=5)


@pytest.mark.parametrize("with_tls", [False, True])
def test_a_client_that_sends_nothing_delays_no_scrape_and_is_dropped(
    with_tls: bool, tls: tuple[WebConfig, ssl.SSLContext]
) -> None:
    config, client = tls
    server = Running(config if with_tls else None)
    try:
        silent = [silent_connection(server.server.port) for _ in range(5)]
        for _ in range(20):
            response = scrape(server.url, client if with_tls else True)
            assert response.status_code == 200 and "ingestion_exporter_build_info" in response.text
        # Dropped after the handshake timeout (TLS) or the request-head timeout (plain).
        eventually(lambda: all(closed_by_server(s) for s in silent), 10)
        for sock in silent:
            sock.close()
    finally:
        server.stop()


def test_a_thousand_idle_connections_are_all_dropped_and_nothing_is_left_behind(running: Running) -> None:
    threads, tasks = threading.active_count(), running.tasks()
    idle = [silent_connection(running.server.port) for _ in range(1000)]
    try:
        eventually(lambda: running.server.connections == 1000, 10)
        assert scrape(running.url).status_code == 200
        eventually(lambda: running.server.connections == 0, 20)
        assert all(closed_by_server(s) for s in idle)
        eventually(lambda: running.tasks() <= tasks, 10)
        assert threading.active_count() <= threads + 1  # at most the default executor's worker
    finally:
        for sock in idle:
            sock.close()


def test_a_request_head_trickled_a_byte_at_a_time_is_dropped(running: Running) -> None:
    sock = silent_connection(running.server.port)
    head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 100 + b"\r\n\r\n"
    sent, deadline = 0, time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                sock.sendall(head[sent : sent + 1])
            except OSError:
                break  # closed by the server
            sent += 1
            if closed_by_server(sock):
                break
            time.sleep(0.1)
        assert sent < len(head), "the whole head was trickled in and the connection was kept"
        assert closed_by_server(sock)
    finally:
        sock.close()


def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout(running: Running) -> None:
    with httpx.Client() as client:
        assert client.get(f"{running.url}/healthz").status_code == 200
        eventually(lambda: running.server.connections == 1, 5)
        eventually(lambda: running.server.connections == 0, 10)
        # The client notices and opens a new connection.
        assert client.get(f"{running.url}/healthz").status_code == 200


def test_a_burst_of_200_simultaneous_connections_is_all_answered(running: Running) -> None:
    port = running.server.port

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer

    async def burst() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(200)))

    answers = asyncio.run(burst())
    assert len(answers) == 200
    assert all(a.startswith(b"HTTP/1.1 200 OK") and b"ingestion_exporter_build_info" in a for a in answers)


def test_at_the_connection_bound_the_longest_idle_connection_makes_room() -> None:
    server = Running(limits=ServerLimits(request_head_timeout=30, idle_timeout=30, max_connections=10))
    try:
        idle = [silent_connection(server.server.port) for _ in range(10)]
        eventually(lambda: server.server.connections == 10, 5)
        assert scrape(server.url).status_code == 200
        assert closed_by_server(idle[0]) or eventually(lambda: closed_by_server(idle[0]), 5)
        assert not any(closed_by_server(s) for s in idle[1:])
        for sock in idle:
            sock.close()
    finally:
        server.stop()


def test_keep_alive_serves_many_requests_on_one_connection(running: Running) -> None:
    with httpx.Client() as client:
        for _ in range(20):
            assert client.get(f"{running.url}/metrics").status_code == 200
        assert running.server.connections == 1


def test_the_listen_backlog_is_at_least_512() -> None:
    assert ServerLimits().backlog >= 512


def test_a_taken_port_fails_at_once(running: Running) -> None:
    with pytest.raises(OSError):
        WebServer(running.exporter, "127.0.0.1", running.server.port)


def test_web_config_changes_apply_to_new_requests(
    tls: tuple[WebConfig, ssl.SSLContext], tmp_path: Path
) -> None:
    import bcrypt

    config, client = tls
    server = Running()
    try:
        assert scrape(server.url).status_code == 200
        hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
        with_auth = WebConfig(basic_auth_users={"prom": hashed})
        asyncio.run_coroutine_threadsafe(server.server.apply(with_auth), server.loop).result(10)
        assert scrape(server.url).status_code == 401
        assert httpx.get(f"{server.url}/metrics", auth=("prom", "pw")).status_code == 200
        # TLS switched on: new connections are TLS on the same port, with no gap.
        asyncio.run_coroutine_threadsafe(server.server.apply(config), server.loop).result(10)
        https = server.url.replace("http://", "https://")
        assert scrape(https, client).status_code == 200
        with pytest.raises(httpx.TransportError):
            scrape(server.url).raise_for_status()
    finally:
        server.stop()


def test_a_new_snapshots_body_is_made_once_while_scrapes_get_the_previous_one() -> None:
    from exporter.pipeline.render import Snapshot, render_exporter
    from exporter.serving.endpoints import Bodies

    first = Snapshot([render_exporter(True, 1.0)])
    second = Snapshot([render_exporter(False, 1.0)])

    async def scenario() -> None:
        bodies = Bodies()
        assert bodies.shows(second)  # nothing served yet
        assert (await bodies.get(first, False, False)).complete(
            b""
        ) == first.text  # the very first is waited for
        assert not bodies.shows(second)
        # A new snapshot: its body is being made; meanwhile the previous one is served, at once.
        assert (await bodies.get(second, False, False)).complete(b"") == first.text
        for _ in range(100):
            if bodies.shows(second):
                break
            await asyncio.sleep(0.01)
        assert bodies.shows(second)
        assert (await bodies.get(second, False, False)).complete(b"") == second.text

        assert gzip.decompress((await bodies.get(second, True, True)).complete(b"")) == second.openmetrics

    asyncio.run(scenario())


def test_a_published_snapshots_bodies_are_made_before_the_next_scrape_asks() -> None:
    """A scraper that comes once a minute gets the latest poll's result, not the snapshot that
    was current at its previous scrape."""
    from exporter.pipeline.render import Snapshot, render_exporter
    from exporter.serving.endpoints import Bodies

    first = Snapshot([render_exporter(True, 1.0)])
    second = Snapshot([render_exporter(False, 2.0)])

    async def scenario() -> None:
        bodies = Bodies()
        bodies.refresh(first)  # nothing asked for yet: nothing to make
        assert gzip.decompress((await bodies.get(first, True, True)).complete(b"")) == first.openmetrics
        bodies.refresh(second)
        for _ in range(100):
            if bodies.shows(second):
                break
            await asyncio.sleep(0.01)
        assert bodies.shows(second)
        made = await bodies.get(second, True, True)  # the first ask
        assert gzip.decompress(made.complete(b"")) == second.openmetrics

    asyncio.run(scenario())


def test_bodies_made_out_of_order_never_replace_a_newer_one() -> None:
    from exporter.pipeline.render import Snapshot, render_exporter
    from exporter.serving.endpoints import Bodies

    snapshots = [Snapshot([render_exporter(True, float(n))]) for n in range(30)]

    async def scenario() -> None:
        bodies = Bodies()
        await bodies.get(snapshots[0], False, False)
        for snapshot in snapshots[1:]:  # published faster than bodies are made
            bodies.refresh(snapshot)
        for _ in range(200):
            if bodies.shows(snapshots[-1]):
                break
            await asyncio.sleep(0.01)
        assert (await bodies.get(snapshots[-1], False, False)).complete(b"") == snapshots[-1].text

    asyncio.run(scenario())


def test_a_wrong_password_is_refused_after_the_right_one_was_accepted() -> None:
    """Verified pairs are remembered: the memory must compare the password, not just the user."""
    import base64

    import bcrypt

    from exporter.serving.auth import BasicAuth

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    auth = BasicAuth({"alice": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()})

    async def scenario() -> list[bool]:
        return [
            await auth.check(header("alice", "right")),
            await auth.check(header("alice", "wrong")),
            await auth.check(header("alice", "right")),  # remembered
            await auth.check(header("alice", "wrong")),
            await auth.check(header("alice", "")),
            await auth.check(header("mallory", "right")),
        ]

    assert asyncio.run(scenario()) == [True, False, True, False, False, False]


def test_basic_auth_refuses_malformed_headers_and_reads_a_password_with_a_colon() -> None:
    import base64

    import bcrypt

    from exporter.serving.auth import BasicAuth

    auth = BasicAuth({"alice": bcrypt.hashpw(b"pass:word", bcrypt.gensalt(rounds=4)).decode()})
    right = base64.b64encode(b"alice:pass:word").decode()

    async def scenario() -> list[bool]:
        return [
            await auth.check(f"Basic {right}"),  # the password is everything after the first colon
            await auth.check("Basic !!!not-base64!!!"),
            await auth.check(f"Basic {right[:4]}!{right[4:]}"),  # a stray character is not skipped
            await auth.check("Basic " + base64.b64encode(b"\xff\xfe:x").decode()),  # not UTF-8
            await auth.check(f"Bearer {right}"),
            await auth.check(None),
        ]

    assert asyncio.run(scenario()) == [True, False, False, False, False, False]


def test_basic_auth_pays_bcrypt_once_for_a_pair_it_has_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    import bcrypt

    from exporter.serving import auth as module

    calls: list[bytes] = []
    checkpw = bcrypt.checkpw

    def counted(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return checkpw(password, hashed)

    monkeypatch.setattr(module.bcrypt, "checkpw", counted)
    auth = module.BasicAuth({"alice": bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()})

    def header(password: str) -> str:
        return "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()

    async def scenario() -> list[bool]:
        return [await auth.check(header(p)) for p in ("right", "right", "right", "wrong", "right")]

    assert asyncio.run(scenario()) == [True, True, True, False, True]
    assert calls == [b"right", b"wrong"]  # the remembered pair skips bcrypt; a wrong one never does
