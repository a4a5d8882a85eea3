"""`pushlang fmt`: the canonical layout of a .push file, every comment kept, meaning unchanged.

The formatter works on tokens, not on the AST, so comments and the author's line breaks survive.
The file is first parsed for real (a file that does not parse is not touched); then a small scanner
splits the text into words, literals, punctuation, operators, comments and newlines, and the lines
are laid out again. Only white space changes: every token's text is kept byte for byte, and a
line break is only ever added where the grammar treats it as white space (after `{`, before `}`)
or removed where it is blank. Whitespace is removed only next to punctuation that no neighbour
can merge with, so the lexer sees the same tokens before and after.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from pushlang.diagnostics import Sink
from pushlang.source import Source
from pushlang.syntax.parser import parse

Kind = Literal["word", "literal", "string", "punct", "op", "comment", "newline"]

INDENT = "  "

# The literal terminals of the grammar that start with a digit (grammar/pushlang.lark). A date-time
# holds one space, so it is tried first; anything else that starts with a digit is taken whole, up to
# the next character that cannot continue a number, so a literal is never split in two.
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?![\w:])")
_NUMBERISH = re.compile(r"\d[\w.:%]*")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URGENCY_LEVEL = re.compile(r"[a-z][a-z-]*")  # `very-low` is one word after `urgency`
_STRING = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'")
_COMMENT = re.compile(r"#[^\n]*")
_OPERATOR = re.compile(r"->|==|!=|<=|>=|[<>+\-*/|]")
_PUNCT = frozenset("{}()[],.:")
_BLANK = frozenset(" \t\f\r")

# Words after which an expression (not an operand) follows: `in [..]` is a list, `not (..)` a
# group, `where -1` a negative number, `priority -5` too. Any other word ends an operand:
# `user["x"]`, `date(x)`, `a - 1`.
_OPERATOR_WORDS = frozenset(
    {"and", "or", "not", "in", "contains", "with", "starts", "ends", "where", "at", "revenue",
     "exists", "unless", "on", "did", "within", "least", "most", "exactly", "last", "segment",
     "send", "every", "once", "to", "priority", "if", "then", "else"}
)
_TOP_LEVEL = frozenset({"import", "segment", "template", "campaign"})
_OPENERS = frozenset({"{", "(", "["})
_CLOSERS = frozenset({"}", ")", "]"})


@dataclass(slots=True)
class _Token:
    kind: Kind
    text: str
    after_dot: bool = False  # a name in a property path: `user.title` is an operand, not a keyword
    unary: bool = False  # a `-` that negates what follows: `-3`, not `a - 3`


@dataclass(slots=True)
class _Line:
    depth: int  # open blocks and brackets before the line
    tokens: list[_Token] = field(default_factory=list)
    comment: str | None = None
    form: str | None = None  # the top-level form this line belongs to: import, segment, ...

    @property
    def blank(self) -> bool:
        return not self.tokens and self.comment is None

    @property
    def first(self) -> str | None:
        return self.tokens[0].text if self.tokens else None

    @property
    def last(self) -> str | None:
        return self.tokens[-1].text if self.tokens else None


def format_source(source: Source, sink: Sink) -> str | None:
    """The canonical text of a file, or None (with the syntax error in ``sink``) if it does not parse."""
    checked = Sink()
    if parse(source, checked) is None:
        sink.items.extend(checked.items)
        return None
    return format_text(source.text)


def format_text(text: str) -> str:
    """The canonical layout of text that parses (see `format_source`)."""
    tokens = _scan(text.replace("\r\n", "\n"))
    lines = _layout(tokens)
    lines = _blank_lines(lines)
    return "".join(_render(line) + "\n" for line in lines)


def fmt_diff(path: str, old: str, new: str) -> str:
    """A unified diff from the file as written to its canonical text (`pushlang fmt --diff`)."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (original)",
            tofile=f"{path} (formatted)",
        )
    )


# ---- scanning ------------------------------------------------------------------------------------


