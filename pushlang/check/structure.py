"""Checks on a campaign's shape: one trigger, items given once, a message, and what names mean where."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pushlang import ast
from pushlang.check.context import CheckContext, Scope, field_texts, message_words, scoped_props, walk
from pushlang.diagnostics import codes
from pushlang.source import Span
from pushlang.syntax.literals import duration_text

# Variants (`message ID P% ...`) are not `message` given twice: check/experiments.py checks them.
_ONCE_GROUPS = ("who", "when", "plain_messages", "controls", "conversions", "labels", "platforms", "tests")
_GROUP_WORD = {"who": "who", "when": "when", "plain_messages": "message", "controls": "control group",
               "conversions": "conversion", "labels": "labels", "platforms": "platforms",
               "tests": "test ... then winner"}
# `when` items whose kind is not how they are written.
_WHEN_WORDS = {"user_timezone": "deliver in user timezone", "best_time": "deliver at best time"}


def one_trigger(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        if not view.triggers:
            ctx.report(codes.MISSING_TRIGGER, view.path, view.node.id_span,
                       f"campaign `{view.node.id}` has no trigger or schedule",
                       help='add `on "EVENT"` for a live campaign or `send ...` for a scheduled one')
        for extra in view.triggers[1:]:
            first = view.triggers[0]
            ctx.report(codes.MULTIPLE_TRIGGERS, view.path, extra.span,
                       f"campaign `{view.node.id}` has more than one trigger or schedule",
                       notes=(f"the first is at line {first.span.line}",),
                       help="a campaign has exactly one; split it into two campaigns")


def items_once(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        for group in _ONCE_GROUPS:
            items: Sequence[ast.CampaignItem] = getattr(view, group)
            for extra in items[1:]:
                _duplicate(ctx, view.path, extra.span, f"`{_GROUP_WORD[group]}`", items[0].span)
        seen: dict[str, ast.WhenItem] = {}
        for block in view.when:
            for item in block.items:
                key = item.kind
                what = f"`{_WHEN_WORDS.get(key, key.replace('_', ' '))}`"
                if key == "limit":
                    period = item.values[1]
                    if period.kind == "duration":  # rolling windows of one length are one period
                        key, what = f"limit per {period.value}s", f"a rolling `limit` over {_length(period.value)}"
                    else:
                        key = what = f"`limit per {period.value}`"
                if key in seen:
                    _duplicate(ctx, view.path, item.span, what, seen[key].span)
                else:
                    seen[key] = item
    for fields, path in ctx.written_fields():
        _fields_once(ctx, fields, path)


def _length(seconds: object) -> str:
    """A window's length in its largest whole unit, quoted: 86400 → `1d`."""
    return f"`{duration_text(seconds)}`" if isinstance(seconds, int) and seconds > 0 else f"`{seconds}s`"


def _fields_once(ctx: CheckContext, fields: Sequence[ast.MessageField], path: str) -> None:
    seen: dict[str, ast.MessageField] = {}
    for f in fields:
        if isinstance(f, ast.Button):
            continue
        if f.name in seen:
            _duplicate(ctx, path, f.span, f"`{f.name}`", seen[f.name].span)
        else:
            seen[f.name] = f


def _duplicate(ctx: CheckContext, path: str, span: Span, what: str, first: Span) -> None:
    ctx.report(codes.DUPLICATE_ITEM, path, span, f"{what} is given twice",
               notes=(f"the first is at line {first.line}",), help="keep one")


