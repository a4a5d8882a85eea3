"""One keyword list (pushlang/syntax/keywords.py): the words of the grammar, used by the lexer and the REPL."""

from __future__ import annotations

import re

from pygments.token import Keyword

from pushlang.highlight import lexer
from pushlang.repl import Session
from pushlang.resources import grammar_file
from pushlang.syntax.keywords import KEYWORDS


def grammar_words() -> set[str]:
    """Every word the grammar accepts as a keyword: its quoted strings, and the words of the regex
    terminals that match fixed phrases (`at least`, `in last`)."""
    text = re.sub(r"//[^\n]*", "", grammar_file().read_text(encoding="utf-8"))
    words = set(re.findall(r'"([a-z]+)"', text))
    for pattern in re.findall(r"/([^/\n]+)/", text):
        if re.fullmatch(r"[a-z]+(\\s\+[a-z]+)+\\b", pattern):
            words.update(re.findall(r"[a-z]+", pattern.replace("\\s", " ").replace("\\b", "")))
    return words


def test_the_keyword_list_is_the_grammars() -> None:
    words = grammar_words()
    assert {"campaign", "within", "least", "last", "time", "to", "user"} <= words
    assert set(KEYWORDS) == words
    assert len(KEYWORDS) == len(set(KEYWORDS))


def test_the_repl_completes_every_keyword() -> None:
    assert set(KEYWORDS) <= set(Session(out=lambda text: None).words())


def test_the_lexer_highlights_every_keyword() -> None:
    for word in KEYWORDS:
        tokens = [(t, v) for t, v in lexer().get_tokens(f"{word} ") if v.strip()]
        assert tokens and tokens[0][0] in Keyword, (word, tokens)