def _scan(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, size = 0, len(text)
    while pos < size:
        ch = text[pos]
        if ch in _BLANK:
            pos += 1
            continue
        if ch == "\n":
            tokens.append(_Token("newline", "\n"))
            pos += 1
            continue
        kind: Kind
        match: re.Match[str] | None
        previous = tokens[-1] if tokens else None
        if ch == "#":
            kind, match = "comment", _COMMENT.match(text, pos)
        elif ch in "\"'":
            kind, match = "string", _STRING.match(text, pos)
        elif ch.isdigit():
            kind, match = "literal", _DATETIME.match(text, pos) or _NUMBERISH.match(text, pos)
        elif previous is not None and previous.kind == "word" and previous.text == "urgency" \
                and not previous.after_dot and _URGENCY_LEVEL.match(text, pos):
            kind, match = "word", _URGENCY_LEVEL.match(text, pos)
        elif ch.isalpha() or ch == "_":
            kind, match = "word", _WORD.match(text, pos)
        elif ch in _PUNCT:
            kind, match = "punct", None
        else:
            kind, match = "op", _OPERATOR.match(text, pos)
        piece = match.group() if match else ch
        token = _Token(kind, piece.rstrip(" \t\f\r") if kind == "comment" else piece)
        token.after_dot = previous is not None and previous.text == "."
        if piece == "-":
            token.unary = _starts_operand(tokens)
        tokens.append(token)
        pos += len(piece)
    return tokens


def _starts_operand(tokens: list[_Token]) -> bool:
    """Whether what comes next after ``tokens`` is an operand (so a `-` there is a sign)."""
    for tok in reversed(tokens):
        if tok.kind == "comment":
            continue
        if tok.kind == "newline":
            return True  # a line that starts with `-` starts a new statement
        return not (_ends_operand(tok) or tok.kind in ("literal", "string") or tok.text in _CLOSERS)
    return True


# ---- lines ---------------------------------------------------------------------------------------


def _layout(tokens: list[_Token]) -> list[_Line]:
    """Split the tokens into output lines: the author's lines, with one-line blocks opened up."""
    tokens = _close_empty_blocks(tokens)
    lines: list[_Line] = []
    depth = 0
    form: str | None = None
    line = _Line(depth)

    def flush() -> None:
        nonlocal line
        lines.append(line)
        line = _Line(depth)

    for index, tok in enumerate(tokens):
        if tok.kind == "newline":
            flush()
            continue
        if tok.kind == "comment":
            line.comment = tok.text
            continue
        if tok.text == "}" and line.tokens and line.last != "{":
            flush()  # `}` goes on its own line
        if not line.tokens and depth == 0 and tok.kind == "word" and tok.text in _TOP_LEVEL:
            form = tok.text
        line.form = form
        line.tokens.append(tok)
        if tok.text in _OPENERS:
            depth += 1
        elif tok.text in _CLOSERS:
            depth = max(0, depth - 1)
        if tok.text == "{":
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and following.kind not in ("newline", "comment") \
                    and following.text != "}":
                flush()  # `{` ends its line
    if line.tokens or line.comment is not None:
        lines.append(line)
    return lines


def _close_empty_blocks(tokens: list[_Token]) -> list[_Token]:
    """`{` and `}` with only line breaks between them become `{}`."""
    out: list[_Token] = []
    for tok in tokens:
        if tok.text == "}":
            cut = len(out)
            while cut and out[cut - 1].kind == "newline":
                cut -= 1
            if cut < len(out) and cut and out[cut - 1].text == "{":
                del out[cut:]
        out.append(tok)
    return out


def _blank_lines(lines: list[_Line]) -> list[_Line]:
    """At most one blank line in a row, none at the edges of a block, one between top-level forms."""
    kept: list[_Line] = []
    for line in lines:
        if line.blank and (not kept or kept[-1].blank or kept[-1].last == "{"):
            continue
        if not line.blank and line.first == "}" and kept and kept[-1].blank:
            kept.pop()
        kept.append(line)
    while kept and kept[-1].blank:
        kept.pop()

    out: list[_Line] = []
    for line in kept:
        starts_form = line.depth == 0 and line.first in _TOP_LEVEL
        if starts_form and out:
            # The comments right above a form belong to it: the blank line goes above them.
            at = len(out)
            while at and out[at - 1].tokens == [] and out[at - 1].comment is not None \
                    and out[at - 1].depth == 0:
                at -= 1
            before = out[at - 1] if at else None
            if before is not None and not before.blank \
                    and not (before.form == "import" and line.first == "import"):
                out.insert(at, _Line(0))
        out.append(line)
    return out


# ---- rendering -----------------------------------------------------------------------------------


def _render(line: _Line) -> str:
    if line.blank:
        return ""
    depth = line.depth - (1 if line.first in _CLOSERS else 0)
    code = ""
    previous: _Token | None = None
    for tok in line.tokens:
        if previous is not None and _spaced(previous, tok):
            code += " "
        code += tok.text
        previous = tok
    text = INDENT * max(0, depth) + code
    if line.comment is not None:
        text += ("  " if code else "") + line.comment
    return text


def _spaced(previous: _Token, tok: _Token) -> bool:
    """Whether one space separates two tokens of a line (see the module docstring)."""
    if tok.text in (",", ")", "]", ":", "."):
        return False
    if previous.text in ("(", "[", "."):
        return False
    if previous.text == "{" and tok.text == "}":
        return False
    if tok.text == "[" and _ends_operand(previous):
        return False  # `user["First Name"]`
    if tok.text == "(" and previous.kind == "word" and _ends_operand(previous):
        return False  # `date(x)`
    return not previous.unary


def _ends_operand(tok: _Token) -> bool:
    if tok.kind == "word":
        return tok.after_dot or tok.text not in _OPERATOR_WORDS
    return tok.text == "]"
