"""The exporter's configuration: a YAML file, environment overrides, validated once and frozen."""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from exporter.configtypes import ERROR_TYPE_PATTERN, Delay, Duration, Frozen
from exporter.redact import SHORT_CHARS, Redactor
from exporter.sources import KINDS, AnySourceConfig

ENV_PREFIX = "INGESTION_EXPORTER_"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """An invalid configuration; ``problems`` holds one line per problem, naming the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class FailureDetails(Frozen):
    """``failure_details``: which files failed, kept per source, bounded (docs/reference.md,
    Which files failed)."""

    enabled: bool = True
    max_records_per_source: int = Field(default=100_000, ge=1)
    message_max_chars: int = Field(default=512, ge=1)
    # The Grafana dashboard the /failures page links back to (the mixin's, as people reach it).
    dashboard_url: str | None = None

    @field_validator("dashboard_url")
    @classmethod
    def _a_web_address(cls, url: str | None) -> str | None:
        if url is not None and not re.fullmatch(r"https?://\S+", url):
            raise ValueError("must be an http:// or https:// address")
        return url


class Shard(Frozen):
    index: int = Field(default=0, ge=0)
    total: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _index_below_total(self) -> Shard:
        if self.index >= self.total:
            raise ValueError(f"index {self.index} must be below total {self.total}")
        return self


class ClassifierRule(Frozen):
    pattern: str
    error_type: str = Field(pattern=ERROR_TYPE_PATTERN)

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


class ClassifierConfig(Frozen):
    """``classifier``: the rules tried before the built-in ones (docs/reference.md, Error
    types)."""

    rules: tuple[ClassifierRule, ...] = ()


def split_listen_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 hosts in brackets) as a (host, port) pair."""
    match = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d{1,5})", value.strip())
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return match.group(1) or "0.0.0.0", int(match.group(2))


