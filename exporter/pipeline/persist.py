"""Counting that survives restarts: each source's state in a file of ``state_dir``.

A state is what a restarted source needs to go on counting as if it had never stopped: its
counters (with the increments still held back), its latest result's records (their labels, times,
scopes and identities) and their details (``first_seen`` above all). It is written after every
poll that produced a result and at shutdown, atomically: a temporary file, fsync, rename, fsync of
the directory, so that a crash at any moment leaves the previous state or the new one.

The file is JSON lines: a header, the records in chunks, and a trailer with the tables the chunks
refer to (label sets, scopes, texts) and the number of records, so that a file cut short is seen.
Encoding goes a chunk at a time with a pause between chunks: it runs in a worker thread, and the
pauses let scrapes be answered meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from operator import attrgetter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from exporter.pipeline.render import StateWrites
from exporter.pipeline.result import (
    Detail,
    Entry,
    Key,
    LabelKey,
    PollResult,
    build,
    rows_by_labels,
    times_by_place,
)
from exporter.pipeline.state import Held, SourceState

log = logging.getLogger(__name__)

FORMAT = "ingestion-failure-exporter state"
# Version 2 adds a record's row count (a sixth field, only where it has one); version 1 files,
# which have none, are still read.
VERSION = 2
READABLE = (1, 2)
SUFFIX = ".state"
# Records per line. A line is encoded in one call that holds the GIL: at 2,000 a scrape during a
# write waited up to 12 ms (p99), at 500 under 4 ms, for 10 % more time (docs/performance.md).
CHUNK = 500


def settings_fingerprint(settings: Any) -> str:
    """A digest of a lane's settings (those whose change restarts its lane on reload), secrets
    included but never stored: a state written under other settings is not resumed."""
    document = {
        field.name: getattr(settings, field.name) for field in fields(settings) if field.name != "source"
    }
    document["source"] = settings.source.model_dump(mode="json")
    document["secrets"] = settings.source.secret_values()
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=repr).encode()).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Header(_Strict):
    format: str
    version: int
    source: str
    fingerprint: str
    written_at: float
    result_at: float
    last_success: float | None
    scanned: int
    dropped: int
    details_truncated: bool
    discovered: list[tuple[str, str, str, int]]
    resolved: list[tuple[str, str, int]]
    held: list[tuple[str, str, str, float, int]]


class Trailer(_Strict):
    labels: list[tuple[str, str, str, str]]
    scopes: list[str]
    texts: list[str]
    records: int


@dataclass(frozen=True, slots=True)
class Saved:
    """A state read back: what ``SourceState.resume`` takes."""

    result: PollResult
    result_at: float
    last_success: float | None
    discovered: Counter[tuple[str, str, str]]
    resolved: Counter[tuple[str, str]]
    held: Held
    written_at: float

    def restore(self, state: SourceState, now: float) -> None:
        """Into a fresh lane's state: its next poll counts what changed since this was written."""
        state.result, state.result_at, state.last_success = self.result, self.result_at, self.last_success
        state.stale = now - self.result_at > state.stale_after
        state.discovered, state.resolved = self.discovered, self.resolved
        state.held = self.held
        state.release(now)


class StateUnusable(Exception):
    """A state file that is not resumed; the message says why, for one log line."""


def _index(table: dict[str, int], text: str) -> int:
    index = table.get(text)
    if index is None:
        index = table[text] = len(table)
    return index


