"""The expressions and templates of ``http_json``: what they read, how they render, what they
refuse when the configuration is read."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.records import PollError, Reason
from exporter.sources.queries import Expression, Missing, Template, to_epoch

ROOTS = frozenset({"tenant", "item", "window"})


def test_a_template_of_one_placeholder_keeps_the_values_type() -> None:
    context = {"window": {"start_ms": 1_700_000_000_000}, "item": {"tags": ["a", "b"], "n": None}}
    assert Template("{window.start_ms}", ROOTS).value(context) == 1_700_000_000_000
    assert Template("{item.tags}", ROOTS).value(context) == ["a", "b"]
    assert Template("{item.n}", ROOTS).value(context) is None
    assert Template("since {window.start_ms}", ROOTS).value(context) == "since 1700000000000"
    assert Template("{item.tags}", ROOTS).text_of(context) == '["a","b"]'


def test_braces_are_doubled_and_a_placeholder_may_hold_jmespath_braces_and_quotes() -> None:
    context = {"tenant": "acme", "item": {"a": 1, "b": "}"}}
    assert Template("{{literal}} {tenant}", ROOTS).value(context) == "{literal} acme"
    assert Template("{item.{x: a}}", ROOTS).value(context) == {"x": 1}
    assert Template("{item.b || '}'}", ROOTS).value(context) == "}"
    assert Template('{`"}"`}', ROOTS).value(context) == "}"
    assert Template("{'it\\'s }'}", ROOTS).value(context) == "it's }"  # an escaped quote
    assert Template("{'\\''}", ROOTS).value(context) == "'"
    assert Template("{item.X}", ROOTS).value({"item": {"X": 1}}) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{tenant", "the '{' at 0 is not closed: write '{{' for a brace"),
        ("tenant}", "a lone '}' at 6: write '}}' for a brace"),
        ("{itme.id}", "'itme.id' reads itme, which is not here; it may read item, tenant, window"),
        (
            "{itme.id || jtem}",
            "'itme.id || jtem' reads itme, jtem, which is not here; it may read item, tenant, window",
        ),
        (
            "{item.[}",
            'not a JMESPath expression: Invalid jmespath expression: Incomplete expression: "item.[" ^',
        ),
        ("{nope(item)}", "'nope(item)' calls no such function: nope"),
        ("{zap(nope(item))}", "'zap(nope(item))' calls no such function: nope, zap"),
        # Wherever a call is: after a pipe, in a projection, behind & (evaluated per element).
        ("{item | nope(@)}", "'item | nope(@)' calls no such function: nope"),
        ("{item | length(nope(@))}", "'item | length(nope(@))' calls no such function: nope"),
        ("{item.files[].nope(@)}", "'item.files[].nope(@)' calls no such function: nope"),
        (
            "{sort_by(item.files, &nope(size))}",
            "'sort_by(item.files, &nope(size))' calls no such function: nope",
        ),
        ("{}", "an expression must be non-empty text"),
    ],
)
def test_a_bad_template_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=None) as raised:
        Template(text, ROOTS)
    assert str(raised.value) == says


def test_compiled_text_is_equal_to_the_same_text_compiled_again() -> None:
    # A reload compares settings: the same text is the same expression or template.
    assert Expression("item.id", ROOTS) == Expression("item.id", None)
    assert hash(Expression("item.id", ROOTS)) == hash(Expression("item.id", ROOTS))
    assert Expression("item.id", ROOTS) != Expression("item.name", ROOTS)
    assert Template("/runs/{item.id}", ROOTS) == Template("/runs/{item.id}", ROOTS)
    assert Template("item.id", ROOTS) != Expression("item.id", ROOTS)
    assert {Template("/runs/{item.id}", ROOTS), Template("/runs/{item.id}", ROOTS)} == {
        Template("/runs/{item.id}", ROOTS)
    }
    assert repr(Template("/runs/{item.id}", ROOTS)) == "Template('/runs/{item.id}')"


def test_values_are_written_in_jsons_spelling() -> None:
    context = {"item": {"n": 3.0, "x": 2.5, "ok": True, "tags": ["a", 1], "o": {"k": None}}}
    written = Template("{item.n} {item.x} {item.ok} {item.tags} {item.o}", ROOTS).value(context)
    assert written == '3 2.5 true ["a",1] {"k":null}'
    # Literal text is kept as it is, letters included; only doubled braces are one brace.
    assert Template("XX{{}}/{item.n}XX", ROOTS).value(context) == "XX{}/3XX"


def test_a_null_inside_text_is_missing_and_names_its_expression() -> None:
    with pytest.raises(Missing) as raised:
        Template("/jobs/{item.id}/files", ROOTS).path({"item": {}})
    assert raised.value.reason is Reason.INVALID_RESPONSE
    assert "{item.id} is null" in str(raised.value)


def test_a_value_in_a_path_is_encoded_whole() -> None:
    path = Template("/jobs/{item.id}/files", ROOTS).path({"item": {"id": "../admin?x=1#y"}})
    assert path == "/jobs/..%2Fadmin%3Fx%3D1%23y/files"


def test_expressions_read_only_the_roots_of_their_place_wherever_they_start() -> None:
    Expression("contains(['a'], lower(item.status)) && to_epoch(item.at) >= window.start", ROOTS)
    Expression("item.files[?size > `10`].name | [0]", ROOTS)
    Expression("sort_by(item.runs, &started)[-1].id", ROOTS)  # `started` is an element's
    with pytest.raises(ValueError, match="reads record"):
        Expression("item.a || record.b", ROOTS)
    with pytest.raises(ValueError, match="reads job"):
        Expression("length(job)", ROOTS)
    Expression("anything.goes", None)  # read against an answer: any name


def test_functions_for_records() -> None:
    context = {"item": {"type": "Microsoft Teams", "blank": "  ", "at": "2026-12-05T10:00:00Z"}}
    assert Expression("slug(item.type)", ROOTS)(context) == "microsoft_teams"
    assert Expression("slug(item.blank) || 'unstructured'", ROOTS)(context) == "unstructured"
    assert Expression("slug(item.none) || 'unstructured'", ROOTS)(context) == "unstructured"
    assert Expression("upper(item.type)", ROOTS)(context) == "MICROSOFT TEAMS"
    assert Expression("to_epoch(item.at)", ROOTS)(context) == 1796464800.0
    paths = {"item": {"windows": "C:\\Data\\q3.xlsx", "posix": "/data/q3/", "bare": "q3"}}
    assert Expression("[basename(item.windows), basename(item.posix), basename(item.bare)]", ROOTS)(
        paths
    ) == [
        "q3.xlsx",
        "q3",
        "q3",
    ]
    assert Expression("basename(item.none)", ROOTS)(paths) is None


def test_a_function_given_the_wrong_type_fails_the_read_as_invalid_response() -> None:
    with pytest.raises(PollError) as raised:
        Expression("lower(item.n)", ROOTS)({"item": {"n": 5}})
    assert raised.value.reason is Reason.INVALID_RESPONSE
    assert raised.value.detail == (
        "lower(item.n): In function lower(), invalid type for value: 5, expected one of: ['string', 'null'], received: \"number\""
    )


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_796_464_800, 1_796_464_800.0),
        (1_796_464_800_500, 1_796_464_800.5),
        ("1796464800", 1_796_464_800.0),
        ("1796464800500", 1_796_464_800.5),
        # From 10^11 a number is milliseconds (1973 in milliseconds, 5138 in seconds).
        (100_000_000_000, 100_000_000.0),
        (99_999_999_999, 99_999_999_999.0),
        ("2026-12-05T10:00:00Z", 1_796_464_800.0),
        ("2026-12-05T11:00:00+01:00", 1_796_464_800.0),
        ("2026-12-05T10:00:00.250Z", 1_796_464_800.25),
        ("yesterday", None),
        ("", None),
        (None, None),
        (True, None),
        ("١٧٩٦٤٦٤٨٠٠", None),  # Arabic-Indic digits are not a time here
    ],
)
def test_to_epoch_reads_seconds_milliseconds_and_rfc3339(value: Any, seconds: float | None) -> None:
    assert to_epoch(value) == seconds


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=json_values, path=st.lists(st.sampled_from("abc"), min_size=1, max_size=4))
def test_a_path_of_names_reads_as_jmespath_does(document: Any, path: list[str]) -> None:
    text = ".".join(path)
    assert Expression(text, None)(document) == jmespath.search(text, document)
