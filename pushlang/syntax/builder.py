"""Lark callbacks that build the AST while the LALR parser reduces (no parse tree in between)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lark import Token, Transformer

from pushlang import ast
from pushlang.diagnostics import Sink, codes
from pushlang.source import Span
from pushlang.syntax.literals import (
    LiteralError,
    decode_string,
    duration_seconds,
    parse_datetime,
    parse_percent,
    parse_time,
)

_PROP_ROOTS = ("user", "event", "trigger")
_TEMPLATE_PATH = re.compile(r"(user|event|trigger)((?:\.[A-Za-z0-9_]+)+)")
_BAD = Span(0, 0, 0, 0)


def tspan(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)  # type: ignore[arg-type]


def _span(x: Any) -> Span:
    return tspan(x) if isinstance(x, Token) else x.span


TemplateExprParser = Callable[[str, int, int], "tuple[ast.Expr, tuple[ast.Filter, ...]] | None"]


class AstBuilder(Transformer[Token, Any]):
    """One instance serves every parse; ``reset`` points it at the next file."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)
        self.sink = Sink()
        self.path = ""
        self.parse_template_expr: TemplateExprParser | None = None

    def reset(self, path: str, sink: Sink) -> None:
        self.path = path
        self.sink = sink

    # ---- helpers -------------------------------------------------------------------------------

    def _error(self, code: codes.Code, span: Span, message: str, help: str | None = None) -> None:
        self.sink.report(code, self.path, span, message, help=help)

    def _string(self, tok: Token) -> str:
        try:
            return decode_string(tok)[0]
        except LiteralError as exc:
            self._literal_error(tok, exc)
            return ""

    def _literal_error(self, tok: Token, exc: LiteralError) -> None:
        line, col = tok.line or 0, (tok.column or 0) + exc.offset
        self._error(codes.INVALID_LITERAL, Span(line, col, line, col + 1 if exc.offset else tok.end_column or col), str(exc))

    def _literal(self, tok: Token, parse: Callable[[str], Any]) -> Any:
        try:
            return parse(tok)
        except LiteralError as exc:
            self._literal_error(tok, exc)
            return None

    def _datetime(self, tok: Token) -> ast.Literal:
        return ast.Literal("datetime", self._literal(tok, parse_datetime), tspan(tok))

    def _time(self, tok: Token) -> ast.Literal:
        return ast.Literal("time", self._literal(tok, parse_time), tspan(tok))

    def _identifier(self, tok: Token, what: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", tok):
            self._error(
                codes.INVALID_IDENTIFIER, tspan(tok),
                f"{what} `{tok}` is not a lowercase identifier",
                help=f"write it as `{re.sub(r'[^a-z0-9_]', '_', tok.lower()).lstrip('0123456789')}`",
            )
        return str(tok)

    # ---- top level -----------------------------------------------------------------------------

    def start(self, items: list[Any]) -> list[Any]:
        return [i for i in items if i is not None]

    def import_(self, c: list[Any]) -> ast.Import:
        return ast.Import(self._string(c[1]), tspan(c[0]).to(tspan(c[1])))

    def segment(self, c: list[Any]) -> ast.SegmentDef:
        kw, name, *conds = c
        conds = [x for x in conds if x is not None]
        end = _span(conds[-1]) if conds else tspan(name)
        return ast.SegmentDef(self._identifier(name, "segment name"), tuple(conds), tspan(kw).to(end), tspan(name))

    def template(self, c: list[Any]) -> ast.TemplateDef:
        kw, name, *items = c
        items = [x for x in items if x is not None]
        end = items[-1].span if items else tspan(name)
        fields, langs = _split(items)
        return ast.TemplateDef(self._identifier(name, "template name"), fields, tspan(kw).to(end), tspan(name),
                               langs)

    def campaign(self, c: list[Any]) -> ast.CampaignDef:
        kw, ident, display, *items = c
        items = [x for x in items if x is not None]
        end = items[-1].span if items else tspan(display or ident)
        return ast.CampaignDef(
            self._identifier(ident, "campaign id"),
            self._string(display) if display is not None else None,
            tuple(items), tspan(kw).to(end), tspan(ident),
        )

    # ---- campaign items ------------------------------------------------------------------------

    def labels(self, c: list[Token]) -> ast.Labels:
        return ast.Labels(tuple(self._string(t) for t in c[1:]), tspan(c[0]).to(tspan(c[-1])))

    def platforms(self, c: list[Token]) -> ast.Platforms:
        names = tuple(ast.Name(str(t), tspan(t)) for t in c[1:])
        return ast.Platforms(names, tspan(c[0]).to(tspan(c[-1])))

    def where(self, c: list[Any]) -> Any:
        return c[1]

    def on_trigger(self, c: list[Any]) -> ast.OnTrigger:
        kw, event, where, extra = c
        unless = extra if isinstance(extra, ast.Unless) else None
        at = extra[1] if isinstance(extra, tuple) else None
        last = extra[1] if isinstance(extra, tuple) else (extra or where or event)
        return ast.OnTrigger(self._string(event), where, unless, at, tspan(kw).to(_span(last)), tspan(event))

    def unless(self, c: list[Any]) -> ast.Unless:
        kw, event, where, within = c
        return ast.Unless(
            self._string(event), where, duration_seconds(within), tspan(kw).to(tspan(within)),
            tspan(event), tspan(within),
        )

    def at_time(self, c: list[Any]) -> tuple[Token, Any]:
        return (c[0], c[1])

    def _schedule(self, kind: str, c: list[Any], **kw: Any) -> ast.Schedule:
        fields: dict[str, Any] = {"datetimes": (), "weekdays": (), "day": None}
        fields.update(kw)
        times = tuple(self._time(t) for t in c if t.type == "TIME")
        return ast.Schedule(kind, times=times, span=tspan(c[0]).to(tspan(c[-1])), **fields)

    def send_once(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("once", c, datetimes=(self._datetime(c[1]),))

    def send_dates(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("dates", c, datetimes=tuple(self._datetime(t) for t in c[1:]))

    def send_daily(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("daily", c)

    def send_weekly(self, c: list[Token]) -> ast.Schedule:
        days = tuple(ast.Name(str(t), tspan(t)) for t in c if t.type == "NAME")
        return self._schedule("weekly", c, weekdays=days)

    def send_monthly(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("monthly", c, day=int(c[1]), day_span=tspan(c[1]))

    def send_monthly_last(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("monthly", c, last_day=True)

    def send_every(self, c: list[Token]) -> ast.Schedule:
        return self._schedule("every", c, interval=int(c[1]), interval_span=tspan(c[1]))

    def who(self, c: list[Any]) -> ast.Who:
        conds = tuple(x for x in c[1:] if x is not None)
        return ast.Who(conds, tspan(c[0]).to(_span(conds[-1]) if conds else tspan(c[0])))

    def when(self, c: list[Any]) -> ast.When:
        items = tuple(x for x in c[1:] if x is not None)
        return ast.When(items, tspan(c[0]).to(items[-1].span if items else tspan(c[0])))

    def _when_item(self, kind: str, c: list[Token], *values: ast.Literal) -> ast.WhenItem:
        return ast.WhenItem(kind, values, tspan(c[0]).to(tspan(c[-1])))

    def w_start(self, c: list[Token]) -> ast.WhenItem:
        return self._when_item("start", c, self._datetime(c[1]))

    def w_end(self, c: list[Token]) -> ast.WhenItem:
        return self._when_item("end", c, self._datetime(c[1]))

    def w_timezone(self, c: list[Token]) -> ast.WhenItem:
        return self._when_item("timezone", c, ast.Literal("string", self._string(c[1]), tspan(c[1])))

    def w_dnd(self, c: list[Token]) -> ast.WhenItem:
        mode = ast.Literal("string", str(c[3]), tspan(c[3]))
        return self._when_item("dnd", c, self._time(c[1]), self._time(c[2]), mode)

    def w_ignore_global_limits(self, c: list[Token]) -> ast.WhenItem:
        return ast.WhenItem("ignore_global_limits", (), tspan(c[0]))

    def w_limit(self, c: list[Token]) -> ast.WhenItem:
        count = ast.Literal("number", int(c[1]), tspan(c[1]))
        if c[2].type == "DURATION":  # rolling: `limit 2 per 36h`
            return self._when_item("limit", c, count, ast.Literal("duration", duration_seconds(c[2]), tspan(c[2])))
        return self._when_item("limit", c, count, ast.Literal("string", str(c[2]), tspan(c[2])))

    def w_throttle(self, c: list[Token]) -> ast.WhenItem:
        count = ast.Literal("number", int(c[1]), tspan(c[1]))
        return self._when_item("throttle", c, count, ast.Literal("string", str(c[2]), tspan(c[2])))

    def w_priority(self, c: list[Token | None]) -> ast.WhenItem:
        kw, minus, number = c
        assert kw is not None and number is not None
        value = -int(number) if minus is not None else int(number)
        span = tspan(minus or number).to(tspan(number))
        return ast.WhenItem("priority", (ast.Literal("number", value, span),), tspan(kw).to(span))

    def w_user_timezone(self, c: list[Token]) -> ast.WhenItem:
        return ast.WhenItem("user_timezone", (), tspan(c[0]))

    def w_best_time(self, c: list[Any]) -> ast.WhenItem:
        """`deliver at best time [between HH:MM and HH:MM] [by "E", …]`: the window's two times (kind
        time), then the events (kind string)."""
        values = tuple(v for part in c[1:] if part is not None for v in part)
        return ast.WhenItem("best_time", values, tspan(c[0]).to(values[-1].span if values else tspan(c[0])))

    def best_between(self, c: list[Token]) -> tuple[ast.Literal, ...]:
        return self._time(c[0]), self._time(c[1])

    def best_by(self, c: list[Token]) -> tuple[ast.Literal, ...]:
        return tuple(ast.Literal("string", self._string(t), tspan(t)) for t in c)

    def w_cutoff(self, c: list[Token]) -> ast.WhenItem:
        return self._when_item("cutoff", c, self._time(c[1]))

    # ---- message -------------------------------------------------------------------------------

    def message(self, c: list[Any]) -> ast.Message:
        items = [x for x in c[1:] if x is not None]
        fields, langs = _split(items)
        return ast.Message(None, fields, tspan(c[0]).to(items[-1].span if items else tspan(c[0])), langs=langs)

    def message_use(self, c: list[Any]) -> ast.Message:
        items = [x for x in c[2:] if x is not None]
        end = items[-1].span if items else tspan(c[1])
        fields, langs = _split(items)
        return ast.Message(str(c[1]), fields, tspan(c[0]).to(end), tspan(c[1]), langs=langs)

    def variant(self, c: list[Any]) -> ast.Message:
        kw, ident, weight, *fields = c
        return self._variant(kw, ident, weight, None, [x for x in fields if x is not None])

    def variant_use(self, c: list[Any]) -> ast.Message:
        kw, ident, weight, use, *fields = c
        return self._variant(kw, ident, weight, use, [x for x in fields if x is not None])

    def _variant(self, kw: Token, ident: Token, weight: Token, use: Token | None,
                 items: list[ast.MessageField | ast.LangBlock]) -> ast.Message:
        """`message ID P% { ... }` and `message ID P% use NAME [{ ... }]` (SPEC §12.3)."""
        fields, langs = _split(items)
        percent = self._literal(weight, parse_percent)
        end = items[-1].span if items else tspan(use or weight)
        return ast.Message(
            str(use) if use is not None else None, fields, tspan(kw).to(end),
            tspan(use) if use is not None else None,
            variant=self._identifier(ident, "variant id"), weight=percent if percent is not None else 0.0,
            variant_span=tspan(ident), weight_span=tspan(weight), langs=langs,
        )

    def lang_block(self, c: list[Any]) -> ast.LangBlock:
        kw, tag, *fields = c
        fields = [x for x in fields if x is not None]
        end = fields[-1].span if fields else tspan(tag)
        return ast.LangBlock(self._string(tag), tuple(fields), tspan(kw).to(end), tspan(tag))

    def _text_field(self, c: list[Token]) -> ast.TextField:
        return ast.TextField(str(c[0]), self.text(c[1]), tspan(c[0]).to(tspan(c[1])))

    f_title = f_body = f_url = f_image = f_icon = _text_field

    def f_icon_default(self, c: list[Token]) -> ast.IconDefault:
        return ast.IconDefault(str(c[1]), tspan(c[0]).to(tspan(c[1])), tspan(c[1]))

    def f_ttl(self, c: list[Token]) -> ast.Ttl:
        return ast.Ttl(duration_seconds(c[1]), tspan(c[0]).to(tspan(c[1])))

    def f_require_interaction(self, c: list[Token]) -> ast.RequireInteraction:
        return ast.RequireInteraction(tspan(c[0]))

    def f_button(self, c: list[Token]) -> ast.Button:
        return ast.Button(self.text(c[1]), self.text(c[2]), tspan(c[0]).to(tspan(c[2])))

    def f_tag(self, c: list[Token]) -> ast.Tag:
        return ast.Tag(self._string(c[1]), tspan(c[0]).to(tspan(c[1])))

    def f_urgency(self, c: list[Token]) -> ast.Urgency:
        return ast.Urgency(str(c[1]), tspan(c[0]).to(tspan(c[1])))

    def control(self, c: list[Token]) -> ast.Control:
        percent = self._literal(c[1], parse_percent)
        return ast.Control(percent if percent is not None else 0.0, tspan(c[0]).to(tspan(c[1])))

    def winner_test(self, c: list[Token]) -> ast.WinnerTest:
        kw, percent, winner, by, after = c
        value = self._literal(percent, parse_percent)
        return ast.WinnerTest(
            value if value is not None else 0.0, str(by), duration_seconds(after), tspan(kw).to(tspan(after)),
            tspan(percent), tspan(winner), tspan(by), tspan(after),
        )

    def conversion(self, c: list[Any]) -> ast.Conversion:
        kw, event, where, within, _revenue_kw, revenue = c
        end = _span(revenue) if revenue is not None else tspan(within)
        return ast.Conversion(
            self._string(event), where, duration_seconds(within), revenue, tspan(kw).to(end),
            tspan(event), tspan(within),
        )

    # ---- message texts -------------------------------------------------------------------------

    def text(self, tok: Token) -> ast.Text:
        """A message string, split into literal text and personalisations (SPEC §7)."""
        span = tspan(tok)
        try:
            value, offsets = decode_string(tok)
        except LiteralError as exc:
            self._literal_error(tok, exc)
            return ast.Text((), span)
        if "@" not in value:
            return ast.Text((ast.TextPart(value),), span)
        line, col0 = span.line, span.column

        def at(i: int) -> Span:
            return Span(line, col0 + offsets[i], line, col0 + offsets[i] + 1)

        parts: list[ast.TextPart | ast.Interpolation] = []
        buf: list[str] = []
        i, n = 0, len(value)
        while i < n:
            ch = value[i]
            if ch == "@" and i + 1 < n:
                nxt = value[i + 1]
                if nxt == "@":
                    buf.append("@")
                    i += 2
                    continue
                if nxt == "{":
                    close = _closing_brace(value, i + 2)
                    if close is None:
                        self._error(codes.INVALID_TEMPLATE, at(i), "`@{` is not closed with `}`",
                                    help="close it, or write `@@` for a literal `@`")
                        return ast.Text((), span)
                    inner = value[i + 2:close]
                    where = Span(line, col0 + offsets[i], line, col0 + offsets[close] + 1)
                    if not inner.strip():
                        self._error(codes.INVALID_TEMPLATE, where, "empty personalisation `@{}`")
                        return ast.Text((), span)
                    parsed = self._template_expr(inner, line, col0 + offsets[i + 2])
                    if parsed is None:
                        return ast.Text((), span)
                    if buf:
                        parts.append(ast.TextPart("".join(buf)))
                        buf = []
                    parts.append(ast.Interpolation(parsed[0], parsed[1], where))
                    i = close + 1
                    continue
                m = _TEMPLATE_PATH.match(value, i + 1)
                if m is not None:
                    where = Span(line, col0 + offsets[i], line, col0 + offsets[m.end()])
                    prop_span = Span(line, col0 + offsets[i + 1], line, col0 + offsets[m.end()])
                    prop = ast.Prop(m.group(1), tuple(m.group(2)[1:].split(".")), prop_span)
                    if buf:
                        parts.append(ast.TextPart("".join(buf)))
                        buf = []
                    parts.append(ast.Interpolation(prop, (), where))
                    i = m.end()
                    continue
            buf.append(ch)
            i += 1
        if buf:
            parts.append(ast.TextPart("".join(buf)))
        return ast.Text(tuple(parts), span)

    def _template_expr(self, text: str, line: int, column: int) -> tuple[ast.Expr, tuple[ast.Filter, ...]] | None:
        assert self.parse_template_expr is not None
        return self.parse_template_expr(text, line, column)

    def template_expr(self, c: list[Any]) -> tuple[ast.Expr, tuple[ast.Filter, ...]]:
        return (c[0], tuple(c[1:]))

    def filter(self, c: list[Any]) -> ast.Filter:
        name, arg = c
        return ast.Filter(str(name), arg, tspan(name).to(_span(arg)) if arg is not None else tspan(name))

    # ---- expressions ---------------------------------------------------------------------------

    def _binary(self, op: str, left: Any, right: Any) -> ast.Binary:
        return ast.Binary(op, left, right, _span(left).to(_span(right)))

    def or_(self, c: list[Any]) -> ast.Binary:
        return self._binary("or", c[0], c[1])

    def and_(self, c: list[Any]) -> ast.Binary:
        return self._binary("and", c[0], c[1])

    def not_(self, c: list[Any]) -> ast.Unary:
        return ast.Unary("not", c[1], tspan(c[0]).to(_span(c[1])))

    def compare(self, c: list[Any]) -> ast.Binary:
        return self._binary(str(c[1]), c[0], c[2])

    def arith(self, c: list[Any]) -> ast.Binary:
        return self._binary(str(c[1]), c[0], c[2])

    def in_(self, c: list[Any]) -> ast.Binary:
        return self._binary("in", c[0], c[1])

    def not_in(self, c: list[Any]) -> ast.Binary:
        return self._binary("not in", c[0], c[2])

    def contains(self, c: list[Any]) -> ast.Binary:
        return self._binary("contains", c[0], c[1])

    def starts_with(self, c: list[Any]) -> ast.Binary:
        return self._binary("starts with", c[0], c[1])

    def ends_with(self, c: list[Any]) -> ast.Binary:
        return self._binary("ends with", c[0], c[1])

    def if_(self, c: list[Any]) -> ast.IfThen:
        kw, cond, then, else_ = c
        return ast.IfThen(cond, then, else_, tspan(kw).to(_span(else_)))

    def exists(self, c: list[Any]) -> ast.Exists:
        return ast.Exists(c[1], tspan(c[0]).to(c[1].span))

    def neg(self, c: list[Any]) -> ast.Expr:
        operand = c[1]
        span = tspan(c[0]).to(_span(operand))
        if isinstance(operand, ast.Literal) and operand.kind == "number" and isinstance(operand.value, (int, float)):
            return ast.Literal("number", -operand.value, span)
        return ast.Unary("-", operand, span)

    def segment_ref(self, c: list[Token]) -> ast.SegmentRef:
        return ast.SegmentRef(str(c[1]), tspan(c[0]).to(tspan(c[1])), tspan(c[1]))

    def did(self, c: list[Any]) -> ast.Did:
        kw, negated, event, where, count, _in_last, window = c
        op, n = count if count is not None else (None, None)
        return ast.Did(
            self._string(event), negated is not None, where, op, n, duration_seconds(window),
            tspan(kw).to(tspan(window)), tspan(event), tspan(window),
        )

    def count(self, c: list[Token]) -> tuple[str, int]:
        return (" ".join(c[0].split()), int(c[1]))

    def call(self, c: list[Any]) -> ast.Call:
        name, *args = c
        args = [a for a in args if a is not None]
        return ast.Call(str(name), tuple(args), tspan(name).to(_span(args[-1]) if args else tspan(name)), tspan(name))

    def prop(self, c: list[Token]) -> ast.Expr:
        root, *rest = c
        span = tspan(root).to(tspan(c[-1]))
        path = tuple(self._string(t) if t.type == "STRING" else str(t) for t in rest)
        if root not in _PROP_ROOTS or not path:
            what = f"`{root}`" if not path else f"`{root}.{'.'.join(path)}`"
            hint = f"write `user.{root}` or `event.{root}`" if not path and root not in _PROP_ROOTS else (
                f"`{root}` needs a property name: `{root}.name`" if root in _PROP_ROOTS
                else "properties start with `user.`, `event.` or `trigger.`")
            self._error(codes.INVALID_PROPERTY, span, f"{what} is not a property of the user, the event or the trigger", help=hint)
        return ast.Prop(str(root), path, span)

    def string(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("string", self._string(c[0]), tspan(c[0]))

    def number(self, c: list[Token]) -> ast.Literal:
        tok = c[0]
        return ast.Literal("number", float(tok) if "." in tok else int(tok), tspan(tok))

    def duration(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("duration", duration_seconds(c[0]), tspan(c[0]))

    def percent(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("percent", self._literal(c[0], parse_percent), tspan(c[0]))

    def datetime(self, c: list[Token]) -> ast.Literal:
        return self._datetime(c[0])

    def time(self, c: list[Token]) -> ast.Literal:
        return self._time(c[0])

    def true(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("bool", True, tspan(c[0]))

    def false(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("bool", False, tspan(c[0]))

    def null(self, c: list[Token]) -> ast.Literal:
        return ast.Literal("null", None, tspan(c[0]))

    def list_(self, c: list[Any]) -> ast.Expr:
        items = tuple(x for x in c if x is not None)
        span = _span(items[0]).to(_span(items[-1])) if items else _BAD
        return ast.ListExpr(items, span)


def _split(items: list[Any]) -> tuple[tuple[ast.MessageField, ...], tuple[ast.LangBlock, ...]]:
    """A message's (or template's) items: its own fields, and its `lang` blocks."""
    return (tuple(x for x in items if not isinstance(x, ast.LangBlock)),
            tuple(x for x in items if isinstance(x, ast.LangBlock)))


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the `}` that closes a personalisation, skipping quoted strings."""
    quote = None
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "}":
            return i
        i += 1
    return None
