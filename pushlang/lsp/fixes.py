"""Quick fixes: a diagnostic whose help says "did you mean `X`?" becomes an edit that writes X in place of
the name the diagnostic is about."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from pushlang.diagnostics import Diagnostic
from pushlang.source import Span

_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_QUOTED = re.compile(r"`([^`]+)`|\"([^\"]+)\"")


@dataclass(frozen=True)
class Fix:
    title: str
    span: Span  # what to replace
    text: str  # with what


def quick_fix(d: Diagnostic, text: str) -> Fix | None:
    """The edit a "did you mean" diagnostic suggests, or None. The name to replace is the one the message
    quotes that is written under the diagnostic (of several, the one closest to the suggestion: the
    property's name, not `user.` before it)."""
    m = _DID_YOU_MEAN.search(d.help or "")
    span = d.span
    if m is None or span.line != span.end_line or span.line < 1:
        return None
    suggestion = m.group(1)
    lines = text.split("\n")
    if span.line > len(lines):
        return None
    written = lines[span.line - 1][span.column - 1:span.end_column - 1]
    quoted = {a or b for a, b in _QUOTED.findall(d.message)}
    names = [q for q in quoted if q and q in written and q != suggestion]
    if not names:
        return None
    name = max(names, key=lambda q: (difflib.SequenceMatcher(None, q, suggestion).ratio(), -len(q)))
    start = span.column + written.rindex(name)
    return Fix(f"Change `{name}` to `{suggestion}`", Span(span.line, start, span.line, start + len(name)), suggestion)
