"""Which newlines end a statement: the rest are dropped before the parser sees them."""

from __future__ import annotations

from collections.abc import Iterator

from lark import Token

# A newline after one of these cannot end a statement: the line goes on.
_CONTINUES_AFTER = frozenset(
    {"LBRACE", "COMMA", "_ARROW", "AND", "OR", "NOT", "COMPARE", "PLUS", "MINUS", "MUL_OP",
     "IN", "CONTAINS", "WITH", "VBAR", "COLON", "WHERE", "IF", "THEN", "ELSE", "_NL"}
)
_OPEN = frozenset({"LPAR", "LSQB"})
_CLOSE = frozenset({"RPAR", "RSQB"})


class NewlinePostLex:
    """Lark post-lexer: keeps a ``_NL`` only where it separates two statements.

    It also remembers the open blocks (``campaign {``, ``when {`` ...) so that a syntax error
    at the end of the file can say which block still needs closing.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.open_blocks: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        # Tokens are only ever dropped here, never held back: the contextual lexer lexes the
        # next token in the parser's current state, so a delayed token would desynchronise it.
        self.open_blocks = []
        depth = 0
        prev: Token | None = None
        line_first: Token | None = None  # the first token of the current statement
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if depth or prev is None or prev.type in _CONTINUES_AFTER:
                    continue
                line_first = None
            elif line_first is None:
                line_first = tok
            if kind in _OPEN:
                depth += 1
            elif kind in _CLOSE:
                depth = max(0, depth - 1)
            elif kind == "LBRACE":
                self.open_blocks.append(line_first or tok)
                line_first = None
            elif kind == "RBRACE":
                if self.open_blocks:
                    self.open_blocks.pop()
                line_first = None
            prev = tok
            yield tok
