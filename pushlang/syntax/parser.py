"""Parsing: .push text → AST, with syntax errors turned into diagnostics in words."""

from __future__ import annotations

import functools
from typing import NamedTuple, cast

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import LexerState, LexerThread, LineCounter
from lark.utils import TextSlice

from pushlang import ast
from pushlang.diagnostics import Sink, codes
from pushlang.resources import grammar_file
from pushlang.source import Source, Span
from pushlang.syntax.builder import AstBuilder
from pushlang.syntax.postlex import NewlinePostLex

_EXPR_STARTS = frozenset(
    {"STRING", "NUMBER", "INT", "NAME", "LPAR", "LSQB", "MINUS", "NOT", "DID", "SEGMENT",
     "EXISTS", "TRUE", "FALSE", "NULL", "DURATION", "DATETIME", "TIME", "NUMBER_PERCENT"}
)
_OPERATORS = frozenset({"COMPARE", "PLUS", "MUL_OP", "AND", "OR", "IN", "CONTAINS", "STARTS", "ENDS"})
_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "DURATION": "a duration like `10m`",
    "INT": "a whole number",
    "NUMBER": "a number",
    "TIME": "a time like `09:00`",
    "DATETIME": "a date-time like `2026-12-01 09:00`",
    "NUMBER_PERCENT": "a percent like `10%`",
    "_NL": "a new line",
    "$END": "the end of the file",
    "DND_MODE": "`discard` or `delay`",
    "LIMIT_PERIOD": "`day`, `week` or `campaign`",
    "THROTTLE_PERIOD": "`minute` or `hour`",
    "WINNER_METRIC": "`clicks` or `conversions`",
    "URGENCY_LEVEL": "`very-low`, `low`, `normal` or `high`",
    "COUNT_OP": "`at least`, `at most` or `exactly`",
    "IN_LAST": "`in last`",
    "COMPARE": "a comparison",
    "MUL_OP": "`*` or `/`",
}


class Hint(NamedTuple):
    """A help line for a syntax error, chosen by Lark's ``match_examples``: the error happened in a
    parser state where one of ``examples`` fails too, on a token of the type ``unexpected`` (or on
    the character, for ``char:=``). ``text`` may name the token as ``{tok}``."""

    text: str
    unexpected: str
    examples: tuple[str, ...]


def _campaign(*lines: str) -> str:
    return "campaign c {\n" + "".join(f"  {line}\n" for line in lines) + "}\n"


def _segment(line: str) -> str:
    return f"segment s {{\n  {line}\n}}\n"


def _template(line: str) -> str:
    return f"template t {{\n  {line}\n}}\n"


# What a condition can end with before an operator that is not one: each leaves the parser in its
# own state, so each is an example.
_OPERANDS = ("user.x", "user", "1", "1.5", '"a"', "true", "null", "(1)", "[1]", "10m", "user.x + 1",
             'did "A" in last 7d', "segment s", "exists user.x", "not user.x", "lower(user.x)",
             "user.x == 1", "user.x == 1.5", 'user.x == "a"', "user.x == true", "user.x == user.y",
             "user.x in [1]", "user.x == 1 and user.y", "user.x == 1 or user.y")


_WHERE_OPERANDS = ("event.x", "1", '"a"', "true", "(1)", "event.x == 1", 'event.x == "a"', "event.x == true")


def _if_without(rest: str, *, then: bool) -> tuple[str, ...]:
    """An `if` that stops after its condition (``then=False``) or after its `then` branch, before ``rest``
    (the next line, or the end of the block): in a condition line and in an event's `where`."""
    forms = [f"if user.a == 1 then {o} {rest}" if then else f"if {o} {rest}" for o in _OPERANDS]
    return tuple(_segment(f) for f in forms) + tuple(_campaign('on "A" where ' + f.replace("user.", "event."))
                                                     for f in forms)


def _when(line: str) -> str:
    return _campaign("when {", f"  {line}", "}")


def _each(text: str, examples: dict[str, tuple[str, ...]]) -> tuple[Hint, ...]:
    """One hint for a mistake that shows up as several kinds of token (``examples`` by kind)."""
    return tuple(Hint(text, unexpected, found) for unexpected, found in examples.items())


