"""The compiler never raises: arbitrary text and mutated examples give diagnostics, not tracebacks."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushlang.compiler import compile_text
from pushlang.diagnostics.render import render_json, render_sarif, render_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.push"))]
EXAMPLE_TEXTS += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "stdlib").glob("*.push"))]
EXAMPLE_TEXTS.append("""\
campaign every_other_day {
  send every 2 days at 18:00, 09:00
  when {
    start 2026-12-01 10:00
    limit 1 per day
    limit 2 per 36h
    throttle 500 per minute
    priority -5
  }
  message {
    title "Deals"
    body "Today's deals"
  }
}

campaign month_end {
  send every month on last day at 20:00
  when {
    start 2026-12-01 00:00
  }
  message {
    title "Month end"
    body "Last chance"
  }
}

template spring_sale {
  title "Spring sale"
  body "20% off"
}

campaign spring_ab {
  send every monday at 09:00
  when {
    start 2026-12-01 00:00
    end 2027-01-01 00:00
    cutoff 20:00
  }
  message a 33.33% {
    title "Still thinking?"
    body "Your cart is waiting"
  }
  message b 33.33% use spring_sale
  message c 33.34% use spring_sale {
    title "Last day"
  }
  conversion "Charged" within 2d
  test 10% then winner by conversions after 4h
}

segment vip_or_big {
  if exists user.vip then user.vip == true else did "Charged" at least 2 times in last 30d
}

campaign conditional {
  on "Added To Cart" where if event.price > 100 then event.category != "gifts" else false
  who {
    if user.country in ["IN", "US"]
      then segment vip_or_big
      else (if user.age >= 30 then 1 else 0) == 1
  }
  message {
    title "@{if user.vip == true then 'Your VIP deal' else 'A deal for you'}"
    body "@{if exists user.first_name then user.first_name else 'Hi' | capitalize}, your cart"
  }
  conversion "Charged" within 1d revenue if event.currency == "EUR" then event.amount else event.amount * 0.9
}
""")

# Pieces of the language, so that mutations reach deep into the grammar, not only the lexer.
VOCABULARY = [
    "{", "}", "(", ")", "[", "]", ",", ".", "->", "|", ":", "@", "@{", "@@", '"', "'", "#", "\n", " ",
    "campaign", "segment", "template", "import", "on", "unless", "within", "where", "at", "send", "every",
    "once", "day", "month", "monday", "who", "when", "message", "use", "title", "body", "url", "button",
    "did", "not", "in last", "at least", "times", "exactly", "event.", "user.", "trigger.", "segment",
    "start", "end", "dnd", "delay", "discard", "limit", "per", "cutoff", "timezone", "control group",
    "conversion", "revenue", "10m", "0d", "29", "31", "100%", "2026-02-30", "25:00", "09:00",
    "2026-12-01 09:00", "\\u{1F6D2}", "\\q", "🛒", "\t", "\r\n", "==", ">=", "and", "or", "-", "+",
    "days", "last", "throttle", "priority", "minute", "hour", "0s", "24h", "-5", "101", "0",
    "message a 50%", "message b 50% use", "33.33%", "0%", "test", "then", "winner", "by", "clicks",
    "conversions", "after", "1d", "if", "then", "else", "if user.vip then", "else if", "@{if ",
]


def _compile(text: str) -> None:
    result = compile_text(str(ROOT / "examples" / "fuzz.push"), text)
    if result.plan is None:
        assert result.has_errors, "no plan but no error either"
    for d in result.diagnostics:
        assert d.span.line >= 1 and d.span.column >= 1, d
        assert d.message
    # Every renderer copes with whatever was found.
    render_text(result.diagnostics, result.sources)
    render_json(result.diagnostics)
    render_sarif(result.diagnostics, tool_version="0")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    _compile(text)


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(EXAMPLE_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate-line", "truncate"]))
        at = draw(st.integers(0, max(0, len(text) - 1)))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif kind == "insert":
            piece = draw(st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=5)))
            text = text[:at] + piece + text[at:]
        elif kind == "replace":
            piece = draw(st.sampled_from(VOCABULARY))
            text = text[:at] + piece + text[at + len(piece):]
        elif kind == "duplicate-line":
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            text = text[:at]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_example())
def test_mutated_examples_never_raise(text: str) -> None:
    _compile(text)


def test_examples_themselves_compile() -> None:
    for text in EXAMPLE_TEXTS:
        result = compile_text(str(ROOT / "examples" / "fuzz.push"), text)
        assert not result.has_errors, result.diagnostics
