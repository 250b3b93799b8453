"""``GET /failures`` (docs/reference.md, Which files failed): which files failed, filtered,
ordered and paged, as JSON, CSV or a page for people. Reads the details each lane kept of its
latest successful poll: the same records the gauges count."""

from __future__ import annotations

import bisect
import csv
import heapq
import html
import io
import itertools
import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from exporter.pipeline.result import SEARCH_SEPARATOR, Detail, Entry, PollResult, failures_order
from exporter.pipeline.state import SourceState

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
SINGLE = ("min_retry_count", "q", "limit", "offset", "format")
FORMATS = ("json", "csv", "html")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


class BadQuery(ValueError):
    """A parameter /failures does not know, or a bad value: the 400's reason."""


@dataclass(frozen=True)
class Query:
    sources: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
    platforms: frozenset[str] = frozenset()
    error_types: frozenset[str] = frozenset()
    min_retry_count: int = 0
    q: str = ""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    format: str = "json"
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
        if name not in LABEL_FILTERS and name not in SINGLE:
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
    given = tuple((name, value) for name, found in values.items() for value in found if name != "offset")
    return Query(
        sources=frozenset(values.get("source", ())),
        tenants=frozenset(values.get("tenant", ())),
        platforms=frozenset(values.get("platform", ())),
        error_types=frozenset(values.get("error_type", ())),
        min_retry_count=_integer("min_retry_count", one["min_retry_count"], 0)
        if "min_retry_count" in one
        else 0,
        q=one.get("q", ""),
        limit=_integer("limit", one["limit"], 1, MAX_LIMIT) if "limit" in one else DEFAULT_LIMIT,
        offset=_integer("offset", one["offset"], 0) if "offset" in one else 0,
        format=wanted,
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

    def __init__(self, source: str, result: PollResult) -> None:
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
        self.by_label: tuple[dict[str, list[int]], ...] = ({}, {}, {})  # tenant, platform, error_type
        for position, entry in enumerate(self.entries):
            for index, positions in enumerate(self.by_label):
                positions.setdefault(entry.labels[index], []).append(position)
        self._text: tuple[str, array[int]] | None = None

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

    def matches(self, query: Query) -> Sequence[int]:
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
        if len(narrowed) <= 1 and not query.min_retry_count and (by_text or not needle):
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
                index = self._lanes[name] = LaneIndex(name, result)
            current.append(index)
        for gone in set(self._lanes) - set(states):
            del self._lanes[gone]
        return current


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[Row]
    truncated_sources: list[str]
    # The redactor's: a platform may quote a secret in a message or a URL (a SAS token, say).
    scrub: Callable[[str], str] = _unchanged

    def items(self) -> Iterator[dict[str, Any]]:
        for row in self.rows:
            item = row.as_dict()
            for key in ("id", "name", "location", "message"):
                item[key] = self.scrub(item[key])
            yield item


def search(
    lanes: Sequence[LaneIndex],
    query: Query,
    *,
    everything: bool = False,
    scrub: Callable[[str], str] = _unchanged,
) -> Page:
    """The matching records of every lane, merged in order; a page of them, or ``everything``."""
    chosen = [lane for lane in lanes if not query.sources or lane.source in query.sources]
    found = [(lane, lane.matches(query)) for lane in chosen]
    total = sum(len(positions) for _, positions in found)

    if len(found) == 1 and not everything:  # one lane: its positions are already in order
        lane, positions = found[0]
        page = positions[query.offset : query.offset + query.limit]
        rows = [lane.row(p) for p in page]
        return Page(total, rows, sorted(x.source for x in lanes if x.result.details_truncated), scrub)

    def rows_of(
        lane: LaneIndex, positions: Sequence[int]
    ) -> Iterator[tuple[tuple[bool, float, str, str], Row]]:
        for position in positions:
            order = failures_order(lane.entries[position], lane.details[position])
            yield (order[0], order[1], lane.source, order[2]), lane.row(position)

    merged = heapq.merge(*(rows_of(lane, positions) for lane, positions in found), key=lambda pair: pair[0])
    window = merged if everything else itertools.islice(merged, query.offset, query.offset + query.limit)
    truncated = sorted(lane.source for lane in lanes if lane.result.details_truncated)
    return Page(total, [row for _, row in window], truncated, scrub)


def as_json(page: Page, query: Query, *, everything: bool = False) -> bytes:
    document = {
        "total": page.total,
        "offset": 0 if everything else query.offset,
        "limit": page.total if everything else query.limit,
        "truncated_sources": page.truncated_sources,
        "items": list(page.items()),
    }
    return json.dumps(document).encode("utf-8", "surrogatepass")


def as_csv(page: Page) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    for item in page.items():
        writer.writerow(item)
    return _utf8(out.getvalue())


def _utf8(text: str) -> bytes:
    # A lone surrogate (a JSON "\udcff" escape in a file name) must not fail the page.
    return text.encode("utf-8", "replace")


def _link(query: Query, **changed: Any) -> str:
    pairs = [(k, v) for k, v in query.given if k not in changed] + [
        (k, str(v)) for k, v in changed.items() if v is not None
    ]
    return "failures?" + urlencode(pairs)


def as_html(page: Page, query: Query, states: Mapping[str, SourceState]) -> bytes:
    """A plain page: health of every source, the filters as a form, the records, paging links.
    Every value is escaped: file names come from the platforms, so from anyone."""
    e = html.escape
    health = "".join(
        f"<tr><td>{e(name)}</td><td class='{'up' if state.up else 'down'}'>"
        f"{'up' if state.up else 'down' if state.up is False else 'not polled yet'}</td>"
        f"<td>{e(_time(state.last_success))}</td>"
        f"<td>{e(str(state.last_error.reason)) if state.last_error else ''}</td></tr>"
        for name, state in states.items()
    )

    def field_input(name: str, label: str) -> str:
        value = next((v for k, v in query.given if k == name), "")
        return f"<label>{label} <input name='{name}' value='{e(value)}'></label> "

    limit = (
        f"<input type='hidden' name='limit' value='{query.limit}'>" if query.limit != DEFAULT_LIMIT else ""
    )
    form = (
        f"<form method='get' action='failures'><input type='hidden' name='format' value='html'>{limit}"
        + "".join(
            field_input(n, label)
            for n, label in (
                ("source", "Source"),
                ("tenant", "Tenant"),
                ("platform", "Platform"),
                ("error_type", "Error type"),
                ("min_retry_count", "Min. retries"),
                ("q", "Search"),
            )
        )
        + "<button type='submit'>Filter</button></form>"
    )
    body_rows = "".join(_html_row(item) for item in page.items())
    paging = []
    if query.offset > 0:
        paging.append(
            f"<a rel='prev' href='{e(_link(query, offset=max(query.offset - query.limit, 0)))}'>Previous</a>"
        )
    if query.offset + query.limit < page.total:
        paging.append(f"<a rel='next' href='{e(_link(query, offset=query.offset + query.limit))}'>Next</a>")
    shown = f"{query.offset + 1} to {query.offset + len(page.rows)}" if page.rows else "none"
    cut = ", ".join(page.truncated_sources)
    truncated = f"<p class='warn'>Details cut at max_records_per_source for: {e(cut)}</p>" if cut else ""
    document = PAGE.format(
        health=health,
        form=form,
        summary=f"{page.total} failed file(s); showing {shown}",
        truncated=truncated,
        head="".join(
            f"<th data-sort='{key}'>{e(title)}</th>" if key in SORTABLE else f"<th>{e(title)}</th>"
            for key, title in COLUMNS
        ),
        rows=body_rows,
        paging=" ".join(paging),
    )
    return _utf8(document)


# What the page shows of a record, for people: the id and the retry label are in JSON and CSV.
COLUMNS = (
    ("source", "Source"),
    ("tenant", "Tenant"),
    ("platform", "Platform"),
    ("error_type", "Error type"),
    ("retry_count", "Retries"),
    ("rows", "Rows"),
    ("name", "File"),
    ("location", "Location"),
    ("message", "Message"),
    ("failed_at", "Failed at"),
    ("first_seen", "First seen"),
)


# Numeric columns the page's script sorts by (a click on the header): the shown page only.
SORTABLE = frozenset({"retry_count", "rows", "failed_at", "first_seen"})


def _html_row(item: dict[str, Any]) -> str:
    cells = []
    for key, _ in COLUMNS:
        value = item[key]
        text = html.escape(_cell(key, value))
        location = item["location"]
        if key == "location" and location.startswith(("https://", "http://")):
            # Only web addresses become links: a location is the platform's, so anyone's.
            text = f"<a href='{html.escape(location, quote=True)}' rel='noreferrer'>{text}</a>"
        sort = f" data-value='{value!r}'" if key in SORTABLE and value is not None else ""
        cells.append(f"<td class='{key}'{sort}>{text}</td>")
    return f"<tr>{''.join(cells)}</tr>"


def _time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(key: str, value: Any) -> str:
    if key in ("failed_at", "first_seen"):
        return _time(value)
    return "" if value is None else str(value)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Failed files</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.5rem; text-align: left;
          vertical-align: top; }}
