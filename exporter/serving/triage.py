"""``/failures`` as a page for people: the causes first, ranked, then the files of the chosen
filters. Server-rendered, no external assets, readable without JavaScript (a small inline
script sorts the shown rows and copies ids). Every value is escaped: file names and messages
come from the platforms, so from anyone."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from exporter import __version__
from exporter.pipeline.state import SourceState
from exporter.serving.failures import (
    INDEXED_LABELS,
    LABEL_FILTERS,
    MAX_LIMIT,
    Groups,
    LaneIndex,
    Page,
    Query,
    group,
    search,
    unchanged,
    utf8,
)

CAUSES_SHOWN = 10


@dataclass(frozen=True)
class Facets:
    """What the page shows beside the records or groups."""

    values: Mapping[str, list[tuple[str, int]]]  # each label filter's values present, with counts
    causes: Groups  # the message patterns of the records matching the filters, most files first
    error_types: Groups  # their error types, for the bars


def _present(lanes: Sequence[LaneIndex], name: str) -> list[tuple[str, int]]:
    """A label filter's values over every record (so that any can be chosen), with their counts:
    the lengths of the index's lists of positions, with no record read."""
    counts: Counter[str] = Counter()
    for lane in lanes:
        if name == "source":
            counts[lane.source] += len(lane.entries)
        else:
            for value, positions in lane.by_label[INDEXED_LABELS.index(name)].items():
                counts[value] += len(positions)
    return sorted(counts.items())


def facets(lanes: Sequence[LaneIndex], query: Query, scrub: Callable[[str], str] = unchanged) -> Facets:
    """Counts for the selects, and the causes and error types of what the filters match."""
    values = {name: _present(lanes, name) for name in LABEL_FILTERS}
    filtered = replace(query, offset=0, limit=CAUSES_SHOWN, group_by="message")
    causes = group(lanes, filtered, scrub=scrub)
    error_types = group(lanes, replace(filtered, limit=MAX_LIMIT, group_by="error_type"), scrub=scrub)
    return Facets(values, causes, error_types)


def triage_page(
    lanes: Sequence[LaneIndex],
    query: Query,
    states: Mapping[str, SourceState],
    *,
    scrub: Callable[[str], str] = unchanged,
    now: float,
    dashboard: str | None = None,
) -> bytes:
    """The whole page for ``query``: O(matching records) for the counts, O(page) for the rows."""
    found: Page | Groups = (
        group(lanes, query, scrub=scrub) if query.group_by else search(lanes, query, scrub=scrub)
    )
    return utf8(_render(found, query, facets(lanes, query, scrub), states, now, dashboard))


def _link(query: Query, **changed: Any) -> str:
    """This page with the same parameters but ``changed`` (None drops one)."""
    pairs = [(k, v) for k, v in query.given if k not in changed] + [
        (k, str(v)) for k, v in changed.items() if v is not None
    ]
    return "failures?" + urlencode(pairs)


