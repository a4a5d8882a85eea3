"""Collects diagnostics while a file set is compiled."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pushlang.diagnostics.codes import Code
from pushlang.diagnostics.model import Diagnostic
from pushlang.source import Span


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' help line for an unknown ``name``, or None when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


class Sink:
    """An append-only list of diagnostics with a helper that fills in code metadata."""

    __slots__ = ("_seen", "items")

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple[str, str, Span]] = set()

    def report(
        self,
        code: Code,
        path: str,
        span: Span,
        message: str,
        *,
        help: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        key = (code.code, path, span)
        if key in self._seen:  # a segment or template checked once per campaign that uses it
            return
        self._seen.add(key)
        self.items.append(
            Diagnostic(code.code, code.name, code.severity, message, path, span, help, notes)
        )

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)