def encode(
    state: SourceState, fingerprint: str, written_at: float, pause: Callable[[], None] | None = None
) -> Iterator[bytes]:
    """The state file's lines. The state must not change meanwhile (its lane holds it)."""
    result = state.result
    if result is None or state.result_at is None:
        raise ValueError("only a state with a result is written")
    header = Header(
        format=FORMAT,
        version=VERSION,
        source=state.name,
        fingerprint=fingerprint,
        written_at=written_at,
        result_at=state.result_at,
        last_success=state.last_success,
        scanned=result.scanned,
        dropped=result.dropped,
        details_truncated=result.details_truncated,
        discovered=[(*key, value) for key, value in state.discovered.items()],
        resolved=[(*key, value) for key, value in state.resolved.items()],
        held=[(*key, at, amount) for key, (at, amount) in state.held.items()],
    )
    yield header.model_dump_json().encode() + b"\n"
    labels: dict[LabelKey, int] = {}
    scopes: dict[str, int] = {}
    texts: dict[str, int] = {}
    details, row_counts = result.details, result.rows
    rows: list[list[Any]] = []
    for key, entry in result.entries.items():
        label_index = labels.get(entry.labels)
        if label_index is None:
            label_index = labels[entry.labels] = len(labels)
        detail = details.get(key)
        kept = None
        if detail is not None:
            kept = [
                detail.name,
                _index(texts, detail.kept_location),
                _index(texts, detail.message),
                detail.retry_count,
                detail.first_seen,
                detail.under_folder,
            ]
        row = [entry.identity, label_index, entry.failed_at, _index(scopes, entry.scope), kept]
        count = row_counts.get(key)
        if count is not None:
            row.append(count)
        rows.append(row)
        if len(rows) == CHUNK:
            yield json.dumps(rows).encode() + b"\n"
            rows = []
            if pause is not None:
                pause()
    if rows:
        yield json.dumps(rows).encode() + b"\n"
    trailer = Trailer(
        labels=list(labels), scopes=list(scopes), texts=list(texts), records=len(result.entries)
    )
    yield trailer.model_dump_json().encode() + b"\n"


def decode(data: bytes, name: str, fingerprint: str) -> Saved:
    """A state file's content, or StateUnusable saying why it cannot be resumed."""
    if not data:
        raise StateUnusable("empty")
    lines = data.split(b"\n")
    try:
        first = json.loads(lines[0])
    except ValueError:
        raise StateUnusable("its first line is not JSON: not a state file, or one cut short") from None
    if not isinstance(first, dict) or first.get("format") != FORMAT:
        raise StateUnusable("not a state file of this exporter")
    if first.get("version") not in READABLE:
        version = first.get("version")
        readable = " and ".join(map(str, READABLE))
        raise StateUnusable(f"written in format version {version!r}, this exporter reads {readable}")
    if len(lines) < 3 or lines[-1] != b"":
        raise StateUnusable("truncated (no complete trailer)")
    try:
        header = Header.model_validate_json(lines[0])
        trailer = Trailer.model_validate_json(lines[-2])
    except (ValidationError, ValueError) as exc:
        raise StateUnusable(f"corrupt ({_first_problem(exc)})") from None
    if header.source != name:
        raise StateUnusable(f"written for source {header.source!r}")
    if header.fingerprint != fingerprint:
        raise StateUnusable("written under other settings of the source")
    try:
        entries, details, row_counts = _records(lines[1:-2], trailer)
    except (ValueError, TypeError, IndexError) as exc:
        raise StateUnusable(f"corrupt records ({exc})") from None
    if len(entries) != trailer.records:
        raise StateUnusable(f"corrupt: {len(entries)} records where {trailer.records} were written")
    return Saved(
        result=_result(header, entries, details, row_counts),
        result_at=header.result_at,
        last_success=header.last_success,
        discovered=Counter({(t, p, e): n for t, p, e, n in header.discovered}),
        resolved=Counter({(t, p): n for t, p, n in header.resolved}),
        held={(t, p, e): (at, n) for t, p, e, at, n in header.held},
        written_at=header.written_at,
    )


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        return f"{'.'.join(map(str, error['loc'])) or 'line'}: {error['msg']}"
    return str(exc)