def _recurring(at: str) -> tuple[str, ...]:
    """``at`` after the times of each recurring schedule."""
    return tuple(_campaign(f"send every {form} at {at}")
                 for form in ("day", "monday, thursday", "month on day 7", "month on last day", "2 days"))


def _after_operands(rest: str) -> tuple[str, ...]:
    """The bad snippet after every kind of operand, in a condition line and in each kind of `where`."""
    where = [(_campaign(f'on "A" where {o} {rest}'), _campaign('on "A"', f'unless "B" where {o} {rest} within 1m'),
              _segment(f'did "A" where {o} {rest} in last 7d'), _campaign('on "A"', f'conversion "C" where {o} {rest}'))
             for o in _WHERE_OPERANDS]
    return tuple(_segment(f"{operand} {rest}") for operand in _OPERANDS) + tuple(x for group in where for x in group)


# The catalogue (STYLE.md): bad snippets that fail in the parser states each hint is for.
# tests/test_parser_hints.py checks that every snippet gets its hint.
HINTS: tuple[Hint, ...] = (
    Hint("durations carry a unit: `{tok}m`, `{tok}h` or `{tok}d` (s, m, h, d, w)", "INT", (
        _campaign('on "A"', 'unless "B" within 10'),
        _campaign('on "A"', 'conversion "C" within 2'),
        _segment('did "A" in last 7'),
        _template("ttl 2"),
        _when("limit 1 per 5"),
        _campaign("test 10% then winner by clicks after 4"))),
    Hint("a duration is a whole number and a unit, with no space: `10m`, `2h`, `7d`", "NAME", (
        _campaign('on "A"', 'unless "B" within soon'),
        _segment('did "A" in last week'),
        _template("ttl long"))),
    Hint('event names are quoted: "{tok}"', "NAME", (
        _campaign("on Added"),
        _campaign('on "A"', "unless Charged within 10m"),
        _campaign('on "A"', "conversion Charged within 2d"),
        _segment("did Viewed in last 7d"),
        _segment("did not Viewed in last 7d"))),
    Hint('texts are quoted: "{tok}"', "NAME", (
        _template("title Hello"), _template("body Hello"), _template("url Hello"), _template("image Hello"),
        _template("tag Hello"), _template("button Buy -> \"https://x\""),
        _template("button \"Buy\" -> https"), _campaign("labels cart"))),
    Hint('a time zone is a quoted IANA name, e.g. timezone "Europe/Berlin"', "NAME", (
        _campaign("when {", "  timezone Europe", "}"),)),
    Hint("compare with `==`: a single `=` is not an operator", "char:=", _after_operands("= 1")),
    Hint("write `and`: `&&` is not an operator", "char:&", _after_operands("&& true")),
    Hint("write `or`: `||` is not an operator", "VBAR", _after_operands("|| true")),
    Hint("DND hours are written `dnd 21:00 to 09:00 delay` (or `discard`)", "MINUS", (
        _campaign("when {", "  dnd 21:00 - 09:00 delay", "}"),)),
    Hint("write `at` before the time, e.g. `send every day at 09:00`", "TIME", (
        _campaign("send every day 09:00"), _campaign("send every monday 09:00"),
        _campaign("send every month on day 1 09:00"), _campaign("send every month on last day 09:00"),
        _campaign("send every 2 days 09:00"), _campaign("send every 1 day 09:00"))),
    Hint("write `at` before the date, e.g. `send once at 2026-12-24 10:00`", "DATETIME", (
        _campaign("send once 2026-12-24 10:00"), _campaign("send 2026-12-24 10:00"))),
    Hint("separate the times with commas: `at 09:00, 18:00`", "AND", _recurring("09:00 and 18:00")),
    Hint("separate the times with commas: `at 09:00, 18:00`", "TIME", _recurring("09:00 18:00")),
    *_each("the interval is a number of days: `send every 3 days at 09:00` (two weeks: `every 14 days`)", {
        "AT": (_campaign("send every 3 at 09:00"),),
        "NAME": (_campaign("send every 2 weeks at 09:00"), _campaign("send every 2 months at 09:00")),
        "DURATION": (_campaign("send every 3d at 09:00"),),
    }),
    *_each("write `send every month on day 7 at 10:00`, or `on last day`", {
        "NAME": (_campaign("send every month on the last day at 10:00"),),
        "INT": (_campaign("send every month on 7 at 10:00"),),
    }),
    *_each("a throttle's period is `minute` or `hour`: `throttle 10 per minute`", {
        "NAME": (_when("throttle 10 per second"), _when("throttle 10 per week")),
        "DURATION": (_when("throttle 10 per 5m"),),
        "INT": (_when("throttle 10 per 5"),),
        "DAY": (_when("throttle 10 per day"),),
        "CAMPAIGN": (_when("throttle 10 per campaign"),),
    }),
    Hint("a throttle is a number of sends, at least 1: `throttle 10 per minute`", "MINUS", (
        _when("throttle -1 per minute"),)),
    *_each("a limit is `per day`, `per week` or `per campaign`, or rolling over a duration: `per 1h`", {
        "NAME": (_when("limit 1 per hour"), _when("limit 1 per minute")),
        "MONTH": (_when("limit 1 per month"),),
    }),
    *_each("a priority is a whole number from -100 to 100, e.g. `priority 10` (the higher wins)", {
        "NAME": (_when("priority high"),),
        "NUMBER": (_when("priority 1.5"),),
        "PLUS": (_when("priority +5"),),
    }),
    # A/B variants and the winner test (SPEC §12.3, §12.4).
    *_each("a variant's weight is a percent: `message a 50% {{ ... }}` (the weights add up to 100%)", {
        "INT": (_campaign("message a 50 {"), _campaign("message a 50 use t")),
        "NUMBER": (_campaign("message a 0.5 {"),),
    }),
    Hint("a variant gives its weight after its id, `message a 50% {{ ... }}`; one message has no id: "
         "`message {{ ... }}`", "LBRACE", (_campaign("message a {"),)),
    Hint("a variant has an id before its weight: `message a 50% {{ ... }}`", "NUMBER_PERCENT", (
        _campaign("message 50% {"),)),
    *_each("a variant's message follows its weight: `message a 50% {{ ... }}` or `message a 50% use TEMPLATE`", {
        "RBRACE": (_campaign("message a 50%"),),
        "_NL": (_campaign("message a 50%", 'title "A"'),),
    }),
    # `if C then A else B` (SPEC §6): each part is needed.
    *_each("an `if` needs an `else`: `if C then A else B`", {
        "RBRACE": _if_without("", then=True),
        "_NL": _if_without("\n  user.b", then=True),
    }),
    *_each("write `then` after the condition of an `if`: `if C then A else B`", {
        "NAME": _if_without("x else y", then=False),
        "INT": _if_without("1 else 2", then=False),
    }),
    *_each("a winner is chosen `by clicks` or `by conversions`", {
        "NAME": (_campaign("test 10% then winner by opens after 4h"), _campaign("test 10% then winner clicks after 4h")),
        "AFTER": (_campaign("test 10% then winner after 4h"),),
    }),
    Hint("the test group is a percent of the users: `test {tok}% then winner by clicks after 4h`", "INT", (
        _campaign("test 10 then winner by clicks after 4h"),)),
    Hint("write `test 10% then winner by clicks after 4h`", "WINNER", (
        _campaign("test 10% winner by clicks after 4h"),)),
    *_each("say when the winner is chosen: `test 10% then winner by clicks after 4h`", {
        "RBRACE": (_campaign("test 10% then winner by clicks"),),
        "_NL": (_campaign("test 10% then winner by clicks", "platforms chrome"),),
        "IN": (_campaign("test 10% then winner by clicks in 4h"),),
        "WITHIN": (_campaign("test 10% then winner by clicks within 4h"),),
    }),
)


