"""What is at a point of a .push file: the named thing under it in the syntax tree, the word, and whether the
point is in code, a comment, a string or a string's `@{…}`.

A point is (line, column), 1-based, the column in characters, as the start of a `Span`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import msgspec

from pushlang import ast
from pushlang.source import Span

NameKind = Literal["segment", "template", "campaign", "import", "function", "filter", "property"]


@dataclass(frozen=True)
class Named:
    """A name in a file: what it names, and whether this is where it is defined."""

    kind: NameKind
    name: str
    span: Span
    definition: bool = False


def contains(span: Span, line: int, column: int) -> bool:
    """Whether a point is inside ``span`` or just after its end (where the cursor is after typing a word)."""
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def nodes(tree: object) -> Iterator[msgspec.Struct]:
    """Every syntax node of a module (or of any node), parents first."""
    stack: list[object] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, Span):
            continue
        if isinstance(item, msgspec.Struct):
            yield item
            stack.extend(reversed([getattr(item, f) for f in item.__struct_fields__]))
        elif isinstance(item, tuple):
            stack.extend(reversed(item))


def names(tree: object) -> Iterator[Named]:
    """Every segment, template, campaign, import, function, filter and property written in ``tree``."""
    for node in nodes(tree):
        yield from _named(node)


def _named(node: msgspec.Struct) -> Iterator[Named]:
    if isinstance(node, ast.SegmentRef):
        yield Named("segment", node.name, node.name_span)
    elif isinstance(node, ast.SegmentDef):
        yield Named("segment", node.name, node.name_span, definition=True)
    elif isinstance(node, ast.TemplateDef):
        yield Named("template", node.name, node.name_span, definition=True)
    elif isinstance(node, ast.Message) and node.use is not None and node.use_span is not None:
        yield Named("template", node.use, node.use_span)
    elif isinstance(node, ast.CampaignDef):
        yield Named("campaign", node.id, node.id_span, definition=True)
    elif isinstance(node, ast.Import):
        yield Named("import", node.target, node.span)
    elif isinstance(node, ast.Call):
        yield Named("function", node.name, node.name_span)
    elif isinstance(node, ast.Filter):
        start = node.span
        yield Named("filter", node.name, Span(start.line, start.column, start.line, start.column + len(node.name)))
    elif isinstance(node, ast.Prop):
        yield Named("property", node.dotted(), node.span)


def named_at(module: ast.Module, line: int, column: int) -> Named | None:
    """The innermost name under a point."""
    found = [n for n in names(module) if contains(n.span, line, column)]
    return min(found, key=lambda n: _extent(n.span)) if found else None


def _extent(span: Span) -> tuple[int, int]:
    return span.end_line - span.line, span.end_column - span.column


def enclosing(module: ast.Module, line: int, column: int) -> ast.TopLevel | None:
    """The top-level form (campaign, segment, template, import) a point is in."""
    return next((item for item in module.items if contains(item.span, line, column)), None)


# ---- the text of one line ------------------------------------------------------------------------

Where = Literal["code", "comment", "string", "template"]


@dataclass(frozen=True)
class LineState:
    """Where the end of a line's text is: in code, a comment, a string (``text_start``: the column, 0-based,
    of the string's first character) or a personalisation `@{…}` of a string (``expr_start``: of its first)."""

    where: Where
    text_start: int = 0
    expr_start: int = 0


def line_state(text: str) -> LineState:
    """Where the end of ``text`` (a line up to the cursor) is. Strings do not span lines; inside `@{…}` a
    string is written in the other quote (`"@{x | default: 'friend'}"`)."""
    where: Where = "code"
    quote = inner = ""
    text_start = expr_start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if where == "code":
            if ch == "#":
                return LineState("comment")
            if ch in "\"'":
                where, quote, text_start = "string", ch, i + 1
        elif where == "string":
            if ch == "\\":
                i += 1
            elif ch == quote:
                where = "code"
            elif ch == "@" and text[i + 1:i + 2] == "@":
                i += 1
            elif ch == "@" and text[i + 1:i + 2] == "{":
                where, expr_start = "template", i + 2
                i += 1
        elif inner:
            if ch == "\\":
                i += 1
            elif ch == inner:
                inner = ""
        elif ch == quote:
            where = "code"
        elif ch in "\"'":
            inner = ch
        elif ch == "}":
            where = "string"
        i += 1
    return LineState(where, text_start, expr_start)


_WORD = re.compile(r"[A-Za-z0-9_]+")


def word_at(text: str, column: int) -> tuple[int, str] | None:
    """The word (letters, digits, `_`) of a line under a 1-based column, with its 0-based start; a word
    just before the column counts too (the cursor after it)."""
    for m in _WORD.finditer(text):
        if m.start() <= column - 1 <= m.end():
            return m.start(), m.group()
    return None