def _utc(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return ""
    seconds = now - epoch
    if seconds < 60:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"  # pragma: no cover - the loop ends at a minute


def _when(epoch: float | None, now: float) -> str:
    """A time as people read it ("12 min ago"), the UTC time on hover."""
    if epoch is None:
        return ""
    return f"<time datetime='{_utc(epoch)}' title='{_utc(epoch)}'>{_ago(epoch, now)}</time>"


def _short(value: str, keep: int = 8) -> str:
    """A long id shortened, the whole of it on hover and copied by a click (with JavaScript)."""
    e = html.escape
    if len(value) <= keep + 4:
        return e(value)
    whole = e(value, quote=True)
    return f"<span class='id' title='{whole}' data-copy='{whole}'>{e(value[:keep])}…</span>"


def _grafana(dashboard: str | None, query: Query) -> str:
    """A link back to the Grafana dashboard, for the one tenant chosen if there is one."""
    if dashboard is None:
        return ""
    tenants = sorted(query.tenants)
    url = dashboard
    if len(tenants) == 1:
        url += ("&" if "?" in url else "?") + urlencode({"var-tenant": tenants[0]})
    return f" <a id='grafana' href='{html.escape(url, quote=True)}'>Grafana dashboard</a>"


def _health(states: Mapping[str, SourceState], now: float) -> str:
    e = html.escape
    chips = []
    for name, state in states.items():
        status = "up" if state.up else "down" if state.up is False else "waiting"
        said = {"up": "up", "down": "down", "waiting": "not polled yet"}[status]
        error = f" &middot; {e(state.last_error.reason.value)}" if state.last_error else ""
        since = f" &middot; last success {_when(state.last_success, now)}" if state.last_success else ""
        chips.append(
            f"<li class='source {status}'><strong>{e(name)}</strong> <span class='status'>{said}</span>"
            f"<span class='detail'>{since}{error}</span></li>"
        )
    return "".join(chips)


def _causes(query: Query, facets: Facets, now: float) -> str:
    e = html.escape
    causes = facets.causes
    if not causes.groups:
        return "<p class='none'>No failed files match.</p>"
    top = max(g.count for g in causes.groups)
    items = []
    for cause in causes.groups:
        example = cause.example.as_dict()
        width = max(2, round(100 * cause.count / top))
        items.append(
            f"<li><a class='cause' href='{e(_link(query, group_by=None, pattern=cause.key))}'>"
            f"<span class='count'>{cause.count}</span>"
            f"<span class='bar' style='width:{width}%'></span>"
            f"<span class='pattern'>{e(cause.key)}</span></a>"
            f"<span class='meta'>{e(example['error_type'])} &middot; "
            f"newest {_when(cause.newest_failed_at, now)}"
            f" &middot; e.g. <span class='example'>{e(causes.scrub(example['name']))}</span></span></li>"
        )
    shown = sum(g.count for g in causes.groups)
    more = ""
    if causes.everyone > len(causes.groups):
        rest = causes.everyone - len(causes.groups)
        more = (
            f"<p class='more' data-files='{causes.total - shown}'>and {rest} more cause(s), "
            f"{causes.total - shown} file(s): "
            f"<a href='{e(_link(query, group_by='message', pattern=None))}'>every cause</a></p>"
        )
    return f"<ol id='causes-list' data-total='{causes.total}'>{''.join(items)}</ol>{more}"


def _error_type_bars(query: Query, facets: Facets) -> str:
    e = html.escape
    groups = facets.error_types.groups
    if not groups:
        return ""
    top = max(g.count for g in groups)
    bars = "".join(
        f"<li><a href='{e(_link(query, error_type=g.key))}' title='{e(g.key, quote=True)}'>"
        f"<span class='label'>{e(g.key)}</span>"
        f"<span class='bar' style='width:{max(2, round(100 * g.count / top))}%'></span>"
        f"<span class='count'>{g.count}</span></a></li>"
        for g in groups
    )
    return f"<ul id='error-types'>{bars}</ul>"


FILTER_TITLES = {"source": "Source", "tenant": "Tenant", "platform": "Platform", "error_type": "Error type"}


def _form(query: Query, facets: Facets) -> str:
    e = html.escape
    chosen: dict[str, str] = {}
    for name, value in query.given:
        chosen.setdefault(name, value)

    def select(name: str) -> str:
        options = [f"<option value=''>all ({sum(c for _, c in facets.values[name])})</option>"]
        for value, count in facets.values[name]:
            label = value if len(value) <= 24 else value[:8] + "…" + value[-4:]
            selected = " selected" if chosen.get(name) == value else ""
            options.append(
                f"<option value='{e(value, quote=True)}' title='{e(value, quote=True)}'{selected}>"
                f"{e(label)} ({count})</option>"
            )
        return f"<label>{FILTER_TITLES[name]} <select name='{name}'>{''.join(options)}</select></label>"

    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{e(chosen[name], quote=True)}'>"
        for name in ("limit", "group_by", "pattern")
        if name in chosen
    )
    return (
        "<form id='filters' method='get' action='failures'><input type='hidden' name='format' value='html'>"
        + hidden
        + "".join(select(name) for name in LABEL_FILTERS)
        + f"<label>Min. retries <input type='number' min='0' name='min_retry_count' "
        f"value='{e(chosen.get('min_retry_count', ''), quote=True)}'></label>"
        + f"<label>Search <input type='search' name='q' value='{e(chosen.get('q', ''), quote=True)}' "
        "placeholder='name, location or message'></label>"
        + "<button type='submit'>Filter</button> <a href='failures?format=html'>Clear</a></form>"
    )