class Parser:
    """The LALR parser of the language, built once and shared by every parse."""

    def __init__(self) -> None:
        self.builder = AstBuilder()
        self.postlex = NewlinePostLex()
        self.lark = Lark(
            grammar_file().read_text(encoding="utf-8"),
            parser="lalr",
            lexer="contextual",
            start=["start", "template_expr"],
            postlex=self.postlex,
            transformer=self.builder,
            maybe_placeholders=True,
        )
        self._patterns = {t.name: t.pattern for t in self.lark.terminals}
        self.builder.parse_template_expr = self._parse_template_expr
        self._sink = Sink()
        self._path = ""
        self._hints: dict[tuple[int, object, str], Hint | None] = {}  # by parser state and what was unexpected

    def parse(self, source: Source, sink: Sink) -> ast.Module | None:
        """The AST of one file, or None when it has a syntax error (reported to ``sink``)."""
        self._sink, self._path = sink, source.path
        self.builder.reset(source.path, sink)
        try:
            items = cast("list[ast.TopLevel]", self.lark.parse(source.text, start="start"))
        except UnexpectedInput as exc:
            self._syntax_error(exc, source.text)
            return None
        return ast.Module(source.path, tuple(items))

    def _parse_template_expr(
        self, text: str, line: int, column: int
    ) -> tuple[ast.Expr, tuple[ast.Filter, ...]] | None:
        # The lexer's line counter starts where the expression stands in the file, so every
        # span it produces points at the file (a message string never spans lines).
        counter = LineCounter("\n")  # type: ignore[no-untyped-call]
        counter.line, counter.column, counter.line_start_pos = line, column, 1 - column
        frontend = self.lark.parser
        stream = LexerThread(frontend.lexer, LexerState(TextSlice(text, 0, len(text)), counter))
        saved_blocks = self.postlex.open_blocks
        try:
            return cast("tuple[ast.Expr, tuple[ast.Filter, ...]]", frontend.parser.parse(stream, "template_expr"))
        except UnexpectedInput as exc:
            self._syntax_error(exc, text, code=codes.INVALID_TEMPLATE, inside="a personalisation `@{...}`",
                               end=(line, column + len(text)))
            return None
        finally:
            self.postlex.open_blocks = saved_blocks

    # ---- syntax errors in words ----------------------------------------------------------------

    def _syntax_error(self, exc: UnexpectedInput, text: str, code: codes.Code = codes.SYNTAX_ERROR,
                      inside: str | None = None, end: tuple[int, int] | None = None) -> None:
        line, col = exc.line, exc.column
        help: str | None
        if isinstance(exc, UnexpectedCharacters):
            pos = exc.pos_in_stream or 0
            ch = text[pos] if pos < len(text) else ""
            if ch in "\"'":
                message = "this string is not closed before the end of the line"
                help = f"add the closing {ch}; a string cannot span lines (write \\n for a line break)"
            else:
                message = f"unexpected character `{ch}`"
                hint = None if inside else self._catalogue(exc, f"char:{ch}")
                help = hint.text if hint else self._expected_help(_accepted(exc, exc.allowed))
            span = Span(line, col, line, col + 1)
        elif isinstance(exc, UnexpectedToken):
            tok: Token = exc.token
            accepted = _accepted(exc, exc.expected)
            expected = self._expected(accepted)
            if tok.type == "$END":
                message = "unexpected end of " + (inside or "file")
                blocks = self.postlex.open_blocks
                if blocks and not inside:
                    opener = blocks[-1]
                    message += f"; the `{opener}` block opened on line {opener.line} is not closed"
                # $END borrows the position of the last token: point just after it rather than
                # after trailing comments.
                last = (tok.end_line, tok.end_column) if tok.end_line and tok.end_column else None
                line, col = last or end or _end_position(text)
                span = Span(line, col, line, col)
            else:
                message = f"unexpected {self._describe(tok)}"
                span = Span(tok.line or line, tok.column or col, tok.end_line or line, tok.end_column or col + 1)
                if tok.type == "_NL":
                    span = Span(span.line, span.column, span.line, span.column + 1)
            if inside and tok.type != "$END":
                message += f" in {inside}"
            help = None
            if expected:
                message += f"; expected {expected}"
                hint = None if inside else self._catalogue(exc, tok.type)
                help = hint.text.format(tok=tok) if hint else _hint(tok, accepted, text)
        else:
            message, span = str(exc), Span(line, col, line, col + 1)
            help = None
        self._sink.report(code, self._path, span, message, help=help)

    def _catalogue(self, exc: UnexpectedInput, unexpected: str) -> Hint | None:
        """The hint of ``HINTS`` for this error: among the hints about the same kind of token, the one
        with an example that fails in the same parser state (Lark's ``match_examples``), remembered
        per state and kind, so the examples are parsed once."""
        state = exc.state
        key = (len(getattr(state, "state_stack", ())), getattr(state, "position", state), unexpected)
        if key not in self._hints:
            sink, path = self._sink, self._path
            self.builder.reset("<hint>", Sink())  # the examples' own problems go nowhere
            try:
                # only the hints about this kind of token: a state alone does not say what was written
                found = exc.match_examples(lambda text: self.lark.parse(text, start="start"),
                                           [(h, h.examples) for h in HINTS if h.unexpected == unexpected])
            finally:
                self.builder.reset(path, sink)
                self._sink, self._path = sink, path
            self._hints[key] = found
        return self._hints[key]

    def _expected_help(self, allowed: set[str]) -> str | None:
        expected = self._expected(allowed)
        return f"expected {expected}" if expected else None

    def _expected(self, names: set[str]) -> str:
        names = {n for n in names if not n.startswith("__")}
        words: list[str] = []
        if len(names & _EXPR_STARTS) >= 6:
            words.append("an expression")
            names -= _EXPR_STARTS
        if len(names & _OPERATORS) >= 4:
            words.append("an operator")
            names -= _OPERATORS | {"NOT", "MINUS", "IN_LAST", "COUNT_OP"}
        for name in sorted(names, key=lambda n: (n == "_NL", n)):
            words.append(self._terminal_words(name))
        words = list(dict.fromkeys(words))
        if len(words) > 6:
            words = [*words[:6], "..."]
        if len(words) <= 1:
            return "".join(words)
        return ", ".join(words[:-1]) + " or " + words[-1]

    def _terminal_words(self, name: str) -> str:
        if name in _WORDS:
            return _WORDS[name]
        pattern = self._patterns.get(name)
        if pattern is not None and pattern.type == "str":
            return f"`{pattern.value}`"
        return name.lower()

    def _describe(self, tok: Token) -> str:
        if tok.type == "_NL":
            return "end of line"
        if tok.type == "STRING":
            return f"string {tok}"
        return f"`{tok}`"


