"""The error taxonomy of docs/reference.md, Error types, on messages as platforms really word them."""

from __future__ import annotations

import pytest

from exporter.pipeline.classify import Classifier

REALISTIC = [
    ("RATE_LIMITED", "HTTP 429 returned by Graph API"),
    ("RATE_LIMITED", "Too Many Requests: retry later"),
    ("RATE_LIMITED", "Request was throttled by SharePoint Online"),
    ("ACCESS_DENIED", "Access is denied."),
    ("ACCESS_DENIED", "Access to the path 'C:\\Data\\HR\\salaries.xlsx' is denied."),
    ("ACCESS_DENIED", "Error code [Forbidden], Error message [Forbidden], Status code [403] [Forbidden]"),
    ("ACCESS_DENIED", "401 Unauthorized: token expired"),
    ("ACCESS_DENIED", "Insufficient permissions to access file"),
    ("ACCESS_DENIED", "The user has insufficient privileges on the mailbox"),
    ("FILE_TOO_LARGE", "File exceeds maximum size limit of 50MB"),
    ("FILE_TOO_LARGE", "The document is too large to be indexed"),
    ("FILE_TOO_LARGE", "Request entity too large (413)"),
    ("FILE_TOO_LARGE", "Payload exceeds the allowed upload size"),
    ("TIMEOUT", "Processing timed out after 300 seconds"),
    ("TIMEOUT", "Timeout while waiting for the extractor"),
    ("TIMEOUT", "rpc error: code = DeadlineExceeded desc = deadline exceeded"),
    ("FILE_LOCKED", "The process cannot access the file because it is being used by another process."),
    ("FILE_LOCKED", "The file is locked for editing by jdoe@contoso.com"),
    ("FILE_LOCKED", "Sharing violation on \\\\fs01\\share\\plan.docx"),
    ("NOT_FOUND", "Item not found"),
    ("NOT_FOUND", "Cannot find the path specified"),
    ("NOT_FOUND", "[Errno 2] No such file or directory: '/data/a.pdf'"),
    ("NOT_FOUND", "GET https://example.sharepoint.com/x returned 404"),
    ("NOT_FOUND", "The object does not exist in the source system"),
    ("UNSUPPORTED_FORMAT", "Unsupported file type: .vsdx"),
    ("UNSUPPORTED_FORMAT", "File format .dwg is not supported for ingestion"),
    ("UNSUPPORTED_FORMAT", "Unknown file type for partitioning"),
    ("UNSUPPORTED_FORMAT", "Unrecognized format in header"),
    ("ENCODING_ERROR", "'utf-8' codec can't decode byte 0xa0 in position 12"),
    ("ENCODING_ERROR", "Invalid charset windows-1257 declared"),
    ("ENCODING_ERROR", "Text encoding could not be detected"),
    ("OCR_FAILED", "OCR engine returned no text for scanned page 3"),
    ("VECTOR_EMBEDDING_FAILED", "Embedding service rejected chunk 17"),
    ("VECTOR_EMBEDDING_FAILED", "failed to compute embeddings for document"),
    (
        "SCHEMA_VALIDATION",
        "[2018-00-23T22:07:01Z] is not a valid date-time. Expected [yyyy-MM-dd'T'HH:mm:ssZ]",
    ),
    ("SCHEMA_VALIDATION", "Message has unknown xdm format"),
    ("SCHEMA_VALIDATION", "Record does not match the schema of dataset 5deac2"),
    ("SCHEMA_VALIDATION", "Missing required field 'identityMap'"),
    ("PARSE_ERROR", "Unable to parse document content"),
    ("PARSE_ERROR", "The PDF file is corrupt"),
    ("PARSE_ERROR", "Malformed XML at line 3"),
    ("PARSE_ERROR", "Could not read the workbook"),
    ("NETWORK_ERROR", "Connection reset by peer"),
    ("NETWORK_ERROR", "Name resolution failed (DNS)"),
    ("NETWORK_ERROR", "Host unreachable"),
    ("NETWORK_ERROR", "Upstream answered 503 Service Unavailable"),
    ("NETWORK_ERROR", "SSL: CERTIFICATE_VERIFY_FAILED"),
    ("UNKNOWN", "Something odd happened"),
    ("UNKNOWN", ""),
]


