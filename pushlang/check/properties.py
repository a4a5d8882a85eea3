"""Checks against the event schema (``--schema``): events, properties, personalisation defaults."""

from __future__ import annotations

from pushlang import ast
from pushlang.builtins import PUSH_EVENTS
from pushlang.check.context import CheckContext, Scope, field_texts, scoped_props, walk
from pushlang.diagnostics import codes
from pushlang.diagnostics.sink import did_you_mean
from pushlang.schema import BUILTIN_EVENT, BUILTIN_USER, Schema
from pushlang.source import Span


def known_events(ctx: CheckContext) -> None:
    schema = ctx.schema
    if schema is None:
        return
    known = set(schema.events) | set(PUSH_EVENTS)
    seen: list[tuple[str, Span, str]] = []
    for view in ctx.campaigns:
        for t in view.triggers:
            if isinstance(t, ast.OnTrigger):
                seen.append((t.event, t.event_span, view.path))
                if t.unless is not None:
                    seen.append((t.unless.event, t.unless.event_span, view.path))
        seen += [(c.event, c.event_span, view.path) for c in view.conversions]
        seen += [(str(v.value), v.span, view.path) for item in view.when_items("best_time")
                 for v in item.values if v.kind == "string" and isinstance(v.value, str)]
        for expr in view.own_expressions():
            seen += [(n.event, n.event_span, view.path) for n in walk(expr) if isinstance(n, ast.Did)]
    for seg in ctx.all_segments:
        for cond in seg.node.conditions:
            seen += [(n.event, n.event_span, seg.path) for n in walk(cond) if isinstance(n, ast.Did)]
    for name, span, path in seen:
        if name not in known:
            ctx.report(codes.UNKNOWN_EVENT, path, span, f"event \"{name}\" is not in the schema",
                       help=did_you_mean(name, known) or "add it to the schema's [events] if it is right")


def known_properties(ctx: CheckContext) -> None:
    schema = ctx.schema
    if schema is None:
        return
    for view in ctx.campaigns:
        for expr, scope, path in ctx.campaign_expressions(view):
            for prop, where in scoped_props(expr, scope):
                _check_prop(ctx, schema, prop, where, path)


def _check_prop(ctx: CheckContext, schema: Schema, prop: ast.Prop, scope: Scope, path: str) -> None:
    if not prop.path:
        return
    name = prop.path[0]
    if prop.root == "user":
        known, builtin, what = schema.user_properties, BUILTIN_USER, "profiles"
    else:
        event = scope.trigger if prop.root == "trigger" else scope.event
        if not event or event not in schema.events:
            return
        known, builtin, what = schema.events[event], BUILTIN_EVENT, f'"{event}" events'
    if name not in known and name not in builtin:
        ctx.report(codes.UNKNOWN_PROPERTY, path, prop.span, f"`{prop.dotted()}`: {what} have no property `{name}`",
                   help=did_you_mean(name, [*known, *builtin]) or "add it to the schema if it is right")


def personalisation_defaults(ctx: CheckContext) -> None:
    schema = ctx.schema
    if schema is None:
        return
    for view in ctx.campaigns:
        scope = view.scope()
        for fields, path in ctx.sent_fields(view):
            for text in field_texts(fields):
                for part in text.parts:
                    if not isinstance(part, ast.Interpolation) or any(f.name == "default" for f in part.filters):
                        continue
                    conditions = _in_conditions(part.expr)
                    for prop, where in scoped_props(part.expr, scope):
                        if id(prop) in conditions:
                            continue  # a missing property makes an `if` take its `else`, not the text missing
                        event = where.trigger if prop.root == "trigger" else where.event
                        if prop.path and not schema.guarantees(prop.root, event, prop.path[0]):
                            ctx.report(codes.PERSONALISATION_WITHOUT_DEFAULT, path, part.span,
                                       f"`{prop.dotted()}` may be missing: such users get no push",
                                       help=f"add a default: `@{{{prop.dotted()} | default: '...'}}`, "
                                            "or mark the property required in the schema")


def _in_conditions(expr: ast.Expr) -> set[int]:
    """The properties read only by the condition of an `if … then … else …` (SPEC §6: a missing one
    gives the `else` branch), by identity."""
    return {id(node) for branch in walk(expr, into_did=False) if isinstance(branch, ast.IfThen)
            for node in walk(branch.cond, into_did=False) if isinstance(node, ast.Prop)}
