"""The operator's REPL: a realistic session through prompt-toolkit's pipe input, scripts, errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from pushlang.repl import Session, braces_balanced, inputs, run_interactive, run_script
from pushlang.syntax.keywords import WHEN_ITEMS

CAMPAIGN = '''campaign cart {
  platforms chrome
  on "Added To Cart" where event.price > 20
  unless "Charged" within 10m
  who {
    user.country == "DE"
  }
  message {
    title "Hi @{user.first_name | default: 'friend'}"
    body "Your @event.product_name is waiting"
  }
}'''

RECORDS = [
    '{"type":"profile","user":"u1","ts":"2026-12-01T08:00:00Z","props":{"first_name":"Asha","country":"DE"}}',
    '{"type":"subscribe","user":"u1","ts":"2026-12-01T08:00:00Z","platform":"chrome",'
    '"endpoint":"https://push.example/1","keys":{"p256dh":"x","auth":"y"}}',
    '{"type":"profile","user":"u2","ts":"2026-12-01T08:00:00Z","props":{"country":"US"}}',
    '{"user":"u1","ts":"2026-12-01T08:05:00Z","name":"Added To Cart","props":{"price":120,"product_name":"Lamp"}}',
    '{"user":"u2","ts":"2026-12-01T08:05:00Z","name":"Added To Cart","props":{"price":120,"product_name":"Lamp"}}',
]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the history file goes here
    monkeypatch.chdir(tmp_path)


def test_a_session_through_the_prompt(tmp_path: Path) -> None:
    said: list[str] = []
    session = Session(out=said.append)
    typed = [*CAMPAIGN.splitlines(), *(f":record {r}" for r in RECORDS), ":advance 10m", ":why cart u2",
             ":user u1", 'did "Added To Cart" at least 1 times in last 7d']
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        for line in typed:
            pipe.send_text(line + "\r")
        pipe.send_text("\x04")  # Ctrl-D
        assert run_interactive(session) == 0
    text = "\n".join(said)
    assert "loaded campaign cart" in text
    assert '2026-12-01T08:15:00Z  cart  u1  send  "Hi Asha"' in text  # the timer fired when the clock moved
    assert "clock 2026-12-01T08:15:00Z" in text
    why = next(s for s in said if s.startswith("campaign cart, user u2"))
    assert "✗ not_in_audience: `who` is false for this user" in why
    assert why.endswith("→ suppress (not_in_audience)")
    assert said[-1] == "true"
    assert (tmp_path / ".pushlang_history").read_text(encoding="utf-8").count(":record") == len(RECORDS)


def test_ctrl_c_cancels_the_current_input_and_the_session_goes_on() -> None:
    said: list[str] = []
    session = Session(out=said.append)
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        pipe.send_text("campaign half_typed {\r")
        pipe.send_text("\x03")  # Ctrl-C: the half-typed definition is dropped
        pipe.send_text(":help\r")
        pipe.send_text("\x04")
        assert run_interactive(session) == 0
    assert not any("half_typed" in s for s in said)
    assert any(":load PATH" in s for s in said)


def test_errors_print_a_diagnostic_and_keep_the_session(tmp_path: Path) -> None:
    said: list[str] = []
    session = Session(out=said.append)
    session.handle('campaign broken {\n  on "X"\n  who {\n    segment nope\n  }\n}')
    assert any("<input 1>:4:13: error[PL200]: unknown segment `nope`" in s for s in said)
    assert said[-1].startswith("not loaded")
    session.handle(":time 2026-12-02T00:00:00Z")
    session.handle(":user u1")
    for bad in (":bogus", ":advance soon", ":record {not json", ":why nothing", ":load missing.push",
                "user.country ==", ":time 2020-01-01T00:00:00Z"):
        said.clear()
        session.handle(bad)
        assert said and (said[0].startswith("error:") or "error[" in said[0]), (bad, said)
    said.clear()
    session.handle(CAMPAIGN)  # still alive and loading
    assert said == ["loaded campaign cart"]


def test_script_mode_runs_the_same_session(tmp_path: Path) -> None:
    said: list[str] = []
    script = "\n".join([CAMPAIGN, *(f":record {r}" for r in RECORDS), ":advance 1h", ":decisions 5", ":quit",
                        ":help"])
    assert run_script(Session(out=said.append), io.StringIO(script)) == 0
    assert '2026-12-01T08:15:00Z  cart  u2  suppress  not_in_audience' in said
    assert not any(":load PATH" in s for s in said)  # nothing after :quit


def test_lint_plan_reach_and_load(tmp_path: Path) -> None:
    (tmp_path / "more.push").write_text('segment vip {\n  user.vip == true\n}\n', encoding="utf-8")
    said: list[str] = []
    session = Session(out=said.append)
    session.handle(CAMPAIGN)
    session.handle(":load more.push")
    assert said[-1].startswith("loaded more.push: 1 campaigns, 1 segments")
    session.handle(":plan cart")
    assert '"id": "cart"' in said[-1]
    for r in RECORDS:
        session.handle(f":record {r}")
    session.handle(":reach cart")
    assert "audience" in said[-1] and "reachable" in said[-1]
    session.handle(":lint")
    assert said[-1] == "no problems"
    assert {"campaign", "vip", '"Added To Cart"', "event.price", "user.country"} <= set(session.words())


def test_definitions_are_complete_when_braces_balance() -> None:
    assert braces_balanced('campaign x {\n  message {\n    title "{ not a brace"\n  }\n}')
    assert not braces_balanced("campaign x {\n  who {  # } in a comment\n")
    assert list(inputs(["campaign x {", "}", ":help", ""])) == ["campaign x {\n}", ":help", ""]


def test_send_test_goes_through_the_delivery_layer(tmp_path: Path) -> None:
    from peers.webpush_service import WebPushService

    from pushlang.dispatch.keys import generate

    public = generate(tmp_path / "vapid.pem")
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n', encoding="utf-8")
    with WebPushService(application_server_key=public) as service:
        sub = service.new_subscription("chrome")
        said: list[str] = []
        session = Session(out=said.append)
        session.handle(CAMPAIGN)
        session.handle('campaign shout {\n  on "Anything"\n  message {\n    title "Test"\n    body "For @user.id"\n'
                       '    url "https://shop.example.com"\n  }\n}')
        session.handle(':record {"type":"subscribe","user":"qa","ts":"2026-12-01T08:00:00Z","platform":"chrome",'
                       f'"endpoint":"{sub.endpoint}","keys":{{"p256dh":"{sub.p256dh}","auth":"{sub.auth}"}}}}')
        session.handle(":send-test shout qa")
        assert said[-1].startswith("✓ qa chrome: delivered (status 201)")
        assert service.payloads(sub.id) and b'"body":"For qa"' in (service.payloads(sub.id)[0] or b"")
    said.clear()
    unconfigured = Session(out=said.append, config_path=str(tmp_path / "none.toml"))
    unconfigured.handle('campaign shout {\n  on "A"\n  message {\n    title "T"\n    body "B"\n  }\n}')
    unconfigured.handle(":send-test shout qa")
    assert said[-1].startswith("error: delivery is not configured")


def test_why_decides_a_waiting_delayed_send_again_with_the_engines_steps() -> None:
    """`:why` while a push waits out DND runs the steps a delayed decision runs again (the cut-off
    among them), and names the last decision; once the delay ends, the engine's decision is the same."""
    said: list[str] = []
    session = Session(out=said.append)
    for text in ['''campaign evening {
  send once at 2026-12-05 19:30
  when {
    timezone "Europe/Berlin"
    dnd 19:00 to 21:00 delay
    cutoff 20:30
  }
  message {
    title "Evening sale"
    body "Tonight only"
  }
}''', ':record {"type":"subscribe","user":"u1","ts":"2026-12-01T08:00:00Z","platform":"chrome",'
           '"endpoint":"https://push.example/1","keys":{"p256dh":"x","auth":"y"}}',
                 ":time 2026-12-05T19:00:00Z", ":why evening u1"]:
        session.handle(text)
    why = said[-1]
    assert why.startswith("campaign evening, user u1, now 2026-12-05T19:00:00Z (a delayed send, decided again)")
    assert "last decision: 2026-12-05T18:30:00Z  evening  u1  delay  dnd  until 2026-12-05T20:00:00Z" in why
    assert "✗ dnd: 20:00 in Europe/Berlin is inside DND 19:00–21:00: delayed until 2026-12-05T20:00:00Z" in why
    session.handle(":time 2026-12-05T20:00:00Z")
    assert "2026-12-05T20:00:00Z  evening  u1  suppress  cutoff" in said


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_records_reads_the_bundled_gz_log_with_a_summary(tmp_path: Path) -> None:
    said: list[str] = []
    session = Session([str(EXAMPLES / "abandoned_cart.push")], out=said.append)
    session.handle(f":records {EXAMPLES / 'events.jsonl.gz'}")
    assert said[-1] == "51,946 records fed, clock 2026-12-31T22:00:00Z"
    assert said[-2].startswith("2,841 decisions (control 83, convert 267, delay 296, send 484, suppress 1,711)")
    assert len(said) == 2 and session.failed == 0  # the counts, the summary: no line per decision
    bad = tmp_path / "mixed.jsonl"
    bad.write_text("\n".join([RECORDS[0], *["{nope"] * 5, RECORDS[2]]) + "\n", encoding="utf-8")
    said.clear()
    session.handle(f":records {bad}")
    assert said[-1].splitlines() == [
        "2 records fed, clock 2026-12-31T22:00:00Z; 5 lines rejected",
        *[f"  line {n}: not valid JSON (JSON is malformed: object keys must be strings (byte 1))" for n in (2, 3, 4)],
        "  … and 2 more"]
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes((EXAMPLES / "events.jsonl.gz").read_bytes()[:5000])
    said.clear()
    session.handle(f":records {truncated}")
    assert said[0].startswith(f"error: {truncated} could not be read to the end (truncated)"), said
    assert session.failed == 1


