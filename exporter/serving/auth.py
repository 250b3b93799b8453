"""The exporter-toolkit ``web-config.yml``: TLS (versions, client certificates) and basic auth."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import ssl
import tempfile
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from exporter.config import ConfigError, describe
from exporter.configtypes import Frozen, field_problem

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TlsVersion = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
# The cipher suites Go's crypto/tls offers for TLS 1.2 and below, by the names the toolkit's
# cipher_suites takes, as OpenSSL names them.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3's suites are not configurable, in Go as here: named in cipher_suites, they change nothing.
TLS13_SUITES = frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"})
# Go's curve names, as OpenSSL names them.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1", "X25519": "X25519"}
# The response headers http_server_config.headers may set, and the values some of them accept.
HEADERS = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
# A bcrypt hash as htpasswd -B and the exporter-toolkit make them: $2a$, $2b$ or $2y$, a cost of
# 04 to 31, then 53 characters of salt and digest.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


@functools.cache
def _nobody() -> bytes:
    """Checked against when the user is unknown, so that an unknown user costs what a known one
    does; made on first use, not at every start of the program."""
    return bcrypt.hashpw(b"nobody", bcrypt.gensalt(rounds=10))


class TlsServerConfig(Frozen):
    """``tls_server_config``, as the exporter-toolkit documents it. A certificate, key and client CA
    each come from a file or inline (PEM text), not both."""

    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    client_allowed_sans: tuple[str, ...] = ()
    min_version: TlsVersion = "TLS12"
    max_version: TlsVersion = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve_preferences: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> TlsServerConfig:
        for inline, path in (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file")):
            given = [name for name in (inline, path) if getattr(self, name) is not None]
            if len(given) == 2:
                raise field_problem(inline, f"give {inline} or {path}, not both")
            if not given and inline != "client_ca":
                raise field_problem(path, f"field required: give {path} (or {inline}, inline)")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            raise field_problem("max_version", f"{self.max_version} is below min_version {self.min_version}")
        unknown = [s for s in self.cipher_suites if s not in CIPHER_SUITES and s not in TLS13_SUITES]
        if unknown:
            raise field_problem(
                "cipher_suites", f"unknown {', '.join(unknown)} (the names of Go's tls.CipherSuites())"
            )
        bad_curves = [c for c in self.curve_preferences if c not in CURVES]
        if bad_curves:
            raise field_problem(
                "curve_preferences", f"unknown {', '.join(bad_curves)} (one of {', '.join(CURVES)})"
            )
        if len(self.curve_preferences) > 1:
            # Python's ssl module sets one ECDH curve, not an order of them.
            raise field_problem(
                "curve_preferences", "this exporter can restrict the handshake to one curve only: give one"
            )
        if self.client_allowed_sans and self.client_auth_type not in (
            "RequireAnyClientCert",
            "RequireAndVerifyClientCert",
        ):
            raise field_problem(
                "client_allowed_sans",
                "needs client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert "
                "(otherwise a client may send no certificate to match)",
            )
        return self


class HttpServerConfig(Frozen):
    """``http_server_config``: response headers. ``http2`` is accepted as the toolkit's files carry
    it; this server speaks HTTP/1.1, so it changes nothing."""

    http2: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _known_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if name not in HEADERS:
                raise ValueError(f"{name} is not one of the headers it may set ({', '.join(HEADERS)})")
            accepted = HEADERS[name]
            if accepted is not None and value and value.lower() not in accepted:
                raise ValueError(f"{name} takes {' or '.join(accepted)}, not {value!r}")
        return {name: value for name, value in headers.items() if value}  # blank: unset


class WebConfig(Frozen):
    """The exporter-toolkit ``web-config.yml``: every key it documents, honoured, but
    ``rate_limit``, refused in one clear line."""

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = HttpServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: Any = None

    @field_validator("rate_limit")
    @classmethod
    def _no_rate_limit(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(
                "not supported by this exporter: its server queues bursts and drops idle clients "
                "itself; put a reverse proxy in front to limit rates"
            )
        return value

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, str]) -> dict[str, str]:
        # Refused here, not at a request: bcrypt raises on anything else, which a request would
        # answer with a 500.
        wrong = [user for user, hashed in users.items() if not BCRYPT_HASH.fullmatch(hashed)]
        if wrong:
            names = ", ".join(repr(user) for user in wrong)
            raise ValueError(
                f"the password of {names} is not a bcrypt hash "
                "(make one with: htpasswd -nBC 10 USER | cut -d: -f2)"
            )
        return users

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.tls_server_config
        if tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
        if tls.min_version in ("TLS10", "TLS11"):
            # OpenSSL's default security level refuses them whatever the bounds say.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        _load_certificate(context, tls)
        if tls.client_ca_file is not None:
            context.load_verify_locations(tls.client_ca_file)
        elif tls.client_ca is not None:
            context.load_verify_locations(cadata=tls.client_ca)
        if tls.client_auth_type in ("RequireAndVerifyClientCert", "RequireAnyClientCert"):
            context.verify_mode = ssl.CERT_REQUIRED
        elif tls.client_auth_type != "NoClientCert":
            context.verify_mode = ssl.CERT_OPTIONAL
        suites = [CIPHER_SUITES[s] for s in tls.cipher_suites if s in CIPHER_SUITES]
        if suites:
            context.set_ciphers(":".join(suites))
        if tls.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:  # Python's server contexts prefer their own order by default
            context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        if tls.curve_preferences:
            context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])
        return context

    def allows(self, peer_certificate: Any) -> bool:
        """Whether a client's certificate has a SAN of ``client_allowed_sans`` (any when unset)."""
        tls = self.tls_server_config
        if tls is None or not tls.client_allowed_sans:
            return True
        names = peer_certificate.get("subjectAltName", ()) if isinstance(peer_certificate, dict) else ()
        return any(value in tls.client_allowed_sans for _, value in names)


def _load_certificate(context: ssl.SSLContext, tls: TlsServerConfig) -> None:
    """The server's certificate and key, from files or inline: ssl loads only files, so inline
    ones go through a file readable by this user only, removed at once."""
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        return
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert.write_text(tls.cert if tls.cert is not None else Path(str(tls.cert_file)).read_text())
        key.touch(mode=0o600)
        secret = tls.key.get_secret_value() if tls.key is not None else Path(str(tls.key_file)).read_text()
        key.write_text(secret)
        context.load_cert_chain(cert, key)


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
    """bcrypt-checked users. A verified pair is remembered, so that scrapes do not pay bcrypt each
    time; bcrypt itself runs off the event loop. Comparisons take the same time whatever differs."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = {u: h.encode() for u, h in users.items()}
        self._verified: dict[str, bytes] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    async def check(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self._users.get(user)
        token = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed or _nobody()))).digest()
        remembered = self._verified.get(user)
        if hashed is not None and remembered is not None and hmac.compare_digest(remembered, token):
            return True
        matches = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed or _nobody())
        if not matches or hashed is None:
            return False
        self._verified[user] = token
        return True
