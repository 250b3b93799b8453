"""A failure message's pattern: the message with what differs from file to file (addresses,
paths, quoted values, ids, numbers) replaced by a placeholder, so that the files of one cause
share one pattern (docs/reference.md, Which files failed)."""

from __future__ import annotations

import re

# One pass, leftmost first; where two alternatives start at one place, the earlier wins. So a
# quoted path is one <str>, and a number inside a UUID or a hex id is not cut out of it.
_VARIABLE = re.compile(
    r"""
    (?P<url>\b[a-z][a-z0-9+.-]*://[^\s'"<>]*[^\s'"<>.,;:!?)\]])
    | (?P<str>
        (?<!\w)'[^'\n]*'(?!\w) | (?<!\w)"[^"\n]*"(?!\w) | `[^`\n]*`
      | \u201c[^\u201d\n]*\u201d | (?<!\w)\u2018[^\u2019\n]*\u2019(?!\w)  # curly quotes
    )
    | (?P<path>
        \b[a-z]:\\[^\s'"]*            # C:\Data\HR\a.docx
      | \\\\[^\s'"\\]+\\[^\s'"]*       # \\fs01\hr\a.docx
      | (?<![\w.:/~-])/[^\s'"/]+/[^\s'"]*   # /srv/share/a.pdf (two parts at least)
    )
    | (?P<uuid>\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b)
    | (?P<hex>\b0x[0-9a-f]+\b | \b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b)
    | (?P<n>\d+(?:\.\d+)?)
    | (?P<space>\s+)
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _placeholder(match: re.Match[str]) -> str:
    kind = match.lastgroup
    return " " if kind == "space" else f"<{kind}>"


def message_pattern(message: str) -> str:
    """``Access to the path 'C:\\a.docx' is denied.`` -> ``Access to the path <str> is denied.``"""
    return _VARIABLE.sub(_placeholder, message).strip()