# What the page shows of a record: the id, retry label and location are in JSON and CSV (the
# location is the file's link or its hover).
COLUMNS = (
    ("failed_at", "Failed"),
    ("source", "Source"),
    ("tenant", "Tenant"),
    ("platform", "Platform"),
    ("error_type", "Error type"),
    ("retry_count", "Retries"),
    ("rows", "Rows"),
    ("name", "File"),
    ("message", "Message"),
    ("first_seen", "First seen"),
)
NUMERIC = frozenset({"failed_at", "retry_count", "rows", "first_seen"})


def _row(item: dict[str, Any], columns: Sequence[str], now: float) -> str:
    e = html.escape
    cells = []
    for key in columns:
        value = item[key]
        if key in ("failed_at", "first_seen"):
            text = _when(value, now)
        elif key == "tenant":
            text = _short(value)
        elif key in ("source", "platform", "error_type"):
            # Long label values (VECTOR_EMBEDDING_FAILED) may break at their underscores only.
            text = e(value).replace("_", "_<wbr>")
        elif key == "name":
            location = item["location"]
            name = e(value or item["id"])
            if location.startswith(("https://", "http://")):
                # Only web addresses become links: a location is the platform's, so anyone's.
                where = e(location, quote=True)
                text = f"<a href='{where}' rel='noreferrer' title='{where}'>{name}</a>"
            else:
                text = f"<span title='{e(location, quote=True)}'>{name}</span>"
        else:
            text = "" if value is None else e(str(value))
        sort = f" data-value='{value!r}'" if key in NUMERIC and value is not None else ""
        cells.append(f"<td class='{key}'{sort}>{text}</td>")
    return f"<tr>{''.join(cells)}</tr>"


def _records(page: Page, now: float) -> tuple[str, str]:
    items = list(page.items())
    with_rows = any(item["rows"] is not None for item in items)
    columns = [key for key, _ in COLUMNS if key != "rows" or with_rows]
    titles = dict(COLUMNS)
    head = "".join(f"<th data-sort='{key}'>{titles[key]}</th>" for key in columns)
    return head, "".join(_row(item, columns, now) for item in items)


GROUP_TITLES = ("Group", "Files", "Newest failure", "Error type", "Example file", "Example message")


def _groups(groups: Groups, query: Query, now: float) -> tuple[str, str]:
    e = html.escape
    by = "pattern" if query.group_by == "message" else query.group_by
    head = "".join(f"<th>{title}</th>" for title in GROUP_TITLES)
    rows = []
    for item in groups.items():
        example = item["example"]
        files = _link(query, group_by=None, **{by: item["key"]})
        rows.append(
            f"<tr><td class='key'><a href='{e(files)}'>{e(item['key'])}</a></td>"
            f"<td class='count' data-value='{item['count']}'>{item['count']}</td>"
            f"<td class='failed_at'>{_when(item['newest_failed_at'], now)}</td>"
            f"<td class='error_type'>{e(example['error_type'])}</td>"
            f"<td class='name'>{e(example['name'])}</td><td class='message'>{e(example['message'])}</td></tr>"
        )
    return head, "".join(rows)


def _paging(query: Query, paged: int, shown: int) -> str:
    e = html.escape
    links = []
    if query.offset > 0:
        back = max(query.offset - query.limit, 0)
        links.append(f"<a rel='prev' href='{e(_link(query, offset=back or None))}'>&larr; Previous</a>")
    if query.offset + query.limit < paged:
        links.append(
            f"<a rel='next' href='{e(_link(query, offset=query.offset + query.limit))}'>Next &rarr;</a>"
        )
    where = f"{query.offset + 1}&ndash;{query.offset + shown} of {paged}" if shown else f"none of {paged}"
    return f"<span class='where'>{where}</span> {' '.join(links)}"


def _chosen(query: Query) -> str:
    """The filters in force, each with a link that drops it."""
    e = html.escape
    chips = []
    for name, value in query.given:
        if name in ("format", "limit", "group_by"):
            continue
        rest = [(k, v) for k, v in query.given if (k, v) != (name, value)]
        href = "failures?" + urlencode(rest)
        shown = value if len(value) <= 48 else value[:45] + "…"
        chips.append(
            f"<a class='chip' href='{e(href)}' title='remove this filter'>{e(name)}: {e(shown)} &times;</a>"
        )
    return f"<p id='chosen'>{''.join(chips)}</p>" if chips else ""


