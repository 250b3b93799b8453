"""Logging: text or JSON lines, with every configured secret redacted from every message."""

from __future__ import annotations

import json
import logging
import sys

from exporter.redact import Redactor


class RedactSecrets(logging.Filter):
    """Replaces secret values wherever they appear in a formatted message or traceback."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._scrub = redactor.scrub

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._scrub(record.getMessage()), None
        if record.exc_info:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


def setup_logging(level: str, fmt: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(redactor))
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Request lines from the HTTP clients are noise at info level; failures are logged by us.
    for noisy in ("aiohttp.client", "azure", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