def _records(
    lines: list[bytes], trailer: Trailer
) -> tuple[dict[Key, Entry], dict[Key, Detail], dict[Key, int]]:
    label_sets = trailer.labels
    scopes, texts = trailer.scopes, trailer.texts
    entries: dict[Key, Entry] = {}
    details: dict[Key, Detail] = {}
    row_counts: dict[Key, int] = {}
    for line in lines:
        for identity_list, label_index, failed_at, scope_index, kept, *counted in json.loads(line):
            # The file is whole (its trailer's count says so) and ours: a record is checked as far
            # as a damaged one would break what is built from it. The join refuses a part that is
            # not a string, float() a time that is not a number.
            identity = tuple(identity_list)
            joined = "/".join(identity)
            if failed_at is not None:
                failed_at = float(failed_at)
            key = hash(identity)
            entries[key] = build(Entry, (label_sets[label_index], failed_at, scopes[scope_index], identity))
            if counted:
                (count,) = counted
                if type(count) is not int or count < 0:
                    raise ValueError(f"a row count of {count!r}")
                row_counts[key] = count
            if kept is not None:
                name, location, message, retry_count, first_seen, folder = kept
                detail = (joined, name, texts[location], texts[message], retry_count, first_seen, folder)
                details[key] = build(Detail, detail)
    return entries, details, row_counts


def _result(
    header: Header, entries: dict[Key, Entry], details: dict[Key, Detail], row_counts: dict[Key, int]
) -> PollResult:
    """The result as its poll left it; its counts and times follow from its records. Read again
    from the start at the next poll (no watermark): what changed meanwhile is not known."""
    counts = Counter(map(attrgetter("labels"), entries.values()))
    oldest, newest = times_by_place((e.labels, 1, e.failed_at, e.failed_at) for e in entries.values())
    return PollResult(
        entries=entries,
        counts=dict(counts),
        oldest=oldest,
        newest=newest,
        scanned=header.scanned,
        dropped=header.dropped,
        details=details,
        details_truncated=header.details_truncated,
        rows=row_counts,
        failed_rows=rows_by_labels(entries, row_counts),
    )


class StateStore:
    """The directory of every source's state. Its figures are the exporter's
    ``ingestion_exporter_state_*`` metrics."""

    def __init__(self, directory: Path, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.max_age = max_age
        self._clock = clock
        self.writes = StateWrites()

    def path_of(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def remove_leftovers(self) -> None:
        """Temporary files of writes that a crash cut short: never read, so removed at start."""
        for leftover in self.directory.glob(f".*{SUFFIX}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def load(self, name: str, fingerprint: str) -> Saved | None:
        """The source's state if it can be resumed; else None, said in one log line."""
        path = self.path_of(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            log.info("source %s: no saved state in %s: it starts afresh", name, self.directory)
            return None
        except OSError as exc:
            log.warning(
                "source %s: cannot read its state %s (%s): it starts afresh", name, path, exc.strerror
            )
            return None
        try:
            saved = decode(data, name, fingerprint)
        except StateUnusable as exc:
            log.warning("source %s: state %s not resumed, %s: it starts afresh", name, path, exc)
            return None
        age = self._clock() - saved.written_at
        if age > self.max_age:
            log.warning(
                "source %s: state %s not resumed, written %.0fs ago (state_max_age %gs): it starts afresh",
                name,
                path,
                age,
                self.max_age,
            )
            return None
        log.info(
            "source %s: resumed its state from %s (%d records, written %.0fs ago)",
            name,
            path,
            len(saved.result.entries),
            age,
        )
        return saved

    def save(self, state: SourceState, fingerprint: str, pause: Callable[[], None] | None = None) -> None:
        """Write the source's state atomically, or raise OSError (the previous state stays)."""
        target = self.path_of(state.name)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(descriptor, "wb") as out:
                for line in encode(state, fingerprint, self._clock(), pause):
                    out.write(line)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself, on disk
        finally:
            os.close(directory)

    def written(self, at: float) -> None:
        self.writes = replace(self.writes, last_success=at)

    def failed(self, name: str, exc: OSError) -> None:
        self.writes = replace(self.writes, errors=self.writes.errors + 1)
        log.error(
            "source %s: cannot write its state to %s (%s): polling goes on, the next poll tries again",
            name,
            self.directory,
            exc.strerror or exc,
        )
