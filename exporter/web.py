"""HTTP endpoints: /metrics, /healthz, /readyz, /sources and an index page.

Served from a thread; a scrape reads the current snapshot's bytes and never waits for a poll.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError

from exporter import __version__
from exporter.config import ConfigError, describe
from exporter.configtypes import Frozen
from exporter.pipeline.render import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporter.runtime import Exporter

log = logging.getLogger(__name__)

INDEX = """<!doctype html>
<html><head><title>ingestion-failure-exporter</title></head>
<body><h1>ingestion-failure-exporter {version}</h1>
<ul>
<li><a href="metrics">/metrics</a> &mdash; Prometheus metrics</li>
<li><a href="sources">/sources</a> &mdash; state of every source (JSON)</li>
<li><a href="healthz">/healthz</a> &mdash; liveness</li>
<li><a href="readyz">/readyz</a> &mdash; readiness (every source polled once)</li>
</ul></body></html>
"""

TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}


class TlsServerConfig(Frozen):
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    min_version: Literal["TLS12", "TLS13"] = "TLS12"


class WebConfig(Frozen):
    """The exporter-toolkit ``web-config.yml`` settings this exporter honours."""

    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(tls.client_ca_file)
        if tls.client_auth_type in ("RequireAndVerifyClientCert", "RequireAnyClientCert"):
            context.verify_mode = ssl.CERT_REQUIRED
        elif tls.client_auth_type != "NoClientCert":
            context.verify_mode = ssl.CERT_OPTIONAL
        return context


def load_web_config(path: Path) -> WebConfig:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read web configuration: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {exc}"]) from None
    try:
        config = WebConfig.model_validate(document)
        config.ssl_context()
    except ValidationError as exc:
        raise ConfigError([f"web_config.{describe(e)}" for e in exc.errors()]) from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"web_config.tls_server_config: cannot load: {exc}"]) from None
    return config


class BasicAuth:
    """bcrypt-checked users; a verified pair is remembered so scrapes do not pay bcrypt each time."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        if hashed is None:
            return False
        token = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            if token in self._verified:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(token)
        return True


def source_report(exporter: Exporter) -> dict[str, Any]:
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
        }
    return report


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


def make_handler(exporter: Exporter, auth: BasicAuth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"ingestion-failure-exporter/{__version__}"

        def do_GET(self) -> None:
            if auth.enabled and not auth.check(self.headers.get("authorization")):
                self._send(
                    401,
                    b"Unauthorized\n",
                    "text/plain",
                    {"WWW-Authenticate": 'Basic realm="exporter"'},
                )
                return
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready = exporter.ready
                self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n", "text/plain")
            elif path == "/sources":
                body = json.dumps(source_report(exporter), indent=2).encode()
                self._send(200, body, "application/json")
            elif path == "/":
                self._send(200, INDEX.format(version=__version__).encode(), "text/html; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _metrics(self) -> None:
            snapshot = exporter.snapshot
            openmetrics = wants_openmetrics(self.headers.get("accept", ""))
            gzipped = accepts_gzip(self.headers.get("accept-encoding", ""))
            if openmetrics:
                body = snapshot.openmetrics_gzip if gzipped else snapshot.openmetrics
                content_type = OPENMETRICS_CONTENT_TYPE
            else:
                body = snapshot.text_gzip if gzipped else snapshot.text
                content_type = TEXT_CONTENT_TYPE
            headers = {"Vary": "Accept, Accept-Encoding"}
            if gzipped:
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, content_type, headers)

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class WebServer:
    """The HTTP server, in its own thread."""

    def __init__(self, exporter: Exporter, host: str, port: int, web_config: WebConfig | None = None) -> None:
        config = web_config or WebConfig()
        handler = make_handler(exporter, BasicAuth(config.basic_auth_users))
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        context = config.ssl_context()
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if context else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> WebServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
