"""The HTTP server: aiohttp on the exporter's event loop, built to be the last thing to fail.

Every connection is handled on its own: its TLS handshake, its request head and its idle time
each have a timeout, so a client that connects and sends nothing (or trickles bytes) delays no
one and is dropped. The listen backlog queues bursts. Open connections are bounded; at the bound
the connection idle the longest is closed to make room, so idle clients cannot starve scrapers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.serving.auth import BasicAuth, WebConfig
from exporter.serving.endpoints import ExporterView, Reload, routes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The server's defences; the defaults are documented in the README."""

    tls_handshake_timeout: float = 10.0
    request_head_timeout: float = 10.0  # from connecting to a complete first request head
    idle_timeout: float = 75.0  # a keep-alive connection between requests
    backlog: int = 1024
    max_connections: int = 1024
    shutdown_timeout: float = 2.0  # requests in flight when the server stops


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, seen by the guard: it is told when the connection
    opens, closes, and starts and ends requests."""

    def __init__(self, guard: ConnectionGuard, inner: Any) -> None:
        self._guard, self.inner = guard, inner
        self.transport: asyncio.Transport | None = None
        self.requests = 0
        self.in_flight = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._head_timer = asyncio.get_running_loop().call_later(
            self._guard.limits.request_head_timeout, self._no_request_in_time
        )
        self._guard.opened(self)
        self.inner.connection_made(transport)

    def _no_request_in_time(self) -> None:
        if self.requests == 0 and self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return bool(self.inner.eof_received())

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._guard.closed(self)
        self.inner.connection_lost(exc)


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: counts connections, enforces the head timeout and the
    bound, and keeps the idle ones in order of idleness (the longest idle first)."""

    def __init__(self, factory: Callable[[], Any], limits: ServerLimits) -> None:
        self._factory = factory
        self.limits = limits
        self._idle: OrderedDict[_Connection, None] = OrderedDict()
        self._by_transport: dict[Any, _Connection] = {}
        self.open = 0

    def __call__(self) -> _Connection:
        return _Connection(self, self._factory())

    def opened(self, connection: _Connection) -> None:
        if self.open >= self.limits.max_connections:
            if self._idle:
                longest_idle, _ = self._idle.popitem(last=False)
                if longest_idle.transport is not None:
                    longest_idle.transport.abort()
            else:  # every connection is busy with a request: this one waits for nothing
                assert connection.transport is not None
                connection.transport.abort()
        self.open += 1
        self._idle[connection] = None
        self._by_transport[connection.transport] = connection

    def closed(self, connection: _Connection) -> None:
        self.open -= 1
        self._idle.pop(connection, None)
        self._by_transport.pop(connection.transport, None)

    def request_started(self, transport: Any) -> None:
        connection = self._by_transport.get(transport)
        if connection is not None:
            connection.requests += 1
            connection.in_flight += 1
            self._idle.pop(connection, None)

    def request_ended(self, transport: Any) -> None:
        connection = self._by_transport.get(transport)
        if connection is not None:
            connection.in_flight -= 1
            if connection.in_flight == 0:
                self._idle[connection] = None  # now the most recently idle


class WebServer:
    """The endpoints over HTTP or HTTPS on one listening socket, on the running event loop."""

    def __init__(
        self,
        exporter: ExporterView,
        host: str,
        port: int,
        web_config: WebConfig | None = None,
        *,
        reload: Reload | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        self._config = web_config or WebConfig()
        self._auth = BasicAuth(self._config.basic_auth_users)
        self._ssl: ssl.SSLContext | None = self._config.ssl_context()
        app = web.Application(middlewares=[self._guarded, self._authenticated])
        app.add_routes(routes(exporter, reload))
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self.limits.idle_timeout,
            shutdown_timeout=self.limits.shutdown_timeout,
        )
        # Bound now, so that a taken port fails at once and port 0 is known before start().
        self._socket = socket.create_server(
            (host, port), family=_family(host), backlog=self.limits.backlog, reuse_port=False
        )
        self._server: asyncio.Server | None = None
        self._guard: ConnectionGuard | None = None

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self._ssl else "http"

    @property
    def connections(self) -> int:
        return 0 if self._guard is None else self._guard.open

    async def start(self) -> WebServer:
        await self._runner.setup()
        assert self._runner.server is not None
        self._guard = ConnectionGuard(self._runner.server, self.limits)
        self._server = await self._listen(self._ssl)
        return self

    async def _listen(self, context: ssl.SSLContext | None) -> asyncio.Server:
        assert self._guard is not None
        return await asyncio.get_running_loop().create_server(
            self._guard,
            sock=self._socket.dup(),
            ssl=context,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if context else None,
            backlog=self.limits.backlog,
        )

    async def apply(self, web_config: WebConfig) -> None:
        """A re-read web configuration: new users at once; new TLS settings for new connections,
        by listening anew on the same socket before the old listener closes (no gap)."""
        self._auth = BasicAuth(web_config.basic_auth_users)
        if web_config.tls_server_config != self._config.tls_server_config:
            context = web_config.ssl_context()
            previous, self._server = self._server, await self._listen(context)
            self._ssl = context
            if previous is not None:
                previous.close()
        self._config = web_config

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._socket.close()
        await self._runner.cleanup()

    @web.middleware
    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        assert self._guard is not None
        self._guard.request_started(request.transport)
        try:
            response = await handler(request)
            response.headers.setdefault("Server", f"ingestion-failure-exporter/{__version__}")
            response.headers.update(self._config.http_server_config.headers)
            return response
        finally:
            self._guard.request_ended(request.transport)

    @web.middleware
    async def _authenticated(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        if not self._config.allows(transport.get_extra_info("peercert") if transport else None):
            # Go's toolkit ends such a handshake; here the certificate is read after it, so the
            # request is refused and the connection closed.
            response = web.Response(status=403, text="client certificate not allowed\n")
            response.force_close()
            return response
        auth = self._auth
        if auth.enabled and not await auth.check(request.headers.get("Authorization")):
            return web.Response(
                status=401, text="Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="exporter"'}
            )
        return await handler(request)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
