"""The exporter-toolkit's web-config.yml as its documentation describes it: every key read, every
key honoured on a real TLS server (trustme), and the one we cannot honour refused in one line."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme
import yaml

from exporter.config import ConfigError
from exporter.serving.auth import WebConfig, load_web_config
from tests.test_server import Running


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()  # its certificates' keys are ECDSA: the ECDHE-ECDSA suites below


@pytest.fixture(scope="module")
def pems(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pems")
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    server.private_key_pem.write_to_path(str(folder / "key.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    for name in ("allowed.example", "other.example"):
        client = ca.issue_cert(name)
        client.private_key_and_cert_chain_pem.write_to_path(str(folder / f"{name}.pem"))
    return folder


def loaded(document: dict[str, Any], tmp_path: Path) -> WebConfig:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(document))
    return load_web_config(path)


def refused(document: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loaded(document, tmp_path)
    return caught.value.problems


def test_every_documented_key_is_read(pems: Path, tmp_path: Path) -> None:
    # The layout of the toolkit's docs/web-configuration.md, each key given.
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    config = loaded(
        {
            "tls_server_config": {
                "cert_file": str(pems / "cert.pem"),
                "key_file": str(pems / "key.pem"),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(pems / "ca.pem"),
                "client_allowed_sans": ["allowed.example"],
                "min_version": "TLS12",
                "max_version": "TLS13",
                "cipher_suites": ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"],
                "prefer_server_cipher_suites": True,
                "curve_preferences": ["CurveP256"],
            },
            "http_server_config": {
                "http2": True,
                "headers": {
                    "Content-Security-Policy": "default-src 'self'",
                    "X-Frame-Options": "deny",
                    "X-Content-Type-Options": "nosniff",
                    "X-XSS-Protection": "1; mode=block",
                    "Strict-Transport-Security": "max-age=31536000",
                },
            },
            "basic_auth_users": {"prometheus": hashed},
        },
        tmp_path,
    )
    assert config.tls_server_config is not None and config.ssl_context() is not None
    assert len(config.http_server_config.headers) == 5


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {"rate_limit": {"interval": "1s", "burst": 10}},
            "web_config.rate_limit: not supported by this exporter: its server queues bursts and drops "
            "idle clients itself; put a reverse proxy in front to limit rates",
        ),
        (
            {"tls_server_config": {"curve_preferences": ["X25519", "CurveP256"]}},
            "web_config.tls_server_config.curve_preferences: this exporter can restrict the handshake "
            "to one curve only: give one",
        ),
        (
            {"tls_server_config": {"cipher_suites": ["TLS_FANCY_NEW"]}},
            "web_config.tls_server_config.cipher_suites: unknown TLS_FANCY_NEW (the names of Go's "
            "tls.CipherSuites())",
        ),
        (
            {"tls_server_config": {"client_allowed_sans": ["a.example"]}},
            "web_config.tls_server_config.client_allowed_sans: needs client_auth_type "
            "RequireAnyClientCert or RequireAndVerifyClientCert (otherwise a client may send no "
            "certificate to match)",
        ),
        (
            {"tls_server_config": {"min_version": "TLS13", "max_version": "TLS12"}},
            "web_config.tls_server_config.max_version: TLS12 is below min_version TLS13",
        ),
        (
            {"tls_server_config": {"cert": "PEM"}},
            "web_config.tls_server_config.cert: give cert or cert_file, not both",
        ),
        (
            {"http_server_config": {"headers": {"X-Frame-Options": "allow-from x"}}},
            "web_config.http_server_config.headers: X-Frame-Options takes deny or sameorigin, not 'allow-from x'",
        ),
        (
            {"http_server_config": {"headers": {"X-Powered-By": "me"}}},
            "web_config.http_server_config.headers: X-Powered-By is not one of the headers it may set "
            "(Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, "
            "Strict-Transport-Security)",
        ),
    ],
)
def test_what_cannot_be_honoured_is_one_clear_line(
    pems: Path, tmp_path: Path, document: dict[str, Any], problem: str
) -> None:
    tls = document.get("tls_server_config")
    if tls is not None:
        tls.setdefault("cert_file", str(pems / "cert.pem"))
        tls.setdefault("key_file", str(pems / "key.pem"))
    assert refused(document, tmp_path) == [problem]


@pytest.fixture
def serving(request: pytest.FixtureRequest) -> Iterator[Running]:
    server = Running(request.param)
    yield server
    server.stop()


def client(
    ca: trustme.CA, *, maximum: ssl.TLSVersion | None = None, ciphers: str | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The cipher a handshake agreed on, or None if the server refused it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
                cipher = wrapped.cipher()
                return cipher[0] if cipher else None
        except ssl.SSLError:
            return None


def test_headers_versions_and_cipher_suites_are_honoured(ca: trustme.CA, pems: Path, tmp_path: Path) -> None:
    config = loaded(
        {
            "tls_server_config": {
                "cert_file": str(pems / "cert.pem"),
                "key_file": str(pems / "key.pem"),
                "max_version": "TLS12",
                "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
            },
            "http_server_config": {"headers": {"X-Frame-Options": "deny", "Content-Security-Policy": ""}},
        },
        tmp_path,
    )
    server = Running(config)
    try:
        answer = httpx.get(f"{server.url}/healthz", verify=client(ca))
        assert answer.headers["X-Frame-Options"] == "deny"
        assert "Content-Security-Policy" not in answer.headers  # blank: unset
        assert handshake(server.server.port, client(ca)) == "ECDHE-ECDSA-AES256-GCM-SHA384"
        assert handshake(server.server.port, client(ca, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")) is None
        tls13_only = client(ca)
        tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
        assert handshake(server.server.port, tls13_only) is None
    finally:
        server.stop()


def test_inline_certificates_and_allowed_client_sans(ca: trustme.CA, pems: Path, tmp_path: Path) -> None:
    config = loaded(
        {
            "tls_server_config": {
                "cert": (pems / "cert.pem").read_text(),
                "key": (pems / "key.pem").read_text(),
                "client_ca": (pems / "ca.pem").read_text(),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_allowed_sans": ["allowed.example"],
            }
        },
        tmp_path,
    )
    server = Running(config)
    try:
        for name, status in (("allowed.example", 200), ("other.example", 403)):
            context = client(ca)
            context.load_cert_chain(str(pems / f"{name}.pem"))
            assert httpx.get(f"{server.url}/healthz", verify=context).status_code == status, name
    finally:
        server.stop()


def tls(pems: Path, **extra: Any) -> dict[str, Any]:
    return {
        "tls_server_config": {"cert_file": str(pems / "cert.pem"), "key_file": str(pems / "key.pem"), **extra}
    }


@pytest.mark.parametrize(
    ("client_auth_type", "verify_mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_OPTIONAL),
        ("RequireAnyClientCert", ssl.CERT_REQUIRED),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_each_client_auth_type_sets_its_verify_mode(
    pems: Path, tmp_path: Path, client_auth_type: str, verify_mode: ssl.VerifyMode
) -> None:
    document = tls(pems, client_auth_type=client_auth_type, client_ca_file=str(pems / "ca.pem"))
    context = loaded(document, tmp_path).ssl_context()
    assert context is not None and context.verify_mode == verify_mode


def test_the_context_keeps_its_defaults_and_adds_what_is_asked(pems: Path, tmp_path: Path) -> None:
    plain = loaded(tls(pems), tmp_path).ssl_context()
    assert plain is not None and plain.security_level >= 1
    assert plain.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # the toolkit's default: true
    theirs = loaded(tls(pems, prefer_server_cipher_suites=False), tmp_path).ssl_context()
    assert theirs is not None and not theirs.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    # Only that option changes: the defaults stay set, and nothing else is turned on.
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options
    assert theirs.options == default & ~ssl.OP_CIPHER_SERVER_PREFERENCE
    suites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
    asked = loaded(tls(pems, cipher_suites=suites), tmp_path).ssl_context()
    assert asked is not None
    below_13 = {c["name"] for c in asked.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert below_13 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"}
    assert asked.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert asked.options == plain.options == default | ssl.OP_CIPHER_SERVER_PREFERENCE  # defaults kept
    for old in ("TLS10", "TLS11"):
        context = loaded(tls(pems, min_version=old), tmp_path).ssl_context()
        # OpenSSL's default security level would refuse them whatever the bounds say.
        assert context is not None and context.security_level == 0
        assert (
            context.minimum_version == {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1}[old]
        )


def test_a_certificate_from_a_file_and_its_key_inline_and_the_other_way_round(
    pems: Path, tmp_path: Path
) -> None:
    cert, key = (pems / "cert.pem").read_text(), (pems / "key.pem").read_text()
    for halves in (
        {"cert_file": str(pems / "cert.pem"), "key": key},
        {"cert": cert, "key_file": str(pems / "key.pem")},
    ):
        assert loaded({"tls_server_config": halves}, tmp_path).ssl_context() is not None


def test_an_unreadable_or_broken_web_config_is_one_line_naming_it(pems: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent.yml"
    with pytest.raises(ConfigError) as caught:
        load_web_config(missing)
    assert caught.value.problems == [f"{missing}: cannot read web configuration: No such file or directory"]
    broken = tmp_path / "broken.yml"
    broken.write_text("tls_server_config: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_web_config(broken)
    [problem] = caught.value.problems
    assert problem.startswith(f"{broken}: invalid YAML: ")
    [problem] = refused(tls(pems, key_file=str(pems / "ca.pem")), tmp_path)  # a certificate, not a key
    assert problem.startswith("web_config.tls_server_config: cannot load: ")


def test_without_a_certificate_a_client_is_not_allowed_when_sans_are_required(
    pems: Path, tmp_path: Path
) -> None:
    document = tls(
        pems, client_allowed_sans=["allowed.example"], client_auth_type="RequireAndVerifyClientCert"
    )
    config = loaded(
        {
            **document,
            "tls_server_config": {**document["tls_server_config"], "client_ca_file": str(pems / "ca.pem")},
        },
        tmp_path,
    )
    assert not config.allows(None) and not config.allows({})
    assert config.allows({"subjectAltName": (("DNS", "allowed.example"),)})
