"""The monitoring mixin: alert rules, PrometheusRule and dashboards from one configuration.

`config.yml` beside this file holds every tunable value; a user's file overrides any of its keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

HERE = Path(__file__).resolve().parent
DEFAULTS = HERE / "config.yml"

# Prometheus' own duration syntax, one unit: what `for:` and range selectors take.
DURATION = re.compile(r"^([1-9][0-9]*)(ms|s|m|h|d|w|y)$")
UNIT_WORDS = {
    "ms": "millisecond",
    "s": "second",
    "m": "minute",
    "h": "hour",
    "d": "day",
    "w": "week",
    "y": "year",
}
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    match = DURATION.match(duration)
    assert match, duration
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def in_words(duration: str) -> str:
    """``15m`` as people write it in an alert's text: ``15 minutes``."""
    match = DURATION.match(duration)
    assert match, duration
    count, unit = int(match.group(1)), UNIT_WORDS[match.group(2)]
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def number(value: float) -> str:
    """A threshold as PromQL and prose both take it: no trailing ``.0``."""
    return f"{value:g}"


def _duration(value: str) -> str:
    if not DURATION.match(value):
        raise ValueError(f"not a Prometheus duration such as 15m: {value!r}")
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Alert(Strict):
    for_: Duration = Field(alias="for")
    severity: Literal["critical", "warning", "info"]


class SourceStale(Alert):
    intervals: int = Field(gt=0)
    min_age: Duration


class PollErrorsRising(Alert):
    window: Duration
    errors: int = Field(gt=0)


class FailedFilesSpike(Alert):
    baseline: Duration
    min_excess: float = Field(gt=0)
    factor: float = Field(gt=1)


class PersistentFailures(Alert):
    growth_window: Duration


class UnresolvedFailuresOld(Alert):
    max_age: Duration


class AccessDeniedBurst(Alert):
    window: Duration
    failures: int = Field(gt=0)


class Alerts(Strict):
    IngestionSourceDown: Alert
    IngestionSourceStale: SourceStale
    IngestionPollErrorsRising: PollErrorsRising
    IngestionFailedFilesSpike: FailedFilesSpike
    IngestionPersistentFailures: PersistentFailures
    IngestionUnresolvedFailuresOld: UnresolvedFailuresOld
    IngestionAccessDeniedBurst: AccessDeniedBurst
    IngestionSeriesCapHit: Alert
    IngestionExporterAbsent: Alert
    IngestionShardMissing: Alert


class NamedObject(Strict):
    name: str
    labels: dict[str, str]


class Config(Strict):
    selector: str
    replica_labels: list[str] = Field(min_length=1)
    runbook_base_url: str
    exporter_url: str
    # How Prometheus' alert links reach the exporter: https where its --web-config sets up TLS.
    exporter_scheme: Literal["http", "https"] = "http"
    prometheus_rule: NamedObject
    dashboards_configmap: NamedObject
    alerts: Alerts

    def selects(self, *matchers: str) -> str:
        """A selector's braces content: the configured one, then ``matchers``."""
        return ", ".join(m for m in (self.selector, *matchers) if m)

    @property
    def replicas(self) -> str:
        return ", ".join(self.replica_labels)

    def dedup(self, expr: str) -> str:
        """``expr`` counted once across identical replicas (and summed across shards, whose
        series never overlap)."""
        return f"max without ({self.replicas}) ({expr})"

    def runbook(self, alert: str) -> str:
        return f"{self.runbook_base_url}#{alert.lower()}"


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def load(path: Path | None = None) -> Config:
    """The defaults of ``config.yml``, with ``path``'s keys over them."""
    values = yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))
    if path is not None:
        values = merged(values, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return Config.model_validate(values)
