"""The /failures index answers exactly what a scan of every record would, for any records and
any query (a reference implementation written the obvious way, checked by hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.records import FailureRecord
from exporter.serving.failures import LaneIndex, Query, search

WORDS = st.sampled_from(["Invoice", "invoice", "ß", "ss", "scan", "a\x00b", "", "Straße", "x/y"])
RECORDS = st.lists(
    st.builds(
        lambda tenant, platform, error, name, folder, message, retry, failed_at: (
            tenant,
            platform,
            error,
            name,
            folder,
            message,
            retry,
            failed_at,
        ),
        st.sampled_from(["t1", "t2", "t3"]),
        st.sampled_from(["sharepoint", "web"]),
        st.sampled_from(["ACCESS_DENIED", "TIMEOUT"]),
        WORDS,
        st.sampled_from(["https://x.example/", "", "C:\\share\\"]),
        WORDS,
        st.integers(0, 7),
        st.none() | st.floats(0, 100).map(round),
    ),
    max_size=40,
)
QUERIES = st.builds(
    Query,
    sources=st.sampled_from([frozenset(), frozenset({"s1"}), frozenset({"s2"}), frozenset({"s1", "s2"})]),
    tenants=st.frozensets(st.sampled_from(["t1", "t2", "nobody"]), max_size=2),
    platforms=st.frozensets(st.sampled_from(["sharepoint", "web"]), max_size=1),
    error_types=st.frozensets(st.sampled_from(["ACCESS_DENIED", "TIMEOUT"]), max_size=2),
    min_retry_count=st.integers(0, 8),
    q=WORDS | st.just("SCAN") | st.just("\x00"),
    limit=st.integers(1, 10),
    offset=st.integers(0, 30),
)


def lane(source: str, rows: list[tuple]) -> LaneIndex:  # type: ignore[type-arg]
    aggregator = PollAggregator(
        classifier=Classifier(),
        retry_count_cap=5,
        max_series=10**6,
        owns_tenant=lambda _: True,
        deadline=float("inf"),
        details=DetailLimits(10**6, 512),
        seen_at=1.0,
    )
    for n, (tenant, platform, error, name, folder, message, retry, failed_at) in enumerate(rows):
        aggregator.add(
            FailureRecord(
                tenant=tenant,
                platform=platform,
                identity=(tenant, f"{n:03d}"),
                message=message,
                reported_type=error,
                retry_count=retry,
                failed_at=failed_at,
                name=name,
                location=folder + name,
            )
        )
    return LaneIndex(source, aggregator.finish(None))


def reference(lanes: list[LaneIndex], query: Query) -> tuple[int, list[tuple[str, str]]]:
    needle = query.q.casefold()
    found = []
    for index in lanes:
        if query.sources and index.source not in query.sources:
            continue
        for key, detail in index.result.details.items():
            (tenant, platform, error_type, _), failed_at, _, _ = index.result.entries[key]
            texts = (detail.name, detail.location, detail.message)
            if (
                (not query.tenants or tenant in query.tenants)
                and (not query.platforms or platform in query.platforms)
                and (not query.error_types or error_type in query.error_types)
                and detail.retry_count >= query.min_retry_count
                and (not needle or any(needle in text.casefold() for text in texts))
            ):
                found.append(
                    ((failed_at is None, -(failed_at or 0.0), index.source, detail.id), index.source)
                )
    found.sort()
    page = found[query.offset : query.offset + query.limit]
    return len(found), [(source, order[3]) for order, source in page]


@settings(max_examples=300, deadline=None)
@given(first=RECORDS, second=RECORDS, query=QUERIES)
def test_the_index_answers_what_a_scan_of_every_record_would(
    first: list[tuple],
    second: list[tuple],
    query: Query,  # type: ignore[type-arg]
) -> None:
    lanes = [lane("s1", first), lane("s2", second)]
    page = search(lanes, query)
    assert (page.total, [(row.source, row.detail.id) for row in page.rows]) == reference(lanes, query)
    for row in page.rows:  # and every location reads back as it was given
        assert row.as_dict()["location"].endswith(row.detail.name)


def test_a_name_is_searched_also_where_the_location_does_not_hold_it_and_nothing_else_is() -> None:
    aggregator = PollAggregator(
        classifier=Classifier(),
        retry_count_cap=5,
        max_series=10,
        owns_tenant=lambda _: True,
        deadline=float("inf"),
        details=DetailLimits(10, 512),
    )
    aggregator.add(
        FailureRecord("t1", "web", ("t1", "a"), "m", name="a.pdf", location="https://x.example/a.pdf")
    )
    aggregator.add(FailureRecord("t1", "web", ("t1", "b"), "m", name="report.pdf", location="elsewhere"))
    index = LaneIndex("s1", aggregator.finish(None))
    assert [index.details[p].id for p in index.containing("report")] == ["t1/b"]
    assert [index.details[p].id for p in index.containing("a.pdf")] == ["t1/a"]
    # Only the record's own texts are searched: no placeholder of an empty part, no separator.
    assert index.containing("none") == index.containing("xxxx") == []
