"""The TextMate grammar of `.push` files (editors/vscode/syntaxes/pushlang.tmLanguage.json) is what
pushlang.editors.textmate generates from the keyword list."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from pushlang.editors import textmate
from pushlang.syntax.keywords import KEYWORDS, WORDS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "pushlang.tmLanguage.json"


# ---- the grammar, generated --------------------------------------------------------------------

def test_the_committed_grammar_is_a_fresh_generation() -> None:
    fresh = subprocess.run([sys.executable, "-m", "pushlang.editors.textmate"], capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert fresh.stdout == textmate.text()
    assert GRAMMAR.read_text(encoding="utf-8") == fresh.stdout, (
        "regenerate it: python -m pushlang.editors.textmate > editors/vscode/syntaxes/pushlang.tmLanguage.json")


def _keyword_patterns() -> dict[str, str]:
    """The expression's one-word rules: scope → the words of its regex."""
    rules = json.loads(GRAMMAR.read_text(encoding="utf-8"))["repository"]["expression"]["patterns"]
    found = {}
    for rule in rules:
        match = re.fullmatch(r"\(\?<!\[A-Za-z0-9_\]\)\(\?:([a-z|]+)\)\(\?!\[A-Za-z0-9_\]\)", rule.get("match", ""))
        if match:
            found[rule["name"]] = match.group(1)
    return found


def test_every_keyword_of_the_list_is_in_exactly_one_keyword_rule() -> None:
    assert set(textmate.CONDITIONAL) <= set(WORDS) and set(textmate.OPERATOR_WORDS) <= set(WORDS)
    rules = _keyword_patterns()
    assert all(scope.startswith(("keyword.", "constant.language.")) for scope in rules)
    words = [word for alternatives in rules.values() for word in alternatives.split("|")]
    assert sorted(words) == sorted(KEYWORDS)
