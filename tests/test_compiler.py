"""Lowering to the plan (pushlang/plan.py): each schedule and `when` item of the language gives its plan
Struct, and the plan survives a JSON round trip."""

from __future__ import annotations

import pytest

from pushlang import plan
from pushlang.compiler import compile_text

MESSAGE = 'message {\n    title "Hi"\n    body "There"\n    url "https://shop.example.com"\n  }'


def campaign(*items: str, when: tuple[str, ...] = ("start 2026-12-01 10:30",)) -> plan.Campaign:
    block = "\n".join(f"    {w}" for w in when)
    text = "campaign c {\n" + "".join(f"  {i}\n" for i in items) + f"  when {{\n{block}\n  }}\n  {MESSAGE}\n}}\n"
    result = compile_text("c.push", text)
    assert result.plan is not None, [f"{d.span.line}:{d.span.column} {d.message}" for d in result.diagnostics]
    assert plan.from_json(plan.to_json(result.plan)) == result.plan
    (lowered,) = result.plan.campaigns
    return lowered


@pytest.mark.parametrize(("schedule", "expected"), [
    ("send every day at 09:00", plan.SendDaily(("09:00:00",))),
    ("send every day at 18:00, 09:00, 09:00:00", plan.SendDaily(("09:00:00", "18:00:00"))),
    ("send every thursday, monday at 18:30, 07:15:30",
     plan.SendWeekly((1, 4), ("07:15:30", "18:30:00"))),
    ("send every month on day 7 at 10:00, 08:00", plan.SendMonthly(7, ("08:00:00", "10:00:00"))),
    ("send every month on last day at 20:00, 09:00", plan.SendMonthly(plan.LAST_DAY, ("09:00:00", "20:00:00"))),
    ("send every 2 days at 18:00, 09:00, 09:00", plan.SendEvery(2, "2026-12-01", ("09:00:00", "18:00:00"))),
    ("send every 1 day at 09:00", plan.SendEvery(1, "2026-12-01", ("09:00:00",))),
    ("send every 3 days at 09:00\n    , 21:00", plan.SendEvery(3, "2026-12-01", ("09:00:00", "21:00:00"))),
    ("send every day at 09:00,\n    21:00", plan.SendDaily(("09:00:00", "21:00:00"))),
])
def test_recurring_schedules(schedule: str, expected: plan.Schedule) -> None:
    assert campaign(schedule).trigger == expected


def test_every_n_days_counts_from_starts_local_date_in_the_campaigns_zone() -> None:
    # `start` is a local date-time in the campaign's zone: its date is the first day, whatever UTC says.
    lowered = campaign("send every 2 days at 09:00",
                       when=("start 2026-12-01 23:30", 'timezone "Pacific/Auckland"'))
    assert lowered.trigger == plan.SendEvery(2, "2026-12-01", ("09:00:00",))
    assert lowered.start == "2026-12-01T23:30:00" and lowered.timezone == "Pacific/Auckland"


def test_limits_calendar_and_rolling() -> None:
    lowered = campaign('on "Added To Cart"', when=(
        "limit 1 per day", "limit 3 per week", "limit 5 per campaign", "limit 2 per 36h", "limit 1 per 1d",
        "limit 4 per 90m"))
    assert lowered.limits == (
        plan.Limit(1, "day"), plan.Limit(3, "week"), plan.Limit(5, "campaign"),
        plan.Limit(2, "rolling", 129600), plan.Limit(1, "rolling", 86400), plan.Limit(4, "rolling", 5400),
    )


@pytest.mark.parametrize(("line", "expected"), [
    ("throttle 500 per minute", plan.Throttle(500, 60)),
    ("throttle 1 per hour", plan.Throttle(1, 3600)),
])
def test_throttle(line: str, expected: plan.Throttle) -> None:
    assert campaign("send once at 2026-12-02 10:00", when=(line,)).throttle == expected
    assert campaign('on "Signed Up"', when=(line,)).throttle == expected  # live campaigns too


@pytest.mark.parametrize(("line", "expected"), [
    ("priority -5", -5), ("priority - 5", -5), ("priority 100", 100), ("priority -100", -100),
    ("priority 0", 0),
])
def test_priority(line: str, expected: int) -> None:
    assert campaign('on "Signed Up"', when=(line,)).priority == expected
    assert campaign("send every day at 09:00", when=("start 2026-12-01 00:00", line)).priority == expected


