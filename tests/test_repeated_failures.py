"""Failures repeated across a window's runs: counted as each run answers, revised by later ones."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.pipeline.aggregate import DetailLimits, PollAggregator
from exporter.pipeline.classify import Classifier
from exporter.pipeline.result import PollResult
from exporter.records import FailureRecord
from exporter.sources.base import RepeatedFailures

MESSAGES = ("Access is denied.", "The file is locked by another user", "Unable to parse document")
# The type a platform may report with a message: it goes with its message.
TYPES = {"Access is denied.": "ACCESS_DENIED", "Unable to parse document": "PARSE_ERROR"}
# One run's failure: (file, message, when the run ended or None, run). Few files, so that they
# repeat.
FAILURES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from(MESSAGES),
        st.sampled_from([10.0, 20.0, 30.0, None]),
        st.sampled_from(["job:1", "job:2", "job:3", "job:4"]),
    ),
    max_size=25,
)


def aggregator(max_series: int = 1000, owns: tuple[str, ...] = ("acme",)) -> PollAggregator:
    return PollAggregator(
        classifier=Classifier(),
        retry_count_cap=2,
        max_series=max_series,
        owns_tenant=lambda tenant: tenant in owns,
        deadline=float("inf"),
        details=DetailLimits(max_records=100, message_max_chars=512),
        seen_at=1.0,
    )


def counted_on_arrival(failures: list[tuple[str, str, float | None, str]], out: PollAggregator) -> PollResult:
    seen: RepeatedFailures[tuple[str, str]] = RepeatedFailures(out, "acme")
    for file, message, when, run in failures:
        seen.add(("acme", file), "fs", message, when, run, file, f"share/{file}", TYPES.get(message))
    return out.finish(None)


def merged_then_counted(failures: list[tuple[str, str, float | None, str]]) -> PollResult:
    """What the window means (docs/reference.md, Platforms), written the plain way: merge every run's failures
    first, then count one record per file."""
    runs: dict[str, list[tuple[float | None, str, str]]] = {}
    for file, message, when, run in failures:
        runs.setdefault(file, []).append((when, run, message))
    out = aggregator()
    for file, seen in runs.items():
        # The latest (one without a time is the earliest); of a tie, the first.
        when, run, message = max(seen, key=lambda failure: (failure[0] or 0.0, failure[1]))
        out.add(
            FailureRecord(
                "acme",
                "fs",
                ("acme", file),
                message,
                TYPES.get(message),
                len(seen) - 1,
                when,
                run,
                file,
                f"share/{file}",
            )
        )
    return out.finish(None)


@settings(max_examples=300, deadline=None)
@given(FAILURES)
def test_counting_at_arrival_ends_where_merging_first_does(
    failures: list[tuple[str, str, float, str]],
) -> None:
    assert counted_on_arrival(failures, aggregator()) == merged_then_counted(failures)


def test_a_label_set_a_revision_empties_is_gone_and_frees_its_place_under_the_cap() -> None:
    failures = [("a", MESSAGES[0], 10.0, "job:1"), ("a", MESSAGES[0], 20.0, "job:2")]
    result = counted_on_arrival(failures, aggregator(max_series=1))
    assert result.counts == {("acme", "fs", "ACCESS_DENIED", "1"): 1}
    assert result.dropped == 0


def test_the_oldest_and_newest_follow_a_revised_record() -> None:
    failures = [
        ("a", MESSAGES[0], 10.0, "job:1"),
        ("b", MESSAGES[0], 20.0, "job:2"),
        ("a", MESSAGES[0], 30.0, "job:3"),  # "a" now failed last at 30, in its second run
        ("c", MESSAGES[0], 20.0, "job:2"),
        ("c", MESSAGES[0], 30.0, "job:3"),
    ]
    result = counted_on_arrival(failures, aggregator())
    assert result.counts == {("acme", "fs", "ACCESS_DENIED", "0"): 1, ("acme", "fs", "ACCESS_DENIED", "1"): 2}
    assert result.oldest == {("acme", "fs"): 20.0} and result.newest == {("acme", "fs"): 30.0}


def test_a_revision_is_not_a_record_scanned_and_keeps_the_first_seen_time() -> None:
    failures = [("a", MESSAGES[0], 10.0, "job:1"), ("a", MESSAGES[1], 20.0, "job:2")]
    result = counted_on_arrival(failures, aggregator())
    assert result.scanned == 1
    [(identity, name, _, message, retry_count, first_seen, _)] = result.details.values()
    assert (identity, name, message, retry_count, first_seen) == ("acme/a", "a", MESSAGES[1], 1, 1.0)


def test_a_revision_of_a_tenant_another_shard_owns_is_not_counted() -> None:
    out = aggregator(owns=())
    failures = [("a", MESSAGES[0], 10.0, "job:1"), ("a", MESSAGES[0], 20.0, "job:2")]
    result = counted_on_arrival(failures, out)
    assert result.counts == {} and result.details == {}


def record(
    file: str,
    failed_at: float | None,
    *,
    retry: int = 0,
    message: str = MESSAGES[0],
    platform: str = "fs",
    reported_type: str | None = None,
) -> FailureRecord:
    return FailureRecord(
        "acme", platform, ("acme", file), message, reported_type, retry, failed_at, "job:1", file, file
    )


def test_a_revised_label_set_works_its_oldest_and_newest_out_again_from_what_it_keeps() -> None:
    out = aggregator()
    for file, failed_at in (("z", 5.0), ("x", None), ("w", 10.0), ("u", 9.0), ("v", 7.0)):
        out.add(record(file, failed_at))
    out.revise(record("w", 10.0, retry=1, platform="other"))  # the newest leaves the label set
    result = out.finish(None)
    assert result.oldest == {("acme", "fs"): 5.0, ("acme", "other"): 10.0}
    assert result.newest == {("acme", "fs"): 9.0, ("acme", "other"): 10.0}


def test_a_record_the_series_cap_refused_is_counted_when_a_revision_finds_room() -> None:
    out = aggregator(max_series=1)
    out.add(record("a", 1.0))
    out.add(record("b", 1.0, message=MESSAGES[1]))  # a second label set: refused
    out.revise(record("b", 2.0))  # now in the first label set
    result = out.finish(None)
    assert result.counts == {("acme", "fs", "ACCESS_DENIED", "0"): 2}
    assert result.dropped == 1 and set(result.details) == {hash(("acme", "a")), hash(("acme", "b"))}


def test_a_record_revised_beyond_the_series_cap_loses_its_count_and_its_detail() -> None:
    out = aggregator(max_series=1)
    out.add(record("a", 1.0))
    out.add(record("b", 1.0))
    out.revise(record("b", 2.0, retry=1))  # a second label set: refused
    out.add(record("c", 1.0, message=MESSAGES[1]))  # refused from the start
    out.revise(record("c", 2.0, retry=1, message=MESSAGES[1]))  # and again
    result = out.finish(None)
    assert result.counts == {("acme", "fs", "ACCESS_DENIED", "0"): 1}
    assert result.dropped == 3 and set(result.details) == {hash(("acme", "a"))}


def test_a_revision_keeps_the_platforms_own_error_type() -> None:
    out = aggregator()
    out.add(record("a", 1.0))
    out.revise(record("a", 2.0, retry=1, reported_type="FILE_TOO_LARGE"))
    assert out.finish(None).counts == {("acme", "fs", "FILE_TOO_LARGE", "1"): 1}
