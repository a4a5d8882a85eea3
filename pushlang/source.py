"""Source text and spans: where every AST node and diagnostic points in a file."""

from __future__ import annotations

import bisect
from pathlib import Path

import msgspec


class Span(msgspec.Struct, frozen=True, gc=False):
    """A 1-based, end-exclusive stretch of one source file (columns count characters)."""

    line: int
    column: int
    end_line: int
    end_column: int

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of ``other``."""
        return Span(self.line, self.column, other.end_line, other.end_column)


class Source:
    """One loaded file: its path as the user named it, and its text."""

    __slots__ = ("_line_starts", "path", "text")

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._line_starts: list[int] | None = None

    @classmethod
    def read(cls, path: str | Path) -> Source:
        raw = Path(path).read_bytes()
        return cls(str(path), raw.decode("utf-8"))

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line ending ('' past the end)."""
        # Only "\n" ends a line, as for the lexer (str.splitlines also splits at \x0c, \u2028 ...).
        lines = self.text.split("\n")
        return lines[line - 1].removesuffix("\r") if 0 < line <= len(lines) else ""

    def position(self, offset: int) -> tuple[int, int]:
        """The 1-based (line, column) of a character offset."""
        if self._line_starts is None:
            starts = [0]
            starts.extend(i + 1 for i, ch in enumerate(self.text) if ch == "\n")
            self._line_starts = starts
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1
