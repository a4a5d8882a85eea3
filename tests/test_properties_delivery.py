"""Invariants of the delivery controls (SPEC §5, §10, §12.1–12.2) over generated campaigns and logs.

No campaign ever sends more than N in one throttle period, and every throttled decision is made again;
no user gets two sends closer than `min_gap` (unless the later one's campaign ignores global limits);
no rolling window ever holds more than its limit; and the same input gives byte-identical output in
two separate processes with different ``PYTHONHASHSEED``.

Campaigns are generated as `.push` text (one to three, on two events, each with a random throttle,
rolling limits, priority, DND and `ignore global limits`), so the real parser and compiler build
them; logs crowd many users into the same seconds, so that throttle periods fill and reservations
pile up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from pushlang import plan
from pushlang.compiler import compile_text
from pushlang.config import load_config
from pushlang.diagnostics import Sink
from pushlang.runtime.instants import US
from pushlang.runtime.outcomes import Output
from pushlang.runtime.replay import replay
from pushlang.runtime.store import MemoryStore

BASE = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
EVENTS = ["A", "B"]


@dataclass
class Case:
    text: str  # the campaigns
    config: str  # pushlang.toml
    lines: list[str]  # the records

    def __repr__(self) -> str:
        return f"Case(config={self.config!r},\ntext=\n{self.text}\nlines=[\n" + ",\n".join(self.lines) + "])"


@st.composite
def campaign_texts(draw: st.DrawFn, cid: str) -> str:
    when = ['    timezone "UTC"']
    if draw(st.integers(0, 3)):
        when.append(f"    throttle {draw(st.integers(1, 3))} per {draw(st.sampled_from(['minute', 'minute', 'hour']))}")
    windows = draw(st.lists(st.sampled_from(["2m", "5m", "30m", "1h", "3h"]), max_size=2, unique=True))
    when += [f"    limit {draw(st.integers(1, 3))} per {w}" for w in windows]
    if draw(st.booleans()):
        when.append(f"    priority {draw(st.integers(-3, 3))}")
    if not draw(st.integers(0, 3)):
        when.append("    ignore global limits")
    if not draw(st.integers(0, 3)):
        when.append("    dnd 09:30 to 10:00 delay")
    return (f'campaign {cid} {{\n  platforms chrome\n  on "{draw(st.sampled_from(EVENTS))}"\n'
            f"  when {{\n" + "\n".join(when) + "\n  }\n"
            f'  message {{\n    title "{cid}"\n    body "Hello @{{user.id}}"\n  }}\n}}\n')


@st.composite
def cases(draw: st.DrawFn) -> Case:
    ids = ["c1", "c2", "c3"][: draw(st.integers(1, 3))]
    text = "\n".join(draw(campaign_texts(cid)) for cid in ids)
    limits = []
    if draw(st.booleans()):
        limits.append(f'min_gap = "{draw(st.sampled_from(["1m", "10m", "1h"]))}"')
    if draw(st.booleans()):
        limits.append(f"global_per_user_per_day = {draw(st.integers(2, 6))}")
    config = "[limits]\n" + "\n".join(limits) + "\n" if limits else ""
    users = [f"u{i}" for i in range(draw(st.integers(1, 8)))]
    lines = [json.dumps({"type": "subscribe", "user": u, "ts": _ts(0), "platform": "chrome",
                         "endpoint": f"https://push.example/{u}", "keys": {"p256dh": "BPk", "auth": "x1"}})
             for u in users]
    # bursts: many records in one second, seconds a few apart, over up to three hours
    seconds = sorted(draw(st.lists(st.sampled_from([1, 2, 30, 61, 62, 600, 3599, 3600, 3601, 7200, 10800]) |
                                   st.integers(1, 3 * 3600), min_size=1, max_size=50)))
    for second in seconds:
        lines.append(json.dumps({"user": draw(st.sampled_from(users)), "ts": _ts(second),
                                 "name": draw(st.sampled_from(EVENTS))}))
    return Case(text, config, lines)


def _ts(second: int) -> str:
    return (BASE + dt.timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def compiled_plan(case: Case, folder: Path) -> plan.Plan:
    (folder / "pushlang.toml").write_text(case.config, encoding="utf-8")
    sink = Sink()
    config = load_config(str(folder / "pushlang.toml"), sink)
    assert not sink.items, sink.items
    result = compile_text(str(folder / "campaigns.push"), case.text, config=config)
    assert result.plan is not None and not result.diagnostics, result.diagnostics
    return result.plan


UNTIL = int((BASE + dt.timedelta(days=3)).timestamp()) * US  # every delay resolves by then


def run(compiled: plan.Plan, lines: list[str]) -> list[Output]:
    out: list[Output] = []
    summary = replay(compiled, lines, MemoryStore(), out.append, until=UNTIL)
    assert not summary.rejects, summary.rejects
    return out


def at(out: Output) -> dt.datetime:
    return dt.datetime.fromisoformat(out.at.replace("Z", "+00:00"))


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


@PROPERTY
@given(case=cases())
def test_no_throttle_period_holds_more_than_n_and_every_throttled_decision_is_made(case: Case,
                                                                                  tmp_path: Path) -> None:
    compiled = compiled_plan(case, tmp_path)
    throttles = {c.id: c.throttle for c in compiled.campaigns if c.throttle is not None}
    outputs = run(compiled, case.lines)
    per_period: Counter[tuple[str, int]] = Counter()
    delayed: dict[str, Output] = {}
    for out in outputs:
        if out.outcome == "delay" and out.reason == "throttle":
            assert out.send_id is not None and out.until is not None
            delayed[out.send_id] = out
        elif out.send_id in delayed and out.at == delayed[out.send_id].until:
            del delayed[out.send_id]  # made again at its `until`
        throttle = throttles.get(out.campaign)
        if out.outcome != "send" or throttle is None:
            continue
        period = int(at(out).timestamp()) // throttle.period
        per_period[out.campaign, period] += 1
        assert per_period[out.campaign, period] <= throttle.count, (out, throttle)
    target(float(sum(o.reason == "throttle" for o in outputs)), label="throttled delays")
    assert not delayed, f"throttled decisions never made again: {list(delayed.values())}"


@PROPERTY
@given(case=cases())
def test_no_two_sends_closer_than_min_gap_except_exempt_campaigns(case: Case, tmp_path: Path) -> None:
    compiled = compiled_plan(case, tmp_path)
    gap = compiled.settings.min_gap
    exempt = {c.id for c in compiled.campaigns if c.ignore_global_limits}
    last: dict[str, dt.datetime] = {}
    outputs = run(compiled, case.lines)
    target(float(sum(o.reason == "min_gap" for o in outputs)), label="min_gap suppressions")
    for out in outputs:
        if out.outcome != "send":
            continue
        previous = last.get(out.user)
        if gap is not None and previous is not None and out.campaign not in exempt:
            assert at(out) - previous >= dt.timedelta(seconds=gap), (out, previous, gap)
        last[out.user] = at(out)


@PROPERTY
@given(case=cases())
def test_no_rolling_window_holds_more_than_its_limit(case: Case, tmp_path: Path) -> None:
    compiled = compiled_plan(case, tmp_path)
    rolling = {c.id: [limit for limit in c.limits if limit.period == "rolling"] for c in compiled.campaigns}
    sends: dict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
    outputs = run(compiled, case.lines)
    target(float(sum(o.reason == "campaign_limit" for o in outputs)), label="limit suppressions")
    for out in outputs:
        if out.outcome == "send":
            sends[out.campaign, out.user].append(at(out))
    for (campaign, _user), instants in sends.items():
        for limit in rolling[campaign]:
            window = dt.timedelta(seconds=limit.window)
            for i, t in enumerate(instants):  # the window (t − D, t] ending at each send
                inside = sum(1 for s in instants[: i + 1] if s > t - window)
                assert inside <= limit.count, (campaign, t, limit, instants)


SCRIPT = """
import sys
from pushlang.cli import main
sys.exit(main(sys.argv[1:]))
"""


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_same_input_byte_identical_in_two_processes_with_different_hash_seeds(case: Case,
                                                                              tmp_path: Path) -> None:
    (tmp_path / "campaigns.push").write_text(case.text, encoding="utf-8")
    (tmp_path / "pushlang.toml").write_text(case.config, encoding="utf-8")
    # both events once more at the end, so that every campaign decides something
    lines = case.lines + [json.dumps({"user": "u0", "ts": _ts(4 * 3600), "name": name}) for name in EVENTS]
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out-{seed}.jsonl"
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, "replay", str(tmp_path / "campaigns.push"), "--events",
             str(tmp_path / "records.jsonl"), "--config", str(tmp_path / "pushlang.toml"), "--out", str(out),
             "--until", "2026-12-04T09:00:00Z"],
            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0], "no decisions at all"


def test_the_controls_act_on_a_fixed_case(tmp_path: Path) -> None:
    """One fixed case where the throttle delays, a rolling limit and min_gap suppress: the properties
    above are not vacuous."""
    text = """
