"""The Pygments lexer for `.push` (pushlang.highlight)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pygments
import pygments.lexers
import pytest
from pygments.formatters import HtmlFormatter
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from pushlang.highlight import PushLexer, lexer

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "examples").glob("*.push"), *(ROOT / "stdlib").glob("*.push")])


def tokens(text: str) -> list[tuple[object, str]]:
    """The tokens of ``text``, white space left out."""
    return [(t, v) for t, v in lexer().get_tokens(text) if t is not Whitespace]


def kind(text: str, value: str, nth: int = 0) -> object:
    """The token type of the ``nth`` token whose text is exactly ``value``."""
    matches = [t for t, v in tokens(text) if v == value]
    assert len(matches) > nth, f"no token {value!r} (#{nth}) in {tokens(text)}"
    return matches[nth]


def test_there_are_sources() -> None:
    assert len(SOURCES) >= 10
    assert {p.parent.name for p in SOURCES} == {"examples", "stdlib"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_and_stdlib_file_lexes_without_error_and_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    toks = list(lexer().get_tokens(text))
    errors = [(t, v) for t, v in toks if t in Error]
    assert errors == []
    assert "".join(v for _, v in toks) == text
    # The raw token stream (what the REPL and other tools see) covers every character in order.
    pos = 0
    for start, _, value in PushLexer().get_tokens_unprocessed(text):
        assert start == pos
        pos += len(value)
    assert pos == len(text)


SNIPPET = """\
import "std/segments"  # the standard segments

segment loyal {
  did "Charged" where event.amount >= 100 at least 2 times in last 90d
}

template hello {
  title 'Hi'
}