def _render(
    found: Page | Groups,
    query: Query,
    facets: Facets,
    states: Mapping[str, SourceState],
    now: float,
    dashboard: str | None,
) -> str:
    e = html.escape
    if isinstance(found, Groups):
        head, rows = _groups(found, query, now)
        paged, shown = found.everyone, len(found.groups)
        summary = f"{found.total} failed file(s) in {found.everyone} group(s) by {e(query.group_by)}"
        title = f"Failed files by {e(query.group_by)}"
    else:
        head, rows = _records(found, now)
        paged, shown = found.total, len(found.rows)
        summary = f"{found.total} failed file(s)"
        title = "Files"
    cut = ", ".join(found.truncated_sources)
    truncated = f"<p class='warn'>Details cut at max_records_per_source for: {e(cut)}</p>" if cut else ""
    downloads = " &middot; ".join(
        f"<a href='{e(_link(query, format=kind, limit=MAX_LIMIT))}'>{kind.upper()}</a>"
        for kind in ("csv", "json")
    )
    return PAGE.format(
        version=e(__version__),
        grafana=_grafana(dashboard, query),
        health=_health(states, now),
        causes=_causes(query, facets, now),
        bars=_error_type_bars(query, facets),
        form=_form(query, facets),
        chosen=_chosen(query),
        title=title,
        summary=summary,
        truncated=truncated,
        downloads=downloads,
        paging=_paging(query, paged, shown),
        head=head,
        rows=rows,
    )


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Failed files &middot; ingestion-failure-exporter</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
:root {{ --line: #d8dee4; --muted: #57606a; --accent: #0969da; --bad: #cf222e; --good: #1a7f37; }}
* {{ box-sizing: border-box; }}
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }}
header, main {{ padding: 0.8rem 1.5rem; }}
header {{ background: #fff; border-bottom: 1px solid var(--line); }}
h1 {{ font-size: 1.3rem; margin: 0; }} h2 {{ font-size: 1.05rem; margin: 1.2rem 0 0.5rem; }}
.about {{ color: var(--muted); margin: 0.2rem 0 0.5rem; }}
a {{ color: var(--accent); }}
#health {{ list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 0.4rem; }}
#health li {{ border: 1px solid var(--line); border-radius: 1rem; padding: 0.1rem 0.7rem; background: #fff; }}
#health .up .status {{ color: var(--good); }} #health .down .status {{ color: var(--bad); font-weight: 600; }}
#health .waiting .status, #health .detail {{ color: var(--muted); }}
section {{ background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 1rem;
  margin-bottom: 1rem; }}
.triage {{ display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 1fr); gap: 1rem; }}
@media (max-width: 900px) {{ .triage {{ grid-template-columns: minmax(0, 1fr); }} }}
#causes-list {{ margin: 0; padding-left: 1.6rem; }}
#causes-list li {{ margin: 0.35rem 0; }}
a.cause {{ display: grid; grid-template-columns: 3.5rem 6rem minmax(0, 1fr); align-items: center; gap: 0.5rem;
  text-decoration: none; color: inherit; }}
a.cause:hover .pattern {{ text-decoration: underline; }}
.cause .count, #error-types .count {{ font-variant-numeric: tabular-nums; font-weight: 600;
  text-align: right; }}
.bar {{ display: block; height: 0.7rem; background: #54aeff; border-radius: 2px; }}
.cause .bar {{ max-width: 6rem; }}
.pattern {{ font-family: ui-monospace, monospace; overflow-wrap: anywhere; }}
.meta {{ display: block; color: var(--muted); font-size: 0.85rem; margin-left: 10.5rem;
  overflow-wrap: anywhere; }}
#error-types {{ list-style: none; padding: 0; margin: 0; }}
#error-types a {{ display: grid; grid-template-columns: minmax(0, 11rem) minmax(2rem, 1fr) 2.5rem;
  gap: 0.4rem;
  align-items: center; text-decoration: none; color: inherit; margin: 0.2rem 0; }}
#error-types .label {{ font-size: 0.85rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }}
#filters {{ display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; align-items: end; }}
#filters label {{ display: flex; flex-direction: column; font-size: 0.8rem; color: var(--muted); }}
#filters select, #filters input {{ font: inherit; max-width: 16rem; }}
#filters input[type=number] {{ width: 6rem; }}
#chosen .chip {{ display: inline-block; background: #ddf4ff; border-radius: 1rem; padding: 0 0.6rem;
  margin-right: 0.3rem; text-decoration: none; overflow-wrap: anywhere; }}
