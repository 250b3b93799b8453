"""Configuration: YAML, environment overrides, interpolation, secrets from files, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import ConfigError, build_settings, load_config
from tests.conftest import TENANT_A, run_cli


def rezolve(name: str = "rezolve-prod", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "rezolve",
        "base_url": "https://ingest.example.com/",
        "token": "t0ken",
        "tenants": [{"tenant_id": TENANT_A, "rezolve_domain": "acme.rezolve.ai"}],
        **extra,
    }


def problems(document: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings(document, env or {})
    return caught.value.problems


def test_defaults_follow_the_spec() -> None:
    settings = build_settings({"sources": [rezolve()]}, {})
    assert settings.listen_address == "0.0.0.0:9890"
    assert settings.poll_interval == 300 and settings.poll_timeout == 120
    assert settings.retry_count_cap == 5 and settings.max_series_per_source == 10000
    source = settings.sources[0]
    assert source.timeout == 30 and source.max_concurrency == 8 and source.enabled
    assert source.base_url == "https://ingest.example.com"
    assert source.tenants[0].platforms == ("sharepoint", "servicenow", "confluence", "itglue", "web")
    assert settings.stale_after_of(source) == 900


@pytest.mark.parametrize(
    ("text", "seconds"), [(45, 45), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400)]
)
def test_durations_accept_seconds_and_units(text: object, seconds: float) -> None:
    assert build_settings({"poll_interval": text}, {}).poll_interval == seconds


def test_interpolation_reads_the_environment_with_defaults() -> None:
    document = {"sources": [rezolve(token="${REZOLVE_TOKEN}", base_url="${BASE:-https://fallback.example}")]}
    source = build_settings(document, {"REZOLVE_TOKEN": "from-env"}).sources[0]
    assert source.secret("token") == "from-env"
    assert source.base_url == "https://fallback.example"


def test_an_unset_variable_without_default_names_the_field() -> None:
    assert problems({"sources": [rezolve(token="${NOPE}")]}) == [
        "sources[0].token: environment variable NOPE is not set"
    ]


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("  s3cret\n")
    source = rezolve()
    del source["token"]
    source["token_file"] = str(secret)
    settings = build_settings({"sources": [source]}, {})
    assert settings.sources[0].secret("token") == "s3cret"
    assert "s3cret" not in repr(settings)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"poll_interval": "5m", "shard": {"index": 0, "total": 3}}))
    env = {"INGESTION_EXPORTER_POLL_INTERVAL": "1m", "INGESTION_EXPORTER_SHARD__INDEX": "2"}
    import os

    old = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_config(path)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert settings.poll_interval == 60
    assert (settings.shard.index, settings.shard.total) == (2, 3)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            {"sources": [{**rezolve(), "base_url": None}]},
            ["sources[0].base_url: Input should be a valid string"],
        ),
        (
            {"sources": [{k: v for k, v in rezolve().items() if k != "tenants"}]},
            ["sources[0].tenants: field required"],
        ),
        (
            {"sources": [{**rezolve(), "kind": "sharepoint"}]},
            [
                "sources[0].kind: unknown kind 'sharepoint' (expected one of rezolve, azure_table, commvault, unstructured, aep, http_json)"
            ],
        ),
        (
            {"sources": [rezolve("a"), rezolve("a")]},
            ["sources: Value error, duplicate source name 'a'".replace("Value error, ", "")],
        ),
        (
            {"poll_interval": "5 minutes"},
            [
                "poll_interval: invalid duration '5 minutes': use seconds or a number with ms, s, m, h or d (e.g. 30s, 5m)"
            ],
        ),
        (
            {"classifier": {"rules": [{"pattern": "(unclosed", "error_type": "X"}]}},
            [
                "classifier.rules[0].pattern: invalid regular expression: missing ), unterminated subpattern at position 0"
            ],
        ),
        (
            {"classifier": {"rules": [{"pattern": "x", "error_type": "lower"}]}},
            ["classifier.rules[0].error_type: String should match pattern '^[A-Z][A-Z0-9_]{0,63}$'"],
        ),
        ({"shard": {"index": 3, "total": 3}}, ["shard: index 3 must be below total 3"]),
        ({"scrape_interval": "1m"}, ["scrape_interval: unknown key"]),
        (
            {"sources": [{**rezolve(), "token": None}]},
            ["sources[0].token: field required: give token (or token_file)"],
        ),
        (
            {"sources": [{**rezolve(), "name": "Bad Name"}]},
            ["sources[0].name: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$'"],
        ),
    ],
)
def test_each_problem_is_one_line_naming_the_field(document: dict[str, Any], expected: list[str]) -> None:
    assert problems(document) == expected


def test_several_problems_are_all_reported() -> None:
    document = {
        "poll_interval": "soon",
        "shard": {"index": 5, "total": 2},
        "sources": [rezolve(), {**rezolve("b"), "base_url": "ftp://x"}],
    }
    assert problems(document) == [
        "poll_interval: invalid duration 'soon': use seconds or a number with ms, s, m, h or d (e.g. 30s, 5m)",
        "shard: index 5 must be below total 2",
        "sources[1].base_url: must be an http:// or https:// URL",
    ]


def test_check_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    config = {
        "poll_interval": "never",
        "sources": [{**rezolve(), "kind": "nope"}, rezolve(max_concurrency=0)],
    }
    result = run_cli("--check", config=config, tmp_path=tmp_path)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "poll_interval",
        "sources[0].kind",
        "sources[1].max_concurrency",
        "sources",  # both are named alike: said in the same pass, not once the rest is fixed
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sources: [\n  - name: x\n kind: y", "invalid YAML at line"),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_unreadable_yaml_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(content)
    result = run_cli("--check", "--config", str(path))
    assert result.code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_config_file_exits_2() -> None:
    result = run_cli("--check", "--config", "/nonexistent/config.yml")
    assert result.code == 2
    assert (
        result.stderr.strip()
        == "/nonexistent/config.yml: cannot read configuration: No such file or directory"
    )


def test_a_valid_configuration_checks_clean(tmp_path: Path) -> None:
    result = run_cli("--check", config={"sources": [rezolve()]}, tmp_path=tmp_path)
    assert (result.code, result.stdout.strip()) == (0, "configuration OK: 1 source(s)")


@pytest.mark.parametrize("mode", ["--check", "--once"])
def test_a_state_dir_that_cannot_be_written_exits_2_from_check_and_at_start(
    tmp_path: Path, mode: str
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = {"state_dir": str(blocker / "state"), "sources": [rezolve()]}
    result = run_cli(mode, config=config, tmp_path=tmp_path)
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"state_dir: cannot create or write '{blocker / 'state'}': Not a directory"
    )


def test_counter_birth_delay_takes_0_to_turn_it_off_and_no_negative_duration() -> None:
    assert build_settings({"counter_birth_delay": "0s"}, {}).counter_birth_delay == 0
    assert build_settings({}, {}).counter_birth_delay == 120
    assert build_settings({}, {}).state_max_age == 3600
    with pytest.raises(ConfigError) as raised:
        build_settings({"counter_birth_delay": -1, "state_max_age": "0s"}, {})
    assert [p.split(":")[0] for p in raised.value.problems] == ["state_max_age", "counter_birth_delay"]
