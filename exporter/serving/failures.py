"""``GET /failures`` (docs/reference.md, Which files failed): which files failed, filtered,
ordered and paged, as JSON, CSV or a page for people. Reads the details each lane kept of its
latest successful poll: the same records the gauges count."""

from __future__ import annotations

import bisect
import csv
import heapq
import io
import itertools
import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.pipeline.result import SEARCH_SEPARATOR, Detail, Entry, PollResult, failures_order
from exporter.pipeline.state import SourceState
from exporter.serving.patterns import message_pattern

FIELDS = (
    "source",
    "tenant",
    "platform",
    "error_type",
    "retry_count",
    "retry_label",
    "id",
    "name",
    "location",
    "message",
    "failed_at",
    "first_seen",
    "rows",
)
LABEL_FILTERS = ("source", "tenant", "platform", "error_type")
INDEXED_LABELS = ("tenant", "platform", "error_type")  # a lane's labels, in LaneIndex.by_label
# Repeatable like the label filters: a message pattern, as a group of group_by=message names it.
REPEATABLE = (*LABEL_FILTERS, "pattern")
SINGLE = ("min_retry_count", "q", "limit", "offset", "format", "group_by")
GROUP_KEYS = ("source", "tenant", "platform", "error_type", "message")
FORMATS = ("json", "csv", "html")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


class BadQuery(ValueError):
    """A parameter /failures does not know, or a bad value: the 400's reason."""


def unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class Query:
    sources: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    platforms: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    patterns: frozenset[str] = frozenset()
    min_retry_count: int = 0
    q: str = ""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    format: str = "json"
    group_by: str = ""
    # The filters as given, for links that keep them (paging, the page's form).
    given: tuple[tuple[str, str], ...] = field(default=(), compare=False)


