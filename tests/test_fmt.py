"""`pushlang fmt`: canonical, idempotent, comment-keeping, and never changes what a file means."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pushlang.diagnostics import Sink
from pushlang.source import Source
from pushlang.syntax.formatter import fmt_diff, format_source
from pushlang.syntax.parser import parse

ROOT = Path(__file__).resolve().parent.parent
PUSH_FILES = sorted([*ROOT.glob("examples/*.push"), *ROOT.glob("stdlib/*.push")])
IDS = [str(p.relative_to(ROOT)) for p in PUSH_FILES]

STRING_OR_COMMENT = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|#[^\n]*")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


def fmt(text: str, path: str = "t.push") -> str:
    sink = Sink()
    out = format_source(Source(path, text), sink)
    assert out is not None, [d.message for d in sink.items]
    assert not sink.items
    return out


def without_spans(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_spans(v) for k, v in value.items() if not k.endswith("span")}
    if isinstance(value, list | tuple):
        return [without_spans(v) for v in value]
    return value


def meaning(text: str) -> Any:
    sink = Sink()
    module = parse(Source("t.push", text), sink)
    assert module is not None, [d.message for d in sink.items]
    return without_spans(msgspec.to_builtins(module))


def comments(text: str) -> list[str]:
    return [m.group().rstrip() for m in STRING_OR_COMMENT.finditer(text) if m.group().startswith("#")]


@pytest.mark.parametrize("path", PUSH_FILES, ids=IDS)
def test_examples_format_idempotently_and_keep_their_meaning(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = fmt(text, str(path))
    assert fmt(once, str(path)) == once
    assert meaning(once) == meaning(text)
    assert comments(once) == comments(text)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("path", PUSH_FILES, ids=IDS)
def test_scrambled_white_space_comes_back_canonical(path: Path, seed: int) -> None:
    # Re-indent every line, stretch the spaces between tokens, add trailing blanks, CRLF and
    # extra blank lines: the formatter must give back the canonical text (that of the file itself
    # once formatted), with the same meaning.
    rng = random.Random(f"{path.name}:{seed}")
    canonical = fmt(path.read_text(encoding="utf-8"))
    lines = []
    for line in canonical.splitlines():
        if not line:
            lines.extend([""] * rng.randint(1, 3))
            continue
        lines.append(rng.choice(["", " ", "\t", "      "]) + scramble_spaces(line.strip(), rng)
                     + rng.choice(["", " ", "\t "]))
    messy = rng.choice(["\n", "\r\n"]).join(lines) + "\n" * rng.randint(0, 3)
    assert fmt(messy) == canonical
    assert meaning(messy) == meaning(canonical)


def scramble_spaces(line: str, rng: random.Random) -> str:
    out, pos = [], 0
    for m in [*STRING_OR_COMMENT.finditer(line), *DATETIME.finditer(line)]:
        if m.start() < pos:
            continue
        out.append(scramble_code(line[pos:m.start()], rng))
        out.append(m.group())
        pos = m.end()
    out.append(scramble_code(line[pos:], rng))
    return "".join(out)


def scramble_code(code: str, rng: random.Random) -> str:
    code = re.sub(" ", lambda _: " " * rng.randint(1, 3), code)
    code = re.sub(",", lambda _: rng.choice([",", " ,", " , "]), code)
    return re.sub(r"[(\[]", lambda m: m.group() + rng.choice(["", " "]), code)


MESSY = (
    'import   "std/segments"  \r\n'
    'import "std/templates"\r\n'
    '# VIPs only.\r\n'
    'segment  vips { user.vip == true }   # one line\r\n'
    '\r\n\r\n\r\n'
    '   # The cart reminder.\r\n'
    'campaign   cart "Cart" {\n'
    '      labels "cart" ,"retention"\n'
    ' platforms chrome,firefox\n'
    '\n\n\n'
    '  on "Added To Cart" where event.price>20 and  not ( user.country in [ "IN","US" ] )\n'
    '        unless "Charged" within 10m # the window\n'
    '  who {\n'
    '\n'
    '    user["First Name"]   != "x"\n'
    '    user.score >= - 3 or user.tags contains "a"\n'
    '    user.plan in ["a" ,\n'
    ' "b"]\n'
    '\n'
    '  # more to come\n'
    '\n'
    '  }\n'
    '  when { start 2026-12-01 09:00\n'
    ' }\n'
    '  message use cart_reminder {  urgency very-low }\n'
    '  control group 10%\n'
    '  conversion "Charged" within 2d revenue event.amount   \n'
    '}\n'
    'campaign trip {\n'
    '  on "Trip Booked" at date( event.departure )-1d\n'
    '  message use welcome {\n'
    '\n'
    '  }\n'
    '}'
)

CANONICAL = """\
import "std/segments"
import "std/templates"

# VIPs only.
segment vips {
  user.vip == true
}  # one line

# The cart reminder.
campaign cart "Cart" {
  labels "cart", "retention"
  platforms chrome, firefox

  on "Added To Cart" where event.price > 20 and not (user.country in ["IN", "US"])
  unless "Charged" within 10m  # the window
  who {
    user["First Name"] != "x"
    user.score >= -3 or user.tags contains "a"
    user.plan in ["a",
      "b"]

    # more to come
  }
  when {
    start 2026-12-01 09:00
  }
  message use cart_reminder {
    urgency very-low
  }
  control group 10%
  conversion "Charged" within 2d revenue event.amount
}