td {{ overflow-wrap: anywhere; }}
th {{ background: #f3f3f3; white-space: nowrap; }}
td.failed_at, td.first_seen, td.retry_count, td.rows, td.source, td.platform,
td.error_type {{ white-space: nowrap; }}
.up {{ color: #1a7f37; }} .down {{ color: #cf222e; font-weight: bold; }}
.warn {{ color: #9a6700; }}
form label {{ margin-right: 0.6rem; white-space: nowrap; }}
form input {{ width: 9rem; }}
nav a {{ margin-right: 1rem; }}
th[data-sort] {{ cursor: pointer; text-decoration: underline dotted; }}
td.rows, td.retry_count {{ text-align: right; }}
</style></head>
<body>
<h1>Failed files</h1>
<table id="health"><tr><th>Source</th><th>Health</th><th>Last success</th><th>Last error</th></tr>
{health}</table>
<h2>Records</h2>
{form}
<p id="summary">{summary}</p>
{truncated}
<table id="records"><thead><tr>{head}</tr></thead>
<tbody>{rows}</tbody></table>
<nav>{paging}</nav>
<p><a href="./">Exporter</a></p>
<script>
// A click on a numeric header sorts the shown rows by it, largest first, again to reverse;
// cells without a value stay last.
document.querySelectorAll("#records th[data-sort]").forEach(function (header) {{
  header.setAttribute("aria-sort", "none");
  header.addEventListener("click", function () {{
    var key = header.dataset.sort;
    var descending = header.getAttribute("aria-sort") !== "descending";
    document.querySelectorAll("#records th[data-sort]").forEach(function (other) {{
      other.setAttribute("aria-sort", "none");
    }});
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    var body = document.querySelector("#records tbody");
    var rows = Array.prototype.slice.call(body.rows);
    function value(row) {{
      var cell = row.querySelector("td." + key);
      return cell && cell.dataset.value !== undefined ? Number(cell.dataset.value) : null;
    }}
    rows.sort(function (a, b) {{
      var x = value(a), y = value(b);
      if (x === null || y === null) return (x === null) - (y === null);
      return descending ? y - x : x - y;
    }});
    rows.forEach(function (row) {{ body.appendChild(row); }});
  }});
}});
</script>
</body></html>
"""