campaign cart_10m "Cart, 10 minutes" {
  platforms chrome, firefox
  on "Added To Cart" where event.price > 20.5
  unless "Charged" where event.cart_id == trigger.cart_id within 10m
  who {
    user.country in ["IN", "US"] and lower(user["First Name"]) != null
    not segment loyal
  }
  when {
    start 2026-12-01 09:00
    dnd 21:00 to 09:00 delay
    limit 1 per campaign
  }
  message use hello {
    body "Hey @user.first_name, @{event.price | round: 2} @@ \\u{1F6D2}\\n"
    urgency very-low
    button "Buy" -> "https://x.example/b"
  }
  control group 10%
}
"""


@pytest.mark.parametrize(
    ("value", "expected", "nth"),
    [
        ("# the standard segments", Comment.Single, 0),
        ("import", Keyword.Declaration, 0),
        ("segment", Keyword.Declaration, 0),
        ("loyal", Name.Entity, 0),
        ("template", Keyword.Declaration, 0),
        ("hello", Name.Entity, 0),
        ("campaign", Keyword.Declaration, 0),
        ("cart_10m", Name.Class, 0),
        ("did", Keyword, 0),
        ("where", Keyword, 0),
        ("least", Keyword, 0),
        ("times", Keyword, 0),
        ("last", Keyword, 0),
        ("platforms", Keyword, 0),
        ("chrome", Name.Constant, 0),
        ("firefox", Name.Constant, 0),
        ("within", Keyword, 0),
        ("who", Keyword, 0),
        ("when", Keyword, 0),
        ("message", Keyword, 0),
        ("use", Keyword, 0),
        ("hello", Name.Entity, 1),
        ("segment", Keyword, 1),  # a reference inside `who`
        ("loyal", Name.Entity, 1),
        ("and", Keyword, 0),
        ("not", Keyword, 0),
        ("null", Keyword.Constant, 0),
        ("campaign", Keyword, 1),  # `limit 1 per campaign`
        ("urgency", Keyword, 0),
        ("very-low", Name.Constant, 0),
        ("user", Name.Variable, 0),
        ("country", Name.Variable, 0),
        ('"First Name"', Name.Variable, 0),
        ("event", Name.Variable, 0),
        ("amount", Name.Variable, 0),
        ("trigger", Name.Variable, 0),
        ("cart_id", Name.Variable, 1),
        ("lower", Name.Builtin, 0),
        ("@user.first_name", Name.Variable, 0),
        ("@{", String.Interpol, 0),
        ("round", Name.Function, 0),
        ("|", Operator, 0),
        (":", Punctuation, 0),
        ("@@", String.Escape, 0),
        ("\\u{1F6D2}", String.Escape, 0),
        ("\\n", String.Escape, 0),
        ("'", String.Single, 0),
        ("Hi", String.Single, 0),
        ("Charged", String.Double, 0),
        ("2026-12-01 09:00", Literal.Date, 0),
        ("21:00", Literal.Date, 0),
        ("09:00", Literal.Date, 0),
        (">=", Operator, 0),
        ("==", Operator, 0),
        ("!=", Operator, 0),
        (">", Operator, 0),
        ("->", Operator, 0),
        ("{", Punctuation, 0),
        ("(", Punctuation, 0),
        ("[", Punctuation, 0),
        (",", Punctuation, 0),
        (".", Punctuation, 0),
    ],
)
def test_spot_checks(value: str, expected: object, nth: int) -> None:
    assert kind(SNIPPET, value, nth) is expected


def test_personalisation_delimiters_and_inside() -> None:
    toks = tokens('body "x @{event.price | round: 2} y"')
    assert toks == [
        (Keyword, "body"), (String.Double, '"'), (String.Double, "x "), (String.Interpol, "@{"),
        (Name.Variable, "event"), (Punctuation, "."), (Name.Variable, "price"), (Operator, "|"),
        (Name.Function, "round"), (Punctuation, ":"), (Number.Integer, "2"), (String.Interpol, "}"),
        (String.Double, " y"), (String.Double, '"'),
    ]


@pytest.mark.parametrize("value", ["90d", "10m", "10%", "100", "20.5", "2"])
def test_durations_percents_and_numbers_are_numbers(value: str) -> None:
    assert kind(SNIPPET, value) in Number


def test_snippet_lexes_without_error_and_round_trips() -> None:
    assert [v for t, v in tokens(SNIPPET) if t in Error] == []
    assert "".join(v for _, v in lexer().get_tokens(SNIPPET)) == SNIPPET


def test_personalisation_in_a_single_quoted_string_and_literal_at_signs() -> None:
    text = """title 'Hi @{user.name | default: "friend"}, write to help@example.com'"""
    toks = tokens(text)
    assert (String.Interpol, "@{") in toks
    assert (Name.Function, "default") in toks
    assert (String.Double, "friend") in toks
    assert not any(t is Name.Variable and v.startswith("@example") for t, v in toks)
    assert [v for t, v in toks if t in Error] == []


def test_a_final_dot_after_a_personalised_path_is_text() -> None:
    toks = tokens('body "Your @event.product_name."')
    assert (Name.Variable, "@event.product_name") in toks
    assert (String.Double, ".") in toks


def test_weekdays_after_every_are_constants_and_at_is_a_keyword() -> None:
    toks = tokens("send every monday, thursday at 18:30\nsend every day at 09:00")
    assert (Name.Constant, "monday") in toks
    assert (Name.Constant, "thursday") in toks
    assert toks.count((Keyword, "at")) == 2
    assert (Keyword, "day") in toks
    assert (Literal.Date, "18:30") in toks


def test_delivery_controls_and_the_new_schedules() -> None:
    text = ("send every 2 days at 09:00, 18:00\nsend every month on last day at 20:00\n"
            "when {\n  limit 2 per 36h\n  limit 1 per day\n  throttle 500 per minute\n  throttle 9 per hour\n"
            "  priority -5\n}\n")
    toks = tokens(text)
    assert [v for t, v in toks if t in Error] == []
    for word in ("days", "last", "throttle", "priority", "minute", "hour", "per", "day"):
        assert (Keyword, word) in toks, word
    assert (Number.Integer, "2") in toks and (Number, "36h") in toks
    assert (Operator, "-") in toks and (Number.Integer, "5") in toks
    assert (Literal.Date, "18:00") in toks and (Punctuation, ",") in toks
    assert not any(t is Name.Constant for t, _ in toks)  # `every 2 days` names no weekday


def test_variants_and_the_winner_test() -> None:
    text = ("message a 33.33% {\n  title \"A\"\n}\nmessage b 66.67% use spring_sale {\n}\n"
            "message use spring_sale\ntest 10% then winner by conversions after 4h\n")
    toks = tokens(text)
    assert [v for t, v in toks if t in Error] == []
    assert (Name.Label, "a") in toks and (Name.Label, "b") in toks
    assert (Number, "33.33%") in toks and (Number, "66.67%") in toks
    assert (Name.Entity, "spring_sale") in toks and (Name.Label, "use") not in toks
    for word in ("message", "use", "test", "then", "winner", "by", "conversions", "after"):
        assert (Keyword, word) in toks, word
    assert (Number, "10%") in toks and (Number, "4h") in toks


def test_best_time_and_user_timezone() -> None:
    text = ('when {\n  deliver at best time between 22:00 and 06:00:30 by "Viewed Product", "Charged"\n'
            "  deliver at best time\n  deliver in user timezone\n}\n")
    toks = tokens(text)
    assert [v for t, v in toks if t in Error] == []
    assert "".join(v for _, v in lexer().get_tokens(text)) == text
    for word in ("deliver", "at", "best", "time", "between", "and", "by", "in", "user", "timezone"):
        assert (Keyword, word) in toks, word
    assert (Literal.Date, "22:00") in toks and (Literal.Date, "06:00:30") in toks
    assert (String.Double, "Viewed Product") in toks and (Punctuation, ",") in toks
    assert not any(t in Name for t, _ in toks)  # `user` before `timezone` is no property


def test_an_unclosed_string_or_personalisation_ends_at_the_end_of_its_line() -> None:
    text = 'body "Hi @{user.name | default: \'x\'\nwho {\n  user.vip == true\n}\n'
    toks = tokens(text)
    assert (Keyword, "who") in toks
    assert (Keyword.Constant, "true") in toks
    assert "".join(v for _, v in lexer().get_tokens(text)) == text


def test_characters_outside_the_language_are_errors() -> None:
    assert (Error, "$") in tokens("who { user.x == $ }")
    assert (Error, "\\") in tokens('title "bad \\x escape"')


def test_lexer_keeps_leading_and_trailing_newlines() -> None:
    text = "\n\ncampaign a {\n}\n\n"
    assert "".join(v for _, v in lexer().get_tokens(text)) == text
    assert isinstance(lexer(), PushLexer)


def test_lexer_metadata() -> None:
    assert PushLexer.name == "pushlang"
    assert PushLexer.aliases == ["push", "pushlang"]
    assert PushLexer.filenames == ["*.push"]
    assert PushLexer.mimetypes == ["text/x-pushlang"]
    assert PushLexer.analyse_text((ROOT / "examples" / "abandoned_cart.push").read_text(encoding="utf-8")) > 0
    assert PushLexer.analyse_text("print('hello')") == 0


def _entry_point_installed() -> bool:
    return any(ep.name == "pushlang" for ep in importlib.metadata.entry_points(group="pygments.lexers"))


@pytest.mark.skipif(
    not _entry_point_installed(),
    reason="the pygments.lexers entry point 'pushlang' is not installed: add "
    '[project.entry-points."pygments.lexers"] pushlang = "pushlang.highlight:PushLexer" '
    "to pyproject.toml and reinstall (pip install -e .)",
)
def test_pygments_finds_the_lexer_through_its_plugin_entry_point() -> None:
    (ep,) = [ep for ep in importlib.metadata.entry_points(group="pygments.lexers") if ep.name == "pushlang"]
    assert ep.value == "pushlang.highlight:PushLexer"
    assert type(pygments.lexers.get_lexer_for_filename("x.push")) is PushLexer
    assert type(pygments.lexers.get_lexer_by_name("push")) is PushLexer
    assert type(pygments.lexers.get_lexer_for_mimetype("text/x-pushlang")) is PushLexer


def test_html_output_has_the_expected_css_classes() -> None:
    text = (ROOT / "examples" / "abandoned_cart.push").read_text(encoding="utf-8")
    html = pygments.highlight(text, PushLexer(), HtmlFormatter())
    for css in [
        "c1",  # Comment.Single
        "kd",  # Keyword.Declaration
        "k",  # Keyword
        "nc",  # Name.Class
        "ni",  # Name.Entity
        "no",  # Name.Constant
        "nv",  # Name.Variable
        "nf",  # Name.Function (filters)
        "s2",  # String.Double
        "si",  # String.Interpol
        "ld",  # Literal.Date
        "m",  # Number (durations, percents)
        "mi",  # Number.Integer
        "o",  # Operator
        "p",  # Punctuation
    ]:
        assert f'class="{css}"' in html, css
    assert 'class="err"' not in html