def test_retyping_a_definition_replaces_it(tmp_path: Path) -> None:
    said: list[str] = []
    session = Session([str(EXAMPLES / "abandoned_cart.push")], out=said.append)
    session.handle(CAMPAIGN)
    assert said[-1] == "loaded campaign cart"
    session.handle(CAMPAIGN.replace('title "Hi', 'title "Hello'))
    assert said[-1] == "replaced campaign cart"
    session.handle('campaign cart_abandoned_10m {\n  on "X"\n  message {\n    title "T"\n    body "B"\n  }\n}')
    assert said[-1] == "replaced campaign cart_abandoned_10m"  # one from a loaded file too
    assert session.plan is not None and len(session.plan.campaigns) == 2 and session.failed == 0
    assert len(session.chunks) == 2  # the first `cart` is gone, not kept behind the second
    for r in RECORDS:
        session.handle(f":record {r}")
    session.handle(":advance 10m")
    assert '2026-12-01T08:15:00Z  cart  u1  send  "Hello Asha"' in said


def test_a_script_with_errors_exits_1() -> None:
    assert run_script(Session(out=lambda _: None), io.StringIO(":help\n:time 2026-12-01T00:00:00Z\n")) == 0
    for bad in (":bogus", "campaign x {\n  on\n}", ":records missing.jsonl", "user.country ==", ":load nope.push"):
        said: list[str] = []
        assert run_script(Session(out=said.append), io.StringIO(f":user u1\n{bad}\n:help\n")) == 1, bad
        assert any(":load PATH" in s for s in said)  # the script went on after the error