def _accepted(exc: UnexpectedInput, lexed: set[str] | None) -> set[str]:
    """What the parser could take at the error; the lexer's set (``lexed``) also holds the
    always-accepted ``_NL``, which would add "or a new line" where none can go."""
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except Exception:  # the lexer's set is still a fair answer
            pass
    return set(lexed or ())


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, col


# Words that continue a statement (or are no keyword): a new line before them would not help.
_NOT_ITEM_STARTS = frozenset({"NAME", "_NL", "UNLESS", "WHERE", "WITHIN", "REVENUE", "AT", "AND", "OR"})


def _hint(tok: Token, expected: set[str], text: str) -> str | None:
    """The hints that hold in every parser state (the state-bound ones are in ``HINTS``)."""
    start = tok.start_pos
    if tok.type == "NAME" and isinstance(start, int) and start and text[start - 1].isalpha():
        # A fixed word took the start of a longer one (`per days` is `per day` + `s`)
        begin = start
        while begin and (text[begin - 1].isalnum() or text[begin - 1] == "_"):
            begin -= 1
        return f"write `{text[begin:start]}`: `{text[begin:tok.end_pos]}` is not a word of the language"
    if tok.type == "NAME" and "STRING" in expected and "NAME" not in expected:
        return f'quote it: "{tok}"'
    if "_NL" in expected and tok.type not in _NOT_ITEM_STARTS and str(tok).isalpha():
        return f"start `{tok}` on a new line: each item of a block goes on its own line"
    return None


@functools.cache
def parser() -> Parser:
    return Parser()


def parse(source: Source, sink: Sink) -> ast.Module | None:
    return parser().parse(source, sink)
