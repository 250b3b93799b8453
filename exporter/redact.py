"""Secrets out of everything people read: logs, /sources, error messages."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable

REDACTED = "<redacted>"
# Tokens that the platforms hand out while running (a login's token, an OAuth access token): the
# latest ones. Older ones have been replaced, so have expired or will soon, and keeping every one
# of a year's logins would make each scrub slower.
ISSUED_KEPT = 64
ISSUED_MIN_CHARS = 8
# A configured secret shorter than this is redacted only where it stands alone (not inside a
# longer run of letters and digits): replaced everywhere, "t" would garble every word with a t.
SHORT_CHARS = 8


class Redactor:
    """Replaces every known secret value wherever it appears in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets: list[str] = []
        self._issued: deque[str] = deque(maxlen=ISSUED_KEPT)
        # What scrub replaces, in order: sorted when a secret is learnt, not at every scrub
        # (every log line and every /failures row is scrubbed).
        self._order: tuple[str, ...] = ()
        self._short: re.Pattern[str] | None = None
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
        configured = [s for s in self._secrets if len(s) >= SHORT_CHARS]
        self._order = (*configured, *sorted(self._issued, key=len, reverse=True))
        short = [re.escape(s) for s in self._secrets if len(s) < SHORT_CHARS]
        alone = rf"(?<![A-Za-z0-9])(?:{'|'.join(short)})(?![A-Za-z0-9])"
        self._short = re.compile(alone) if short else None

    def scrub(self, text: str) -> str:
        for secret in self._order:
            text = text.replace(secret, REDACTED)
        if self._short is not None:
            text = self._short.sub(REDACTED, text)
        return text
