"""Building blocks of the configuration schema: durations, secrets, the common source fields."""

from __future__ import annotations

import abc
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from exporter.sources.base import Source

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """Seconds from an integer, a float or a string such as ``30s``, ``5m``, ``1h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as 30s, 5m, 1h, 1d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(
        f"invalid duration {value!r}: use seconds or a number with ms, s, m, h or d (e.g. 30s, 5m)"
    )


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
# A duration that may be 0 (a delay that 0 turns off).
Delay = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ERROR_TYPE_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"


def read_secret_file(value: Any) -> Any:
    """The content of a ``*_file`` secret, stripped of surrounding whitespace."""
    if value is None:
        return None
    try:
        return Path(str(value)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {value!r}: {exc.strerror}") from None


SecretFile = Annotated[SecretStr | None, BeforeValidator(read_secret_file)]


class Frozen(BaseModel):
    """Strict, immutable configuration model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def field_problem(field: str, message: str) -> PydanticCustomError:
    """A problem a model validator finds with one field: reported at that field's path
    (``sources[1].username``), not at the source's."""
    return PydanticCustomError("field_problem", message, {"field": field})


class SourceConfig(Frozen):
    """Fields every source kind shares (docs/reference.md, Configuration). A kind's model
    narrows ``kind`` to its name (a ``Literal``), opens its source, and says whether its reads
    are incremental."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[tuple[str, ...], ...]] = ()

    kind: str
    name: str = Field(pattern=NAME_PATTERN)
    interval: Duration | None = None
    timeout: Duration = 30.0
    max_concurrency: int = Field(default=8, ge=1, le=256)
    enabled: bool = True
    tenant: str | None = Field(default=None, min_length=1)
    platform: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _merge_secret_files(self) -> SourceConfig:
        """Every secret ``X`` may come from ``X_file``; one of each required group must be set."""
        for field in self.secret_fields:
            from_file = getattr(self, f"{field}_file")
            if from_file is not None:
                if getattr(self, field) is not None:
                    raise PydanticCustomError(
                        "secret_twice", "give {field} or {field}_file, not both", {"field": field}
                    )
                object.__setattr__(self, field, from_file)
        for group in self.required_secrets:
            if all(getattr(self, field) is None for field in group):
                either = " or ".join(f"{f} (or {f}_file)" for f in group)
                raise PydanticCustomError(
                    "missing_secret",
                    "field required: give {either}",
                    {"either": either, "field": group[0]},
                )
        return self

    @abc.abstractmethod
    def open(self) -> Source[Any]:
        """A new source of this kind, reading the platform as this configuration says."""

    def incremental_reads(self) -> IncrementalReads | None:
        """How polls read only what changed (see ``IncrementalReads``); None: every poll reads all."""
        return None

    def secret(self, field: str) -> str | None:
        value: SecretStr | None = getattr(self, field)
        return None if value is None else value.get_secret_value()

    def secret_values(self) -> list[str]:
        """Every secret this source holds, so that logs and /sources can redact them."""
        return [v for f in self.secret_fields if (v := self.secret(f))]

    def short_secrets(self, chars: int) -> list[str]:
        """The fields whose secret is set but shorter than ``chars``."""
        return [f for f in self.secret_fields if (v := self.secret(f)) and len(v) < chars]


class IncrementalReads(Frozen):
    """Between full reads, a poll reads only the records changed since the last poll (minus
    ``overlap``, for clocks and late writers) and keeps the rest. Every ``reconcile_every``-th
    poll, and always the first, reads everything: only a full read sees deleted (resolved)
    records. 1 reads everything every time."""

    reconcile_every: int = Field(default=12, ge=1)
    overlap: Duration = 300.0


class HttpSourceConfig(SourceConfig):
    """A source read over HTTP with the shared client (retries, limits)."""

    base_url: str
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        return check_http_url(value)
