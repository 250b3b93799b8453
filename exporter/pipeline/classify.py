"""The cross-platform error taxonomy (SPEC section 6)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

UNKNOWN = "UNKNOWN"
_WELL_FORMED_TYPE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")

# First match wins. Each pattern recognizes the phrases SPEC section 6 lists, as real messages
# word them ("Access to the path 'X' is denied.", "File size exceeds the limit", ...).
BUILT_IN_RULES: tuple[tuple[str, str], ...] = (
    ("RATE_LIMITED", r"\b429\b|\btoo many requests\b|\bthrottl"),
    (
        "ACCESS_DENIED",
        r"\baccess (?:is |was )?denied\b|\baccess to\b.*\bdenied\b|\bpermission denied\b"
        r"|\bforbidden\b|\b40[13]\b|\bunauthori[sz]ed\b|\bpermissions?\b|\binsufficient privileges\b",
    ),
    (
        "FILE_TOO_LARGE",
        r"\btoo (?:large|big)\b|\bexceed(?:s|ed|ing)?\b.*\bsize\b|\bsize\b.*\bexceed"
        r"|\bsize limit\b|\b413\b",
    ),
    ("TIMEOUT", r"\btimed out\b|\btime-?out\b|\bdeadline exceeded\b"),
    ("FILE_LOCKED", r"\bbeing used by another process\b|\blocked\b|\bsharing violation\b"),
    (
        "NOT_FOUND",
        r"\bnot found\b|\bcannot find\b|\bcan't find\b|\bno such file\b|\b404\b"
        r"|\bdoes(?: not|n't) exist\b",
    ),
    (
        "UNSUPPORTED_FORMAT",
        r"\bunsupported\b|\bnot supported\b|\bunknown file type\b|\bunrecogni[sz]ed (?:file )?format\b",
    ),
    (
        "ENCODING_ERROR",
        r"\bencoding\b|\bdecod(?:e|ed|es|ing|er)\b|\bcodec\b|\bcharset\b|\butf-?8\b",
    ),
    ("OCR_FAILED", r"\bocr\b"),
    ("VECTOR_EMBEDDING_FAILED", r"\bembeddings?\b"),
    (
        "SCHEMA_VALIDATION",
        r"\bis not a valid\b|\bschema\b|\bxdm\b|\bvalidation\b|\brequired field\b",
    ),
    (
        "PARSE_ERROR",
        r"\bpars(?:e|ed|es|ing|er)\b|\bcorrupt(?:ed|ion)?\b|\bmalformed\b|\bcould not read\b"
        r"|\binvalid document\b",
    ),
    (
        "NETWORK_ERROR",
        r"\bnetwork\b|\bconnection\b|\bunreachable\b|\bdns\b|\breset by peer\b|\b50[234]\b|\bssl\b",
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
