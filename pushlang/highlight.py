"""Syntax highlighting for `.push` files: a Pygments lexer (SPEC §1–8).

`PushLexer` is registered as the Pygments plugin ``pushlang`` (entry point group
``pygments.lexers``), so ``pygmentize -l push``, ``get_lexer_for_filename("x.push")`` and
Sphinx/MkDocs code blocks tagged ``push`` find it once the package is installed. The REPL uses it
through prompt-toolkit, and `lexer()` gives an instance whose tokens round-trip the input exactly.

Token types:

==============================================================  ==============================
``# comment``                                                   Comment.Single
``campaign segment template import`` (declaring)                Keyword.Declaration
``who when message use``, ``segment NAME`` in a condition, etc.  Keyword
``true false null``                                             Keyword.Constant
campaign id after ``campaign``                                  Name.Class
segment / template name (declared or referenced)                Name.Entity
variant id in ``message ID P%``                                 Name.Label
platforms, weekdays, urgency level, ``icon default`` name       Name.Constant
``user.country``, ``event.a.b``, ``user["First Name"]``         Name.Variable (``.[]`` Punctuation)
``lower(`` ``date(``                                            Name.Builtin
``"..."`` / ``'...'``                                           String.Double / String.Single
``\\n \\t \\" \\' \\\\ \\u{1F6D2}``, ``@@``                     String.Escape
``@user.first_name`` in a string                                Name.Variable
``@{`` ``}`` around a personalisation                           String.Interpol
filter names after ``|`` inside ``@{...}``                      Name.Function
``10m`` ``2d``, ``10%``, ``42`` ``19.99``                       Number (Integer / Float)
``2026-12-01 09:00``, ``09:00``                                 Literal.Date
``== != <= >= < > + - * / -> |``                                Operator
``{ } ( ) [ ] , . :``                                           Punctuation
==============================================================  ==============================

Characters that cannot appear in a `.push` file (``$``, ``;``, a letter outside ASCII outside a
string, an unknown escape such as ``\\x``) are Error tokens, so the REPL shows a mistake as you
type it. A REPL command line (``:load x.push``) is Keyword.Pseudo + Text.
"""

from __future__ import annotations

import re
from typing import Any

