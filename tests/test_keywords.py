"""One keyword list (pushlang/syntax/keywords.py): the words of the grammar, used by the lexer and the REPL."""

from __future__ import annotations

import re

from pygments.token import Keyword

from pushlang.compiler import THROTTLE_PERIODS as THROTTLE_SECONDS
from pushlang.highlight import lexer
from pushlang.repl import Session
from pushlang.resources import grammar_file
from pushlang.syntax.keywords import (
    BEST_TIME_OPTIONS,
    DELIVER_MODES,
    KEYWORDS,
    LIMIT_PERIODS,
    THROTTLE_PERIODS,
    WHEN_ITEMS,
    WINNER_METRICS,
)


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


def _grammar() -> str:
    return re.sub(r"//[^\n]*", "", grammar_file().read_text(encoding="utf-8"))


def _terminal_words(name: str) -> tuple[str, ...]:
    match = re.search(rf"^{name}(?:\.\d+)?:(.*)$", _grammar(), re.MULTILINE)
    assert match, name
    return tuple(re.findall(r'"([a-z]+)"', match.group(1)))


def test_the_when_items_and_periods_for_completion_are_the_grammars() -> None:
    rule = re.search(r"^\?when_item:(.*?)^\n", _grammar(), re.MULTILINE | re.DOTALL)
    assert rule
    first = [alternative.split()[0] for alternative in rule.group(1).split("|")]
    assert sorted({_terminal_words(t)[0] for t in first}) == sorted(WHEN_ITEMS)
    assert _terminal_words("LIMIT_PERIOD") == LIMIT_PERIODS
    assert _terminal_words("THROTTLE_PERIOD") == THROTTLE_PERIODS == tuple(THROTTLE_SECONDS)
    assert _terminal_words("WINNER_METRIC") == WINNER_METRICS


def test_the_deliver_modes_and_best_time_options_for_completion_are_the_grammars() -> None:
    rule = re.search(r"^\?when_item:(.*?)^\n", _grammar(), re.MULTILINE | re.DOTALL)
    assert rule
    delivers = [a.split("->")[0] for a in rule.group(1).split("|") if a.split()[0] == "DELIVER"]
    assert tuple(" ".join(re.findall(r'"([a-z]+)"', a)) for a in delivers) == DELIVER_MODES
    (best,) = [a for a in delivers if "best" in a]
    options = re.findall(r"\[(\w+)\]", best)  # `[best_between] [best_by]`, in the grammar's order
    firsts = [re.search(rf'^{o}:\s*"([a-z]+)"', _grammar(), re.MULTILINE) for o in options]
    assert tuple(m.group(1) for m in firsts if m) == BEST_TIME_OPTIONS
