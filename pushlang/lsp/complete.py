"""Completion: what may be written at the cursor of a .push file, by context.

The contexts the REPL's Tab knows (the items of a `when` block, the periods after `per`, the words of a
winner test, `then` and `else` of an open `if`) are answered by the REPL's own code (`repl.text_completions`);
the file adds the names in scope across its imports, the schema's events and properties, filters, icons,
time zones and import paths."""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pushlang import ast
from pushlang.builtins import FILTERS, FUNCTIONS, PLATFORMS, PUSH_EVENTS, URGENCIES, WEEKDAYS
from pushlang.lsp.locate import line_state, nodes
from pushlang.lsp.workspace import SKIPPED_FOLDERS, Checked
from pushlang.repl import open_blocks, text_completions
from pushlang.resources import stdlib_dir
from pushlang.schema import BUILTIN_EVENT, BUILTIN_USER, PropertySpec
from pushlang.syntax.keywords import DECLARATIONS, KEYWORDS

Kind = Literal["keyword", "segment", "template", "event", "property", "filter", "function", "value",
               "timezone", "module"]


@dataclass(frozen=True)
class Candidate:
    label: str
    kind: Kind
    detail: str | None = None


@dataclass(frozen=True)
class Completions:
    """What may complete the word that starts at ``start`` (1-based column) and ends at the cursor."""

    start: int
    candidates: list[Candidate]


@dataclass
class Known:
    """What a file can name: its names in scope (name → where it is defined), the events and properties of
    the schema and of the files, and the icons of the config (``path``: the file)."""

    segments: dict[str, str]
    templates: dict[str, str]
    events: dict[str, str]  # event → where it is known from
    user_properties: dict[str, str]  # property → its type
    event_properties: dict[str, dict[str, str]]  # event → property → its type
    icons: dict[str, str]
    path: Path


def known(checked: Checked) -> Known:
    ctx = checked.definitions
    schema = checked.schema

    def where(path: str, span: object) -> str:
        line = getattr(span, "line", 0)
        return f"{path}:{line}"

    events: dict[str, str] = {}
    user: dict[str, str] = {name: "string" for name in sorted(BUILTIN_USER)}
    per_event: dict[str, dict[str, str]] = {}
    if schema is not None:
        events.update((e, "schema") for e in schema.events)
        user.update((name, _type(spec)) for name, spec in schema.user_properties.items())
        per_event = {e: {name: _type(spec) for name, spec in props.items()} for e, props in schema.events.items()}
    events.update((e, "sent by the service worker") for e in PUSH_EVENTS if e not in events)
    used_event_props: set[str] = set()
    for loaded in ctx.program.files.values():
        for node in nodes(loaded.module):
            if isinstance(node, (ast.OnTrigger, ast.Unless, ast.Did, ast.Conversion)):
                events.setdefault(node.event, f"used in {loaded.source.path}")
            elif isinstance(node, ast.Prop) and node.path:
                if node.root == "user":
                    user.setdefault(node.path[0], "used")
                else:
                    used_event_props.add(node.path[0])
    for event in events:
        props = per_event.setdefault(event, {})
        if not props:  # nothing known of this event: the properties the files read of events
            props.update((p, "used") for p in sorted(used_event_props))
        props.update((p, "built in") for p in sorted(BUILTIN_EVENT))
    return Known(
        segments={name: where(d.path, d.node.name_span) for name, d in ctx.segments.items()},
        templates={name: where(d.path, d.node.name_span) for name, d in ctx.templates.items()},
        events=events,
        user_properties=user,
        event_properties=per_event,
        icons=dict(checked.config.icons),
        path=checked.path,
    )


def _type(spec: PropertySpec) -> str:
    return f"{spec.type}, required" if spec.required else spec.type


IMPORTABLE = 200  # files below an importing file's folder that completion offers at most


def importable(path: Path) -> list[str]:
    """What ``path`` can import: the standard library's modules, the .push files below its folder."""
    std = sorted(f"std/{p.stem}" for p in stdlib_dir().glob("*.push"))
    folder, near = path.parent, []
    for top, dirs, entries in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
        near += [Path(top, e) for e in sorted(entries) if e.endswith(".push") and Path(top, e) != path]
        if len(near) >= IMPORTABLE:
            break
    return std + [f"./{p.relative_to(folder).as_posix()}" for p in near[:IMPORTABLE]]


@cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


_GENERAL = [*KEYWORDS, *FUNCTIONS]
_PROPERTY = re.compile(r"(?<![\w.@])(user|event|trigger)\.(\w*)$")
_SHORT_PROPERTY = re.compile(r"(?<!@)@(user|event|trigger)\.(\w*)$")
_EVENT_HERE = re.compile(r"""\b(?:on|unless|did(?:\s+not)?|conversion)\s+"([^"\n]+)\"""")
_TRIGGER = re.compile(r"""^\s*on\s+"([^"\n]+)\"""", re.MULTILINE)
_CAMPAIGN = re.compile(r"^campaign\b", re.MULTILINE)
_WORD_END = re.compile(r"[\w-]*$")


