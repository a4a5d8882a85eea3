"""Checks on names: duplicates, unknown segments/templates/functions/filters/icons, fixed words."""

from __future__ import annotations

from collections.abc import Sequence

from pushlang import ast
from pushlang.builtins import FILTERS, FUNCTIONS, PLATFORMS, URGENCIES, WEEKDAYS
from pushlang.check.context import CheckContext, Def, field_texts, walk
from pushlang.diagnostics import codes
from pushlang.diagnostics.sink import did_you_mean
from pushlang.resources import stdlib_dir
from pushlang.source import Span


def duplicate_names(ctx: CheckContext) -> None:
    _duplicates(ctx, ctx.all_segments, "segment", codes.DUPLICATE_NAME)
    _duplicates(ctx, ctx.all_templates, "template", codes.DUPLICATE_NAME)
    _duplicates(ctx, [c.definition for c in ctx.campaigns], "campaign id", codes.DUPLICATE_CAMPAIGN)


def _duplicates(ctx: CheckContext, defs: Sequence[Def[ast.SegmentDef] | Def[ast.TemplateDef] | Def[ast.CampaignDef]],
                what: str, code: codes.Code) -> None:
    first: dict[str, Def[ast.SegmentDef] | Def[ast.TemplateDef] | Def[ast.CampaignDef]] = {}
    std = stdlib_dir().resolve()
    stdlib = {f.source.path for resolved, f in ctx.program.files.items() if resolved.is_relative_to(std)}
    for d in defs:
        name = d.node.id if isinstance(d.node, ast.CampaignDef) else d.node.name
        span = d.node.id_span if isinstance(d.node, ast.CampaignDef) else d.node.name_span
        if name not in first:
            first[name] = d
            continue
        other = first[name]
        other_span = other.node.id_span if isinstance(other.node, ast.CampaignDef) else other.node.name_span
        note = f"first defined at {other.path}:{other_span.line}:{other_span.column}"
        if d.path in stdlib and other.path not in stdlib:
            # An imported standard module comes after the file that imports it; the name to
            # change is the one in the user's file, so that is where the error goes.
            note = f"the standard library defines it at {d.path}:{span.line}:{span.column}"
            d, span = other, other_span
        ctx.report(code, d.path, span, f"{what} `{name}` is defined twice", notes=(note,),
                   help="names are global across every file one command loads: rename one of them")


def unknown_names(ctx: CheckContext) -> None:
    """Segments, functions and filters used anywhere, templates used by messages, icons."""
    for seg in ctx.all_segments:
        for cond in seg.node.conditions:
            _expression_names(ctx, cond, seg.path)
    for fields, path in ctx.written_fields():
        _field_names(ctx, fields, path)
    for view in ctx.campaigns:
        for expr in view.own_expressions():
            _expression_names(ctx, expr, view.path)
        for message in view.messages:
            if message.use is not None and message.use not in ctx.templates:
                assert message.use_span is not None
                ctx.report(codes.UNKNOWN_TEMPLATE, view.path, message.use_span,
                           f"unknown template `{message.use}`",
                           help=did_you_mean(message.use, ctx.templates) or _define_hint("template"))


def _define_hint(kind: str) -> str:
    return f"define it with `{kind} NAME {{ ... }}` or import the file that has it"