def _integer(name: str, text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name} must be an integer, not {text!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise BadQuery(f"{name} must be {bound}, not {value}")
    return value


def parse_query(pairs: Iterable[tuple[str, str]], accept: str = "") -> Query:
    """The query string's parameters (repeatable for the four label filters); raises BadQuery."""
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in REPEATABLE and name not in SINGLE:
            raise BadQuery(f"unknown parameter {name!r}")
        if value != "":  # an empty field of the page's form: not a filter
            values.setdefault(name, []).append(value)
    for name in SINGLE:
        if len(values.get(name, ())) > 1:
            raise BadQuery(f"{name} may be given once")
    one = {name: found[0] for name, found in values.items() if name in SINGLE}
    wanted = one.get("format") or _format_from(accept)
    if wanted not in FORMATS:
        raise BadQuery(f"format must be one of {', '.join(FORMATS)}, not {wanted!r}")
    group_by = one.get("group_by", "")
    if group_by and group_by not in GROUP_KEYS:
        raise BadQuery(f"group_by must be one of {', '.join(GROUP_KEYS)}, not {group_by!r}")
    given = tuple((name, value) for name, found in values.items() for value in found if name != "offset")
    return Query(
        sources=frozenset(values.get("source", ())),
        tenants=frozenset(values.get("tenant", ())),
        platforms=frozenset(values.get("platform", ())),
        error_types=frozenset(values.get("error_type", ())),
        patterns=frozenset(values.get("pattern", ())),
        min_retry_count=_integer("min_retry_count", one["min_retry_count"], 0)
        if "min_retry_count" in one
        else 0,
        q=one.get("q", ""),
        limit=_integer("limit", one["limit"], 1, MAX_LIMIT) if "limit" in one else DEFAULT_LIMIT,
        offset=_integer("offset", one["offset"], 0) if "offset" in one else 0,
        format=wanted,
        group_by=group_by,
        given=given,
    )


def _format_from(accept: str) -> str:
    media = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if "text/csv" in media:
        return "csv"
    if "text/html" in media:
        return "html"
    return "json"


@dataclass(frozen=True)
class Row:
    """One record as /failures shows it."""

    source: str
    entry: Entry
    detail: Detail
    rows: int | None

    def as_dict(self) -> dict[str, Any]:
        entry, detail = self.entry, self.detail
        tenant, platform, error_type, label = entry.labels
        return {
            "source": self.source,
            "tenant": tenant,
            "platform": platform,
            "error_type": error_type,
            "retry_count": detail.retry_count,
            "retry_label": label,
            "id": detail.id,
            "name": detail.name,
            "location": detail.location,
            "message": detail.message,
            "failed_at": entry.failed_at,
            "first_seen": detail.first_seen,
            "rows": self.rows,
        }


class LaneIndex:
    """One lane's result, in /failures order, with the positions of each label value: a filtered
    page looks at the records of the values asked for, not at every record."""

    def __init__(self, source: str, result: PollResult, previous: LaneIndex | None = None) -> None:
        self.source = source
        self.result = result
        keyed = [(key, result.entries[key], detail) for key, detail in result.details.items()]
        keyed.sort(key=lambda row: failures_order(row[1], row[2]))
        self.entries: list[Entry] = [entry for _, entry, _ in keyed]
        self.details: list[Detail] = [detail for _, _, detail in keyed]
        # Most sources have no row counts: then no list of them either.
        self.rows: list[int | None] | None = (
            [result.rows.get(key) for key, _, _ in keyed] if result.rows else None
        )
        self.by_label: tuple[dict[str, list[int]], ...] = ({}, {}, {})  # of INDEXED_LABELS
        for position, entry in enumerate(self.entries):
            for index, positions in enumerate(self.by_label):
                positions.setdefault(entry.labels[index], []).append(position)
        self._text: tuple[str, array[int]] | None = None
        # Each message's pattern, made at the first grouping or pattern filter of this result.
        # Of the message as /failures shows it, secrets redacted: a pattern must not cut a
        # secret into pieces that its redaction no longer finds.
        self._patterns: dict[str, str] = {}
        self._patterns_scrub: Callable[[str], str] = unchanged
        if previous is not None and previous._patterns:
            # The lane's previous result: a message found again keeps the pattern worked out for
            # it, so that after each poll only the new messages cost (docs/performance.md).
            known = previous._patterns
            self._patterns = {
                message: known[message] for detail in self.details if (message := detail.message) in known
            }
            self._patterns_scrub = previous._patterns_scrub

    def pattern(self, position: int, scrub: Callable[[str], str]) -> str:
        """The pattern of the message of the record at ``position``."""
        if scrub != self._patterns_scrub:  # a reload's new secrets
            self._patterns, self._patterns_scrub = {}, scrub
        message = self.details[position].message
        found = self._patterns.get(message)
        if found is None:
            found = self._patterns[message] = message_pattern(scrub(message))
        return found

    def rank(self, position: int) -> tuple[bool, float, str, str]:
        """Where the record at ``position`` stands in /failures among every lane's records."""
        missing, newest_first, record_id = failures_order(self.entries[position], self.details[position])
        return missing, newest_first, self.source, record_id

    def row(self, position: int) -> Row:
        rows = self.rows
        return Row(
            self.source,
            self.entries[position],
            self.details[position],
            None if rows is None else rows[position],
        )

    def _searchable(self) -> tuple[str, array[int]]:
        """Every record's name, location and message, case-folded, in one string, with where
        each record starts: made at the first ``q`` of this result, for C-speed ``find``."""
        if self._text is None:
            chunks, starts, at = [], array("Q"), 0
            for detail in self.details:
                chunk = detail.search_text()
                starts.append(at)
                chunks.append(chunk)
                at += len(chunk)
            self._text = ("".join(chunks), starts)
        return self._text

    def containing(self, needle: str) -> list[int]:
        """Positions, in order, of the records whose texts contain ``needle`` (case-folded)."""
        text, starts = self._searchable()
        found: list[int] = []
        at = text.find(needle)
        while at != -1:
            position = bisect.bisect_right(starts, at) - 1
            found.append(position)
            following = position + 1
            at = text.find(needle, starts[following]) if following < len(starts) else -1
        return found

    def matches(self, query: Query, scrub: Callable[[str], str] = unchanged) -> Sequence[int]:
        """Positions of the matching records, in order."""
        wanted = (query.tenants, query.platforms, query.error_types)
        narrowed: list[Sequence[int]] = []
        for index, values in enumerate(wanted):
            if values:
                lists = [self.by_label[index].get(value, []) for value in values]
                narrowed.append(lists[0] if len(lists) == 1 else sorted(itertools.chain(*lists)))
        needle = query.q.casefold()
        # A needle holding the separator could match across two fields: it is checked one by one.
        by_text = bool(needle) and SEARCH_SEPARATOR not in needle
        with_text = self.containing(needle) if by_text else []
        if by_text:
            narrowed.append(with_text)
        candidates: Sequence[int] = min(narrowed, key=len) if narrowed else range(len(self.entries))
        patterns = query.patterns
        if len(narrowed) <= 1 and not query.min_retry_count and not patterns and (by_text or not needle):
            return candidates  # the indexes alone answer: nothing left to check per record
        others = [(index, values) for index, values in enumerate(wanted) if values]
        text_matches = set(with_text) if by_text and candidates is not with_text else None
        out = []
        for position in candidates:
            labels = self.entries[position].labels
            if any(labels[index] not in values for index, values in others):
                continue
            detail = self.details[position]
            if detail.retry_count < query.min_retry_count:
                continue
            if text_matches is not None and position not in text_matches:
                continue
            if patterns and self.pattern(position, scrub) not in patterns:
                continue
            if needle and not by_text:
                texts = (detail.name, detail.location, detail.message)
                if not any(needle in text.casefold() for text in texts):
                    continue
            out.append(position)
        return out


class FailureIndex:
    """The lanes' indexes, each rebuilt only when its lane has a new result."""

    def __init__(self) -> None:
        self._lanes: dict[str, LaneIndex] = {}

    def refresh(self, states: Mapping[str, SourceState]) -> list[LaneIndex]:
        """The indexes of the sources whose gauges show a result now (not stale)."""
        current = []
        for name, state in states.items():
            result = state.result
            if result is None or state.stale:
                continue
            index = self._lanes.get(name)
            if index is None or index.result is not result:
                index = self._lanes[name] = LaneIndex(name, result, previous=index)
            current.append(index)
        for gone in set(self._lanes) - set(states):
            del self._lanes[gone]
        return current


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[Row]
    truncated_sources: list[str]
    # The redactor's: a platform may quote a secret in a message or a URL (a SAS token, say).
    scrub: Callable[[str], str] = unchanged

    def items(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            yield _item(row, self.scrub)


def _item(row: Row, scrub: Callable[[str], str]) -> dict[str, Any]:
    item = row.as_dict()
    for key in ("id", "name", "location", "message"):
        item[key] = scrub(item[key])
    return item


def search(
    lanes: Sequence[LaneIndex],
    query: Query,
    *,
    everything: bool = False,
    scrub: Callable[[str], str] = unchanged,
) -> Page:
    """The matching records of every lane, merged in order; a page of them, or ``everything``."""
    found = [(lane, lane.matches(query, scrub)) for lane in _chosen(lanes, query)]
    total = sum(len(positions) for _, positions in found)

    if len(found) == 1 and not everything:  # one lane: its positions are already in order
        lane, positions = found[0]
        page = positions[query.offset : query.offset + query.limit]
        return Page(total, [lane.row(p) for p in page], _truncated(lanes), scrub)

    def rows_of(
        lane: LaneIndex, positions: Sequence[int]
    ) -> Iterator[tuple[tuple[bool, float, str, str], Row]]:
        for position in positions:
            yield lane.rank(position), lane.row(position)

    merged = heapq.merge(*(rows_of(lane, positions) for lane, positions in found), key=lambda pair: pair[0])
    window = merged if everything else itertools.islice(merged, query.offset, query.offset + query.limit)
    return Page(total, [row for _, row in window], _truncated(lanes), scrub)


def _chosen(lanes: Sequence[LaneIndex], query: Query) -> list[LaneIndex]:
    """The lanes the query's ``source`` filter keeps."""
    return [lane for lane in lanes if not query.sources or lane.source in query.sources]


def _truncated(lanes: Sequence[LaneIndex]) -> list[str]:
    """The sources whose details were cut at ``max_records_per_source``."""
    return sorted(lane.source for lane in lanes if lane.result.details_truncated)


@dataclass(frozen=True)
class Group:
    key: str
    count: int
    # The group's first record in /failures order, so its newest failure.
    example: Row

    @property
    def newest_failed_at(self) -> float | None:
        return self.example.entry.failed_at


@dataclass(frozen=True)
class Groups:
    total: int  # records matching the filters
    everyone: int  # groups in all, of which ``groups`` is the requested page
    groups: list[Group]
    truncated_sources: list[str]
    scrub: Callable[[str], str] = unchanged

    def items(self) -> Iterator[dict[str, Any]]:
        for group in self.groups:
            yield {
                "key": group.key,
                "count": group.count,
                "newest_failed_at": group.newest_failed_at,
                "example": _item(group.example, self.scrub),
            }


def group(lanes: Sequence[LaneIndex], query: Query, *, scrub: Callable[[str], str] = unchanged) -> Groups:
    """The matching records of every lane counted by ``query.group_by``: most files first, then
    by key; a page of the groups."""
    by = query.group_by
    label = INDEXED_LABELS.index(by) if by in INDEXED_LABELS else -1
    counts: dict[str, int] = {}
    firsts: dict[str, tuple[tuple[bool, float, str, str], LaneIndex, int]] = {}
    total = 0
    for lane in _chosen(lanes, query):
        positions = lane.matches(query, scrub)
        total += len(positions)
        if not positions:
            continue
        if by == "source":
            keys: list[str] = [lane.source] * len(positions)
        elif by == "message":
            keys = [lane.pattern(position, scrub) for position in positions]
        else:
            entries = lane.entries
            keys = [entries[position].labels[label] for position in positions]
        for key, count in Counter(keys).items():
            counts[key] = counts.get(key, 0) + count
        # Later positions come first in the reversal, so each key keeps its earliest.
        earliest = dict(zip(reversed(keys), reversed(positions), strict=True))
        for key, position in earliest.items():
            ranked = lane.rank(position)
            known = firsts.get(key)
            if known is None or ranked < known[0]:
                firsts[key] = (ranked, lane, position)
    ordered = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    page = ordered[query.offset : query.offset + query.limit]
    groups = [Group(key, count, firsts[key][1].row(firsts[key][2])) for key, count in page]
    return Groups(total, len(ordered), groups, _truncated(lanes), scrub)


def as_json(page: Page, query: Query, *, everything: bool = False) -> bytes:
    document = {
        "total": page.total,
        "offset": 0 if everything else query.offset,
        "limit": page.total if everything else query.limit,
        "truncated_sources": page.truncated_sources,
        "items": list(page.items()),
    }
    return json.dumps(document).encode("utf-8", "surrogatepass")


def groups_as_json(groups: Groups, query: Query) -> bytes:
    document = {
        "total": groups.total,
        "group_by": query.group_by,
        "offset": query.offset,
        "limit": query.limit,
        "truncated_sources": groups.truncated_sources,
        "groups": list(groups.items()),
    }
    return json.dumps(document).encode("utf-8", "surrogatepass")


GROUP_FIELDS = ("key", "count", "newest_failed_at", *(f"example_{name}" for name in FIELDS))


def groups_as_csv(groups: Groups) -> bytes:
    """One group a row: its key, count and newest failure, then its example's fields."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(GROUP_FIELDS)
    for item in groups.items():
        example = item["example"]
        writer.writerow([item["key"], item["count"], item["newest_failed_at"], *(example[f] for f in FIELDS)])
    return utf8(out.getvalue())


def as_csv(page: Page) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    for item in page.items():
        writer.writerow(item)
    return utf8(out.getvalue())


def utf8(text: str) -> bytes:
    # A lone surrogate (a JSON "\udcff" escape in a file name) must not fail the page.
    return text.encode("utf-8", "replace")
