"""A TextMate grammar for `.push` files (VS Code and other editors that read `.tmLanguage.json`).

The grammar is generated from the keyword list the Pygments lexer uses (pushlang/syntax/keywords.py)
and follows the lexer's rules (pushlang/highlight.py), so the two highlight a file alike. The VS Code
extension ships the output as editors/vscode/syntaxes/pushlang.tmLanguage.json; regenerate it after
changing the keywords with

    python -m pushlang.editors.textmate > editors/vscode/syntaxes/pushlang.tmLanguage.json

(a test checks that the committed file is what this prints).

Scopes, all ending in ``.pushlang``:

======================================================  ==========================================
``# comment``                                           comment.line.number-sign
``campaign segment template``                           keyword.other.declaration
``import``                                              keyword.control.import
``who when message use``                                keyword.other.block
``if then else``                                        keyword.control.conditional
``and or not in contains starts ends with exists``      keyword.operator.word
every other keyword (``on``, ``within``, ``limit``…)     keyword.other
``true false null``                                     constant.language
campaign id / segment name / template name              entity.name.type.campaign / .segment / .template
variant id in ``message ID P%``                         entity.name.label.variant
platforms, weekdays, urgency level, ``icon default``    support.constant.platform / .weekday / .urgency / .icon
``user`` ``event`` ``trigger`` (a property's root)      variable.language
another property's root, ``.name`` after it             variable.other.object, variable.other.property
any other name                                          variable.other
``lower(`` ``date(``                                    support.function
``"..."`` / ``'...'``                                   string.quoted.double / string.quoted.single
``\\n \\t \\" \\' \\\\ \\u{1F6D2}``, ``@@``             constant.character.escape
``@user.first_name`` in a string                        variable.other.personalisation
``@{ … }`` in a string                                  meta.interpolation (``@{`` and ``}``:
                                                        punctuation.section.interpolation), its inside
                                                        meta.embedded.line
a filter after ``|`` inside ``@{ … }``                  support.function.filter
``2026-12-01 09:00``, ``09:00``                         constant.numeric.datetime, constant.numeric.time
``36h`` ``10m`` ``90d``                                 constant.numeric.duration
``10%`` ``2.5%``                                        constant.numeric.percent
``42`` ``19.99``                                        constant.numeric.integer / .float
``== != <= >= < >``, ``+ - * /``, ``->``, ``|``         keyword.operator.comparison / .arithmetic /
                                                        .arrow / .pipe
``{ } ( ) [ ] , . :``                                   punctuation.*
a character that cannot appear in a file                invalid.illegal
======================================================  ==========================================
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pushlang.syntax.keywords import BLOCKS, CONSTANTS, DECLARATIONS, WORDS

__all__ = ["CONDITIONAL", "OPERATOR_WORDS", "SCOPE", "grammar", "text"]

SCOPE = "source.pushlang"

# Two kinds of WORDS with scopes of their own; every other word is keyword.other.
CONDITIONAL = ("if", "then", "else")
OPERATOR_WORDS = ("and", "or", "not", "in", "contains", "starts", "ends", "with", "exists")

_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_START = r"(?<![A-Za-z0-9_])"  # the start and the end of a word (ASCII, as the grammar's NAME)
_END = r"(?![A-Za-z0-9_])"
# A string's escapes (SPEC §1); a backslash before anything else is an error of the file.
_ESCAPE = r"\\(?:[nt\"'\\]|u\{[0-9A-Fa-f]{1,6}\})"


def _words(words: tuple[str, ...]) -> str:
    return _START + "(?:" + "|".join(sorted(words, key=lambda w: (-len(w), w))) + ")" + _END


def _scope(name: str) -> str:
    return f"{name}.pushlang"


def _captures(*names: str) -> dict[str, dict[str, str]]:
    return {str(i): {"name": _scope(name)} for i, name in enumerate(names, 1) if name}


def _match(pattern: str, name: str | None = None, *captures: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"match": pattern}
    if name:
        rule["name"] = _scope(name)
    if captures:
        rule["captures"] = _captures(*captures)
    return rule


def _include(name: str) -> dict[str, str]:
    return {"include": f"#{name}"}


def _keyword_rules() -> list[dict[str, Any]]:
    declarations = tuple(w for w in DECLARATIONS if w != "import")
    others = tuple(w for w in WORDS if w not in CONDITIONAL and w not in OPERATOR_WORDS)
    return [
        _match(_words(CONSTANTS), "constant.language"),
        _match(_words(("import",)), "keyword.control.import"),
        _match(_words(declarations), "keyword.other.declaration"),
        _match(_words(BLOCKS), "keyword.other.block"),
        _match(_words(CONDITIONAL), "keyword.control.conditional"),
        _match(_words(OPERATOR_WORDS), "keyword.operator.word"),
        _match(_words(others), "keyword.other"),
    ]


def _string(quote: str, kind: str) -> dict[str, Any]:
    """A message text in ``quote``s: escapes, personalisations, ``@{ … }``. A string not closed on
    its line ends there, as in the lexer."""
    return {
        "name": _scope(f"string.quoted.{kind}"),
        "begin": quote,
        "beginCaptures": {"0": {"name": _scope("punctuation.definition.string.begin")}},
        "end": f"({quote})|$",
        "endCaptures": _captures("punctuation.definition.string.end"),
        "patterns": [_include(f"interpolation-in-{kind}"), _include("personalisation")],
    }


def _plain_string(quote: str, kind: str, other: str) -> dict[str, Any]:
    """A string inside ``@{ … }``: a plain value. The enclosing string's quote (``other``) ends it
    too."""
    return {
        "name": _scope(f"string.quoted.{kind}"),
        "begin": quote,
        "beginCaptures": {"0": {"name": _scope("punctuation.definition.string.begin")}},
        "end": f"({quote})|(?={other})|$",
        "endCaptures": _captures("punctuation.definition.string.end"),
        "patterns": [_match(_ESCAPE, "constant.character.escape"), _match(r"\\", "invalid.illegal.escape")],
    }


def _interpolation(kind: str, quote: str, other: str, other_kind: str) -> dict[str, Any]:
    """``@{expr | filter | filter: arg}`` in a string written with ``quote``s. That quote ends it
    too (an unclosed ``@{``); inside, a string is written with the ``other`` quote, or as
    ``\\"…\\"`` (``\\'…\\'``)."""
    escaped = "\\\\" + quote
    return {
        "name": _scope("meta.interpolation"),
        "contentName": _scope("meta.embedded.line"),
        "begin": r"@\{",
        "beginCaptures": {"0": {"name": _scope("punctuation.section.interpolation.begin")}},
        "end": rf"(\}})|(?={quote})|$",
        "endCaptures": _captures("punctuation.section.interpolation.end"),
        "patterns": [
            _match(r"(\|)[ \t]*(" + _ID + ")", None, "keyword.operator.pipe", "support.function.filter"),
            _include(f"plain-{other_kind}-in-{kind}"),
            _match(f"{escaped}(?:[^{quote}\\\\\\n]|\\\\[^{quote}\\n])*{escaped}", f"string.quoted.{kind}"),
            _match(_ESCAPE, "constant.character.escape"),
            _include("expression"),
        ],
    }


def grammar() -> dict[str, Any]:
    """The grammar, as the JSON object of a `.tmLanguage.json` file."""
    keywords = _words((*DECLARATIONS, *BLOCKS, *CONSTANTS, *WORDS))
    return {
        "information_for_contributors": [
            "Generated by `python -m pushlang.editors.textmate` from the keyword list of",
            "pushlang/syntax/keywords.py: change that module or pushlang/editors/textmate.py, not this file.",
        ],
        "name": "pushlang",
        "scopeName": SCOPE,
        "fileTypes": ["push"],
        "patterns": [
            _include("comment"),
            _include("declaration"),
            _include("item"),
            _include("string-double"),
            _include("string-single"),
            _include("expression"),
        ],
        "repository": {
            "comment": _match(r"(#).*", "comment.line.number-sign", "punctuation.definition.comment"),
            "declaration": {"patterns": [
                _match(_START + r"(campaign)[ \t]+(" + _ID + ")", None,
                       "keyword.other.declaration", "entity.name.type.campaign"),
                _match(_START + r"(template)[ \t]+(" + _ID + ")", None,
                       "keyword.other.declaration", "entity.name.type.template"),
                # `segment NAME {` declares, `segment NAME` in a condition refers (#expression).
                _match(_START + r"(segment)[ \t]+(" + _ID + r")(?=[ \t]*\{)", None,
                       "keyword.other.declaration", "entity.name.type.segment"),
                _match(r"^(segment)[ \t]+(" + _ID + ")", None, "keyword.other.declaration", "entity.name.type.segment"),
            ]},
            # Items whose names stand for one of a fixed set of words, or for a declared name.
            "item": {"patterns": [
                _match(_START + r"(per)[ \t]+(campaign|day|week|minute|hour)" + _END, None, "keyword.other", "keyword.other"),
                _match(_START + r"(use)[ \t]+(" + _ID + ")", None, "keyword.other.block", "entity.name.type.template"),
                # A variant of an A/B test: `message a 50% {` (SPEC §12.3).
                _match(_START + r"(message)[ \t]+(?!use" + _END + ")(" + _ID + r")[ \t]+(\d+(?:\.\d+)?%)", None,
                       "keyword.other.block", "entity.name.label.variant", "constant.numeric.percent"),
                {
                    "name": _scope("meta.platforms"),
                    "begin": _START + "(platforms)" + _END,
                    "beginCaptures": _captures("keyword.other"),
                    "end": r"$|(?=[#}])",
                    "patterns": [_match(_ID, "support.constant.platform"), _include("comma")],
                },
                {
                    "name": _scope("meta.weekdays"),
                    "begin": _START + r"(every)(?=[ \t]+(?!(?:day|month)" + _END + ")[A-Za-z_])",
                    "beginCaptures": _captures("keyword.other"),
                    "end": r"(?=" + _START + "at" + _END + r")|$|(?=[#}])",
                    "patterns": [_match(_ID, "support.constant.weekday"), _include("comma")],
                },
                _match(_START + r"(urgency)[ \t]+([a-z][a-z-]*)", None, "keyword.other", "support.constant.urgency"),
                _match(_START + r"(icon)[ \t]+(default)[ \t]+(" + _ID + ")", None,
                       "keyword.other", "keyword.other", "support.constant.icon"),
            ]},
            "comma": _match(",", "punctuation.separator.comma"),
            "string-double": _string('"', "double"),
            "string-single": _string("'", "single"),
            "personalisation": {"patterns": [
                _match(_ESCAPE, "constant.character.escape"),
                _match(r"\\", "invalid.illegal.escape"),
                _match("@@", "constant.character.escape"),
                # A dotted path; it ends at the first character that cannot continue it (SPEC §7).
                _match(r"(@)(?:user|event|trigger)(?:\.[A-Za-z0-9_]+)+", "variable.other.personalisation",
                       "punctuation.definition.personalisation"),
            ]},
            "interpolation-in-double": _interpolation("double", '"', "'", "single"),
            "interpolation-in-single": _interpolation("single", "'", '"', "double"),
            "plain-single-in-double": _plain_string("'", "single", '"'),
            "plain-double-in-single": _plain_string('"', "double", "'"),
            # What an expression is made of, at the top and inside `@{ … }` (strings aside). When two
            # rules match at the same place the first wins.
            "expression": {"patterns": [
                _match(_START + r"(segment)[ \t]+(" + _ID + ")", None, "keyword.other", "entity.name.type.segment"),
                # The root of a property: `user`, `event`, `trigger` (or any name) before `.name` or `[`.
                _match(_START + r"(?:user|event|trigger)(?=[.\[])", "variable.language"),
                _match(_START + "(?!" + keywords + ")" + _ID + r"(?=\.[A-Za-z0-9_]|\[)",
                       "variable.other.object"),
                _match(r"(\.)([A-Za-z0-9_]+)", None, "punctuation.accessor", "variable.other.property"),
                *_keyword_rules(),
                _match("(" + _ID + r")[ \t]*(?=\()", None, "support.function"),
                _match(_ID, "variable.other"),
                # Literals, as the grammar's terminals (the longest kinds first).
                _match(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?![\w:])", "constant.numeric.datetime"),
                _match(r"\d{2}:\d{2}(?::\d{2})?(?![\w:])", "constant.numeric.time"),
                _match(r"\d+[smhdw](?![\w.])", "constant.numeric.duration"),
                _match(r"\d+(?:\.\d+)?%", "constant.numeric.percent"),
                _match(r"\d+\.\d+(?![\w.])", "constant.numeric.float"),
                _match(r"\d+(?![\w.])", "constant.numeric.integer"),
                _match(r"\d[\w.]*", "invalid.illegal.number"),
                _match("->", "keyword.operator.arrow"),
                _match("==|!=|<=|>=|<|>", "keyword.operator.comparison"),
                _match(r"[+\-*/]", "keyword.operator.arithmetic"),
                _match(r"\|", "keyword.operator.pipe"),
                _match(r"\{", "punctuation.section.block.begin"),
                _match(r"\}", "punctuation.section.block.end"),
                _match(r"\(", "punctuation.section.parens.begin"),
                _match(r"\)", "punctuation.section.parens.end"),
                _match(r"\[", "punctuation.section.brackets.begin"),
                _match(r"\]", "punctuation.section.brackets.end"),
                _include("comma"),
                _match(r"\.", "punctuation.accessor"),
                _match(":", "punctuation.separator.colon"),
                _match(r"""[^\s"']""", "invalid.illegal.character"),
            ]},
        },
    }


def text() -> str:
    """The grammar as the file's text."""
    return json.dumps(grammar(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    sys.stdout.write(text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