def test_why_reads_the_users_last_trigger_like_preview(tmp_path: Path) -> None:
    """The last event that triggers (its `where` true), also one fed before the campaign was typed."""
    said: list[str] = []
    session = Session(out=said.append)
    for r in (RECORDS[0], RECORDS[1], RECORDS[3]):
        session.handle(f":record {r}")
    session.handle(':record {"user":"u1","ts":"2026-12-01T08:06:00Z","name":"Added To Cart",'
                   '"props":{"price":5,"product_name":"Pen"}}')  # `where event.price > 20` is false
    session.handle(CAMPAIGN)
    session.handle(":preview cart u1")
    why = said[-1]
    assert why.startswith("campaign cart, user u1, now 2026-12-01T08:06:00Z "
                          "(trigger: Added To Cart at 2026-12-01T08:05:00Z)"), why
    assert "Your Lamp is waiting" in why


def test_completion_follows_the_context() -> None:
    session = Session(out=lambda _: None)
    session.handle(CAMPAIGN)
    session.handle("segment cart_abandoners {\n  user.country == \"DE\"\n}")
    session.handle('campaign cart_ab {\n  on "X"\n  message {\n    title "T"\n    body "B"\n  }\n}')
    for r in RECORDS:
        session.handle(f":record {r}")
    assert session.completions(":plan t") == ("t", [])  # no keywords where a campaign id goes
    assert session.completions(":why cart_ab") == ("cart_ab", [])  # exactly a campaign: nothing to add
    assert session.completions(":why car") == ("car", ["cart", "cart_ab"])  # never the segment
    assert session.completions(":why cart u") == ("u", ["u1", "u2"])
    assert session.completions(":user ") == ("", ["u1", "u2"])
    assert session.completions(":re") == (":re", [":records", ":record", ":reach"])
    assert session.completions("segment cart_abandoners") == ("cart_abandoners", [])
    assert "cart_abandoners" in session.completions("not segment cart")[1]
    assert session.completions(":advance 1") == ("1", [])


