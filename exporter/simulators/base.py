"""A vendor API simulator: a real HTTP server (aiohttp) on 127.0.0.1, with injectable faults.

Tests and ``--demo`` share these. Faults are set from Python (``inject``) or over HTTP
(``POST /_sim/faults`` with the same fields as JSON, ``DELETE /_sim/faults`` to clear).
Besides a status and body, a fault can break the answer where only a socket can: ``mode``
``reset`` sends the head and half the body, then resets the connection; ``stall`` sends as much
and then says nothing more; ``trickle`` sends the body a byte every ``delay`` seconds.
``pause()`` closes the listening socket (connections are refused) and ``resume()`` opens it
again on the same port.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

# How an answer is sent when it is not sent whole: broken ("reset", "stall", "trickle"), or whole
# but in chunks without a length ("chunked"), as servers that stream their JSON send it.
Mode = Literal["reset", "stall", "trickle", "chunked"]
MODES: tuple[Mode, ...] = ("reset", "stall", "trickle", "chunked")


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    match: re.Match[str]
    received: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True)
class SimResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(
        status,
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


@dataclass
class Fault:
    """Answer requests whose path matches with this status/body, after a delay, ``times`` times;
    or, with a ``mode``, break the real answer on the wire."""

    path: re.Pattern[str]
    status: int | None = None
    delay: float = 0.0
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    when: Callable[[SimRequest], bool] | None = None
    hold: threading.Event | None = None
    mode: Mode | None = None


Handler = Callable[[SimRequest], SimResponse]

# How long a stalled answer or a hold waits at most: far beyond any timeout a test sets.
STALL_SECONDS = 60.0


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Simulator:
    """Routes requests to the subclass's handlers; records what it was asked.

    The server runs an event loop of its own in a daemon thread, so tests and the demo can
    drive it from ordinary threads; handlers are plain functions that answer at once.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[Fault] = []
        self.lock = threading.RLock()
        self.requests: deque[SimRequest] = deque(maxlen=5000)
        self._socket: socket.socket | None = _listening_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="simulator", daemon=True)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        # Stopping must not wait for stalled answers: they are the point of some tests.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        self._site: web.SockSite | None = None
        # Set before ``start`` to serve HTTPS with this context.
        self.ssl_context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def start(self) -> Self:
        self._thread.start()
        self._call(self._runner.setup())
        self._call(self._open())
        return self

    async def _open(self) -> None:
        if self._socket is None:
            self._socket = _listening_socket(self.host, self.port)
        self._site = web.SockSite(self._runner, self._socket, ssl_context=self.ssl_context)
        await self._site.start()

    async def _close(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        # Kept-alive connections too: a client must find nobody there, not an old connection.
        if self._runner.server is not None:
            for connection in list(self._runner.server.connections):
                connection.force_close()

    def pause(self) -> None:
        """Stop listening: new connections are refused until ``resume``."""
        self._call(self._close())

    def resume(self) -> None:
        self._call(self._open())

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._close())
            self._call(self._runner.cleanup())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def inject(
        self,
        path: str = ".*",
        *,
        status: int | None = None,
        delay: float = 0.0,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        times: int | None = None,
        when: Callable[[SimRequest], bool] | None = None,
        hold: threading.Event | None = None,
        mode: Mode | None = None,
    ) -> None:
        """Answer matching requests (path regex and, from Python, a predicate) with a fault;
        from Python, ``hold`` keeps them waiting until the test sets it (or for a minute)."""
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        raw = body.encode() if isinstance(body, str) else body
        fault = Fault(re.compile(path), status, delay, raw, headers or {}, times, when, hold, mode)
        with self.lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def calls(self, pattern: str, method: str | None = None) -> list[SimRequest]:
        """The recorded requests whose path matches ``pattern``."""
        compiled = re.compile(pattern)
        with self.lock:
            return [r for r in self.requests if compiled.search(r.path) and method in (None, r.method)]

    def _fault_for(self, request: SimRequest) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if (
                    fault.path.search(request.path)
                    and fault.times != 0
                    and (fault.when is None or fault.when(request))
                ):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _admin(self, method: str, body: bytes) -> SimResponse:
        if method == "DELETE":
            self.clear_faults()
            return json_response(200, {"faults": 0})
        spec = json.loads(body or b"{}")
        try:
            self.inject(
                spec.get("path", ".*"),
                status=spec.get("status"),
                delay=float(spec.get("delay", 0.0)),
                body=spec.get("body"),
                headers=spec.get("headers"),
                times=spec.get("times"),
                mode=spec.get("mode"),
            )
        except ValueError as exc:
            return json_response(400, {"detail": str(exc)})
        return json_response(200, {"faults": len(self._faults)})

    def _route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[SimRequest, Handler] | None:
        parts = urlsplit(target)
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(parts.path)
            if route_method == method and match:
                request = SimRequest(method, parts.path, parse_qs(parts.query), headers, body, match)
                with self.lock:
                    self.requests.append(request)
                return request, handler
        return None

    async def _serve(self, http: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        body = await http.read()
        headers = {k.lower(): v for k, v in http.headers.items()}
        if http.path == "/_sim/faults":
            return _to_aiohttp(self._admin(http.method, body))
        routed = self._route(http.method, http.raw_path, headers, body)
        if routed is None:
            return _to_aiohttp(json_response(404, {"detail": "Not Found"}))
        request, handler = routed

        def answer() -> SimResponse:
            try:
                return handler(request)
            except Exception as exc:  # a simulator bug must show as a 500, not a hang
                return json_response(500, {"detail": f"simulator error: {exc}"})

        fault = self._fault_for(request)
        if fault is None:
            return _to_aiohttp(answer())
        if fault.hold is not None:
            await asyncio.to_thread(fault.hold.wait, STALL_SECONDS)
        if fault.mode is None:
            if fault.status is not None or fault.body is not None:
                response = SimResponse(fault.status or 200, fault.body or b"", fault.headers)
            else:
                response = answer()
            # A platform that takes ``delay`` to answer takes it from the request's arrival, its
            # own work included: the simulator's routing and encoding are not added to it.
            await asyncio.sleep(max(arrived + fault.delay - loop.time(), 0.0))
            return _to_aiohttp(response)
        real = answer()
        if fault.body is not None:
            real = SimResponse(fault.status or real.status, fault.body, real.headers)
        return await _broken(http, real, fault.mode, fault.delay)


def _to_aiohttp(response: SimResponse) -> web.Response:
    return web.Response(status=response.status, body=response.body, headers=response.headers)


async def _broken(http: web.Request, answer: SimResponse, mode: Mode, delay: float) -> web.StreamResponse:
    """Send ``answer``'s head with its full length, then break the body as ``mode`` says; or, in
    ``chunked`` mode, send it whole in chunks of 1 KiB with no length."""
    stream = web.StreamResponse(status=answer.status, headers=answer.headers)
    if mode == "chunked":
        stream.enable_chunked_encoding()
        await stream.prepare(http)
        for start in range(0, len(answer.body), 1024):
            await stream.write(answer.body[start : start + 1024])
        await stream.write_eof()
        return stream
    stream.content_length = len(answer.body)
    await stream.prepare(http)
    if mode == "trickle":
        for index in range(len(answer.body)):
            await stream.write(answer.body[index : index + 1])
            await asyncio.sleep(delay)
        await stream.write_eof()
        return stream
    await stream.write(answer.body[: len(answer.body) // 2])
    if mode == "stall":
        await asyncio.sleep(STALL_SECONDS)
        return stream
    transport = http.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close with a TCP reset, not an orderly end
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return stream
