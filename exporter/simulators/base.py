"""A vendor API simulator: a real HTTP server on 127.0.0.1, with injectable faults.

Tests and ``--demo`` share these. Faults are set from Python (``inject``) or over HTTP
(``POST /_sim/faults`` with the same fields as JSON, ``DELETE /_sim/faults`` to clear).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


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
    """Answer requests whose path matches with this status/body, after a delay, ``times`` times."""

    path: re.Pattern[str]
    status: int | None = None
    delay: float = 0.0
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    when: Callable[[SimRequest], bool] | None = None
    hold: threading.Event | None = None


Handler = Callable[[SimRequest], SimResponse]


class Simulator:
    """Routes requests to the subclass's handlers; records what it was asked."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[Fault] = []
        self.lock = threading.RLock()
        self.requests: deque[SimRequest] = deque(maxlen=5000)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval makes stop() return at once (tests start and stop many of these).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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
    ) -> None:
        """Answer matching requests (path regex and, from Python, a predicate) with a fault;
        from Python, ``hold`` keeps them waiting until the test sets it (or for a minute)."""
        raw = body.encode() if isinstance(body, str) else body
        fault = Fault(re.compile(path), status, delay, raw, headers or {}, times, when, hold)
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
        self.inject(
            spec.get("path", ".*"),
            status=spec.get("status"),
            delay=float(spec.get("delay", 0.0)),
            body=spec.get("body"),
            headers=spec.get("headers"),
            times=spec.get("times"),
        )
        return json_response(200, {"faults": len(self._faults)})

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> SimResponse:
        parts = urlsplit(target)
        if parts.path == "/_sim/faults":
            return self._admin(method, body)
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(parts.path)
            if route_method == method and match:
                request = SimRequest(method, parts.path, parse_qs(parts.query), headers, body, match)
                with self.lock:
                    self.requests.append(request)
                fault = self._fault_for(request)
                if fault is not None:
                    if fault.hold is not None:
                        fault.hold.wait(60)
                    time.sleep(fault.delay)
                    if fault.status is not None or fault.body is not None:
                        return SimResponse(fault.status or 200, fault.body or b"", fault.headers)
                return handler(request)
        return json_response(404, {"detail": "Not Found"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    response = simulator.dispatch(self.command, self.path, headers, body)
                except Exception as exc:  # a simulator bug must show as a 500, not a hang
                    response = json_response(500, {"detail": f"simulator error: {exc}"})
                self.send_response(response.status)
                for key, value in response.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                # The client may give up (a size cap or a timeout): expected in fault tests.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(response.body)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