.bar-line {{ display: flex; flex-wrap: wrap; justify-content: space-between; gap: 0.5rem; margin: 0.4rem 0; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid var(--line); padding: 0.3rem 0.5rem; text-align: left;
  vertical-align: top; }}
th {{ background: #f6f8fa; white-space: nowrap; }}
th[data-sort] {{ cursor: pointer; }}
th[aria-sort=descending]::after {{ content: " \\25BE"; }}
th[aria-sort=ascending]::after {{ content: " \\25B4"; }}
td.failed_at, td.first_seen, td.tenant, td.retry_count, td.rows, td.count {{ white-space: nowrap; }}
td.retry_count, td.rows, td.count {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.name {{ min-width: 10rem; max-width: 22rem; overflow-wrap: break-word; }}
td.message, td.key {{ min-width: 16rem; width: 40%; overflow-wrap: anywhere; }}
@media (max-width: 1000px) {{
  /* Narrow windows: each record is a card, its labels on one line, its file and message below. */
  #records thead {{ display: none; }}
  #records, #records tbody, #records tr {{ display: block; width: 100%; }}
  #records tr {{ border-bottom: 1px solid var(--line); padding: 0.4rem 0; }}
  #records td {{ display: inline-block; border: 0; padding: 0.1rem 0.5rem 0.1rem 0; }}
  #records td.name {{ font-weight: 600; }}
  #records td.name, #records td.message, #records td.key {{ display: block; min-width: 0; max-width: none;
    width: auto; overflow-wrap: anywhere; }}
  #records td.retry_count:not(:empty)::before {{ content: "retries "; color: var(--muted); }}
  #records td.rows:not(:empty)::before {{ content: "rows "; color: var(--muted); }}
  #records td.first_seen:not(:empty)::before {{ content: "first seen "; color: var(--muted); }}
  #records td.count::before {{ content: "files "; color: var(--muted); }}
  header, main {{ padding: 0.6rem 0.8rem; }} section {{ padding: 0.5rem 0.6rem; }}
}}
.id {{ font-family: ui-monospace, monospace; cursor: copy; border-bottom: 1px dotted var(--muted); }}
.id.copied::after {{ content: " copied"; color: var(--good); font-family: system-ui, sans-serif; }}
.warn {{ color: #9a6700; }} .none, .more {{ color: var(--muted); }}
footer {{ padding: 0 1.5rem 1.5rem; color: var(--muted); }}
</style></head>
<body>
<header>
<h1>Failed files</h1>
<p class="about">ingestion-failure-exporter {version}: the files each source's latest poll found failed,
the same records its metrics count. Causes first; a cause's files one click away.{grafana}</p>
<ul id="health">{health}</ul>
</header>
<main>
<div class="triage">
<section id="causes"><h2>Causes</h2>{causes}</section>
<section id="by-error-type"><h2>By error type</h2>{bars}</section>
</div>
<section id="files">
<h2>{title}</h2>
{form}
{chosen}
{truncated}
<div class="bar-line"><span id="summary">{summary}</span>
<span class="downloads">Download these (the first 1000) as {downloads}</span></div>
<nav class="paging top">{paging}</nav>
<div class="scroll"><table id="records"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>
<nav class="paging bottom">{paging}</nav>
</section>
</main>
<footer><a href="./">Exporter</a> &middot; <a href="metrics">metrics</a> &middot;
<a href="sources">sources</a></footer>
<script>
// A click on a header sorts the shown rows by it (numbers and times by value, largest first;
// again to reverse); empty cells stay last. A click on a shortened id copies the whole of it.
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
      if (!cell) return null;
      if (cell.dataset.value !== undefined) return Number(cell.dataset.value);
      var text = cell.textContent.trim();
      return text === "" ? null : text.toLowerCase();
    }}
    rows.sort(function (a, b) {{
      var x = value(a), y = value(b);
      if (x === null || y === null) return (x === null) - (y === null);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    }});
    rows.forEach(function (row) {{ body.appendChild(row); }});
  }});
}});
document.querySelectorAll(".id[data-copy]").forEach(function (id) {{
  id.addEventListener("click", function () {{
    if (navigator.clipboard) navigator.clipboard.writeText(id.dataset.copy);
    id.classList.add("copied");
    setTimeout(function () {{ id.classList.remove("copied"); }}, 1200);
  }});
}});
</script>
</body></html>
"""
