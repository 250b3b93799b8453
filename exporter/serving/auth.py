"""The exporter-toolkit ``web-config.yml``: TLS (versions, client certificates) and basic auth."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import ssl
from pathlib import Path
from typing import Literal

import bcrypt
import yaml
from pydantic import Field, ValidationError, field_validator

from exporter.config import ConfigError, describe
from exporter.configtypes import Frozen

TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# A bcrypt hash as htpasswd -B and the exporter-toolkit make them: $2a$, $2b$ or $2y$, a cost of
# 04 to 31, then 53 characters of salt and digest.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


@functools.cache
def _nobody() -> bytes:
    """Checked against when the user is unknown, so that an unknown user costs what a known one
    does; made on first use, not at every start of the program."""
    return bcrypt.hashpw(b"nobody", bcrypt.gensalt(rounds=10))


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