def _field_names(ctx: CheckContext, fields: tuple[ast.MessageField, ...], path: str) -> None:
    for text in field_texts(fields):
        for part in text.parts:
            if not isinstance(part, ast.Interpolation):
                continue
            _expression_names(ctx, part.expr, path)
            for f in part.filters:
                if f.arg is not None:
                    _expression_names(ctx, f.arg, path)
                if f.name not in FILTERS:
                    ctx.report(codes.UNKNOWN_FILTER, path, f.span, f"unknown filter `{f.name}`",
                               help=did_you_mean(f.name, FILTERS) or "filters: " + ", ".join(FILTERS))
                    continue
                low, high, _ = FILTERS[f.name]
                given = 0 if f.arg is None else 1
                if not low <= given <= high:
                    ctx.report(codes.WRONG_ARGUMENTS, path, f.span,
                               f"filter `{f.name}` takes {'an argument' if low else 'no argument'}",
                               help=f"write `{f.name}: VALUE`" if low else f"write `| {f.name}`")
                elif f.name in ("truncate", "round") and not (
                        isinstance(f.arg, ast.Literal) and isinstance(f.arg.value, int)
                        and not isinstance(f.arg.value, bool) and f.arg.value >= 0):
                    ctx.report(codes.WRONG_ARGUMENTS, path, f.span,
                               f"filter `{f.name}` takes a whole number", help=f"e.g. `{f.name}: 2`")
    for field in fields:
        if isinstance(field, ast.IconDefault) and field.icon not in ctx.config.icons:
            ctx.report(codes.UNKNOWN_ICON, path, field.name_span, f"unknown icon `{field.icon}`",
                       help=did_you_mean(field.icon, ctx.config.icons)
                       or "icons: " + ", ".join(sorted(ctx.config.icons)))


def _expression_names(ctx: CheckContext, expr: ast.Expr, path: str) -> None:
    for node in walk(expr):
        if isinstance(node, ast.SegmentRef) and node.name not in ctx.segments:
            ctx.report(codes.UNKNOWN_SEGMENT, path, node.name_span, f"unknown segment `{node.name}`",
                       help=did_you_mean(node.name, ctx.segments) or _define_hint("segment"))
        elif isinstance(node, ast.Call):
            if node.name not in FUNCTIONS:
                ctx.report(codes.UNKNOWN_FUNCTION, path, node.name_span, f"unknown function `{node.name}`",
                           help=did_you_mean(node.name, FUNCTIONS) or "functions: " + ", ".join(FUNCTIONS))
                continue
            low, high, doc = FUNCTIONS[node.name]
            if not low <= len(node.args) <= high:
                count = "no arguments" if high == 0 else ("1 argument" if high == 1 else f"{high} arguments")
                ctx.report(codes.WRONG_ARGUMENTS, path, node.span,
                           f"`{node.name}()` takes {count}, not {len(node.args)}",
                           help=f"`{node.name}({', '.join(['x'] * high)})` is {doc}")


def segment_cycles(ctx: CheckContext) -> None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(name: str, chain: list[str]) -> None:
        state[name] = 1
        segment = ctx.segments[name]
        for cond in segment.node.conditions:
            for node in walk(cond):
                if not isinstance(node, ast.SegmentRef) or node.name not in ctx.segments:
                    continue
                if state.get(node.name) == 1:
                    cycle = " → ".join([*chain[chain.index(node.name):], node.name])
                    ctx.report(codes.SEGMENT_CYCLE, segment.path, node.span, f"segment cycle: {cycle}")
                elif node.name not in state:
                    visit(node.name, [*chain, node.name])
        state[name] = 2

    for name in ctx.segments:
        if name not in state:
            visit(name, [name])


def fixed_words(ctx: CheckContext) -> None:
    """Platforms, weekdays and urgencies must be one of their fixed sets."""
    for view in ctx.campaigns:
        for block in view.platforms:
            for p in block.platforms:
                _choice(ctx, view.path, p.value, p, PLATFORMS, "platform")
        for t in view.triggers:
            if isinstance(t, ast.Schedule):
                for day in t.weekdays:
                    _choice(ctx, view.path, day.value, day, WEEKDAYS, "weekday")
    fields = [(f, path) for group, path in ctx.written_fields() for f in group]
    for f, path in fields:
        if isinstance(f, ast.Urgency):
            # The level is the last word of the field: point at it, not at `urgency`.
            end = f.span
            level = ast.Name(f.level, Span(end.end_line, end.end_column - len(f.level), end.end_line, end.end_column))
            _choice(ctx, path, f.level, level, URGENCIES, "urgency")


_PLURAL = {"platform": "platforms", "weekday": "weekdays", "urgency": "urgencies"}


def _choice(ctx: CheckContext, path: str, value: str, node: ast.Name,
            allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        ctx.report(codes.UNKNOWN_CHOICE, path, node.span, f"unknown {what} `{value}`",
                   help=did_you_mean(value, allowed) or f"{_PLURAL[what]}: " + ", ".join(allowed))