def test_completion_knows_the_when_block_and_the_periods_after_per() -> None:
    session = Session(out=lambda _: None)
    earlier = 'campaign c {\n  on "X"  # a { in a comment\n  when {\n    start 2026-12-01 00:00'
    assert session.completions("    ", earlier) == ("", list(WHEN_ITEMS))  # Tab on nothing: the items
    assert session.completions("    t", earlier) == ("t", ["timezone", "throttle"])
    assert session.completions("    pr", earlier) == ("pr", ["priority"])
    assert session.completions("  when { thr", 'campaign c {\n  on "X"') == ("thr", ["throttle"])
    assert session.completions("    throttle 10 per ", earlier) == ("", ["minute", "hour"])
    assert session.completions("    throttle 10 per m", earlier) == ("m", ["minute"])
    assert session.completions("    limit 1 per ", earlier) == ("", ["day", "week", "campaign"])
    assert session.completions("  when { limit 1 per w", "") == ("w", ["week"])
    assert session.completions("per ", "") == ("", ["day", "week", "campaign", "minute", "hour"])
    # outside `when` (and after it is closed), every word: a message field too
    assert "title" in session.completions("    t", 'campaign c {\n  message {')[1]
    assert "title" in session.completions("  t", earlier + "\n  }")[1]
    assert session.completions("  ", 'campaign c {\n  who {') == ("", [])  # Tab on nothing elsewhere
    assert "throttle" in session.completions("thr")[1]  # a keyword like any other


