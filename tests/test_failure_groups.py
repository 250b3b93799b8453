"""Triage by cause: a message's pattern on real messages of every kind, and ``group_by`` of
/failures on every key, checked against the records a plain search answers."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exporter.redact import Redactor
from exporter.serving import failures
from exporter.serving.failures import GROUP_KEYS, LaneIndex, Query, group, search
from exporter.serving.patterns import message_pattern, pattern_in_one_pass
from tests.test_failures_index import lane

# Messages as the platforms write them: the seeds and reference pages, and our simulators.
REAL = [
    # Rezolve (POST /v2/azure/failed-files)
    ("File exceeds maximum size limit of 50MB", "File exceeds maximum size limit of <n>MB"),
    ("Unable to parse document content", "Unable to parse document content"),
    ("Insufficient permissions to access file", "Insufficient permissions to access file"),
    ("File format .vsdx is not supported for ingestion", "File format .vsdx is not supported for ingestion"),
    (
        "'utf-8' codec can't decode byte 0xa0 in position 12",
        "<str> codec can't decode byte <hex> in position <n>",
    ),
    ("Processing timed out after 300 seconds", "Processing timed out after <n> seconds"),
    ("OCR engine returned no text for scanned page 3", "OCR engine returned no text for scanned page <n>"),
    ("Embedding service rejected chunk 17", "Embedding service rejected chunk <n>"),
    ("Item not found: it may have been deleted", "Item not found: it may have been deleted"),
    (
        "Failed to download https://contoso.sharepoint.com/sites/Legal/Shared%20Documents/nda.pdf.",
        "Failed to download <url>.",
    ),
    # Commvault (failedItems' failureReason)
    ("Access is denied.", "Access is denied."),
    (
        "Access to the path 'C:\\Data\\HR\\doc-017.docx' is denied.",
        "Access to the path <str> is denied.",
    ),
    ("Access to the path '\\\\fs01\\hr\\a.docx' is denied.", "Access to the path <str> is denied."),
    (
        "The process cannot access the file because it is being used by another process.",
        "The process cannot access the file because it is being used by another process.",
    ),
    ("The system cannot find the file specified.", "The system cannot find the file specified."),
    (
        "Error in performing post items web request. [Error code [Forbidden], Status code [403] [Forbidden]]",
        "Error in performing post items web request. [Error code [Forbidden], Status code [<n>] [Forbidden]]",
    ),
    (
        "Request throttled by Microsoft Graph (429 Too Many Requests)",
        "Request throttled by Microsoft Graph (<n> Too Many Requests)",
    ),
    ("Failed to back up C:\\Users\\ann\\NTUSER.DAT: file locked", "Failed to back up <path> file locked"),
    ("Cannot open /mnt/nfs/share/q3/report.xlsx", "Cannot open <path>"),
    # Unstructured (failed_files' error)
    (
        "Error in partition node: 413 Request Entity Too Large",
        "Error in partition node: <n> Request Entity Too Large",
    ),
    (
        'Failed to partition "report (final) v2.pdf": PDF is encrypted',
        "Failed to partition <str>: PDF is encrypted",
    ),
    ("Embedding request failed after 3 retries: 429", "Embedding request failed after <n> retries: <n>"),
    (
        "Document 6f1c2e9a-1b2c-4d5e-8f90-0a1b2c3d4e5f exceeded 1000 pages",
        "Document <uuid> exceeded <n> pages",
    ),
    (
        "Connector error: s3://ingest-bucket/raw/2025/11/a.pdf not found",
        "Connector error: <url> not found",
    ),
    # AEP (Catalog errors and failed files)
    (
        "[2018-00-23T22:07:01Z] is not a valid date-time. Expected [yyyy-MM-dd'T'HH:mm:ssZ]",
        "[<n>-<n>-<n>T<n>:<n>:<n>Z] is not a valid date-time. Expected [yyyy-MM-dd'T'HH:mm:ssZ]",
    ),
    (
        "[2018-00-23T22:07:01Z] is not a valid date-time for field 'timestamp'",
        "[<n>-<n>-<n>T<n>:<n>:<n>Z] is not a valid date-time for field <str>",
    ),
    ("required field 'identityMap' is missing", "required field <str> is missing"),
    ("Payload body is missing xdmEntity", "Payload body is missing xdmEntity"),
    (
        "Unable to parse the file: malformed JSON at line 3",
        "Unable to parse the file: malformed JSON at line <n>",
    ),
    (
        "Unable to parse the row: malformed CSV (unterminated quote)",
        "Unable to parse the row: malformed CSV (unterminated quote)",
    ),
    (
        "Batch 01H8ZT3Q failed: object 5f3a9c2e1d7b not found",
        "Batch <n>H<n>ZT<n>Q failed: object <hex> not found",
    ),
    # Whatever the kind: runs of spaces and line breaks are one space
    ("Timeout  while\n reading", "Timeout while reading"),
    ("Cannot open \u201cQ3 report.pdf\u201d: it\u2019s locked", "Cannot open <str>: it\u2019s locked"),
]


@pytest.mark.parametrize(("message", "pattern"), REAL)
def test_a_real_message_reads_as_its_pattern(message: str, pattern: str) -> None:
    assert message_pattern(message) == pattern


# Two messages of one cause, as one platform writes them for two files.
SAME_CAUSE = [
    (
        "Access to the path 'C:\\Data\\HR\\a.docx' is denied.",
        "Access to the path 'C:\\Legal\\b c.pdf' is denied.",
    ),
    ("File exceeds maximum size limit of 50MB", "File exceeds maximum size limit of 100MB"),
    (
        "Document 6f1c2e9a-1b2c-4d5e-8f90-0a1b2c3d4e5f failed",
        "Document 0A1B2C3D-1B2C-4D5E-8F90-0A1B2C3D4E5F failed",
    ),
    ("Object deadbeef42 is gone", "Object 00ff00ff00ff is gone"),
    ("Failed to fetch https://a.example/x?y=1", "Failed to fetch http://b.example/"),
]


@pytest.mark.parametrize(("one", "other"), SAME_CAUSE)
def test_the_files_of_one_cause_share_a_pattern(one: str, other: str) -> None:
    assert message_pattern(one) == message_pattern(other)


def test_different_causes_keep_different_patterns() -> None:
    messages = [message for message, _ in REAL]
    assert (
        len({message_pattern(message) for message in messages}) == len(set(messages)) - 1
    )  # two paths' Access


# The characters each alternative turns on, and the white space str.split and \s both know.
TRICKY = "aZfK09 .:-+_/\\'\"`<>)]\u201c\u201d\u2018\u2019\u212a\u0130\u00e9\t\n\u00a0\u2003\x1c"


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=TRICKY, max_size=40) | st.text(max_size=40))
@example("see C:\\x and git+ssh://h/r or svn.a://b")  # a word that is a drive or a scheme
@example("denied. x-y://z abcdefab-1234-1234-1234-123456789abc abc_def\u00e9 f00d")  # ids, schemes
@example("word\u2003word \u201cq r\u201d it\u2019s \u2018q\u2019")  # other white space; curly quotes
@example("'a' 'b'\t\"c d\"('e')f 'g'h it's 'i")  # quoted values side by side, or not values
def test_the_shortcuts_give_the_pattern_by_definition(message: str) -> None:
    assert message_pattern(message) == pattern_in_one_pass(message)


@pytest.mark.parametrize(("message", "pattern"), REAL)
def test_real_messages_read_the_same_by_definition(message: str, pattern: str) -> None:
    assert pattern_in_one_pass(message) == pattern


def test_words_with_apostrophes_are_not_quoted_strings() -> None:
    assert message_pattern("The file doesn't exist and can't be read") == (
        "The file doesn't exist and can't be read"
    )


RECORDS = st.lists(
    st.tuples(
        st.sampled_from(["t1", "t2", "t3"]),
        st.sampled_from(["sharepoint", "web"]),
        st.sampled_from(["ACCESS_DENIED", "TIMEOUT", "FILE_TOO_LARGE"]),
        st.sampled_from(["a.pdf", "b.docx"]),
        st.sampled_from(["https://x.example/", "C:\\share\\"]),
        st.sampled_from(
            [
                "Access to the path 'C:\\a.docx' is denied.",
                "Access to the path 'C:\\b.docx' is denied.",
                "File exceeds 50MB",
                "File exceeds 20MB",
                "Timed out",
            ]
        ),
        st.integers(0, 7),
        st.none() | st.floats(0, 100).map(round),
    ),
    max_size=40,
)
FILTERS = st.builds(
    Query,
    tenants=st.frozensets(st.sampled_from(["t1", "t2"]), max_size=1),
    error_types=st.frozensets(st.sampled_from(["ACCESS_DENIED", "TIMEOUT"]), max_size=2),
    min_retry_count=st.integers(0, 3),
    patterns=st.frozensets(st.sampled_from(["File exceeds <n>MB", "Timed out"]), max_size=1),
    group_by=st.sampled_from(GROUP_KEYS),
    limit=st.integers(1, 10),
    offset=st.integers(0, 4),
)


def key_of(query: Query, item: dict[str, object]) -> str:
    if query.group_by == "message":
        return message_pattern(str(item["message"]))
    return str(item[query.group_by])


@settings(max_examples=300, deadline=None)
@given(first=RECORDS, second=RECORDS, query=FILTERS)
def test_groups_are_the_matching_records_counted_by_key(
    first: list[tuple],  # type: ignore[type-arg]
    second: list[tuple],  # type: ignore[type-arg]
    query: Query,
) -> None:
    lanes = [lane("s1", first), lane("s2", second)]
    everything = list(search(lanes, query, everything=True).items())
    for item in everything:  # the pattern filter keeps the records of its patterns
        assert not query.patterns or message_pattern(str(item["message"])) in query.patterns
    counts: dict[str, int] = {}
    examples: dict[str, dict[str, object]] = {}
    for item in everything:  # in /failures order: each key's first is its example
        key = key_of(query, item)
        counts[key] = counts.get(key, 0) + 1
        examples.setdefault(key, item)
    expected = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    groups = group(lanes, query)
    assert groups.total == len(everything) == sum(counts.values())
    assert groups.everyone == len(expected)
    page = list(groups.items())
    assert [(g["key"], g["count"]) for g in page] == expected[query.offset : query.offset + query.limit]
    for item in page:
        assert item["example"] == examples[str(item["key"])]
        assert item["newest_failed_at"] == examples[str(item["key"])]["failed_at"]


def test_a_message_is_grouped_after_its_secrets_are_redacted() -> None:
    # A pattern replaces the secret's digits: redacted afterwards, the rest of it would show.
    records = [("t1", "web", "ACCESS_DENIED", "a.pdf", "C:\\", "token s3cr3tpassw0rd refused", 0, 1.0)]
    index = lane("s1", records)
    scrub = Redactor(["s3cr3tpassw0rd"]).scrub
    found = group([index], Query(group_by="message"), scrub=scrub)
    [only] = found.items()
    assert only["key"] == only["example"]["message"] == "token <redacted> refused"
    filtered = search([index], Query(patterns=frozenset({"token <redacted> refused"})), scrub=scrub)
    assert filtered.total == 1


def test_a_lanes_next_result_works_out_the_patterns_of_its_new_messages_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def record(name: str, message: str) -> tuple:  # type: ignore[type-arg]
        return ("t1", "web", "TIMEOUT", name, "C:\\", message, 0, 1.0)

    kept = [
        record("a.pdf", "Access to the path 'C:\\a.pdf' is denied."),
        record("b.pdf", "Timed out after 30 s"),
    ]
    first = lane("s1", kept)
    group([first], Query(group_by="message"))
    worked: list[str] = []
    monkeypatch.setattr(
        failures, "message_pattern", lambda message: worked.append(message) or message_pattern(message)
    )
    next_poll = lane("s1", [*kept, record("c.pdf", "Timed out after 60 s")]).result
    second = LaneIndex("s1", next_poll, previous=first)
    counted = {g["key"]: g["count"] for g in group([second], Query(group_by="message")).items()}
    assert worked == ["Timed out after 60 s"]
    assert counted == {"Timed out after <n> s": 2, "Access to the path <str> is denied.": 1}
    # A reload's new secrets: what was worked out with the old ones is not used.
    worked.clear()
    third = LaneIndex("s1", next_poll, previous=second)
    scrub = Redactor(["after 30 s"]).scrub
    counted = {g["key"]: g["count"] for g in group([third], Query(group_by="message"), scrub=scrub).items()}
    assert sorted(worked) == sorted(scrub(detail.message) for detail in next_poll.details.values())
    assert counted["Timed out <redacted>"] == 1