from pygments.lexer import RegexLexer, bygroups, default, include  # type: ignore[import-untyped]
from pygments.token import (  # type: ignore[import-untyped]
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from pushlang.syntax.keywords import BLOCKS, CONSTANTS, KEYWORDS, WORDS

__all__ = ["PushLexer", "lexer"]

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_END = r"(?![A-Za-z0-9_])"  # the end of a word (ASCII, as the grammar's NAME)

_BLOCK_KEYWORDS = BLOCKS
_KEYWORDS = WORDS


def _words(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")" + _END


# The root of a property: `user`, `event`, `trigger` (or any name) before `.name` or `[`.
_ALL_KEYWORDS = _words(KEYWORDS)
_PROP_ROOT = r"(?:user|event|trigger)(?=[.\[])|(?!" + _ALL_KEYWORDS + ")" + _ID + r"(?=\.[A-Za-z0-9_]|\[)"
_DQ = r'"(?:[^"\\\n]|\\.)*"'
_SQ = r"'(?:[^'\\\n]|\\.)*'"


def _prop_steps(*keys: str) -> list[Any]:
    return [
        (r"(\.)([A-Za-z0-9_]+)", bygroups(Punctuation, Name.Variable)),
        (r"(\[)([ \t]*)(" + "|".join(keys) + r")([ \t]*)(\])",
         bygroups(Punctuation, Whitespace, Name.Variable, Whitespace, Punctuation)),
        default("#pop"),
    ]


# A string's escapes (SPEC §1); a backslash before anything else is an error of the file.
_ESCAPE = r"\\(?:[nt\"'\\]|u\{[0-9A-Fa-f]{1,6}\})"


class PushLexer(RegexLexer):  # type: ignore[misc]
    """Pygments lexer for pushlang campaigns (`.push`)."""

    name = "pushlang"
    aliases = ["push", "pushlang"]  # noqa: RUF012 (Pygments' class attributes)
    filenames = ["*.push"]  # noqa: RUF012
    mimetypes = ["text/x-pushlang"]  # noqa: RUF012
    flags = re.MULTILINE

    tokens = {  # noqa: RUF012
        "root": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            # A REPL command (`:load x.push`); never valid in a file, so harmless there.
            (r"^(:[A-Za-z][A-Za-z0-9_-]*)([^\n]*)", bygroups(Keyword.Pseudo, Text)),
            # Declarations.
            (r"(campaign)([ \t]+)(" + _ID + ")", bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(per)([ \t]+)(campaign|day|week|minute|hour)" + _END, bygroups(Keyword, Whitespace, Keyword)),
            (r"(template)([ \t]+)(" + _ID + ")", bygroups(Keyword.Declaration, Whitespace, Name.Entity)),
            (r"(segment)([ \t]+)(" + _ID + r")(?=[ \t]*\{)",
             bygroups(Keyword.Declaration, Whitespace, Name.Entity)),
            (r"^(segment)([ \t]+)(" + _ID + ")", bygroups(Keyword.Declaration, Whitespace, Name.Entity)),
            (r"(?:campaign|template|import)" + _END, Keyword.Declaration),
            (r"^segment" + _END, Keyword.Declaration),
            # Names that stand for one of a fixed set of words.
            (r"(use)([ \t]+)(" + _ID + ")", bygroups(Keyword, Whitespace, Name.Entity)),
            # A variant of an A/B test: `message a 50% {` (SPEC §12.3).
            (r"(message)([ \t]+)(?!use" + _END + ")(" + _ID + r")([ \t]+)(\d+(?:\.\d+)?%)",
             bygroups(Keyword, Whitespace, Name.Label, Whitespace, Number)),
            (r"platforms" + _END, Keyword, "names"),
            (r"(every)([ \t]+)(?!(?:day|month)" + _END + r")(?=[A-Za-z_])",
             bygroups(Keyword, Whitespace), "names"),
            (r"(urgency)([ \t]+)([a-z][a-z-]*)", bygroups(Keyword, Whitespace, Name.Constant)),
            (r"(icon)([ \t]+)(default)([ \t]+)(" + _ID + ")",
             bygroups(Keyword, Whitespace, Keyword, Whitespace, Name.Constant)),
            # Strings: message texts with personalisations (SPEC §7).
            (r'"', String.Double, "dq"),
            (r"'", String.Single, "sq"),
            include("expr"),
        ],
        # What an expression is made of, at the top and inside `@{...}` (strings aside).
        "expr": [
            (r"(segment)([ \t]+)(" + _ID + ")", bygroups(Keyword, Whitespace, Name.Entity)),  # a reference
            (_PROP_ROOT, Name.Variable, "prop"),
            (_words(CONSTANTS), Keyword.Constant),
            (_words(("segment", *_BLOCK_KEYWORDS, *_KEYWORDS)), Keyword),
            (r"(" + _ID + r")([ \t]*)(\()", bygroups(Name.Builtin, Whitespace, Punctuation)),
            (_ID, Name),
            # Literals, as the grammar's terminals (the longest kinds first).
            (r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?![\w:])", Literal.Date),
            (r"\d{2}:\d{2}(?::\d{2})?(?![\w:])", Literal.Date),
            (r"\d+[smhdw](?![\w.])", Number),
            (r"\d+(?:\.\d+)?%", Number),
            (r"\d+\.\d+(?![\w.])", Number.Float),
            (r"\d+(?![\w.])", Number.Integer),
            (r"\d[\w.]*", Error),
            (r"->|==|!=|<=|>=|[<>+\-*/|]", Operator),
            (r"[{}()\[\],.:]", Punctuation),
            (r"""[^\s"']""", Error),
        ],
        # After `platforms` or `every`: `chrome, firefox` / `monday, thursday`.
        "names": [
            (r"[ \t]+", Whitespace),
            (_ID, Name.Constant, ("#pop", "names-next")),
            default("#pop"),
        ],
        "names-next": [
            (r"(\s*)(,)(\s*)", bygroups(Whitespace, Punctuation, Whitespace), ("#pop", "names")),
            default("#pop"),
        ],
        # After a property's root: `.name` and `["Name with spaces"]` steps. Inside a "..." message
        # text the key is written '...' or \"...\" (a bare `"` ends the text), and vice versa.
        "prop": _prop_steps(_DQ, _SQ),
        "prop-in-dq": _prop_steps(_SQ, r'\\"(?:[^"\\\n]|\\[^"\n])*\\"'),
        "prop-in-sq": _prop_steps(_DQ, r"\\'(?:[^'\\\n]|\\[^'\n])*\\'"),
        # In a string: `@user.first_name`, `@@`, escapes. A string not closed on its line ends
        # there (nothing here matches a newline: Pygments then goes back to "root").
        "personalise": [
            (_ESCAPE, String.Escape),
            (r"\\", Error),
            (r"@@", String.Escape),
            (r"@(?:user|event|trigger)(?:\.[A-Za-z0-9_]+)+", Name.Variable),
        ],
        "dq": [
            (r'"', String.Double, "#pop"),
            (r"@\{", String.Interpol, "interp-dq"),
            include("personalise"),
            (r'[^"\\@\n]+|@', String.Double),
        ],
        "sq": [
            (r"'", String.Single, "#pop"),
            (r"@\{", String.Interpol, "interp-sq"),
            include("personalise"),
            (r"[^'\\@\n]+|@", String.Single),
        ],
        # `@{expr | filter | filter: arg}` in a "..." or a '...' string. The enclosing string's
        # own quote ends it too (an unclosed `@{`): then `default` pops back to the string.
        "interp-dq": [
            (r"\}", String.Interpol, "#pop"),
            (_PROP_ROOT, Name.Variable, "prop-in-dq"),
            (r"'", String.Single, "plain-sq"),
            (r'\\"(?:[^"\\\n]|\\[^"\n])*\\"', String.Double),  # a string written \"...\"
            include("interp"),
            default("#pop"),
        ],
        "interp-sq": [
            (r"\}", String.Interpol, "#pop"),
            (_PROP_ROOT, Name.Variable, "prop-in-sq"),
            (r'"', String.Double, "plain-dq"),
            (r"\\'(?:[^'\\\n]|\\[^'\n])*\\'", String.Single),  # a string written \'...\'
            include("interp"),
            default("#pop"),
        ],
        "interp": [
            (r"[ \t]+", Whitespace),
            (r"(\|)([ \t]*)(" + _ID + ")", bygroups(Operator, Whitespace, Name.Function)),
            (_ESCAPE, String.Escape),
            include("expr"),
        ],
        # Strings inside a personalisation: plain values. The other quote ends the enclosing
        # string, so it ends these too.
        "plain-dq": [
            (r'"', String.Double, "#pop"),
            (_ESCAPE, String.Escape),
            (r"\\", Error),
            (r"""[^"'\\\n]+""", String.Double),
            default("#pop"),
        ],
        "plain-sq": [
            (r"'", String.Single, "#pop"),
            (_ESCAPE, String.Escape),
            (r"\\", Error),
            (r"""[^"'\\\n]+""", String.Single),
            default("#pop"),
        ],
    }

    @staticmethod
    def analyse_text(text: str) -> float:
        """A guess for `pygments.lexers.guess_lexer`: a campaign, segment or template block."""
        if re.search(r"^(?:campaign|segment|template)[ \t]+[a-z_][a-z0-9_]*\b[^\n]*\{", text, re.MULTILINE):
            return 0.3
        return 0.0


def lexer(**options: Any) -> PushLexer:
    """A `PushLexer` whose tokens round-trip the input exactly (no newline stripped or added)."""
    options.setdefault("stripnl", False)
    options.setdefault("ensurenl", False)
    return PushLexer(**options)
