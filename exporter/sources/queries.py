"""The expressions and templates of an ``http_json`` source (README, "A platform without code").

Expressions are JMESPath (jmespath.org), with a few functions a failure record needs: ``lower``,
``upper``, ``slug`` and ``to_epoch``. A template is text with ``{expression}`` placeholders
(``{{`` and ``}}`` for braces); a template that is one placeholder keeps the value's JSON type.
Both are compiled when the configuration is read, so that ``--check`` names a bad one by its
path, and the names an expression starts from are checked against those its place provides.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import jmespath
import jmespath.exceptions
import jmespath.functions

from exporter.records import PollError, Reason
from exporter.sources.base import basename, parse_timestamp, slug

# An epoch time above this is in milliseconds: in seconds it would be after the year 5000.
EPOCH_MS_FROM = 1e11
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def to_epoch(value: Any) -> float | None:
    """Epoch seconds from epoch seconds, epoch milliseconds, their digits, or RFC 3339."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, int | float):
        return value / 1000 if abs(value) >= EPOCH_MS_FROM else float(value)
    return parse_timestamp(value)


class RecordFunctions(jmespath.functions.Functions):
    """JMESPath's functions, and those that reading failure records needs."""

    @jmespath.functions.signature({"types": ["string", "null"]})
    def _func_lower(self, text: str | None) -> str | None:
        return None if text is None else text.lower()

    @jmespath.functions.signature({"types": ["string", "null"]})
    def _func_upper(self, text: str | None) -> str | None:
        return None if text is None else text.upper()

    @jmespath.functions.signature({"types": ["string", "null"]})
    def _func_slug(self, text: str | None) -> str | None:
        """``Microsoft Teams`` as ``microsoft_teams``; null for null or blank text."""
        return slug(text) if text and text.strip() else None

    @jmespath.functions.signature({"types": ["string", "null"]})
    def _func_basename(self, path: str | None) -> str | None:
        """``C:\\Data\\q3.xlsx`` or ``/data/q3.xlsx`` as ``q3.xlsx``."""
        return None if path is None else basename(path)

    @jmespath.functions.signature({"types": ["string", "number", "null"]})
    def _func_to_epoch(self, value: Any) -> float | None:
        return to_epoch(value)


FUNCTIONS = RecordFunctions()
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)

# The AST nodes whose first child is evaluated against what the node is, and whose other
# children against what that first child gives (so only the first names a root).
_CHAINS = {"subexpression", "index_expression", "projection", "value_projection", "filter_projection"}
_CHAINS |= {"flatten", "pipe"}


def _roots(node: dict[str, Any], out: set[str], functions: set[str]) -> None:
    """The names ``node`` reads from the document it is evaluated against, and the functions
    it calls anywhere."""
    kind = node["type"]
    if kind == "field":
        out.add(node["value"])
        return
    children = node["children"]  # every node of jmespath's tree has them, if only []
    if kind == "function_expression":
        functions.add(node["value"])
    if kind == "expref":  # evaluated against each element of a list, not the document
        _calls(children, functions)
        return
    if kind in _CHAINS:
        if children:
            _roots(children[0], out, functions)
        _calls(children[1:], functions)
        return
    for child in children:
        if isinstance(child, dict):
            _roots(child, out, functions)


def _calls(nodes: list[Any], functions: set[str]) -> None:
    for node in nodes:
        if isinstance(node, dict):
            if node["type"] == "function_expression":
                functions.add(node["value"])
            _calls(node["children"], functions)


class Written:
    """Compiled from a configuration's text, and the same as another compiled from the same
    text (a reload compares settings)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


class Expression(Written):
    """A compiled JMESPath expression; a plain path of names (``record.file_id``) is read
    without the interpreter, with the same result (a name of anything but an object is null)."""

    __slots__ = ("search",)

    def __init__(self, text: str, roots: frozenset[str] | None = None) -> None:
        """``roots``: the names the expression may start from (None: any, for expressions read
        against an answer). Raises ValueError saying what is wrong."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("an expression must be non-empty text")
        try:
            compiled = jmespath.compile(text)
        except jmespath.exceptions.JMESPathError as exc:
            raise ValueError(f"not a JMESPath expression: {' '.join(str(exc).split())}") from None
        tree: dict[str, Any] = dict(compiled.parsed)
        read: set[str] = set()
        called: set[str] = set()
        _roots(tree, read, called)
        unknown = sorted(called - set(FUNCTIONS.FUNCTION_TABLE))
        if unknown:
            raise ValueError(f"{text!r} calls no such function: {', '.join(unknown)}")
        if roots is not None and read - roots:
            raise ValueError(
                f"{text!r} reads {', '.join(sorted(read - roots))}, which is not here; "
                f"it may read {', '.join(sorted(roots))}"
            )
        super().__init__(text)
        path = _field_path(tree)
        self.search: Callable[[Any], Any] = (
            _getter(path) if path is not None else lambda data: compiled.search(data, OPTIONS)
        )

    def __call__(self, data: Any) -> Any:
        try:
            return self.search(data)
        except jmespath.exceptions.JMESPathError as exc:
            raise PollError(Reason.INVALID_RESPONSE, f"{self.text}: {' '.join(str(exc).split())}") from None


