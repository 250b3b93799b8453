"""Secrets out of everything people read: logs, /sources, error messages."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

REDACTED = "<redacted>"
# Tokens that the platforms hand out while running (a login's token, an OAuth access token): the
# latest ones. Older ones have been replaced, so have expired or will soon, and keeping every one
# of a year's logins would make each scrub slower.
ISSUED_KEPT = 64
ISSUED_MIN_CHARS = 8


class Redactor:
    """Replaces every known secret value wherever it appears in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets: list[str] = []
        self._issued: deque[str] = deque(maxlen=ISSUED_KEPT)
        # What scrub replaces, in order: sorted when a secret is learnt, not at every scrub
        # (every log line and every /failures row is scrubbed).
        self._order: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """More secrets (a reloaded configuration's): the earlier ones stay redacted too."""
        known = {*self._secrets, *(s for s in secrets if s)}
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted(known, key=len, reverse=True)
        self._reorder()

    def add_issued(self, secret: str) -> None:
        """A secret a platform issued at run time (thread-safe: sources call it from polls)."""
        # A very short value would redact ordinary words; no platform issues tokens that short.
        if len(secret) >= ISSUED_MIN_CHARS and secret not in self._issued:
            self._issued.append(secret)
            self._reorder()

    def _reorder(self) -> None:
        self._order = (*self._secrets, *sorted(self._issued, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._order:
            text = text.replace(secret, REDACTED)
        return text