campaign c1 {
  platforms chrome
  on "A"
  when {
    timezone "UTC"
    throttle 1 per minute
  }
  message {
    title "c1"
    body "Hello"
  }
}

campaign c2 {
  platforms chrome
  on "B"
  when {
    timezone "UTC"
    limit 1 per 1h
    ignore global limits
  }
  message {
    title "c2"
    body "Hello"
  }
}
"""
    lines = [json.dumps({"type": "subscribe", "user": u, "ts": _ts(0), "platform": "chrome",
                         "endpoint": f"https://push.example/{u}", "keys": {"p256dh": "BPk", "auth": "x1"}})
             for u in ("u1", "u2")]
    lines += [json.dumps({"user": u, "ts": _ts(10), "name": "A"}) for u in ("u1", "u2")]
    lines += [json.dumps({"user": "u1", "ts": _ts(s), "name": "B"}) for s in (20, 40)]
    lines += [json.dumps({"user": "u1", "ts": _ts(300), "name": "A"})]
    compiled = compiled_plan(Case(text, '[limits]\nmin_gap = "10m"\n', lines), tmp_path)
    reasons = [(o.campaign, o.user, o.outcome, o.reason) for o in run(compiled, lines)]
    assert reasons == [
        ("c1", "u1", "send", None),
        ("c1", "u2", "delay", "throttle"),
        ("c2", "u1", "send", None),  # exempt from min_gap
        ("c2", "u1", "suppress", "campaign_limit"),  # 1 per 1h, rolling
        ("c1", "u2", "send", None),  # at 09:01:00, its reserved slot
        ("c1", "u1", "suppress", "min_gap"),  # 09:05:00: c2's send at 09:00:20 is 4m40s before
    ]
