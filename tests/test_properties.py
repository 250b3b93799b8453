"""Properties that must hold for every input, not only the examples: the classifier is total and
deterministic, and the Rezolve and table parsers turn anything a server or a table holds into
either records with valid labels or a counted invalid_response."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import EdmType, EntityProperty
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.config import build_settings
from exporter.pipeline.aggregate import PollAggregator
from exporter.pipeline.classify import BUILT_IN_RULES, UNKNOWN, Classifier
from exporter.records import FailureRecord, PollError, Reason, as_count
from exporter.simulators.table import azurite_connection_string
from exporter.sources.azure_table import AzureTableSource, TableColumns
from exporter.sources.commvault import number
from exporter.sources.http import retry_after_seconds
from exporter.sources.rezolve import failed_files, to_record

TAXONOMY = {error_type for error_type, _ in BUILT_IN_RULES} | {UNKNOWN}
# Any text, lone surrogates included: JSON's \ud800 escapes decode to them.
TEXT = st.text(alphabet=st.characters(codec=None), max_size=200)
WORDS = st.lists(
    st.sampled_from(["access", "denied", "429", "timed", "out", "xdmEntity", "codec", "x", "403", "é"]),
    max_size=8,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(message=TEXT | WORDS)
def test_classification_is_total_and_deterministic(message: str) -> None:
    first = Classifier().classify(message)
    assert first in TAXONOMY
    assert Classifier().classify(message) == first == Classifier().classify(message)


@settings(max_examples=200, deadline=None)
@given(reported=st.none() | TEXT | st.from_regex(r"[A-Z][A-Z0-9_]{0,70}", fullmatch=True), message=TEXT)
def test_a_reported_type_is_kept_only_when_well_formed(reported: str | None, message: str) -> None:
    resolved = Classifier().resolve(reported, message)
    if reported is not None and re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", reported):
        assert resolved == reported
    else:
        assert resolved == Classifier().classify(message) and resolved in TAXONOMY


@settings(max_examples=100, deadline=None)
@given(
    rules=st.lists(
        st.tuples(
            st.sampled_from([r"\bdisk full", "quota", "x+y"]), st.from_regex(r"[A-Z]{1,12}", fullmatch=True)
        ),
        max_size=3,
    ),
    message=TEXT | WORDS,
)
def test_configured_rules_keep_the_result_within_their_types_and_the_taxonomy(
    rules: list[tuple[str, str]], message: str
) -> None:
    assert Classifier(rules).classify(message) in TAXONOMY | {t for _, t in rules}


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | TEXT
    | st.datetimes(timezones=st.just(UTC))
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
REZOLVE_ENTRY = st.fixed_dictionaries(
    {"file_id": st.text(max_size=20) | st.integers()},
    optional={
        "file_name": TEXT | JSON,
        "error_type": TEXT | st.from_regex(r"[A-Z][A-Z_]{0,70}", fullmatch=True) | JSON,
        "error_message": TEXT | JSON,
        "failed_at": TEXT | st.integers() | st.floats() | JSON,
        "retry_count": st.integers(min_value=-5, max_value=10**12) | JSON,
        "source_url": JSON,
    },
)
REZOLVE_BODY = (
    JSON
    | st.lists(REZOLVE_ENTRY | JSON, max_size=3).map(lambda files: {"data": {"failed_files": files}})
    | st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"failed_files": st.lists(REZOLVE_ENTRY, max_size=4)})},
        optional={"success": JSON, "message": JSON},
    )
)


def labels_are_valid(records: list[FailureRecord], cap: int = 5) -> None:
    """What the aggregation makes of the records: retry labels within the spec's set."""
    aggregator = PollAggregator(
        classifier=Classifier(),
        retry_count_cap=cap,
        max_series=10_000,
        owns_tenant=lambda tenant: True,
        deadline=float("inf"),
        tenant=None,
        platform=None,
    )
    for record in records:
        assert record.retry_count >= 0
        aggregator.add(record)
    result = aggregator.finish(None)
    allowed = {str(n) for n in range(cap)} | {f"{cap}+"}
    for labels in result.counts:
        assert labels[-1] in allowed and labels[-2] in TAXONOMY | {
            r.reported_type for r in records if r.reported_type
        }


@settings(max_examples=300, deadline=None)
@given(body=REZOLVE_BODY)
def test_any_rezolve_body_is_records_or_a_counted_error(body: Any) -> None:
    try:
        entries = failed_files(body)
    except PollError as error:
        assert error.reason in {Reason.INVALID_RESPONSE, Reason.HTTP_ERROR}
        return
    labels_are_valid([to_record(entry, "t", "sharepoint", "t/sharepoint") for entry in entries])


TABLE_SOURCE = AzureTableSource(
    build_settings(
        {
            "sources": [
                {
                    "name": "table",
                    "kind": "azure_table",
                    "connection_string": azurite_connection_string(1),
                }
            ]
        },
        {},
    ).sources[0]  # type: ignore[arg-type]
)
TYPED = SCALARS.map(lambda v: v) | st.builds(
    EntityProperty, st.integers(min_value=-(2**63), max_value=2**63 - 1), st.just(EdmType.INT64)
)
ENTITY = st.fixed_dictionaries(
    {"PartitionKey": st.text(max_size=30), "RowKey": st.text(max_size=30)},
    optional={
        column: TYPED
        for column in TableColumns().model_dump().values()  # every column the source reads
    },
)


@settings(max_examples=300, deadline=None)
@given(entity=ENTITY)
def test_any_table_entity_becomes_a_record_with_valid_labels(entity: dict[str, Any]) -> None:
    record = TABLE_SOURCE._to_record(entity)
    assert record.platform and record.identity == (entity["PartitionKey"], entity["RowKey"])
    assert record.failed_at is None or isinstance(record.failed_at, float)
    labels_are_valid([record])


def test_a_table_timestamp_as_stored_is_read_back() -> None:
    stored = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    record = TABLE_SOURCE._to_record({"PartitionKey": "t", "RowKey": "r", "failed_at": stored})
    assert record.failed_at == stored.timestamp()


@pytest.mark.parametrize(
    ("value", "count"), [("3", 3), (" 12 ", 12), ("²", 0), ("٣", 3), ("-1", 0), ("1.5", 0)]
)
def test_a_retry_count_given_as_text_is_read_only_from_decimal_digits(value: str, count: int) -> None:
    assert as_count(value) == count


@pytest.mark.parametrize("value", ["²", "1²"])
def test_a_retry_after_in_superscript_digits_is_not_a_delay(value: str) -> None:
    assert retry_after_seconds(value, 0.0) is None


def test_a_commvault_number_in_superscript_digits_is_an_invalid_response() -> None:
    with pytest.raises(PollError) as raised:
        number("²", "jobId")
    assert raised.value.reason == Reason.INVALID_RESPONSE
