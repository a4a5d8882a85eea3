"""`if COND then A else B` (SPEC §6) through every layer: the plan it compiles to, and how it evaluates."""

from __future__ import annotations

from typing import Any

import pytest

from pushlang import plan
from pushlang.compiler import compile_text
from pushlang.runtime.evaluate import MISSING, Compiler, Env
from pushlang.runtime.render import MissingProperty
from pushlang.runtime.render import compile_text as compile_message_text

VIP = plan.BinOp("==", plan.Var("user", ("vip",)), plan.Const("bool", True))


def segment(condition: str) -> plan.Expr:
    result = compile_text("s.push", f"segment s {{\n  {condition}\n}}\n")
    assert result.plan is not None, [f"{d.span.line}:{d.span.column} {d.message}" for d in result.diagnostics]
    assert plan.from_json(plan.to_json(result.plan)) == result.plan
    return result.plan.segments["s"]


def value(condition: str, **profile: Any) -> Any:
    return Compiler("UTC").compile(segment(condition))(Env("u1", profile, 0))


# ---- the plan ----------------------------------------------------------------------------------


def test_if_lowers_to_its_plan_node() -> None:
    assert segment("if user.vip == true then 'VIP' else 'Hi'") == plan.IfThen(
        VIP, plan.Const("string", "VIP"), plan.Const("string", "Hi"))


def test_if_binds_loosest() -> None:
    expected = plan.IfThen(plan.Var("user", ("c",)), plan.Const("number", 1),
                           plan.BinOp(">", plan.Const("number", 2), plan.Const("number", 1)))
    assert segment("if user.c then 1 else 2 > 1") == expected
    assert segment("if user.c then 1 else (2 > 1)") == expected
    assert segment("(if user.c then 1 else 2) > 1") == plan.BinOp(
        ">", plan.IfThen(plan.Var("user", ("c",)), plan.Const("number", 1), plan.Const("number", 2)),
        plan.Const("number", 1))


def test_the_condition_and_branches_take_whole_expressions() -> None:
    assert segment("if user.a == 1 and not user.b then user.x + 1 else if user.c then 2 else 3") == plan.IfThen(
        plan.BinOp("and", plan.BinOp("==", plan.Var("user", ("a",)), plan.Const("number", 1)),
                   plan.Not(plan.Var("user", ("b",)))),
        plan.BinOp("+", plan.Var("user", ("x",)), plan.Const("number", 1)),
        plan.IfThen(plan.Var("user", ("c",)), plan.Const("number", 2), plan.Const("number", 3)))


def test_the_words_stay_property_names() -> None:
    assert segment('if user.then == event["if"] then user.else else user.if') == plan.IfThen(
        plan.BinOp("==", plan.Var("user", ("then",)), plan.Var("event", ("if",))),
        plan.Var("user", ("else",)), plan.Var("user", ("if",)))


def test_an_if_may_span_lines() -> None:
    assert segment("if user.vip == true\n    then 'VIP'\n    else 'Hi'") == segment("if user.vip == true then 'VIP' else 'Hi'")
    assert segment("if user.vip == true then\n    'VIP' else\n    'Hi'") == segment("if user.vip == true then 'VIP' else 'Hi'")


def test_every_place_of_an_expression_takes_an_if() -> None:
    text = """segment big {
  if exists user.total then user.total > 100 else false
}
campaign c {
  on "Ordered" where if event.paid == true then event.total > 10 else segment big
    at if user.early == true then event.ts + 1h else event.ts + 3h
  who {
    if user.vip == true then did "Visited" in last 7d else segment big
  }
  message {
    title "@{if user.vip == true then 'Your VIP deal' else 'A deal for you'}"
    body "Hi @{if exists user.name then user.name else 'there' | upper}"
    url "https://shop.example.com"
  }
  conversion "Charged" where if event.kind == "x" then true else false within 1d
    revenue if event.currency == "EUR" then event.amount else event.amount * 0.9
}
"""
    result = compile_text("c.push", text)
    assert result.plan is not None, [f"{d.span.line}:{d.span.column} {d.message}" for d in result.diagnostics]
    assert not result.diagnostics
    (campaign,) = result.plan.campaigns
    assert isinstance(campaign.audience, plan.IfThen)
    assert isinstance(result.plan.segments["big"], plan.IfThen)
    assert isinstance(campaign.message.title.parts[0], plan.Personalised)
    assert isinstance(campaign.message.title.parts[0].expr, plan.IfThen)
    assert plan.from_json(plan.to_json(result.plan)) == result.plan


