"""The decision pipeline is observed, never re-implemented: the tracer's verdicts are the engine's,
and `preview` says what `replay` does (SPEC §9.3, DESIGN.md "One pipeline, observed")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from scenario_runner import Scenario, plan_of, record_lines, scenarios, until_of

from pushlang.cli import main
from pushlang.runtime.campaigns import compile_campaign, compile_segments
from pushlang.runtime.engine import Observer
from pushlang.runtime.instants import iso, parse_instant
from pushlang.runtime.outcomes import Delay, Output, PendingSend
from pushlang.runtime.pipeline import STEP_NAMES, Pipeline, Trace, pending_from, pending_payload
from pushlang.runtime.preview import preview
from pushlang.runtime.records import decode_record
from pushlang.runtime.replay import replay
from pushlang.runtime.store import MemoryStore

SCENARIOS = scenarios()
IDS = [s.name for s in SCENARIOS]
DECISIONS = {"send", "control", "delay", "suppress"}
ROOT = Path(__file__).resolve().parent


class Recorder(Observer):
    """The tracer's run of each decision and the engine's output records, in the order they came."""

    def __init__(self) -> None:
        self.seen: list[Trace | Output] = []

    def decided(self, trace: Trace) -> None:
        self.seen.append(trace)


def _observed(scenario: Scenario, tmp: Path) -> list[Trace | Output]:
    compiled = plan_of(scenario, tmp)
    recorder = Recorder()
    replay(compiled, record_lines(scenario), MemoryStore(), recorder.seen.append, until=until_of(scenario, compiled),
           observer=recorder)
    return recorder.seen


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_the_tracer_decides_as_the_engine(scenario: Scenario, tmp_path: Path) -> None:
    """Every decision of the scenario, traced step by step before the engine applied it: the trace's
    outcome, reason and `until` are those of the record the engine then wrote, and no record is
    written without a trace (a scheduled campaign's `skip` writes none)."""
    seen = _observed(scenario, tmp_path)
    decisions = [o for o in seen if isinstance(o, Output) and o.outcome in DECISIONS]
    traces = [t for t in seen if isinstance(t, Trace)]
    assert decisions and len(decisions) == len([t for t in traces if t.outcome != "skip"])
    for i, item in enumerate(seen):
        if not isinstance(item, Trace) or item.outcome == "skip":
            continue
        record = seen[i + 1]
        assert isinstance(record, Output), (scenario.name, item)
        d = item.decision
        assert (record.campaign, record.user, record.at) == (item.campaign, item.user, iso(item.at))
        assert (record.outcome, record.reason) == (item.outcome, item.reason), (scenario.name, item.verdicts)
        assert record.until == (iso(d.until) if isinstance(d, Delay) else None)
        assert [v.step for v in item.verdicts] == [s for s in STEP_NAMES if s in {v.step for v in item.verdicts}] \
            or item.verdicts[0].step == "at"  # steps in SPEC order (or the on-date trigger's own verdict)


def test_the_suite_sees_every_step_let_a_decision_through_and_stop_one(tmp_path: Path) -> None:
    passed: set[str] = set()
    stopped: set[str] = set()
    for scenario in SCENARIOS:
        folder = tmp_path / scenario.name
        folder.mkdir()
        for item in _observed(scenario, folder):
            if isinstance(item, Trace):
                for v in item.verdicts:
                    (passed if v.decision is None else stopped).add(v.step)
    assert set(STEP_NAMES) <= passed
    assert set(STEP_NAMES) <= stopped


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_preview_says_what_replay_does(scenario: Scenario, tmp_path: Path) -> None:
    """For every user and campaign a scenario decides: `preview --at` the instant of the last decision
    tells the outcome and reason that the replay wrote last."""
    compiled = plan_of(scenario, tmp_path)
    outputs: list[Output] = []
    lines = record_lines(scenario)
    replay(compiled, lines, MemoryStore(), outputs.append, until=until_of(scenario, compiled))
    last: dict[tuple[str, str], Output] = {}
    for out in outputs:
        if out.outcome in DECISIONS:
            last[(out.campaign, out.user)] = out
    records = [decode_record(line) for line in lines]
    for (campaign, user), out in sorted(last.items()):
        at = parse_instant(out.at.replace("Z", "+00:00"))
        shown = preview(compiled, records, campaign, user, at)
        assert (shown.outcome, shown.reason) == (out.outcome, out.reason), (campaign, user, out.at)


def test_preview_of_a_dnd_delay_that_lands_past_the_cutoff(capsys: pytest.CaptureFixture[str]) -> None:
    """The disagreement that made the pipeline one: preview said `send` where replay says `cutoff`."""
    folder = ROOT / "scenarios" / "cutoff_after_dnd_delay"
    argv = ["preview", str(folder / "campaign.push"), "--campaign", "evening_sale", "--user", "u1",
            "--events", str(folder / "records.jsonl")]
    assert main([*argv, "--at", "2026-12-05T20:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "decision at 2026-12-05T18:30:00Z: delay (dnd) until 2026-12-05T20:00:00Z" in out
    assert "decided again at 2026-12-05T20:00:00Z: suppress (cutoff)" in out
    assert out.splitlines()[-1] == "→ suppress (cutoff)"
    assert main(argv) == 0  # without --at: the occurrence, then the delay followed to its end
    assert capsys.readouterr().out.splitlines()[-1] == "→ suppress (cutoff)"
    assert main(["replay", str(folder / "campaign.push"), "--events", str(folder / "records.jsonl"),
                 "--until", "2026-12-06T00:00:00Z"]) == 0
    u1 = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines() if '"u1"' in line]
    assert [(d["outcome"], d["reason"]) for d in u1] == [("delay", "dnd"), ("suppress", "cutoff")]


def test_steps_a_campaign_does_not_use_are_not_run(tmp_path: Path) -> None:
    """A campaign without DND, cut-off, limits, control group or `who` gets only the steps it uses."""
    scenario = next(s for s in SCENARIOS if s.name == "single_action_where")
    compiled = plan_of(scenario, tmp_path)
    c = compiled.campaigns[0]
    steps = Pipeline(compile_campaign(c, compile_segments(compiled, c.timezone)), compiled.settings)
    names = [s.name for s in steps.first]
    assert "dnd" not in names and "cutoff" not in names and "campaign_limit" not in names
    assert {"reachable", "render"} <= set(names)
    assert [s.name for s in steps.again] == [n for n in names if n in ("campaign_ended", "dnd", "cutoff",
                                                                        "campaign_limit", "global_limit")]


def test_a_delay_timer_of_before_is_read_as_a_pending_send() -> None:
    """Delay timers are JSON objects in the stores; one written before PendingSend existed reads the same."""
    written_before: dict[str, Any] = {
        "send_id": "0123456789abcdef01234567", "title": "Hi", "body": "There", "url": None, "image": None,
        "icon": None, "buttons": [["Buy", "https://shop.example.com/b"]], "platforms": ["chrome"],
        "date": "2026-12-05", "zone": "Europe/Berlin"}
    send = pending_from(written_before)
    assert send == PendingSend(send_id="0123456789abcdef01234567", title="Hi", body="There",
                               buttons=(("Buy", "https://shop.example.com/b"),), platforms=("chrome",),
                               date="2026-12-05", zone="Europe/Berlin")
    assert pending_from(pending_payload(send)) == send


def test_views_and_clicks_of_a_users_own_sends_are_recorded_also_once_its_campaign_is_gone(tmp_path: Path) -> None:
    """`viewed` / `clicked` come from the user's own sends, with the campaign the SDK names, also after a
    reload dropped the campaign; a send_id the user was not sent, or no campaign, records nothing."""
    scenario = next(s for s in SCENARIOS if s.name == "single_action_where")
    compiled = plan_of(scenario, tmp_path)
    outputs: list[Output] = []
    store = MemoryStore()
    replay(compiled, record_lines(scenario), store, outputs.append)
    send = next(o for o in outputs if o.outcome == "send")
    assert send.send_id is not None
    reloaded = msgspec.structs.replace(compiled, campaigns=())  # the campaign is no longer loaded
    after: list[Output] = []
    lines = [msgspec.json.encode({"user": send.user, "ts": "2026-12-31T00:00:00Z", "name": name, "props": props})
             for name, props in (("Push Viewed", {"send_id": send.send_id, "campaign": send.campaign}),
                                 ("Push Clicked", {"send_id": send.send_id, "campaign": send.campaign}),
                                 ("Push Clicked", {"send_id": "0" * 24, "campaign": send.campaign}),
                                 ("Push Clicked", {"send_id": send.send_id}))]
    replay(reloaded, lines, store, after.append)
    assert [(o.outcome, o.campaign, o.user, o.send_id) for o in after] == [
        ("viewed", send.campaign, send.user, send.send_id), ("clicked", send.campaign, send.user, send.send_id)]


def _write(folder: Path, campaign: str, records: list[dict[str, Any]]) -> tuple[str, str]:
    (folder / "c.push").write_text(campaign, encoding="utf-8")
    (folder / "r.jsonl").write_text("".join(msgspec.json.encode(r).decode() + "\n" for r in records), encoding="utf-8")
    return str(folder / "c.push"), str(folder / "r.jsonl")


def _subscribe(user: str) -> dict[str, Any]:
    return {"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
            "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "k", "auth": "a"}}


def test_preview_follows_a_user_timezone_schedule_to_the_users_own_occurrence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push, records = _write(tmp_path, '''campaign morning {
  send once at 2026-12-05 09:00
  when {
    deliver in user timezone
    dnd 08:30 to 10:00 discard
  }
  message {
    title "Good morning"
    body "Sale"
  }
}
''', [{"type": "profile", "user": "u1", "ts": "2026-12-01T08:00:00Z", "props": {"timezone": "Pacific/Auckland"}},
      {"type": "profile", "user": "u2", "ts": "2026-12-01T08:00:00Z", "props": {"timezone": "America/Los_Angeles"}},
      _subscribe("u1"), _subscribe("u2")])
    assert main(["preview", push, "--campaign", "morning", "--user", "u2", "--events", records]) == 0
    out = capsys.readouterr().out
    # 09:00 in Los Angeles is 17:00Z, inside DND 08:30–10:00 there (Auckland's 09:00 came first, at 20:00Z)
    assert "decision at 2026-12-05T17:00:00Z: suppress (dnd)" in out and out.splitlines()[-1] == "→ suppress (dnd)"


def test_preview_tells_each_trigger_its_own_decision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    push, records = _write(tmp_path, '''campaign trip {
  platforms chrome
  on "Trip Booked" at date(event.departure) - 1d
  message {
    title "Your trip is tomorrow"
    body "To @event.city"
  }
}
''', [_subscribe("u1"),
      {"user": "u1", "ts": "2026-12-01T10:00:00Z", "name": "Trip Booked",
       "props": {"city": "Rome", "departure": "2026-12-05T09:00:00Z"}},
      {"user": "u1", "ts": "2026-12-01T11:00:00Z", "name": "Trip Booked",
       "props": {"city": "Oslo", "departure": "2026-12-09T09:00:00Z"}}])
    assert main(["preview", push, "--campaign", "trip", "--user", "u1", "--events", records,
                 "--at", "2026-12-06T00:00:00Z"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rome = lines.index('  "Trip Booked" at 2026-12-01T10:00:00Z schedules a decision at 2026-12-04T09:00:00Z')
    assert lines[rome + 1] == "  decision at 2026-12-04T09:00:00Z: send"
    assert '  "Trip Booked" at 2026-12-01T11:00:00Z schedules a decision at 2026-12-08T09:00:00Z' in lines[rome + 2:]
    assert "  pending: at timer due 2026-12-08T09:00:00Z" in lines
    assert lines.index("→ send") < lines.index("  body   To Rome")
