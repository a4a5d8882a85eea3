"""The help lines of syntax errors: every entry of the parser's catalogue (Lark's match_examples) gets
its hint, and only where its kind of mistake was made."""

from __future__ import annotations

import re

import pytest

from pushlang.diagnostics import Diagnostic, Sink
from pushlang.source import Source
from pushlang.syntax.parser import HINTS, Hint, parse

CASES = [(hint, example) for hint in HINTS for example in hint.examples]


def syntax_error(text: str) -> Diagnostic:
    sink = Sink()
    assert parse(Source("case.push", text), sink) is None, text
    (found,) = [d for d in sink.items if d.code == "PL100"]  # (`user || true` also says `user` needs a name)
    return found


@pytest.mark.parametrize(("hint", "example"), CASES,
                         ids=[f"{HINTS.index(h)}-{h.unexpected}-{i}" for i, (h, _) in enumerate(CASES)])
def test_every_example_of_the_catalogue_gets_its_hint(hint: Hint, example: str) -> None:
    d = syntax_error(example)
    unexpected = re.search(r"unexpected (?:character )?`([^`]*)`|unexpected (end of line)", d.message)
    assert unexpected, d.message
    assert d.help == hint.text.format(tok=unexpected.group(1) or unexpected.group(2)), (example, d.message)


def test_the_catalogue_is_big_enough_to_cover_what_people_get_wrong() -> None:
    assert len(HINTS) >= 10 and len(CASES) >= 100


@pytest.mark.parametrize(("text", "help"), [
    # the same parser state, another mistake: the hint follows what was written
    ('campaign c {\n  on "A"\n  unless "B" within soon\n}\n',
     "a duration is a whole number and a unit, with no space: `10m`, `2h`, `7d`"),
    ('campaign c {\n  on "A"\n  unless "B" within 10\n}\n', "durations carry a unit: `10m`, `10h` or `10d` (s, m, h, d, w)"),
    ("template t {\n  title 5\n}\n", None),
    # an `if` without `else` or `then`, and the same words without an `if`
    ("segment s {\n  if user.vip == true then user.a\n}\n", "an `if` needs an `else`: `if C then A else B`"),
    ('campaign c {\n  on "A" where if event.x then true\n  platforms chrome\n}\n',
     "an `if` needs an `else`: `if C then A else B`"),
    ("segment s {\n  user.vip == true\n}\nsegment t {\n  if user.vip vip else 2\n}\n",
     "write `then` after the condition of an `if`: `if C then A else B`"),
    ("segment s {\n  user.vip vip\n}\n", None),
    ("segment s {\n  user.a == 1 2\n}\n", None),
    # the hints that hold in any state
    ('template t {\n  title "a" body "b"\n}\n', "start `body` on a new line: each item of a block goes on its own line"),
    ("template t {\n  icon Hello\n}\n", 'quote it: "Hello"'),
    # a fixed word that took the start of a longer one
    ('campaign c {\n  on "A"\n  when {\n    limit 1 per days\n  }\n}\n', "write `day`: `days` is not a word of the language"),
    ('campaign c {\n  on "A"\n  when {\n    throttle 9 per minutes\n  }\n}\n',
     "write `minute`: `minutes` is not a word of the language"),
    ('campaign c {\n  on "A"\n  when {\n    dnd 21:00 to 09:00 delays\n  }\n}\n',
     "write `delay`: `delays` is not a word of the language"),
])
def test_hints_follow_the_mistake(text: str, help: str | None) -> None:
    assert syntax_error(text).help == help


def test_an_error_inside_a_personalisation_gets_no_catalogue_hint() -> None:
    """`@{...}` is parsed while its file is: the catalogue is not consulted there (it parses files)."""
    sink = Sink()
    parse(Source("case.push", 'template t {\n  title "Hi @{user.x = 1}"\n}\n'), sink)
    (d,) = sink.items
    assert d.code == "PL102" and d.help == "expected an operator, the end of the file, `[`, `|` or `.`"