class Settings(BaseSettings):
    """Top-level configuration (docs/reference.md, Configuration). The environment wins over the file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    listen_address: str = "0.0.0.0:9890"
    poll_interval: Duration = 300.0
    poll_timeout: Duration = 120.0
    stale_after: Duration | None = None
    retry_count_cap: int = Field(default=5, ge=1, le=1000)
    max_series_per_source: int = Field(default=10000, ge=1)
    shard: Shard = Shard()
    state_dir: Path | None = None
    state_max_age: Duration = 3600.0
    counter_birth_delay: Delay = 120.0
    failure_details: FailureDetails = FailureDetails()
    classifier: ClassifierConfig = ClassifierConfig()
    sources: tuple[AnySourceConfig, ...] = ()

    @field_validator("listen_address")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        split_listen_address(value)
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir_writable(cls, value: Path | None) -> Path | None:
        """Created if missing (readable by the exporter's user only) and tried with a file, so
        that a directory the exporter cannot write fails at start, not at the first poll."""
        if value is None:
            return None
        try:
            value.mkdir(mode=0o700, parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=value):
                pass
        except OSError as exc:
            raise ValueError(f"cannot create or write {str(value)!r}: {exc.strerror or exc}") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    def interval_of(self, source: AnySourceConfig) -> float:
        return source.interval or self.poll_interval

    def stale_after_of(self, source: AnySourceConfig) -> float:
        return self.stale_after or 3 * self.interval_of(source)

    def enabled_sources(self) -> list[AnySourceConfig]:
        return [s for s in self.sources if s.enabled]

    def secret_values(self) -> list[str]:
        return [v for s in self.sources for v in s.secret_values()]

    def redactor(self) -> Redactor:
        return Redactor(self.secret_values())


def interpolate(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a YAML document."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(f"{path or '<top>'}: environment variable {name} is not set")
            return ""

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return value


def field_path(loc: tuple[int | str, ...]) -> str:
    """``('sources', 2, 'rezolve', 'base_url')`` as ``sources[2].base_url``."""
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
        elif i > 0 and isinstance(parts[i - 1], int) and part in KINDS and parts[0] == "sources":
            continue  # the discriminated union's tag, not a field
        else:
            out += f".{part}" if out else str(part)
    return out or "<top>"


def describe(error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "union_tag_invalid":
        loc += ("kind",)
        message = f"unknown kind {ctx.get('tag')!r} (expected one of {', '.join(KINDS)})"
    elif kind == "union_tag_not_found":
        loc += ("kind",)
        message = f"field required (one of {', '.join(KINDS)})"
    elif kind in ("missing_secret", "secret_twice", "field_problem"):
        loc += (ctx["field"],)
    elif kind == "string_type" and isinstance(error.get("input"), bool | int | float):
        message = yaml_typed(error["input"])
    return f"{field_path(loc)}: {message}"


def yaml_typed(value: bool | int | float) -> str:
    """Why a value written as text is not a string: YAML typed it. The value is not repeated:
    it may be a secret (``token: 12345678``)."""
    if isinstance(value, bool):
        what = "a boolean (unquoted yes, no, on, off, true and false are booleans)"
    else:
        what = "a number"
    return f"YAML read this value as {what}: put it in quotes to make it text"


def _with_an_item_error(error: Mapping[str, Any], errors: list[Any]) -> bool:
    """A list too short only because one of its items was refused (that item's error says why)."""
    loc = tuple(error["loc"])
    return error["type"] == "too_short" and any(
        tuple(other["loc"])[: len(loc)] == loc and len(other["loc"]) > len(loc) for other in errors
    )


def duplicate_names(names: Iterable[Any]) -> list[str]:
    """The problem of each source name given twice (the one place they are checked)."""
    counted = Counter(name for name in names if isinstance(name, str))
    return [f"sources: duplicate source name {name!r}" for name, count in counted.items() if count > 1]


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate a configuration file, or raise ConfigError."""
    env = os.environ if env is None else env
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read configuration: {exc.strerror}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}: invalid YAML{at}: {problem}"]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of settings"])
    return build_settings(document, env)


def build_settings(document: dict[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    problems: list[str] = []
    data = interpolate(document, os.environ if env is None else env, "", problems)
    if problems:
        raise ConfigError(problems)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [describe(e) for e in errors if not _with_an_item_error(e, errors)]
        # Read from the document itself: said with every other problem, not only once each
        # source is valid.
        sources = data.get("sources")
        written = [s.get("name") for s in sources if isinstance(s, dict)] if isinstance(sources, list) else []
        raise ConfigError(problems + duplicate_names(written)) from None
    duplicates = duplicate_names(source.name for source in settings.sources)  # the environment's too
    if duplicates:
        raise ConfigError(duplicates)
    return settings


def config_warnings(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """What is valid but likely not meant: one line each, for --check and the log at start."""
    warnings = [f"{name}: {why}" for name, why in unused_variables(env)]
    if not settings.sources:
        warnings.append("sources: none configured: the exporter serves only its own metrics")
    for index, source in enumerate(settings.sources):
        for field in source.short_secrets(SHORT_CHARS):
            warnings.append(
                f"sources[{index}].{field}: shorter than {SHORT_CHARS} characters, so redacted from "
                "logs only where it stands alone, not inside other words"
            )
    return warnings


def unused_variables(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``INGESTION_EXPORTER_*`` variables that set nothing (a misspelt override is silently
    ignored otherwise), each with the setting it may have meant."""
    unused = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        model: Any = Settings
        for depth, part in enumerate(path):
            fields = getattr(model, "model_fields", None)
            if fields is None:  # a nested value of a setting that is not a model: taken as it is
                break
            if part not in fields:
                close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.8)
                meant = f"{ENV_PREFIX}{'__'.join([*path[:depth], *close])}".upper()
                hint = f" (did you mean {meant}?)" if close else ""
                unused.append((name, f"sets nothing: no such setting{hint}"))
                break
            model = fields[part].annotation
    return unused
