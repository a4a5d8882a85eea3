"""Limit counters stay bounded: the per-day and per-week counters no limit reads any more are dropped
(kept: yesterday and the day before, last week), in memory and in the stores, and the limits hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pushlang.compiler import compile_paths
from pushlang.runtime.engine import Engine
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import decode_record
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore

CAMPAIGN = '''campaign nudge {
  platforms chrome
  on "Visited"
  when {
    limit 1 per day
    limit 3 per week
  }
  message {
    title "Back again?"
    body "We kept your place"
  }
}
'''


def records(days: int) -> list[str]:
    lines = [json.dumps({"type": "subscribe", "user": "u1", "ts": "2026-11-30T07:00:00Z", "platform": "chrome",
                         "endpoint": "https://push.example/u1", "keys": {"p256dh": "P", "auth": "A"}})]
    for day in range(days):
        for hour in (9, 15):  # the second visit of a day is over the daily limit
            lines.append(json.dumps({"user": "u1", "ts": 1_796_025_600 + day * 86400 + hour * 3600, "name": "Visited"}))
    return lines


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_counters_of_past_days_and_weeks_are_dropped_and_limits_still_hold(kind: str, tmp_path: Path) -> None:
    (tmp_path / "nudge.push").write_text(CAMPAIGN, encoding="utf-8")
    result = compile_paths([str(tmp_path / "nudge.push")])
    assert result.plan is not None, result.diagnostics
    store: MemoryStore = SqliteStore(str(tmp_path / "state.db")) if kind == "sqlite" else MemoryStore()
    outputs: list[Output] = []
    engine = Engine(result.plan, store, outputs.append)
    for line in records(42):  # six weeks from Monday 2026-11-30 (UTC)
        engine.feed(decode_record(line))
    engine.finish()

    by_day: dict[str, list[str]] = {}
    for o in outputs:
        by_day.setdefault(o.at[:10], []).append(o.reason or o.outcome)
    sends = [o for o in outputs if o.outcome == "send"]
    assert len(sends) == 18  # 3 a week (Mon, Tue, Wed) for 6 weeks
    assert by_day["2026-11-30"] == ["send", "campaign_limit"] and by_day["2026-12-03"] == ["campaign_limit"] * 2

    state = store.get("u1")
    assert state is not None
    # the last send was Wednesday 2027-01-06: that day and the two before, this week and last, the total
    assert state.counters == {
        "*|2027-01-04": 1, "*|2027-01-05": 1, "*|2027-01-06": 1,
        "nudge|2027-01-04": 1, "nudge|2027-01-05": 1, "nudge|2027-01-06": 1,
        "nudge|2026-W53": 3, "nudge|2027-W01": 3, "nudge|all": 18,
    }
    if isinstance(store, SqliteStore):
        store.close()
        reopened = SqliteStore(str(tmp_path / "state.db"))
        again = reopened.get("u1")
        assert again is not None and again.counters == state.counters  # the dropped rows are gone on disk
        reopened.close()
