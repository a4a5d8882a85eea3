"""Renders diagnostics as text, JSON, GitHub Actions annotations or SARIF, and codes as `explain` docs."""

from __future__ import annotations

import json
import os
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from pushlang.diagnostics.codes import CODES, Code
from pushlang.diagnostics.model import Diagnostic, Severity
from pushlang.source import Source

__all__ = [
    "FORMATS",
    "SARIF_SCHEMA",
    "render",
    "render_explain",
    "render_github",
    "render_json",
    "render_sarif",
    "render_summary",
    "render_text",
]

FORMATS: tuple[str, ...] = ("text", "json", "github", "sarif")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/pushlang/pushlang"

# rustc and Ruff show a tab as four spaces; the caret line is computed on the same expansion.
TAB_WIDTH = 4

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_BLUE = "\x1b[1;34m"
_SEVERITY_COLOR = {
    Severity.ERROR: "\x1b[1;31m",
    Severity.WARNING: "\x1b[1;33m",
    Severity.INFO: "\x1b[1;34m",
}
_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


# ---- text ----------------------------------------------------------------------------------------


class _Palette:
    """ANSI colours, or nothing at all when colour is off."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def paint(self, style: str, text: str) -> str:
        return f"{style}{text}{_RESET}" if self.enabled and text else text

    def severity(self, severity: Severity, text: str) -> str:
        return self.paint(_SEVERITY_COLOR[severity], text)

    def gutter(self, text: str) -> str:
        return self.paint(_BLUE, text)

    def bold(self, text: str) -> str:
        return self.paint(_BOLD, text)


def use_color(stream: object) -> bool:
    """Whether to colour what goes to ``stream``: a terminal, and NO_COLOR not set (no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _display_char(ch: str) -> str:
    """How one source character is shown in a snippet (tabs expanded, control characters visible)."""
    if ch == "\t":
        return " " * TAB_WIDTH
    if ord(ch) < 0x20 or ch == "\x7f":
        # A raw control character would move the terminal cursor and break the caret alignment.
        return chr(0x2400 + ord(ch)) if ch != "\x7f" else "\u2421"
    return ch


def _cell_width(ch: str) -> int:
    """Terminal cells one displayed character takes: wide CJK and emoji take two, marks none."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _width(text: str) -> int:
    return sum(_cell_width(c) for c in "".join(_display_char(ch) for ch in text))


def _location(d: Diagnostic) -> str:
    if d.span.line <= 0:
        return d.path
    return f"{d.path}:{d.span.line}:{d.span.column}"


def _snippet(d: Diagnostic, source: Source, palette: _Palette, gutter_width: int) -> list[str]:
    """The source line and a caret line under the span's part on that line."""
    span = d.span
    text = source.line_text(span.line)
    start = min(max(span.column - 1, 0), len(text))
    end = span.end_column - 1 if span.end_line == span.line else len(text)
    end = max(end, start + 1)
    # The span may run past the end of the line (a missing `}` at end of file): one cell per column.
    carets = max(_width(text[start:end]) + max(end - max(len(text), start), 0), 1)
    shown = "".join(_display_char(ch) for ch in text)
    number = str(span.line).rjust(gutter_width)
    bar = palette.gutter("|")
    marker = palette.severity(d.severity, "^" * carets)
    return [
        f"{palette.gutter(' ' + number)} {bar} {shown}".rstrip(),
        f"{' ' * (gutter_width + 1)} {bar} {' ' * _width(text[:start])}{marker}",
    ]


def _render_one(d: Diagnostic, sources: Mapping[str, Source], palette: _Palette) -> str:
    label = f"{d.severity.value}[{d.code}]"
    lines = [f"{palette.bold(_location(d) + ':')} {palette.severity(d.severity, label)}"
             f"{palette.bold(': ' + d.message)}"]
    source = sources.get(d.path)
    gutter_width = len(str(d.span.line)) if d.span.line > 0 else 1
    if source is not None and d.span.line > 0:
        lines.extend(_snippet(d, source, palette, gutter_width))
    # `=` sits under the gutter's `|`, as in rustc and Ruff.
    indent = " " * (gutter_width + 1)
    if d.help:
        lines.append(f"{indent} {palette.gutter('=')} {palette.bold('help')}: {d.help}")
    lines.extend(f"{indent} {palette.gutter('=')} {palette.bold('note')}: {note}" for note in d.notes)
    return "\n".join(lines)


def render_text(
    diagnostics: Sequence[Diagnostic], sources: Mapping[str, Source], *, color: bool = False
) -> str:
    """Diagnostics as a human reads them: header, source line, carets, help and notes.

    The diagnostics are rendered in the order given, separated by a blank line; the result has no
    trailing newline and is empty for no diagnostics. The summary line is `render_summary`'s job.
    """
    palette = _Palette(color)
    return "\n\n".join(_render_one(d, sources, palette) for d in diagnostics)


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def render_summary(diagnostics: Sequence[Diagnostic], files_checked: int) -> str:
    """The closing line of `lint`: '3 files checked: 2 errors, 1 warning.' or '...: no problems.'"""
    counts = {severity: 0 for severity in Severity}
    for d in diagnostics:
        counts[d.severity] += 1
    parts = [
        _plural(counts[Severity.ERROR], "error"),
        _plural(counts[Severity.WARNING], "warning"),
        _plural(counts[Severity.INFO], "info", "infos"),
    ]
    found = [part for part, severity in zip(parts, Severity, strict=True) if counts[severity]]
    head = _plural(files_checked, "file") + " checked"
    return f"{head}: {', '.join(found) if found else 'no problems'}."


# ---- JSON ----------------------------------------------------------------------------------------


def _as_json_object(d: Diagnostic) -> dict[str, Any]:
    return {
        "path": d.path,
        "line": d.span.line,
        "column": d.span.column,
        "end_line": d.span.end_line,
        "end_column": d.span.end_column,
        "severity": d.severity.value,
        "code": d.code,
        "name": d.name,
        "message": d.message,
        "help": d.help,
        "notes": list(d.notes),
    }


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """A JSON list with one object per diagnostic (columns are 1-based character counts)."""
    return json.dumps([_as_json_object(d) for d in diagnostics], indent=2, ensure_ascii=False)


# ---- GitHub Actions ------------------------------------------------------------------------------


def _github_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github_property(text: str) -> str:
    return _github_data(text).replace(":", "%3A").replace(",", "%2C")


def _full_message(d: Diagnostic) -> str:
    """The message with help and notes on their own lines, for formats without separate fields."""
    lines = [d.message]
    if d.help:
        lines.append(f"help: {d.help}")
    lines.extend(f"note: {note}" for note in d.notes)
    return "\n".join(lines)


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands (`::error file=...::message`), one line per diagnostic."""
    lines = []
    for d in diagnostics:
        props = [("file", d.path)]
        if d.span.line > 0:
            props += [
                ("line", str(d.span.line)),
                ("col", str(d.span.column)),
                ("endLine", str(d.span.end_line)),
                ("endColumn", str(d.span.end_column)),
            ]
        props.append(("title", f"{d.code} {d.name}"))
        rendered = ",".join(f"{key}={_github_property(value)}" for key, value in props)
        lines.append(f"::{_GITHUB_COMMAND[d.severity]} {rendered}::{_github_data(_full_message(d))}")
    return "\n".join(lines)


# ---- SARIF ---------------------------------------------------------------------------------------


def _artifact_location(path: str) -> dict[str, str]:
    """A SARIF artifactLocation: relative paths stay relative to %SRCROOT%, absolute ones are file URIs."""
    posix = path.replace("\\", "/")
    if posix.startswith("/"):
        return {"uri": PurePosixPath(posix).as_uri()}
    if PureWindowsPath(path).is_absolute():
        return {"uri": PureWindowsPath(path).as_uri()}
    return {"uri": quote(posix, safe="/"), "uriBaseId": "%SRCROOT%"}


def _sarif_rule(code: Code) -> dict[str, Any]:
    return {
        "id": code.code,
        "name": code.name,
        "shortDescription": {"text": code.summary},
        "fullDescription": {"text": code.why},
        "help": {"text": code.fix},
        "defaultConfiguration": {"level": _SARIF_LEVEL[code.severity]},
    }


def _sarif_result(d: Diagnostic, rule_index: Mapping[str, int]) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact_location(d.path)}
    if d.span.line > 0:
        physical["region"] = {
            "startLine": d.span.line,
            "startColumn": d.span.column,
            "endLine": d.span.end_line,
            "endColumn": d.span.end_column,
        }
    result: dict[str, Any] = {"ruleId": d.code}
    if d.code in rule_index:
        result["ruleIndex"] = rule_index[d.code]
    result["level"] = _SARIF_LEVEL[d.severity]
    result["message"] = {"text": _full_message(d)}
    result["locations"] = [{"physicalLocation": physical}]
    return result


def render_sarif(diagnostics: Sequence[Diagnostic], *, tool_version: str) -> str:
    """A SARIF 2.1.0 log with one run: every code in the catalogue as a rule, every diagnostic a result."""
    rules = [_sarif_rule(code) for code in CODES.values()]
    rule_index = {rule["id"]: i for i, rule in enumerate(rules)}
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pushlang",
                        "informationUri": INFORMATION_URI,
                        "version": tool_version,
                        "rules": rules,
                    }
                },
                # Span columns count characters, not SARIF's default UTF-16 code units.
                "columnKind": "unicodeCodePoints",
                "results": [_sarif_result(d, rule_index) for d in diagnostics],
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)


# ---- dispatch and explain ------------------------------------------------------------------------


def render(
    fmt: str,
    diagnostics: Sequence[Diagnostic],
    sources: Mapping[str, Source],
    *,
    color: bool = False,
    tool_version: str = "0.0.0",
) -> str:
    """Diagnostics in one of `FORMATS` (a `ValueError` for any other name)."""
    if fmt == "text":
        return render_text(diagnostics, sources, color=color)
    if fmt == "json":
        return render_json(diagnostics)
    if fmt == "github":
        return render_github(diagnostics)
    if fmt == "sarif":
        return render_sarif(diagnostics, tool_version=tool_version)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _prose(text: str) -> str:
    return textwrap.fill(
        text, width=88, initial_indent="  ", subsequent_indent="  ",
        break_long_words=False, break_on_hyphens=False,
    )


def render_explain(code: Code) -> str:
    """What `pushlang explain CODE` prints: the code's summary, why it matters, an example, the fix."""
    example = textwrap.indent(code.example, "    ")
    return "\n".join([
        f"{code.code} {code.name} ({code.severity.value})",
        "",
        textwrap.fill(code.summary, width=88, break_long_words=False, break_on_hyphens=False),
        "",
        "Why:",
        _prose(code.why),
        "",
        "Example:",
        "",
        example,
        "",
        "Fix:",
        _prose(code.fix),
    ])