@pytest.mark.parametrize(("expected", "message"), REALISTIC)
def test_realistic_messages_get_their_type(expected: str, message: str) -> None:
    assert Classifier().classify(message) == expected


def test_every_type_has_at_least_one_example() -> None:
    from exporter.pipeline.classify import BUILT_IN_RULES

    assert {t for t, _ in BUILT_IN_RULES} | {"UNKNOWN"} == {t for t, _ in REALISTIC}


@pytest.mark.parametrize(
    "message", ["A mediocre result", "the blocked queue", "docr-process", "unparseable?"]
)
def test_phrases_match_only_at_word_boundaries(message: str) -> None:
    assert Classifier().classify(message) == "UNKNOWN"


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        # The seed's own example (Adobe Experience Platform): "xdm" starts the word "xdmEntity".
        ("SCHEMA_VALIDATION", "Payload body is missing xdmEntity"),
        ("SCHEMA_VALIDATION", "schemaRef does not resolve"),
        ("RATE_LIMITED", "Throttled: slow down"),
        ("ACCESS_DENIED", "permissionDenied on /sites/hr"),
        ("ACCESS_DENIED", "Forbidden"),
        ("FILE_TOO_LARGE", "The payload exceeds the sizeLimit"),
        ("TIMEOUT", "TimeoutError after 30 s"),
        ("FILE_LOCKED", "lockedByUser=jdoe"),
        ("NOT_FOUND", "The blob does not exists"),
        ("UNSUPPORTED_FORMAT", "UnsupportedMediaType"),
        ("ENCODING_ERROR", "DecodeError in chunk 3"),
        ("OCR_FAILED", "OCRException: no text"),
        ("VECTOR_EMBEDDING_FAILED", "embeddings service down"),
        ("PARSE_ERROR", "ParserError: unexpected token"),
        ("PARSE_ERROR", "Corrupted zip entry"),
        ("NETWORK_ERROR", "ConnectionResetError"),
        ("NETWORK_ERROR", "SSLError: handshake failure"),
    ],
)
def test_phrases_match_at_the_start_of_a_word(expected: str, message: str) -> None:
    assert Classifier().classify(message) == expected


@pytest.mark.parametrize("message", ["4290 items", "error 1403", "HTTP/1.1 5030"])
def test_numbers_match_only_as_whole_numbers(message: str) -> None:
    assert Classifier().classify(message) == "UNKNOWN"


def test_earlier_rules_win() -> None:
    # "timed out" (TIMEOUT, rule 4) before "connection" (NETWORK_ERROR, rule 13)
    assert Classifier().classify("Connection timed out") == "TIMEOUT"
    # "403" (ACCESS_DENIED, rule 2) before "not found" (NOT_FOUND, rule 6)
    assert Classifier().classify("403 Forbidden: site not found for user") == "ACCESS_DENIED"


def test_configured_rules_come_first_case_insensitively() -> None:
    classifier = Classifier([("quota exceeded", "QUOTA_EXCEEDED"), ("throttled", "THROTTLED")])
    assert classifier.classify("Storage QUOTA EXCEEDED for site") == "QUOTA_EXCEEDED"
    assert classifier.classify("request throttled") == "THROTTLED"
    assert classifier.classify("Access is denied.") == "ACCESS_DENIED"


@pytest.mark.parametrize(
    ("reported", "message", "expected"),
    [
        ("FILE_TOO_LARGE", "Access is denied.", "FILE_TOO_LARGE"),  # the platform is authoritative
        ("CUSTOM_PLATFORM_TYPE", "", "CUSTOM_PLATFORM_TYPE"),
        ("error", "Access is denied.", "ACCESS_DENIED"),
        ("", "Unable to parse document content", "PARSE_ERROR"),
        (None, "nothing known", "UNKNOWN"),
        ("File Too Large", "exceeds the size limit", "FILE_TOO_LARGE"),
    ],
)
def test_a_well_formed_platform_type_is_kept_else_the_message_decides(
    reported: str | None, message: str, expected: str
) -> None:
    classifier = Classifier([("denied", "OVERRIDDEN")])
    if expected == "ACCESS_DENIED":
        expected = "OVERRIDDEN"
    assert classifier.resolve(reported, message) == expected
