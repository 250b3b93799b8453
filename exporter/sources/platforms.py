"""The platforms a Rezolve service ingests from: the ``platform`` its API takes and its table's
content types are named after. Shared by the Rezolve API source and the table source."""

from __future__ import annotations

PLATFORMS = ("sharepoint", "servicenow", "confluence", "itglue", "web")
