"""Compile .push files into a checked plan: load, check, and lower the AST to plan Structs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import reduce
from typing import TextIO

import msgspec

from pushlang import ast, plan
from pushlang.builtins import PLATFORMS, WEEKDAYS
from pushlang.check import CampaignView, CheckContext, run_checks
from pushlang.check.experiments import basis_points
from pushlang.config import Config, find_config, load_config
from pushlang.diagnostics import Diagnostic, Sink, codes
from pushlang.loader import Loader, Program
from pushlang.schema import Schema, load_schema
from pushlang.source import Source


@dataclass
class CompileResult:
    plan: plan.Plan | None  # None when any error was found
    diagnostics: list[Diagnostic]
    sources: dict[str, Source] = field(default_factory=dict)
    config: Config = field(default_factory=Config)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)

    def report(self, stream: TextIO | None = None) -> None:
        """What a command shows on stderr after compiling: the diagnostics (in colour on a terminal,
        unless NO_COLOR), and when there is no plan, the one-line summary."""
        from pushlang.diagnostics.render import render_summary, render_text, use_color

        out = sys.stderr if stream is None else stream
        if self.diagnostics:
            print(render_text(self.diagnostics, self.sources, color=use_color(out)) + "\n", file=out)
        if self.plan is None:
            print(render_summary(self.diagnostics, len(self.sources)), file=out)


def compile_paths(paths: list[str], *, config_path: str | None = None, schema_path: str | None = None,
                  config: Config | None = None) -> CompileResult:
    """Compile files and directories as the CLI does (config and schema found as documented)."""
    sink = Sink()
    if config is None:
        config = load_config(find_config(config_path, paths), sink)
    program = Loader(sink).load_roots(paths)
    return _finish(program, config, schema_path, sink)


def compile_text(path: str, text: str, *, config: Config | None = None,
                 schema_path: str | None = None) -> CompileResult:
    """Compile one in-memory file (and what it imports)."""
    sink = Sink()
    program = Loader(sink).load_text(path, text)
    return _finish(program, config or load_config(None, sink), schema_path, sink)


def _finish(program: Program, config: Config, schema_path: str | None, sink: Sink) -> CompileResult:
    schema_path = schema_path or config.schema
    schema = load_schema(schema_path, sink) if schema_path else None
    result = compile_program(program, config, schema, sink)
    return CompileResult(result, sink.sorted(), program.sources, config)


def compile_program(program: Program, config: Config, schema: Schema | None, sink: Sink) -> plan.Plan | None:
    ctx = CheckContext(program, config, schema, sink)
    if any(f.module is None for f in program.files.values()):
        # A file with a syntax error may define the names others use: check the rest, but do
        # not call a name unknown that could be defined there.
        checked = Sink()
        run_checks(CheckContext(program, config, schema, checked))
        for d in checked.items:
            if d.code not in _MAYBE_DEFINED_IN_BROKEN_FILE:
                sink.items.append(d)
        return None
    run_checks(ctx)
    if sink.has_errors:
        return None
    return Lowering(ctx).build()


_MAYBE_DEFINED_IN_BROKEN_FILE = frozenset(
    {codes.UNKNOWN_SEGMENT.code, codes.UNKNOWN_TEMPLATE.code, codes.DUPLICATE_NAME.code,
     codes.DUPLICATE_CAMPAIGN.code}
)


class Lowering:
    """AST → plan, for a program the checks have passed."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx

    def build(self) -> plan.Plan:
        everybody = plan.Const("bool", True)  # a segment without conditions holds for every user
        segments = {name: self.conjunction(d.node.conditions) or everybody
                    for name, d in sorted(self.ctx.segments.items())}
        campaigns = tuple(self.campaign(view) for view in self.ctx.campaigns)
        return plan.Plan(
            format_version=plan.FORMAT_VERSION,
            campaigns=campaigns,
            segments=segments,
            settings=self.ctx.config.settings,
        )

    def campaign(self, view: CampaignView) -> plan.Campaign:
        node = view.node
        timezone = view.when_value("timezone")
        dnd = view.when_items("dnd")
        cutoff = view.when_value("cutoff")
        priority = view.when_value("priority")
        control = view.controls[0].percent if view.controls else 0.0
        conversion = view.conversions[0] if view.conversions else None
        platforms = view.allowed_platforms()
        who = [c for block in view.who for c in block.conditions]
        variants = tuple(plan.Variant(str(m.variant), basis_points(m.weight or 0.0), self.message(view, m))
                         for m in view.variants)
        test = view.tests[0] if view.tests else None
        return plan.Campaign(
            id=node.id,
            name=node.display_name or node.id,
            file=view.path,
            trigger=self.trigger(view),
            # with variants, the first one's message (what reads `campaign.message` sees a real one)
            message=variants[0].message if variants else self.message(view, view.messages[0]),
            timezone=str(timezone.value) if timezone else self.ctx.config.settings.timezone,
            audience=self.conjunction(tuple(who)),
            labels=tuple(label for block in view.labels for label in block.labels),
            platforms=tuple(p for p in PLATFORMS if p in platforms),
            start=_text(view.when_value("start")),
            end=_text(view.when_value("end")),
            dnd=plan.Dnd(str(dnd[0].values[0].value), str(dnd[0].values[1].value), str(dnd[0].values[2].value))
            if dnd else None,
            ignore_global_limits=bool(view.when_items("ignore_global_limits")),
            limits=tuple(_limit(i) for i in view.when_items("limit")),
            throttle=_throttle(view.when_items("throttle")),
            priority=int(priority.value or 0) if priority is not None else 0,
            deliver_in_user_timezone=bool(view.when_items("user_timezone")),
            best_time=_best_time(view.when_items("best_time")),
            cutoff=_text(cutoff),
            control_percent=control,
            conversion=plan.Conversion(conversion.event, conversion.within, self.opt(conversion.where),
                                       self.opt(conversion.revenue)) if conversion else None,
            variants=variants,
            test=plan.WinnerTest(test.percent, test.by, test.after) if test else None,
        )

    def trigger(self, view: CampaignView) -> plan.Trigger | plan.Schedule:
        t = view.trigger
        if isinstance(t, ast.OnTrigger):
            if t.unless is not None:
                return plan.InactionWithin(t.event, self.opt(t.where), t.unless.event, self.opt(t.unless.where),
                                           t.unless.within)
            if t.at is not None:
                return plan.OnDate(t.event, self.opt(t.where), self.expr(t.at))
            return plan.SingleAction(t.event, self.opt(t.where))
        assert isinstance(t, ast.Schedule)
        if t.kind == "once":
            return plan.SendOnce(str(t.datetimes[0].value))
        if t.kind == "dates":
            return plan.SendDates(tuple(str(d.value) for d in t.datetimes))
        # Each time of day is an occurrence; two equal times are one (SPEC §3).
        times = tuple(sorted({str(time.value) for time in t.times if time.value is not None}))
        if t.kind == "daily":
            return plan.SendDaily(times)
        if t.kind == "weekly":
            days = sorted({WEEKDAYS.index(d.value) + 1 for d in t.weekdays})
            return plan.SendWeekly(tuple(days), times)
        if t.kind == "every":
            # On start's date in the campaign's zone (start is a naive local date-time there) and
            # every N days after it; a recurring schedule without a start never gets here.
            start = _text(view.when_value("start")) or ""
            return plan.SendEvery(t.interval or 1, start[:10], times)
        return plan.SendMonthly(plan.LAST_DAY if t.last_day else t.day or 1, times)

    def message(self, view: CampaignView, message: ast.Message) -> plan.Message:
        """The one message or a variant, its template applied (the campaign's fields win), with a whole
        message for each of its languages (SPEC §12.5)."""
        langs = tuple(plan.LangTexts(tag, self.message_in(view, message, tag))
                      for tag in self.ctx.message_langs(message))
        return msgspec.structs.replace(self.message_in(view, message, None), langs=langs)

    def message_in(self, view: CampaignView, message: ast.Message, lang: str | None) -> plan.Message:
        """The message in language ``lang``, or in its own texts (``None``)."""
        fields = self.ctx.effective_message(view, message, lang)

        def text(name: str) -> plan.Text | None:
            found = fields.get(name)
            if not found:
                return None
            f = found[0][0]
            if isinstance(f, ast.IconDefault):
                return plan.Text((plan.Literal(str(self.ctx.config.icons[f.icon])),))
            assert isinstance(f, ast.TextField)
            return self.text(f.text)

        def single(name: str) -> ast.MessageField | None:
            found = fields.get(name)
            return found[0][0] if found else None

        ttl, tag, urgency = single("ttl"), single("tag"), single("urgency")
        return plan.Message(
            title=text("title") or plan.Text(()),
            body=text("body") or plan.Text(()),
            url=text("url"),
            image=text("image"),
            icon=text("icon"),
            ttl=ttl.seconds if isinstance(ttl, ast.Ttl) else None,
            require_interaction="require interaction" in fields,
            buttons=tuple(plan.Button(self.text(b.label), self.text(b.url))
                          for b, _ in fields.get("button", []) if isinstance(b, ast.Button)),
            tag=tag.tag if isinstance(tag, ast.Tag) else None,
            urgency=urgency.level if isinstance(urgency, ast.Urgency) else None,
        )

    def text(self, text: ast.Text) -> plan.Text:
        parts: list[plan.Literal | plan.Personalised] = []
        for part in text.parts:
            if isinstance(part, ast.TextPart):
                parts.append(plan.Literal(part.text))
            else:
                filters = tuple(plan.Filter(f.name, self.opt(f.arg)) for f in part.filters)
                parts.append(plan.Personalised(self.expr(part.expr), filters))
        return plan.Text(tuple(parts))

    def conjunction(self, conditions: tuple[ast.Expr, ...]) -> plan.Expr | None:
        lowered = [self.expr(c) for c in conditions]
        if not lowered:
            return None
        return reduce(lambda a, b: plan.BinOp("and", a, b), lowered)

    def opt(self, expr: ast.Expr | None) -> plan.Expr | None:
        return None if expr is None else self.expr(expr)

    def expr(self, e: ast.Expr) -> plan.Expr:
        if isinstance(e, ast.Literal):
            return plan.Const(e.kind, e.value)
        if isinstance(e, ast.Prop):
            return plan.Var(e.root, e.path)
        if isinstance(e, ast.Binary):
            return plan.BinOp(e.op, self.expr(e.left), self.expr(e.right))
        if isinstance(e, ast.Unary):
            operand = self.expr(e.operand)
            return plan.Not(operand) if e.op == "not" else plan.Neg(operand)
        if isinstance(e, ast.Call):
            return plan.Call(e.name, tuple(self.expr(a) for a in e.args))
        if isinstance(e, ast.ListExpr):
            return plan.ListOf(tuple(self.expr(i) for i in e.items))
        if isinstance(e, ast.Exists):
            return plan.Exists(plan.Var(e.prop.root, e.prop.path))
        if isinstance(e, ast.SegmentRef):
            return plan.InSegment(e.name)
        if isinstance(e, ast.IfThen):
            return plan.IfThen(self.expr(e.cond), self.expr(e.then), self.expr(e.else_))
        assert isinstance(e, ast.Did)
        if e.negated:
            op, count = "exactly", 0
        else:
            op, count = e.count_op or "at least", e.count if e.count is not None else 1
        return plan.DidEvent(e.event, self.opt(e.where), op, count, e.window)


def _limit(item: ast.WhenItem) -> plan.Limit:
    count, period = int(item.values[0].value or 0), item.values[1]
    if period.kind == "duration":  # `limit N per DURATION`: a rolling window
        return plan.Limit(count, "rolling", int(period.value or 0))
    return plan.Limit(count, str(period.value))


def _best_time(items: list[ast.WhenItem]) -> plan.BestTime | None:
    if not items:
        return None
    times = [str(v.value) for v in items[0].values if v.kind == "time"]
    events = tuple(dict.fromkeys(str(v.value) for v in items[0].values if v.kind == "string"))
    return plan.BestTime(times[0], times[1], events) if times else plan.BestTime(events=events)


def _throttle(items: list[ast.WhenItem]) -> plan.Throttle | None:
    if not items:
        return None
    count, period = items[0].values
    return plan.Throttle(int(count.value or 0), THROTTLE_PERIODS[str(period.value)])


THROTTLE_PERIODS = {"minute": 60, "hour": 3600}  # `throttle N per minute|hour`, in seconds


def _text(literal: ast.Literal | None) -> str | None:
    return None if literal is None or literal.value is None else str(literal.value)