def test_completion_walks_through_a_deliver_item_and_best_time() -> None:
    session = Session(out=lambda _: None)
    earlier = 'campaign c {\n  send once at 2026-12-01 10:00\n  when {\n    start 2026-12-01 00:00'
    assert session.completions("    deliver ", earlier) == ("", ["in user timezone", "at best time"])
    assert session.completions("    deliver a", earlier) == ("a", ["at best time"])
    assert session.completions("  when { deliver i", "campaign c {") == ("i", ["in user timezone"])
    assert session.completions("    deliver at ", earlier) == ("", ["best time"])  # a phrase typed word by word
    assert session.completions("    deliver at best ", earlier) == ("", ["time"])
    assert session.completions("    deliver in user timezone ", earlier) == ("", [])  # complete
    assert session.completions("    deliver at best time ", earlier) == ("", ["between", "by"])
    assert session.completions("    deliver at best time be", earlier) == ("be", ["between"])
    assert session.completions("    deliver at best time between ", earlier) == ("", [])  # a time
    assert session.completions("    deliver at best time between 09:00 ", earlier) == ("", ["and"])
    assert session.completions("    deliver at best time between 09:00 and ", earlier) == ("", [])
    assert session.completions("    deliver at best time between 09:00 and 21:00 ", earlier) == ("", ["by"])
    assert session.completions("    deliver at best time by ", earlier) == ("", [])  # an event
    # outside `when`, `deliver` is followed by nothing in particular
    assert session.completions("  deliver ", "campaign c {\n  message {") == ("", [])
    assert "at" in session.completions("    deliver a", "campaign c {\n  who {")[1]


def test_completion_offers_then_and_else_of_an_if() -> None:
    session = Session(out=lambda _: None)
    earlier = 'campaign c {\n  on "X"\n  who {'
    assert session.completions("    if user.vip == true ", earlier) == ("", ["then"])
    assert session.completions("    if user.vip == true then 1 ", earlier) == ("", ["else"])
    assert session.completions("    if user.vip == ", earlier) == ("", [])  # an operand goes there
    assert session.completions("    if user.vip then ", earlier) == ("", [])
    assert session.completions("    if user.a then 1 else 2 ", earlier) == ("", [])  # the `if` is complete
    assert session.completions("    if user.a then if user.b then 1 else 2 ", earlier) == ("", ["else"])
    assert session.completions('    title "@{if user.vip ', 'campaign c {\n  message {') == ("", ["then"])
    assert "then" in session.completions("    if user.vip == true th", earlier)[1]  # a keyword like any other


def test_completion_walks_through_the_winner_test() -> None:
    session = Session(out=lambda _: None)
    earlier = 'campaign c {\n  send once at 2026-12-01 10:00\n  message a 50% {\n    title "A"\n  }'
    assert "test" in session.completions("  te", earlier)[1]  # a keyword like any other
    assert session.completions("  test 10% ", earlier) == ("", ["then"])
    assert session.completions("  test 10% then ", earlier) == ("", ["winner"])
    assert session.completions("  test 10% then winner ", earlier) == ("", ["by"])
    assert session.completions("  test 10% then winner by ", earlier) == ("", ["clicks", "conversions"])
    assert session.completions("  test 10% then winner by conv", earlier) == ("conv", ["conversions"])
    assert session.completions("  test 10% then winner by clicks ", earlier) == ("", ["after"])
    assert session.completions("  test 10% then winner by clicks after ", earlier) == ("", [])  # a duration
    assert session.completions("  test ", earlier) == ("", [])  # a percent


def test_user_shows_no_internal_counters_and_help_is_aligned() -> None:
    said: list[str] = []
    session = Session(out=said.append)
    session.handle(CAMPAIGN)
    for r in RECORDS:
        session.handle(f":record {r}")
    session.handle(":advance 10m")
    session.handle(":user u1")
    assert "|" not in said[-1] and "  pushes sent in this session: 1, the last 2026-12-01T08:15:00Z (cart)" in said[-1]
    session.handle(":help")
    rows = said[-1].splitlines()[:-1]
    columns = {len(row) - len(row.split("  ")[-1].lstrip()) for row in rows}
    assert len(rows) == 15 and len(columns) == 1, rows
