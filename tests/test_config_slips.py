"""The slips a new user makes in a configuration, each caught with a line that says what to do:
YAML typing a value, a misspelt override, duplicate names beside other problems, a short secret,
a password that is not a bcrypt hash, a model-level problem named by its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml

from exporter.config import ConfigError, build_settings, config_warnings, load_config
from exporter.redact import Redactor
from tests.conftest import TENANT_A, run_cli
from tests.test_config import rezolve as config_source


def rezolve(name: str = "rezolve-prod", **extra: Any) -> dict[str, Any]:
    """test_config's source, with a token long enough not to be warned about."""
    return config_source(name, **{"token": "a-long-enough-token", **extra})


def problems_of(text: str, tmp_path: Path) -> list[str]:
    """What loading this YAML says, as YAML itself reads it (not as a dict we typed)."""
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return caught.value.problems


def test_values_yaml_typed_say_so_and_that_quotes_fix_it(tmp_path: Path) -> None:
    text = """
sources:
  - name: off
    kind: rezolve
    base_url: https://ingest.example.com/
    token: 12345678
    tenant: 2024
    tenants: [{tenant_id: x, rezolve_domain: acme.rezolve.ai}]
"""
    assert problems_of(text, tmp_path) == [
        "sources[0].name: YAML read this value as a boolean (unquoted yes, no, on, off, true and "
        "false are booleans): put it in quotes to make it text",
        "sources[0].tenant: YAML read this value as a number: put it in quotes to make it text",
        # Never the value itself: it may be a secret.
        "sources[0].token: YAML read this value as a number: put it in quotes to make it text",
    ]
    quoted = text.replace("off", '"off"').replace("12345678", '"12345678"').replace("2024", '"2024"')
    path = tmp_path / "quoted.yml"
    path.write_text(quoted)
    assert load_config(path, {}).sources[0].name == "off"


def test_a_misspelt_key_of_a_tenant_is_one_problem_not_two(tmp_path: Path) -> None:
    document = {"sources": [rezolve(tenants=[{"tenant_idd": TENANT_A, "rezolve_domain": "a.b"}])]}
    with pytest.raises(ConfigError) as caught:
        build_settings(document, {})
    assert caught.value.problems == [
        "sources[0].tenants[0].tenant_id: field required",
        "sources[0].tenants[0].tenant_idd: unknown key",
    ]
    # An empty list is still one.
    with pytest.raises(ConfigError) as caught:
        build_settings({"sources": [rezolve(tenants=[])]}, {})
    assert caught.value.problems == [
        "sources[0].tenants: Tuple should have at least 1 item after validation, not 0"
    ]


