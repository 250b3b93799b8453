"""A failure message's pattern: the message with what differs from file to file (addresses,
paths, quoted values, ids, numbers) replaced by a placeholder, so that the files of one cause
share one pattern (docs/reference.md, Which files failed)."""

from __future__ import annotations

import functools
import re

# A quoted value: the quote, then a look back past it (not a word's apostrophe). Starting with
# the quote lets the engine skip to the quotes of a message when it looks for these alone.
_QUOTED = r"""'(?<!\w')[^'\n]*'(?!\w) | "(?<!\w")[^"\n]*"(?!\w)"""
# What is replaced, one alternative per placeholder. One pass, leftmost first; where two
# alternatives start at one place, the earlier wins. So a quoted path is one <str>, and a number
# inside a UUID or a hex id is not cut out of it. Runs of white space become one space.
_VARIABLES = rf"""
    (?P<url>\b[a-z][a-z0-9+.-]*://[^\s'"<>]*[^\s'"<>.,;:!?)\]])
    | (?P<str>
        {_QUOTED} | `[^`\n]*`
      | \u201c[^\u201d\n]*\u201d | (?<!\w)\u2018[^\u2019\n]*\u2019(?!\w)  # curly quotes
    )
    | (?P<path>
        \b[a-z]:\\[^\s'"]*            # C:\Data\HR\a.docx
      | \\\\[^\s'"\\]+\\[^\s'"]*       # \\fs01\hr\a.docx
      | (?<![\w.:/~-])/[^\s'"/]+/[^\s'"]*   # /srv/share/a.pdf (two parts at least)
    )
    | (?P<uuid>\b[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}\b)
    | (?P<hex>\b0x[0-9a-f]+\b | \b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{{8,}}\b)
    | (?P<n>\d+(?:\.\d+)?)
    | (?P<space>\s+)
"""
_ONE_PASS = re.compile(_VARIABLES, re.IGNORECASE | re.VERBOSE)
_QUOTES = re.compile(_QUOTED, re.VERBOSE)


def _placeholder(match: re.Match[str]) -> str:
    kind = match.lastgroup
    return " " if kind == "space" else f"<{kind}>"


def pattern_in_one_pass(message: str) -> str:
    """The definition: every value replaced in one pass over the whole message. What
    ``message_pattern`` answers, the long way (tests/test_failure_groups.py holds them equal)."""
    return _ONE_PASS.sub(_placeholder, message).strip()


@functools.lru_cache(maxsize=2**14)
def _word_pattern(word: str) -> str:
    return _ONE_PASS.sub(_placeholder, word)


def _words_pattern(text: str) -> str:
    """The pattern of text between quoted values, its white space at either end kept as one space."""
    words = " ".join(map(_word_pattern, text.split()))
    if not words:
        return " " if text else ""
    return f"{' ' if text[0].isspace() else ''}{words}{' ' if text[-1].isspace() else ''}"


def message_pattern(message: str) -> str:
    """``Access to the path 'C:\\a.docx' is denied.`` -> ``Access to the path <str> is denied.``"""
    if "`" in message or "\u201c" in message or "\u2018" in message:
        return pattern_in_one_pass(message)  # quotes that a path or an address may hold
    # No other value holds these quotes: the quoted values are found alone, first. Outside them
    # no replaced value holds white space, and every alternative reads white space as it reads
    # the start or end of the text: each word has its own pattern, and the words of a cause's
    # messages repeat, so that most are remembered, not worked out again.
    if "'" not in message and '"' not in message:
        return " ".join(map(_word_pattern, message.split()))  # the common case, without the edges
    parts = []
    end = 0
    for quoted in _QUOTES.finditer(message):
        parts.append(_words_pattern(message[end : quoted.start()]))
        parts.append("<str>")
        end = quoted.end()
    parts.append(_words_pattern(message[end:]))
    return "".join(parts).strip()
