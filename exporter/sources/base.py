"""What every source is: something that reads a platform's current failures into a sink."""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
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

    def revise(self, record: FailureRecord) -> None:
        """A record of this poll already added is now as ``record`` says (same identity)."""
        ...

    def changed_at(self, moment: float) -> None:
        """When a record just added last changed, on the platform's clock (it sets the next
        poll's ``since``)."""
        ...

    def fail(self, scope: str, error: PollError) -> None: ...

    def warn(self, message: str) -> None:
        """Something people should know of this poll that did not fail it (logged once, and
        shown in ``/sources`` until the next poll)."""
        ...


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


async def cancel(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel tasks whose outcome is no longer wanted, and wait until they have ended."""
    ended = list(tasks)
    for task in ended:
        task.cancel()
    await asyncio.gather(*ended, return_exceptions=True)


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


def basename(path: str) -> str:
    """A file's name: the last element of its path, either separator (docs/reference.md, Which
    files failed); the path itself when it has none."""
    return path.replace("\\", "/").rstrip("/").rpartition("/")[2] or path


def slug(text: str) -> str:
    """``Microsoft Teams`` as ``microsoft_teams``."""
    out = "".join(c.lower() if c.isalnum() else "_" for c in text.strip())
    return "_".join(part for part in out.split("_") if part) or "unknown"


class RepeatedFailures(Generic[IdentityT]):
    """Merges failures of the same identity across the runs (jobs) of a window into one record
    whose retry count is the number of *other* runs it failed in (docs/reference.md, Platforms).

    A record reaches the sink when its first run answers, and is revised there each time
    another run repeats it: a poll counts its records while the other answers are on the way,
    instead of all of them after the last one.
    """

    def __init__(self, out: RecordSink, tenant: str) -> None:
        self._out = out
        self._tenant = tenant
        # Per identity: the latest run's message, type, time and run, and in how many runs it
        # failed. Tuples of plain values, which the garbage collector soon stops tracking
        # (lists, it would walk again at every collection).
        self._seen: dict[IdentityT, tuple[str, str | None, float | None, str, int]] = {}

    def add(
        self,
        identity: IdentityT,
        platform: str,
        message: str,
        when: float | None,
        run: str,
        name: str,
        location: str,
        reported_type: str | None = None,
    ) -> None:
        """One run's failure of ``identity``; ``name`` and ``location`` say which file it is."""
        known = self._seen.get(identity)
        if known is None:
            # The common case, once per record of a poll: no more work than the record itself.
            self._seen[identity] = (message, reported_type, when, run, 1)
            self._out.add(
                FailureRecord(
                    self._tenant, platform, identity, message, reported_type, 0, when, run, name, location
                )
            )
            return
        # The latest run's failure (a run without a time is the earliest); of runs that ended
        # together, the same one whatever order their answers came in.
        latest = -math.inf if when is None else when
        before = -math.inf if known[2] is None else known[2]
        if not (latest > before or (latest == before and run > known[3])):
            message, reported_type, when, run = known[0], known[1], known[2], known[3]
        runs = known[4] + 1
        self._seen[identity] = (message, reported_type, when, run, runs)
        self._out.revise(
            FailureRecord(
                self._tenant, platform, identity, message, reported_type, runs - 1, when, run, name, location
            )
        )
