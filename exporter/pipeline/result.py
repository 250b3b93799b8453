"""What a poll leaves for the rest of the exporter: its records' counts, entries and details.

The boundary between counting (``aggregate``) and what reads a result (rendering, ``/failures``,
the state files). Records are named tuples: as small as plain ones, read by name everywhere but
where a record is built once per record (``build``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# (tenant, platform, error_type, retry_count label)
LabelKey = tuple[str, str, str, str]

# A record's identity is kept as its hash (64 bits, Python's own, stable within the process):
# the key of its entry, by which polls tell discovered and resolved records apart. A tuple of
# strings hashes in tens of nanoseconds where a cryptographic digest of it took 0.9 us, the
# largest single cost of a record. Two of a million identities collide with odds of about 3e-8.
Key = int

# Ends each searchable text of a record (see ``Detail.search_text``): no text holds it.
SEARCH_SEPARATOR = "\x00"


# ``build(Entry, (labels, failed_at, scope, identity))`` makes a record at half the cost of a call
# of the class (whose generated ``__new__`` is Python code): 0.16 us instead of 0.3 us, paid twice
# a record in the aggregator's and the state reader's loops.
build = tuple.__new__


class Entry(NamedTuple):
    """What is counted of a record. Message, URL and the like are not kept, so memory grows
    with label sets, plus one small entry per identity (needed to tell discovered and resolved
    records apart between polls)."""

    labels: LabelKey  # one tuple shared by every entry of the label set
    failed_at: float | None
    scope: str  # the part of the poll that found it (a job, a batch): kept when that part fails
    # Only when the state is kept across restarts, else ``()``: the key alone tells records
    # apart within a process, but a key is a hash that only this process knows.
    identity: tuple[str, ...]


class Detail(NamedTuple):
    """What a person reads of a record (docs/reference.md, Which files failed), kept apart from
    what is counted and only when the drill-down is on. Locations mostly end with the name under
    a folder shared by many files: that folder is kept once, and ``under_folder`` says the name
    completes it."""

    id: str  # the identity's parts joined by "/"
    name: str
    kept_location: str  # the location, or its folder when ``under_folder``
    message: str  # cut at ``message_max_chars``
    retry_count: int  # uncapped
    first_seen: float
    under_folder: bool

    @property
    def location(self) -> str:
        return self.kept_location + self.name if self.under_folder else self.kept_location

    def search_text(self) -> str:
        """Name, location and message, each followed by ``SEARCH_SEPARATOR``, case-folded: what
        ``q`` searches. A location that completes the name holds every substring of the name."""
        name = "" if self.under_folder else self.name
        end = SEARCH_SEPARATOR
        return f"{name}{end}{self.location}{end}{self.message}{end}".casefold()


Place = tuple[str, str]  # (tenant, platform)
RowsKey = tuple[str, str, str]  # (tenant, platform, error_type): ``ingestion_failed_rows``'s labels


def rows_by_labels(entries: Mapping[Key, Entry], rows: Mapping[Key, int]) -> dict[RowsKey, int]:
    """The rows of the records that have a row count, summed per (tenant, platform, error_type)."""
    summed: dict[RowsKey, int] = {}
    for key, count in rows.items():
        labels = entries[key].labels[:3]
        summed[labels] = summed.get(labels, 0) + count
    return summed


def times_by_place(
    spans: Iterable[Sequence[Any]],
) -> tuple[dict[Place, float], dict[Place, float]]:
    """The oldest and newest ``failed_at`` of each (tenant, platform), from the (labels, count,
    oldest, newest) of its label sets (the aggregator's slots, as they are) or of its records.
    Without an oldest there is no newest either: none of the records had a time."""
    oldest: dict[Place, float] = {}
    newest: dict[Place, float] = {}
    for labels, _, low, high in spans:
        if low is None:
            continue
        place = labels[:2]
        known = oldest.get(place)
        if known is None or low < known:
            oldest[place] = low
        known = newest.get(place)
        if known is None or high > known:
            newest[place] = high
    return oldest, newest


FailureOrder = tuple[bool, float, str]


def failures_order(entry: Entry, detail: Detail) -> FailureOrder:
    """Where a record stands in ``/failures``: newest ``failed_at`` first, records without one
    last, then by id."""
    failed_at = entry.failed_at
    return (failed_at is None, -(failed_at or 0.0), detail.id)


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one (possibly partial) poll found; immutable once built."""

    entries: Mapping[Key, Entry]
    counts: Mapping[LabelKey, int]
    oldest: Mapping[Place, float]
    newest: Mapping[Place, float]
    scanned: int
    dropped: int
    details: Mapping[Key, Detail] = field(default_factory=dict)
    details_truncated: bool = False
    # The row counts of the records that have one (docs/reference.md, Platforms: AEP), by key; few sources
    # have them, so they are kept beside the entries rather than in each of them.
    rows: Mapping[Key, int] = field(default_factory=dict)
    failed_rows: Mapping[RowsKey, int] = field(default_factory=dict)
    # For incremental sources: the latest change seen (the platform's clock), and how many
    # incremental polls were merged into this result since its last full read.
    watermark: float | None = None
    since_full_read: int = 0
