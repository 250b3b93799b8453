"""The normalized failure record every source produces, and the reasons a poll can fail."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class Reason(StrEnum):
    """Why a poll failed: the ``reason`` label of ``ingestion_source_poll_errors_total``."""

    AUTH = "auth"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_ERROR = "http_error"
    RATE_LIMITED = "rate_limited"
    INVALID_RESPONSE = "invalid_response"
    INTERNAL = "internal"


def decimal(text: str) -> int | None:
    """A number written in digits (spaces around it allowed), else None. The one reading of digits
    in a platform's text: isdecimal, not isdigit, since '²' is a digit that int() refuses."""
    text = text.strip()
    return int(text) if text.isdecimal() else None


def as_count(value: Any) -> int:
    """A retry count as a platform gives it: a non-negative int, a string of digits, else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    count = decimal(value) if isinstance(value, str) else None
    return 0 if count is None else count


def text_of(value: Any) -> str:
    """A descriptive field as text: a string as it is, anything else (a number, null) printed."""
    return value if isinstance(value, str) else "" if value is None else str(value)


def excerpt(text: str, limit: int = 200) -> str:
    """The start of a text a server sent, on one line, for an error message a person reads."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else f"{flat[: limit - 3]}..."


class PollError(Exception):
    """A failure of a poll or of one part of it, already mapped to its reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Between a scope and a part of it (``tenant/platform > job``): when the scope fails as a whole,
# the previous records of each of its parts are kept too.
SCOPE_SEPARATOR = " > "


class FailureRecord(NamedTuple):
    """One file that failed, as a source reads it, before classification.

    ``identity`` names the record within its source across polls (docs/reference.md, Platforms);
    ``scope`` is the unit that fails together (a tenant and platform, a job, a batch) so that a
    partial failure can keep that unit's previous records; ``name`` and ``location`` say which
    file it is, for people (docs/reference.md, Which files failed), never for labels.

    A named tuple: immutable, and made in a third of a frozen dataclass's time, which a poll of
    100,000 records pays 100,000 times.
    """

    tenant: str
    platform: str
    identity: tuple[str, ...]
    message: str
    reported_type: str | None = None
    retry_count: int = 0
    failed_at: float | None = None
    scope: str = ""
    name: str = ""
    location: str = ""
    # How many rows (records inside a file or batch) it stands for, where the platform says so
    # (AEP); summed into ``ingestion_failed_rows``.
    rows: int | None = None
