"""Secrets out of everything people read: logs, /sources, error messages."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "<redacted>"


class Redactor:
    """Replaces every known secret value wherever it appears in a text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """More secrets (a reloaded configuration's): the earlier ones stay redacted too."""
        known = {*self._secrets, *(s for s in secrets if s)}
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted(known, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text