def _field_path(node: dict[str, Any]) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression" and all(c["type"] == "field" for c in node["children"]):
        return tuple(c["value"] for c in node["children"])
    return None


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    if len(path) == 1:
        (key,) = path

        def one(data: Any) -> Any:
            return data.get(key) if isinstance(data, dict) else None

        return one
    if len(path) == 2:
        first, second = path

        def two(data: Any) -> Any:
            data = data.get(first) if isinstance(data, dict) else None
            return data.get(second) if isinstance(data, dict) else None

        return two

    def walk(data: Any) -> Any:
        for key in path:
            if not isinstance(data, dict):
                return None
            data = data.get(key)
        return data

    return walk


class Missing(PollError):
    """A placeholder whose value is null where a value is needed."""

    def __init__(self, expression: str) -> None:
        super().__init__(Reason.INVALID_RESPONSE, f"{{{expression}}} is null")


def as_text(value: Any) -> str:
    """A value as it is written into a path, query, header or text: JSON's spelling for
    numbers, booleans and structures, a string as it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"))


def _split(text: str) -> list[str | tuple[str]]:
    """Literal text and ``(expression,)`` placeholders, in order. A placeholder ends at the brace
    that closes it, outside JMESPath's quoted strings, literals and nested braces."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "{}" and text[i + 1 : i + 2] == c:
            literal.append(c)
            i += 2
            continue
        if c == "}":
            raise ValueError(f"a lone '}}' at {i}: write '}}}}' for a brace")
        if c != "{":
            literal.append(c)
            i += 1
            continue
        depth, j, quote_char = 1, i + 1, ""
        while j < n and depth:
            d = text[j]
            if quote_char:
                if d == "\\":
                    j += 1
                elif d == quote_char:
                    quote_char = ""
            elif d in "'\"`":
                quote_char = d
            elif d == "{":
                depth += 1
            elif d == "}":
                depth -= 1
            j += 1
        if depth:
            raise ValueError(f"the '{{' at {i} is not closed: write '{{{{' for a brace")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((text[i + 1 : j - 1].strip(),))
        i = j
    if literal:
        parts.append("".join(literal))
    return parts


class Template(Written):
    """Text with ``{expression}`` placeholders, rendered against a context."""

    __slots__ = ("parts", "whole")

    def __init__(self, text: str, roots: frozenset[str]) -> None:
        super().__init__(text)
        self.parts: tuple[str | Expression, ...] = tuple(
            Expression(part[0], roots) if isinstance(part, tuple) else part for part in _split(text)
        )
        # One placeholder and nothing else: the value as it is (a number stays a number).
        self.whole = self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Expression) else None

    def value(self, context: Mapping[str, Any]) -> Any:
        """The rendered value: a one-placeholder template's value as it is (null included),
        otherwise text; a null inside text raises Missing."""
        if self.whole is not None:
            return self.whole(context)
        return self.text_of(context)

    def text_of(self, context: Mapping[str, Any], encode: Callable[[str], str] | None = None) -> str:
        """The template as text; ``encode`` is applied to each placeholder's value."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            found = part(context)
            if found is None:
                raise Missing(part.text)
            text = as_text(found)
            out.append(encode(text) if encode is not None else text)
        return "".join(out)

    def path(self, context: Mapping[str, Any]) -> str:
        """The template as a URL path: each value percent-encoded whole, so that a value read
        from an answer cannot reach another path (``../``) or add a query."""
        return self.text_of(context, lambda text: quote(text, safe=""))

    def expressions(self) -> list[str]:
        """The text of each placeholder."""
        return [part.text for part in self.parts if isinstance(part, Expression)]


def each_leaf(value: Any, kind: type, change: Callable[[Any], Any]) -> Any:
    """A JSON structure with each leaf of type ``kind`` replaced by ``change(leaf)``."""
    if isinstance(value, kind):
        return change(value)
    if isinstance(value, dict):
        return {key: each_leaf(item, kind, change) for key, item in value.items()}
    if isinstance(value, list):
        return [each_leaf(item, kind, change) for item in value]
    return value


def body_templates(value: Any, roots: frozenset[str]) -> Any:
    """A JSON body whose strings are templates, compiled."""
    return each_leaf(value, str, lambda text: Template(text, roots))


def body_text(value: Any) -> Any:
    """A compiled body as it was written."""
    return each_leaf(value, Template, _text_of)


def templates_in(value: Any) -> list[Template]:
    """The templates of a compiled body."""
    found: list[Template] = []
    each_leaf(value, Template, found.append)
    return found


def render_body(value: Any, context: Mapping[str, Any]) -> Any:
    return each_leaf(value, Template, lambda template: template.value(context))


def _text_of(written: Written) -> str:
    return written.text