campaign trip {
  on "Trip Booked" at date(event.departure) - 1d
  message use welcome {}
}
"""


def test_messy_input_gives_the_canonical_text() -> None:
    out = fmt(MESSY)
    assert out == CANONICAL
    assert fmt(out) == out
    assert meaning(out) == meaning(MESSY)
    assert comments(out) == comments(MESSY)


DELIVERY_MESSY = (
    "campaign c {\n"
    "  send every 2   days at 18:00 ,09:00,09:00   # twice is once\n"
    "     , 21:00\n"
    "  when { start 2026-12-01 10:00\n"
    "    limit 2 per   36h\n"
    "   limit 1 per day\n"
    "    throttle   500 per minute  # per UTC minute\n"
    "    priority - 5\n"
    "  }\n"
    "}\n"
    "campaign d {\n"
    "  send every month on last   day at 09:00,18:00\n"
    "  when {\n"
    "    priority   -100\n"
    "  }\n"
    "}\n"
    "campaign e {\n"
    "  send every monday ,thursday at 07:00 ,\n"
    "  19:30\n"
    "}\n"
)

DELIVERY_CANONICAL = """\
campaign c {
  send every 2 days at 18:00, 09:00, 09:00  # twice is once
  , 21:00
  when {
    start 2026-12-01 10:00
    limit 2 per 36h
    limit 1 per day
    throttle 500 per minute  # per UTC minute
    priority -5
  }
}

campaign d {
  send every month on last day at 09:00, 18:00
  when {
    priority -100
  }
}

campaign e {
  send every monday, thursday at 07:00,
  19:30
}
"""


def test_delivery_controls_and_recurring_times_are_laid_out_canonically() -> None:
    out = fmt(DELIVERY_MESSY)
    assert out == DELIVERY_CANONICAL
    assert fmt(out) == out
    assert meaning(out) == meaning(DELIVERY_MESSY)
    assert comments(out) == comments(DELIVERY_MESSY)


VARIANTS_MESSY = (
    "campaign spring_ab {\n"
    "  send once at 2026-12-01 10:00\n"
    "  message   a   33.33%{ title \"Still thinking?\"\n"
    "    body   \"Your cart\"}\n"
    "     message b 33.33%   use  spring_sale  # the template alone\n"
    "  message c_2 33.34% use spring_sale{\n"
    "  title \"Last day\"   # an override\n"
    "  }\n"
    "  test   10%   then winner  by   clicks after 4h  # a tenth first\n"
    "}\n"
)

VARIANTS_CANONICAL = """\
campaign spring_ab {
  send once at 2026-12-01 10:00
  message a 33.33% {
    title "Still thinking?"
    body "Your cart"
  }
  message b 33.33% use spring_sale  # the template alone
  message c_2 33.34% use spring_sale {
    title "Last day"  # an override
  }
  test 10% then winner by clicks after 4h  # a tenth first
}
"""


def test_variants_and_the_winner_test_are_laid_out_canonically() -> None:
    out = fmt(VARIANTS_MESSY)
    assert out == VARIANTS_CANONICAL
    assert fmt(out) == out
    assert meaning(out) == meaning(VARIANTS_MESSY)
    assert comments(out) == comments(VARIANTS_MESSY)


CONDITIONAL_MESSY = (
    "campaign c {\n"
    "  on \"A\"   where if(event.x)then -1 else[1]  contains   2\n"
    "  who {if user.vip==true\n"
    "      then   true   # VIPs\n"
    "    else  if user.age>30 then(user.then)else user.else\n"
    "  }\n"
    "  message { title \"@{if user.vip == true then 'VIP' else 'Hi'}\" }\n"
    "}\n"
)

CONDITIONAL_CANONICAL = """\
campaign c {
  on "A" where if (event.x) then -1 else [1] contains 2
  who {
    if user.vip == true
    then true  # VIPs
    else if user.age > 30 then (user.then) else user.else
  }
  message {
    title "@{if user.vip == true then 'VIP' else 'Hi'}"
  }
}
"""


def test_an_if_is_laid_out_canonically() -> None:
    out = fmt(CONDITIONAL_MESSY)
    assert out == CONDITIONAL_CANONICAL
    assert fmt(out) == out
    assert meaning(out) == meaning(CONDITIONAL_MESSY)
    assert comments(out) == comments(CONDITIONAL_MESSY)


def test_a_comment_line_before_a_closing_brace_stays_in_the_block() -> None:
    assert fmt("segment s {\n  a == 1\n# last word\n}\n") == "segment s {\n  a == 1\n  # last word\n}\n"
    assert fmt("segment s { # why\n}\n") == "segment s {  # why\n}\n"


def test_nested_one_line_blocks_open_up() -> None:
    assert fmt('campaign c { on "E"\n message { title "t" } }') == (
        'campaign c {\n  on "E"\n  message {\n    title "t"\n  }\n}\n'
    )


def test_empty_and_comment_only_files() -> None:
    assert fmt("") == ""
    assert fmt("\n\n  \n") == ""
    assert fmt("# just a note   \r\n\r\n\r\n") == "# just a note\n"


def test_a_syntax_error_gives_none_and_the_diagnostic() -> None:
    sink = Sink()
    assert format_source(Source("bad.push", 'campaign c {\n  on "E" where\n}\n'), sink) is None
    assert [d.code for d in sink.items] == ["PL100"]
    assert sink.items[0].path == "bad.push"


def test_fmt_diff_is_a_unified_diff() -> None:
    old = "segment s { a == 1 }\n"
    diff = fmt_diff("s.push", old, fmt(old))
    assert diff.startswith("--- s.push")
    assert "-segment s { a == 1 }\n" in diff
    assert "+  a == 1\n" in diff
    assert fmt_diff("s.push", "x\n", "x\n") == ""
