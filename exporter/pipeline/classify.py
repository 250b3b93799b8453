"""The cross-platform error taxonomy (docs/reference.md, Error types)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

UNKNOWN = "UNKNOWN"
_WELL_FORMED_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")

# First match wins. Each pattern recognizes the phrases of docs/reference.md, Error types, as
# real messages word them ("Access to the path 'X' is denied.", "File size exceeds the limit", ...). A phrase
# matches at the start of a word ("xdm" in "xdmEntity", "throttl" in "throttled"; "ocr" not in
# "mediocre"); a number only as a whole number.
BUILT_IN_RULES: tuple[tuple[str, str], ...] = (
    ("RATE_LIMITED", r"\b429\b|\btoo many requests|\bthrottl"),
    (
        "ACCESS_DENIED",
        r"\baccess (?:is |was )?denied|\baccess to\b.*\bdenied|\bforbidden|\b40[13]\b"
        r"|\bunauthori[sz]ed|\bpermission|\binsufficient privileges",
    ),
    (
        "FILE_TOO_LARGE",
        r"\btoo (?:large|big)|\bexceed.*\bsize|\bsize.*\bexceed|\bsize limit|\b413\b",
    ),
    ("TIMEOUT", r"\btimed out|\btime-?out|\bdeadline exceeded"),
    ("FILE_LOCKED", r"\bbeing used by another process|\blocked|\bsharing violation"),
    (
        "NOT_FOUND",
        r"\bnot found|\bcannot find|\bcan't find|\bno such file|\b404\b|\bdoes(?: not|n't) exist",
    ),
    (
        "UNSUPPORTED_FORMAT",
        r"\bunsupported|\bnot supported|\bunknown file type|\bunrecogni[sz]ed (?:file )?format",
    ),
    ("ENCODING_ERROR", r"\bencoding|\bdecod|\bcodec|\bcharset|\butf-?8"),
    ("OCR_FAILED", r"\bocr"),
    ("VECTOR_EMBEDDING_FAILED", r"\bembedding"),
    ("SCHEMA_VALIDATION", r"\bis not a valid|\bschema|\bxdm|\bvalidation|\brequired field"),
    (
        "PARSE_ERROR",
        r"\bpars(?:e|ing)|\bcorrupt|\bmalformed|\bcould not read|\binvalid document",
    ),
    (
        "NETWORK_ERROR",
        r"\bnetwork|\bconnection|\bunreachable|\bdns|\breset by peer|\b50[234]\b|\bssl",
    ),
)


class Classifier:
    """Maps a free-text failure reason to an ``error_type``: configured rules, then built-in."""

    def __init__(self, configured: Iterable[tuple[str, str]] = ()) -> None:
        rules = [*((t, p) for p, t in configured), *BUILT_IN_RULES]
        self._rules = tuple((error_type, re.compile(p, re.IGNORECASE)) for error_type, p in rules)
        # Messages repeat heavily (the same reason on thousands of files): classify each once.
        self.classify = lru_cache(maxsize=8192)(self._classify)

    def _classify(self, message: str) -> str:
        for error_type, pattern in self._rules:
            if pattern.search(message):
                return error_type
        return UNKNOWN

    def resolve(self, reported_type: str | None, message: str) -> str:
        """The platform's own type when well formed (it is authoritative), else the message's."""
        if reported_type and _WELL_FORMED_TYPE.match(reported_type):
            return reported_type
        return self.classify(message)
