"""The one diagnostic model that every check produces and every renderer prints."""

from __future__ import annotations

import enum

import msgspec

from pushlang.source import Span


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Diagnostic(msgspec.Struct, frozen=True):
    """One finding: a stable code, where it is, what is wrong, and how to fix it."""

    code: str
    name: str
    severity: Severity
    message: str
    path: str
    span: Span
    help: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.span.line, self.span.column, self.code)