def test_a_duplicate_name_is_reported_with_every_other_problem() -> None:
    document = {"sources": [rezolve("a", base_url="ftp://x"), rezolve("a"), rezolve("b"), rezolve("b")]}
    with pytest.raises(ConfigError) as caught:
        build_settings(document, {})
    assert caught.value.problems == [
        "sources[0].base_url: must be an http:// or https:// URL",
        "sources: duplicate source name 'a'",
        "sources: duplicate source name 'b'",
    ]
    with pytest.raises(ConfigError) as caught:  # alone, once
        build_settings({"sources": [rezolve("a"), rezolve("a")]}, {})
    assert caught.value.problems == ["sources: duplicate source name 'a'"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"name": "c", "kind": "commvault", "base_url": "http://x", "password": "a-long-password"},
            "sources[0].username: field required to log in with a password",
        ),
        (
            {"name": "a", "kind": "aep", "org_id": "o", "sandbox": "prod"},
            "sources[0].access_token: give access_token (or access_token_file), or client_id and client_secret",
        ),
        (
            {"name": "a", "kind": "aep", "org_id": "o", "sandbox": "prod", "client_id": "c"},
            "sources[0].client_secret: OAuth server-to-server needs both client_id and client_secret",
        ),
        (
            {"name": "a", "kind": "aep", "org_id": "o", "sandbox": "prod", "access_token": "a-long-token"},
            "sources[0].api_key: field required (with OAuth it defaults to client_id)",
        ),
        (
            {"name": "t", "kind": "azure_table"},
            "sources[0].connection_string: give connection_string (or connection_string_file) or account_url",
        ),
    ],
)
def test_a_problem_found_across_fields_names_the_field(source: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_settings({"sources": [source]}, {})
    assert caught.value.problems == [expected]


def test_an_override_that_sets_nothing_is_a_warning_naming_what_it_may_mean() -> None:
    settings = build_settings({"sources": [rezolve()]}, {})
    env = {
        "INGESTION_EXPORTER_POLL_INTERVALL": "5m",
        "INGESTION_EXPORTER_POLL_INTERVAL": "5m",  # sets something
        "INGESTION_EXPORTER_SHARD__TOTAL": "2",  # nested, sets something
        "INGESTION_EXPORTER_NOTHING_LIKE_IT": "1",
        "OTHER_PROGRAMS_VARIABLE": "x",
    }
    assert config_warnings(settings, env) == [
        "INGESTION_EXPORTER_NOTHING_LIKE_IT: sets nothing: no such setting",
        "INGESTION_EXPORTER_POLL_INTERVALL: sets nothing: no such setting "
        "(did you mean INGESTION_EXPORTER_POLL_INTERVAL?)",
    ]


def test_check_prints_warnings_and_still_passes(tmp_path: Path) -> None:
    result = run_cli(
        "--check", config={"sources": []}, tmp_path=tmp_path, env={"INGESTION_EXPORTER_STALE_AFTR": "1h"}
    )
    assert result.code == 0 and result.stdout == "configuration OK: 0 source(s)\n"
    assert result.stderr.splitlines() == [
        "warning: INGESTION_EXPORTER_STALE_AFTR: sets nothing: no such setting "
        "(did you mean INGESTION_EXPORTER_STALE_AFTER?)",
        "warning: sources: none configured: the exporter serves only its own metrics",
    ]


def test_a_short_secret_is_a_warning_and_never_garbles_words(tmp_path: Path) -> None:
    settings = build_settings({"sources": [rezolve(token="t")]}, {})
    assert config_warnings(settings, {}) == [
        "sources[0].token: shorter than 8 characters, so redacted from logs only where it stands "
        "alone, not inside other words"
    ]
    redactor = Redactor(["t", "s3cr", "a-long-secret"])
    assert redactor.scrub("the token t was rejected at start") == "the token <redacted> was rejected at start"
    assert redactor.scrub("password=s3cr; status 401") == "password=<redacted>; status 401"
    assert redactor.scrub("xa-long-secretx and s3cret") == "x<redacted>x and s3cret"


def test_a_password_that_is_not_a_bcrypt_hash_is_refused_at_load(tmp_path: Path) -> None:
    good = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        yaml.safe_dump({"basic_auth_users": {"alice": "plaintext", "bob": good, "carol": "$2b$10$x"}})
    )
    result = run_cli("--check", "--web-config", str(web), config={"sources": [rezolve()]}, tmp_path=tmp_path)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "web_config.basic_auth_users: the password of 'alice', 'carol' is not a bcrypt hash "
        "(make one with: htpasswd -nBC 10 USER | cut -d: -f2)"
    ]


def test_a_missing_web_config_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    result = run_cli(
        "--check", "--web-config", str(missing), config={"sources": [rezolve()]}, tmp_path=tmp_path
    )
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"{missing}: cannot read web configuration: No such file or directory"
    ]


def test_a_dashboard_url_that_is_not_a_web_address_names_the_field(tmp_path: Path) -> None:
    text = "failure_details:\n  dashboard_url: grafana/d/tenant\nsources: []\n"
    assert problems_of(text, tmp_path) == [
        "failure_details.dashboard_url: must be an http:// or https:// address"
    ]