def test_defaults_without_the_new_items() -> None:
    lowered = campaign('on "Signed Up"', when=("start 2026-12-01 00:00",))
    assert (lowered.throttle, lowered.priority, lowered.limits) == (None, 0, ())


def compiled(text: str) -> plan.Campaign:
    result = compile_text("c.push", text)
    assert result.plan is not None, [f"{d.span.line}:{d.span.column} {d.message}" for d in result.diagnostics]
    assert not result.diagnostics, [d.message for d in result.diagnostics]
    assert plan.from_json(plan.to_json(result.plan)) == result.plan
    (lowered,) = result.plan.campaigns
    return lowered


def literal(text: str) -> plan.Text:
    return plan.Text((plan.Literal(text),))


def test_two_variants_are_lowered_in_the_order_written_with_weights_in_basis_points() -> None:
    lowered = compiled("""\
campaign cart_ab {
  on "Added To Cart"
  platforms chrome
  message b 50% {
    title "Still thinking?"
    body "Your cart is waiting"
  }
  message a 50% {
    title "20% off"
    body "What is in your cart"
    ttl 2h
  }
}
""")
    assert [(v.id, v.weight) for v in lowered.variants] == [("b", 5000), ("a", 5000)]
    assert lowered.variants[0].message == plan.Message(literal("Still thinking?"), literal("Your cart is waiting"))
    assert lowered.variants[1].message.ttl == 7200
    assert lowered.message == lowered.variants[0].message  # `campaign.message` is the first variant's
    assert lowered.test is None


TEMPLATE = """\
template spring_sale {
  title "Spring sale"
  body "20% off, @{user.first_name | default: 'friend'}"
  url "https://shop.example.com/spring"
  button "Shop" -> "https://shop.example.com"
  tag "spring"
}
"""


def test_three_variants_with_a_template_and_overrides_apply_it_like_a_single_message() -> None:
    lowered = compiled(TEMPLATE + """
campaign spring_ab {
  send every day at 09:00
  when {
    start 2026-12-01 00:00
  }
  platforms chrome, firefox
  message plain 33.33% {
    title "Still thinking?"
    body "Your cart is waiting"
  }
  message templated 33.33% use spring_sale
  message overridden 33.34% use spring_sale {
    title "Last day of the sale"
    button "Cart" -> "https://shop.example.com/cart"
  }
  test 10% then winner by clicks after 4h
}
""")
    assert [(v.id, v.weight) for v in lowered.variants] == [("plain", 3333), ("templated", 3333), ("overridden", 3334)]
    assert sum(v.weight for v in lowered.variants) == 10000
    plain, templated, overridden = (v.message for v in lowered.variants)
    assert plain.url is None and plain.buttons == ()
    # the template alone, exactly as `message use spring_sale` lowers it in a campaign of one message
    single = compiled(TEMPLATE + """
campaign spring {
  send once at 2026-12-01 10:00
  platforms chrome
  message use spring_sale
}
""").message
    assert templated == single
    assert overridden.title == literal("Last day of the sale")
    assert overridden.body == single.body and overridden.url == single.url and overridden.tag == "spring"
    assert overridden.buttons == (plan.Button(literal("Cart"), literal("https://shop.example.com/cart")),)
    assert lowered.message == plain
    assert lowered.test == plan.WinnerTest(10.0, "clicks", 14400)


def test_a_winner_by_conversions() -> None:
    lowered = compiled("""\
campaign sale_ab {
  send at 2026-12-01 10:00, 2026-12-08 10:00
  platforms chrome
  message a 12.5% {
    title "A"
    body "A"
  }
  message b 87.5% {
    title "B"
    body "B"
  }
  conversion "Charged" within 2d
  test 20.5% then winner by conversions after 1d
}
""")
    assert [(v.id, v.weight) for v in lowered.variants] == [("a", 1250), ("b", 8750)]
    assert lowered.test == plan.WinnerTest(20.5, "conversions", 86400)


def test_a_campaign_of_one_message_has_no_variants_and_no_test() -> None:
    lowered = campaign('on "Signed Up"')
    assert (lowered.variants, lowered.test) == ((), None)