# ---- evaluation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "expected"), [
    ({"vip": True}, "VIP"),
    ({"vip": False}, "Hi"),
    ({}, "Hi"),
    ({"vip": "yes"}, "Hi"),
    ({"vip": None}, "Hi"),
    ({"vip": 1}, "Hi"),
])
def test_only_a_true_condition_gives_the_then_branch(profile: dict[str, Any], expected: str) -> None:
    assert value("if user.vip == true then 'VIP' else 'Hi'", **profile) == expected
    assert value("if user.vip then 'VIP' else 'Hi'", **profile) == expected


def test_a_condition_that_is_not_boolean_gives_the_else_branch() -> None:
    assert value("if user.name then 1 else 2", name="Asha") == 2
    assert value("if user.n then 1 else 2", n=1) == 2
    assert value("if user.list then 1 else 2", list=[True]) == 2
    assert value("if not user.vip then 1 else 2", vip="yes") == 1


def test_the_precedence_example() -> None:
    assert value("if user.c then 1 else 2 > 1", c=True) == 1
    assert value("if user.c then 1 else 2 > 1", c=False) is True
    assert value("(if user.c then 1 else 2) > 1", c=False) is True
    assert value("(if user.c then 1 else 2) > 1", c=True) is False


def test_the_chosen_branch_is_evaluated_like_any_expression() -> None:
    assert value("if user.vip then user.name else 'x'", vip=True) is MISSING
    assert value("if user.vip then 'x' else user.name", vip=False) is MISSING
    assert value("if user.vip then user.age + 1 else 0", vip=True, age=41) == 42
    assert value("if user.vip then user.age + 1 else 0", vip=True, age="41") is MISSING
    # only the chosen branch is read: the other may be missing
    assert value("if user.vip then 'x' else user.name", vip=True) == "x"


def test_an_if_as_a_condition_holds_only_when_its_branch_is_true() -> None:
    condition = Compiler("UTC").condition(segment("if user.vip then user.active else user.old == true"))
    assert condition(Env("u", {"vip": True, "active": True}, 0)) is True
    assert condition(Env("u", {"vip": True, "active": "yes"}, 0)) is False
    assert condition(Env("u", {"vip": True}, 0)) is False
    assert condition(Env("u", {"old": True}, 0)) is True
    assert condition(Env("u", {"vip": "no", "old": False}, 0)) is False


def test_a_personalisation_renders_the_chosen_branch() -> None:
    result = compile_text("c.push", """campaign c {
  on "A"
  message {
    title "@{if user.vip == true then 'VIP' else 'Hi'}"
    body "@{if user.vip == true then user.name else 'there'}"
  }
}
""")
    assert result.plan is not None
    message = result.plan.campaigns[0].message
    title = compile_message_text(message.title, Compiler("UTC"))
    body = compile_message_text(message.body, Compiler("UTC"))
    for profile, expected in (({"vip": True}, "VIP"), ({"vip": False}, "Hi"), ({}, "Hi"), ({"vip": "yes"}, "Hi")):
        assert title(Env("u", profile, 0)) == expected
    assert body(Env("u", {"vip": True, "name": "Asha"}, 0)) == "Asha"
    assert body(Env("u", {"vip": False}, 0)) == "there"
    with pytest.raises(MissingProperty):
        body(Env("u", {"vip": True}, 0))
