"""Secrets out of everything people read: logs, /sources, error messages."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "<redacted>"


class Redactor:
    """Replaces every known secret value wherever it appears in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
