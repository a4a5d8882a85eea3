"""The delivery controls in words (SPEC §12.1–12.2, §5, §10): `preview`, the REPL's `:why` and
`reach` explain throttle, min_gap, rolling and weekly limits and priority from the pipeline's own steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pushlang.cli import main
from pushlang.repl import Session

SCENARIOS = Path(__file__).parent / "scenarios"

THROTTLED = """
campaign flash {
  platforms chrome
  on "Go"
  when {
    timezone "UTC"
    throttle 2 per minute
    priority 7
    limit 1 per 36h
  }
  message {
    title "Flash"
    body "Sale"
  }
}
"""


def _records(*users: str, at: str = "2026-12-01T10:00:20Z") -> list[str]:
    out = []
    for user in users:
        out.append(json.dumps({"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                               "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "k", "auth": "a"}}))
    out += [json.dumps({"user": user, "ts": at, "name": "Go"}) for user in users]
    return out


def test_preview_says_why_a_send_was_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    folder = SCENARIOS / "throttle_minute_reservations"
    assert main(["preview", str(folder / "campaign.push"), "--campaign", "flash", "--user", "u5",
                 "--events", str(folder / "records.jsonl")]) == 0
    text = capsys.readouterr().out
    assert ("✗ throttle: throttled: 10:00 UTC already holds 2 sends of this campaign (throttle 2 per minute); "
            "the next minute is full too; delayed to 10:02 UTC, a slot reserved there") in text
    assert "✓ throttle: uses the slot it reserved in 10:02 UTC" in text
    assert text.rstrip().splitlines()[-3:][0].startswith("  title")


def test_preview_says_min_gap_and_the_weekly_limit_in_words(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pushlang.toml"
    config.write_text('[limits]\nmin_gap = "4h"\nglobal_per_user_per_week = 5\n', encoding="utf-8")
    folder = SCENARIOS / "min_gap_boundaries"
    assert main(["preview", str(folder / "campaign.push"), "--campaign", "a", "--user", "u1", "--events",
                 str(folder / "records.jsonl"), "--config", str(config), "--at", "2026-12-01T16:59:59Z"]) == 0
    text = capsys.readouterr().out
    assert "✓ global_limit: 3 of 5 pushes in the user's week 2026-W49" in text
    assert ("✗ min_gap: the previous push, at 2026-12-01T13:00:00Z, was only 3h 59m 59s ago: less than the gap "
            "of 4h") in text
    assert text.rstrip().endswith("→ suppress (min_gap)")


def test_why_in_the_repl_reads_the_rolling_window_and_the_throttle() -> None:
    said: list[str] = []
    session = Session(out=said.append)
    session.handle(THROTTLED)
    for line in _records("u1", "u2", "u3"):
        session.handle(f":record {line}")
    session.handle(":why flash u3")  # its delay, decided again now, before the period it reserved
    why = said[-1]
    assert "(a delayed send, decided again)" in why
    assert "✓ campaign_limit: 0 of 1 in the last 1d 12h" in why
    assert ("✗ throttle: throttled: 10:00 UTC already holds 2 sends of this campaign (throttle 2 per minute); "
            "delayed to 10:01 UTC") in why
    session.handle(":advance 1m")
    assert "10:01:00Z  flash  u3  send" in "\n".join(said[-3:])
    session.handle(":advance 2m")
    session.handle(":why flash u1")  # sent at 10:00:20: a new trigger now meets the rolling limit
    assert "✗ campaign_limit: 1 of 1 in the last 1d 12h already sent" in said[-1]


def test_reach_explains_the_delivery_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "flash.push").write_text(THROTTLED.replace('on "Go"', 'send once at 2026-12-02 10:00'),
                                         encoding="utf-8")
    (tmp_path / "pushlang.toml").write_text('[limits]\nmin_gap = "2h"\n', encoding="utf-8")
    (tmp_path / "records.jsonl").write_text("\n".join(_records(*(f"u{i}" for i in range(5)))) + "\n",
                                            encoding="utf-8")
    assert main(["reach", str(tmp_path / "flash.push"), "--campaign", "flash", "--events",
                 str(tmp_path / "records.jsonl")]) == 0
    text = capsys.readouterr().out
    assert ("note: throttle 2 per minute: at most 2 sends of this campaign in one UTC minute; an occurrence's 5 "
            "sends take at least 3 minutes, the later ones delayed (reason throttle)") in text
    assert "note: limit 1 per 1d 12h: at most 1 of this campaign's pushes to a user in any 1d 12h (rolling)" in text
    assert "note: priority 7: at one instant, its decisions are made before those of lower-priority campaigns" in text
    assert "note: min_gap 2h: no push within 2h after the user's previous push of any campaign" in text


def test_two_triggers_at_one_instant_stay_two_decisions_across_a_resumed_replay(tmp_path: Path) -> None:
    """SPEC §9.4: the second trigger's send_id hashes ordinal 1, also when the replay stops between the
    two records of that instant and resumes on the SQLite store."""
    from pushlang.compiler import compile_text
    from pushlang.runtime.outcomes import Output
    from pushlang.runtime.replay import replay
    from pushlang.runtime.sqlite_store import SqliteStore
    from pushlang.runtime.store import MemoryStore

    result = compile_text("flash.push", THROTTLED.replace("throttle 2 per minute", "throttle 5 per minute")
                          .replace("limit 1 per 36h", "limit 3 per 36h"))
    assert result.plan is not None, result.diagnostics
    lines = [*_records("u1"), json.dumps({"user": "u1", "ts": "2026-12-01T10:00:20Z", "name": "Go"})]
    whole: list[Output] = []
    replay(result.plan, lines, MemoryStore(), whole.append)
    sends = [o.send_id for o in whole if o.outcome == "send"]
    assert len(sends) == 2 and len(set(sends)) == 2
    resumed: list[Output] = []
    for piece in (lines[:2], lines):  # stopped between the two triggers at 10:00:20, then the whole log again
        store = SqliteStore(str(tmp_path / "state.db"))
        try:
            replay(result.plan, piece, store, resumed.append)
        finally:
            store.close()
    assert resumed == whole
