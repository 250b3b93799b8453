"""What every source is: something that reads a platform's current failures into a sink."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from exporter.configtypes import SourceConfig
from exporter.records import FailureRecord, PollError

ConfigT = TypeVar("ConfigT", bound=SourceConfig)
T = TypeVar("T")
IdentityT = TypeVar("IdentityT", bound=tuple[str, ...])


class RecordSink(Protocol):
    """Where a poll sends its records (the lane's aggregator), and by when it must end."""

    @property
    def deadline(self) -> float:
        """The event loop's time by which the poll must have ended (``poll_timeout``)."""
        ...

    @property
    def since(self) -> float | None:
        """For a source that can read only what changed: the moment (epoch seconds, the
        platform's clock) from which to read; None when this poll must read everything."""
        ...

    def wants(self, tenant: str) -> bool: ...

    def add(self, record: FailureRecord) -> None: ...

    def changed_at(self, moment: float) -> None:
        """When a record just added last changed, on the platform's clock (it sets the next
        poll's ``since``)."""
        ...

    def fail(self, scope: str, error: PollError) -> None: ...


class Source(abc.ABC, Generic[ConfigT]):
    """One configured source. ``poll`` raises PollError when the whole poll failed."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        # Told of every secret the platform issues while running (a login's token), so that it is
        # redacted like a configured one; the exporter connects it to its redactor.
        self.secret_issued: Callable[[str], None] = _ignore

    @abc.abstractmethod
    async def poll(self, out: RecordSink) -> None: ...

    async def aclose(self) -> None:
        """Release connections; called once when the exporter stops."""


def _ignore(secret: str) -> None:
    pass


async def gather_parts(out: RecordSink, parts: Iterable[tuple[str, Awaitable[T]]]) -> list[tuple[str, T]]:
    """Run the parts of a poll concurrently; a part that fails is reported to the sink as a
    partial failure, and if every part failed the poll as a whole fails with the first error."""
    listed = list(parts)
    scopes = [scope for scope, _ in listed]
    outcomes = await asyncio.gather(*(part for _, part in listed), return_exceptions=True)
    done: list[tuple[str, T]] = []
    errors: list[PollError] = []
    for scope, outcome in zip(scopes, outcomes, strict=True):
        if isinstance(outcome, PollError):
            out.fail(scope, outcome)
            errors.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            done.append((scope, outcome))
    if errors and not done:
        raise errors[0]
    return done


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string or a datetime; None when absent or unreadable."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def slug(text: str) -> str:
    """``Microsoft Teams`` as ``microsoft_teams``."""
    out = "".join(c.lower() if c.isalnum() else "_" for c in text.strip())
    return "_".join(part for part in out.split("_") if part) or "unknown"


@dataclass(slots=True)
class Repeat:
    """The latest failure of one identity in the window, and in how many runs it failed."""

    message: str
    when: float
    run: str
    runs: int = 1


class RepeatedFailures(Generic[IdentityT]):
    """Merges failures of the same identity across the runs (jobs) of a window into one record
    whose retry count is the number of *other* runs it failed in (SPEC section 8)."""

    def __init__(self) -> None:
        self._seen: dict[IdentityT, Repeat] = {}

    def add(self, identity: IdentityT, message: str, when: float, run: str) -> None:
        known = self._seen.get(identity)
        if known is None:
            self._seen[identity] = Repeat(message, when, run)
            return
        known.runs += 1
        # The latest run's failure; of runs that ended together, the same one whatever order
        # their answers came in.
        if when > known.when or (when == known.when and run > known.run):
            known.message, known.when, known.run = message, when, run

    def identities(self) -> Iterable[IdentityT]:
        return self._seen.keys()

    def records(
        self,
        tenant: str,
        platform_of: Callable[[IdentityT], str],
        describe: Callable[[IdentityT], tuple[str, str]],
    ) -> Iterator[FailureRecord]:
        """One record per identity: its latest message and time, its run as the scope, and the
        ``(name, location)`` that ``describe`` gives it."""
        for identity, item in self._seen.items():
            name, location = describe(identity)
            yield FailureRecord(
                tenant=tenant,
                platform=platform_of(identity),
                identity=identity,
                message=item.message,
                retry_count=item.runs - 1,
                failed_at=item.when,
                scope=item.run,
                name=name,
                location=location,
            )