def message_complete(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        if not view.messages:
            ctx.report(codes.MISSING_MESSAGE_FIELD, view.path, view.node.id_span,
                       f"campaign `{view.node.id}` has no message",
                       help='add `message { title "..." body "..." }` or `message use TEMPLATE`')
            continue
        for message in view.sent_messages:
            if message.use is not None and message.use not in ctx.templates:
                continue  # reported as an unknown template
            fields = ctx.effective_message(view, message)
            missing = [name for name in ("title", "body") if name not in fields]
            if missing:
                ctx.report(codes.MISSING_MESSAGE_FIELD, view.path, message.span,
                           f"{message_words(message)} has no {' and no '.join(missing)}",
                           help=" ".join(f'add `{name} "..."`' for name in missing))


def scopes(ctx: CheckContext) -> None:
    """`event.*` needs a triggering event; `trigger.*` exists only in `unless ... where`."""
    for view in ctx.campaigns:
        for expr, scope, path in ctx.campaign_expressions(view):
            _scope_props(ctx, expr, scope, path, view.node.id)
    standalone = Scope(event="", where="definition")
    for seg in ctx.all_segments:
        for cond in seg.node.conditions:
            _scope_props(ctx, cond, standalone, seg.path, None)
    for tpl in ctx.all_templates:
        for fields in (tpl.node.fields, *(b.fields for b in tpl.node.langs)):
            for expr in _template_expressions(fields):
                _scope_props(ctx, expr, standalone, tpl.path, None)


def _template_expressions(fields: tuple[ast.MessageField, ...]) -> Iterator[ast.Expr]:
    for text in field_texts(fields):
        for part in text.parts:
            if isinstance(part, ast.Interpolation):
                yield part.expr


def _scope_props(ctx: CheckContext, expr: ast.Expr, scope: Scope, path: str, campaign: str | None) -> None:
    for prop, where in scoped_props(expr, scope):
        if prop.root == "event" and where.event is None:
            ctx.report(codes.EVENT_IN_SCHEDULED, path, prop.span,
                       f"`{prop.dotted()}` in a scheduled campaign, which has no triggering event",
                       notes=(f"used by campaign `{campaign}`",) if campaign else (),
                       help="use `user.*` or a `did ...` condition, or make the campaign live with `on \"E\"`")
        elif prop.root == "trigger" and where.trigger is None:
            ctx.report(codes.TRIGGER_OUTSIDE_UNLESS, path, prop.span,
                       f"`{prop.dotted()}` outside the `where` of an `unless` clause",
                       help=f"the triggering event is `event.{'.'.join(prop.path)}` here")


def behaviour_conditions(ctx: CheckContext) -> None:
    expressions = [(cond, seg.path) for seg in ctx.all_segments for cond in seg.node.conditions]
    expressions += [(e, view.path) for view in ctx.campaigns for e in view.own_expressions()]
    for expr, path in expressions:
        for node in walk(expr):
            if isinstance(node, ast.Did) and node.negated and node.count_op is not None:
                ctx.report(codes.DID_NOT_WITH_COUNT, path, node.span,
                           f"`did not` with a count (`{node.count_op} {node.count} times`)",
                           help="`did not` means zero times; write `did ... at most N times` instead")
    for view in ctx.campaigns:
        trigger = view.trigger
        if isinstance(trigger, ast.OnTrigger) and trigger.unless is not None:
            unless = trigger.unless
            if unless.event == trigger.event and unless.where is None:
                ctx.report(codes.SAME_EVENT_UNLESS, view.path, unless.event_span,
                           f"`unless \"{unless.event}\"` is the trigger event itself",
                           help="use another event, or add `where` to tell them apart")


def live_only_options(ctx: CheckContext) -> None:
    """Options of scheduled campaigns given in a live one: `deliver in user timezone` and `cutoff` do
    nothing there (a warning); `deliver at best time` has no occurrence to move (an error, SPEC §12.6)."""
    for view in ctx.campaigns:
        if view.scheduled or view.trigger is None:
            continue
        for kind, words in (("user_timezone", "deliver in user timezone"), ("cutoff", "cutoff")):
            for item in view.when_items(kind):
                ctx.report(codes.SCHEDULED_ONLY_OPTION, view.path, item.span,
                           f"`{words}` has no effect in a live campaign",
                           help="it applies to scheduled send times; remove it")
        for item in view.when_items("best_time"):
            ctx.report(codes.BEST_TIME_ON_LIVE, view.path, item.span,
                       "`deliver at best time` needs a scheduled campaign: "
                       "a live one decides each user at their event",
                       help="remove the line, or schedule the campaign with `send ...`")
