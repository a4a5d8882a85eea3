"""Parsing: .push text → AST, with syntax errors turned into diagnostics in words."""

from __future__ import annotations

import functools
from typing import cast

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
    "URGENCY_LEVEL": "`very-low`, `low`, `normal` or `high`",
    "COUNT_OP": "`at least`, `at most` or `exactly`",
    "IN_LAST": "`in last`",
    "COMPARE": "a comparison",
    "MUL_OP": "`*` or `/`",
}


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
                help = self._expected_help(_accepted(exc, exc.allowed))
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
                help = _hint(tok, accepted)
        else:
            message, span = str(exc), Span(line, col, line, col + 1)
            help = None
        self._sink.report(code, self._path, span, message, help=help)

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


def _hint(tok: Token, expected: set[str]) -> str | None:
    if tok.type == "INT" and "DURATION" in expected:
        return f"durations carry a unit: `{tok}m`, `{tok}h` or `{tok}d` (s, m, h, d, w)"
    if tok.type == "_NL" and "RBRACE" in expected and len(expected) <= 3:
        return "a block ends with `}`"
    if tok.type == "NAME" and "STRING" in expected and "NAME" not in expected:
        return f'event names and texts are quoted: "{tok}"'
    if "_NL" in expected and tok.type not in _NOT_ITEM_STARTS and str(tok).isalpha():
        return f"start `{tok}` on a new line: each item of a block goes on its own line"
    return None


@functools.cache
def parser() -> Parser:
    return Parser()


def parse(source: Source, sink: Sink) -> ast.Module | None:
    return parser().parse(source, sink)