def complete(text: str, line: int, column: int, known: Known) -> Completions | None:
    """What may complete the word before the cursor at (``line``, ``column``) of ``text``."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    tail = lines[line - 1][:column - 1]
    earlier = "\n".join(lines[:line - 1])
    state = line_state(tail)
    if state.where == "comment":
        return None
    if state.where == "string":
        return _in_string(tail, state.text_start, earlier, known)
    if state.where == "template":
        return _in_expression(tail, state.expr_start, earlier, known)
    return _in_code(tail, earlier, known)


def _found(tail: str, word: str, candidates: list[Candidate]) -> Completions | None:
    return Completions(len(tail) - len(word) + 1, candidates) if candidates else None


def _in_string(tail: str, start: int, earlier: str, known: Known) -> Completions | None:
    before, typed = tail[:start - 1], tail[start:]
    if m := _SHORT_PROPERTY.search(typed):
        return _properties(tail, m.group(1), m.group(2), earlier, known)
    if re.search(r"\btimezone\s*$", before):
        return _found(tail, typed, [Candidate(z, "timezone") for z in time_zones()])
    if re.search(r"^\s*import\s*$", before):
        return _found(tail, typed, [Candidate(i, "module") for i in importable(known.path)])
    if re.search(r"\b(on|unless|did|not|conversion|by)\s*$", before) or \
            (re.search(r"\bbest\s+time\b.*\bby\b", before) and before.rstrip().endswith(",")):
        return _found(tail, typed, [Candidate(e, "event", where) for e, where in known.events.items()])
    return None


def _in_expression(tail: str, start: int, earlier: str, known: Known) -> Completions | None:
    expr = tail[start:]
    if m := re.search(r"\|\s*(\w*)$", expr):
        return _found(tail, m.group(1), [Candidate(name, "filter", doc) for name, (_, _, doc) in FILTERS.items()])
    if m := _PROPERTY.search(expr):
        return _properties(tail, m.group(1), m.group(2), earlier, known)
    word = _WORD_END.search(expr)
    typed = word.group() if word else ""
    roots = [Candidate(r, "keyword", f"{r}.NAME") for r in ("user", "event", "trigger")]
    functions = [Candidate(name, "function", doc) for name, (_, _, doc) in FUNCTIONS.items()]
    return _found(tail, typed, [c for c in [*roots, *functions] if c.label.startswith(typed)])


def _in_code(tail: str, earlier: str, known: Known) -> Completions | None:
    if m := _PROPERTY.search(tail):
        return _properties(tail, m.group(1), m.group(2), earlier, known)
    blocks = open_blocks(f"{earlier}\n{tail}")
    if blocks and (m := re.search(r"\bsegment\s+(\w*)$", tail)):
        return _found(tail, m.group(1), [Candidate(n, "segment", w) for n, w in known.segments.items()])
    if m := re.search(r"\buse\s+(\w*)$", tail):
        return _found(tail, m.group(1), [Candidate(n, "template", w) for n, w in known.templates.items()])
    if m := re.search(r"\bicon\s+default\s+(\w*)$", tail):
        return _found(tail, m.group(1), [Candidate(n, "value", url) for n, url in sorted(known.icons.items())])
    if m := re.search(r"\burgency\s+([\w-]*)$", tail):
        return _found(tail, m.group(1), [Candidate(u, "value") for u in URGENCIES])
    if m := re.search(r"^\s*platforms\s+(?:[\w-]+\s*,\s*)*([\w-]*)$", tail):
        return _found(tail, m.group(1), [Candidate(p, "value") for p in PLATFORMS])
    if m := re.search(r"^\s*send\s+every\s+((?:[\w-]+\s*,\s*)*)(\w*)$", tail):
        days = [Candidate(d, "value") for d in WEEKDAYS]
        first = [] if m.group(1) else [Candidate("day", "keyword"), Candidate("month", "keyword")]
        return _found(tail, m.group(2), [*first, *days])
    if not blocks and re.fullmatch(r"\s*\w*", tail):
        word = tail.strip()
        return _found(tail, word, [Candidate(d, "keyword") for d in DECLARATIONS if d.startswith(word)])
    word, words = text_completions(tail, earlier, lambda: _GENERAL)
    names = set(FUNCTIONS) - set(KEYWORDS)
    return _found(tail, word, [Candidate(w, "function" if w in names else "keyword", FUNCTIONS[w][2]
                                         if w in names else None) for w in words])


def _properties(tail: str, root: str, typed: str, earlier: str, known: Known) -> Completions | None:
    if root == "user":
        props = known.user_properties
    else:
        event = _event_in_scope(tail, earlier, root)
        if event is not None:
            props = known.event_properties.get(event, {})
        else:  # unknown here: every event's
            props = {p: t for table in known.event_properties.values() for p, t in table.items()}
    return _found(tail, typed, [Candidate(p, "property", t) for p, t in sorted(props.items())])


def _event_in_scope(tail: str, earlier: str, root: str) -> str | None:
    """The event ``event.`` reads at the end of ``tail``: of the `did`, `unless`, `conversion` or `on` on
    this line, else (and for ``trigger.``) the trigger of the campaign the line is in."""
    if root == "event":
        here = _EVENT_HERE.findall(tail)
        if here:
            return str(here[-1])
    starts = list(_CAMPAIGN.finditer(earlier))
    if not starts:
        return None
    found = _TRIGGER.findall(earlier[starts[-1].start():] + "\n" + tail)
    return str(found[0]) if found else None
