"""`--at` and `--until` without a zone mean one instant everywhere (SPEC §11), and `preview` of a scheduled
campaign shows its next occurrence: from `start`, in the user's zone with `deliver in user timezone`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from pushlang.cli import main
from pushlang.compiler import compile_paths, compile_text
from pushlang.runtime.instants import command_line_instant, iso

REPO = Path(__file__).resolve().parent.parent

SUBSCRIBED = [
    {"type": "profile", "user": "u1", "ts": "2026-12-01T08:00:00Z", "props": {"timezone": "Pacific/Auckland"}},
    {"type": "subscribe", "user": "u1", "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
     "endpoint": "https://push.example/u1", "keys": {"p256dh": "k", "auth": "a"}},
    {"user": "u1", "ts": "2026-12-09T06:00:00Z", "name": "Page Viewed", "props": {}},  # the last record
]


def _campaign(cid: str, schedule: str, when: str) -> str:
    return f'campaign {cid} {{\n  {schedule}\n  when {{\n{when}\n  }}\n' \
           f'  message {{\n    title "Deal"\n    body "Today only"\n  }}\n}}\n'


def _project(folder: Path, campaigns: str, config: str = "") -> tuple[str, str, str]:
    (folder / "c.push").write_text(campaigns, encoding="utf-8")
    (folder / "r.jsonl").write_text("".join(msgspec.json.encode(r).decode() + "\n" for r in SUBSCRIBED),
                                    encoding="utf-8")
    (folder / "pushlang.toml").write_text(config, encoding="utf-8")
    return str(folder / "c.push"), str(folder / "r.jsonl"), str(folder / "pushlang.toml")


def _pushlang(*argv: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pushlang", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_same_at_is_the_same_instant_in_preview_and_reach(tmp_path: Path) -> None:
    """The campaign is in Kolkata, the config in New York: `--at "2026-12-13 11:00"` is 11:00 in Kolkata
    for both commands (05:30Z), not 11:00 in New York (16:00Z) nor UTC."""
    push, records, config = _project(tmp_path, _campaign("deal", "send every day at 09:00", '''
    start 2026-12-01 00:00
    timezone "Asia/Kolkata"'''), 'timezone = "America/New_York"\n')
    common = [push, "--campaign", "deal", "--events", records, "--config", config, "--at", "2026-12-13 11:00"]
    shown = _pushlang("preview", *common, "--user", "u1", cwd=tmp_path)
    reached = _pushlang("reach", *common, "--format", "json", cwd=tmp_path)
    preview_at = re.search(r"records replayed to (\S+)\)", shown)
    assert preview_at is not None, shown
    assert preview_at.group(1) == msgspec.json.decode(reached)["at"] == "2026-12-13T05:30:00Z"
    # the decision of that day's occurrence (09:00 Kolkata, 03:30Z) is the last one by then
    assert "decision at 2026-12-13T03:30:00Z: send" in shown


def test_replay_until_without_a_campaign_is_in_the_configs_zone(tmp_path: Path) -> None:
    """A campaign without its own timezone sends at 11:00 New York (16:00Z), the config's zone: `--until` at
    11:00 read there fires it, a minute earlier does not."""
    push, records, config = _project(tmp_path, _campaign("once", "send once at 2026-12-13 11:00", "    cutoff 23:00"),
                                     'timezone = "America/New_York"\n')
    argv = ["replay", push, "--events", records, "--config", config, "--until"]
    fired = [msgspec.json.decode(line) for line in _pushlang(*argv, "2026-12-13 11:00", cwd=tmp_path).splitlines()]
    assert [(d["at"], d["outcome"]) for d in fired] == [("2026-12-13T16:00:00Z", "send")]
    assert _pushlang(*argv, "2026-12-13 10:59", cwd=tmp_path).strip() == ""


def test_one_rule_for_a_date_time_on_the_command_line(tmp_path: Path) -> None:
    """The campaign's zone, else the config's, else UTC; a date-time with a zone is read as written."""
    push, _, config = _project(tmp_path, _campaign("deal", "send once at 2026-12-20 09:00", '''
    timezone "Asia/Kolkata"''') + _campaign("plain", "send once at 2026-12-20 09:00", "    cutoff 23:00"),
                               'timezone = "America/New_York"\n')
    with_config = compile_paths([push], config_path=config).plan
    without = compile_text(push, Path(push).read_text(encoding="utf-8")).plan  # no config: UTC
    assert with_config is not None and without is not None
    by_id = {c.id: c for c in with_config.campaigns}
    at = "2026-12-13 11:00"
    assert iso(command_line_instant(at, "--at", with_config, by_id["deal"])) == "2026-12-13T05:30:00Z"
    assert iso(command_line_instant(at, "--at", with_config, by_id["plain"])) == "2026-12-13T16:00:00Z"
    assert iso(command_line_instant(at, "--at", with_config)) == "2026-12-13T16:00:00Z"
    assert iso(command_line_instant(at, "--until", without)) == "2026-12-13T11:00:00Z"
    assert iso(command_line_instant("2026-12-13T11:00:00+01:00", "--at", with_config, by_id["deal"])) \
        == "2026-12-13T10:00:00Z"
    with pytest.raises(ValueError, match="--at 'tomorrow' is not a date-time"):
        command_line_instant("tomorrow", "--at", with_config, by_id["deal"])


def _preview(capsys: pytest.CaptureFixture[str], push: str, records: str, cid: str, *more: str) -> list[str]:
    assert main(["preview", push, "--campaign", cid, "--user", "u1", "--events", records, *more]) == 0
    lines: list[str] = capsys.readouterr().out.splitlines()
    for step in {m.group(1) for line in lines if (m := re.match(r"\s+[✓✗] (\w+):", line))}:
        verdicts = {line.strip()[0] for line in lines if re.match(rf"\s+[✓✗] {step}:", line)}
        assert len(verdicts) == 1, f"both ✓ and ✗ {step}: {lines}"
    return lines


def test_preview_of_a_scheduled_campaign_shows_the_next_occurrence(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The last record is at 2026-12-09T06:00Z, after that day's 09:00 in Kolkata (03:30Z): the next
    occurrence is the 10th, not the 9th that a replay to the last record decided last."""
    push, records, _ = _project(tmp_path, _campaign("deal", "send every day at 09:00", '''
    start 2026-12-01 00:00
    timezone "Asia/Kolkata"'''))
    lines = _preview(capsys, push, records, "deal")
    assert lines[0] == "campaign deal, user u1 (records replayed to 2026-12-10T03:30:00Z)"
    assert lines[1] == ("  the next occurrence at or after the last record (2026-12-09T06:00:00Z): "
                        "2026-12-10 09:00 in Asia/Kolkata")
    assert lines[2] == "  decision at 2026-12-10T03:30:00Z: send"
    assert not any("2026-12-09T03:30:00Z" in line for line in lines)
    assert "→ send" in lines


def test_preview_of_a_scheduled_campaign_that_starts_after_the_last_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`start` is 20 December: the next occurrence is the first 09:00 at or after it; with --at before
    it, nothing is decided and the steps are not asked as if it had started."""
    push, records, _ = _project(tmp_path, _campaign("deal", "send every day at 09:00", '''
    start 2026-12-20 00:00
    end 2027-01-31 00:00
    timezone "Asia/Kolkata"'''))
    lines = _preview(capsys, push, records, "deal")
    assert lines[1] == ("  the next occurrence at or after the last record (2026-12-09T06:00:00Z) (the campaign "
                        "starts at 2026-12-19T18:30:00Z): 2026-12-20 09:00 in Asia/Kolkata")
    assert lines[2] == "  decision at 2026-12-20T03:30:00Z: send"
    assert lines[3] == "    ✓ campaign_ended: 2026-12-20T03:30:00Z is before end 2027-01-30T18:30:00Z"
    lines = _preview(capsys, push, records, "deal", "--at", "2026-12-12 12:00")
    assert lines == ["campaign deal, user u1 (records replayed to 2026-12-12T06:30:00Z)",
                     "  no occurrence reached this user by 2026-12-12T06:30:00Z: the campaign starts at "
                     "2026-12-19T18:30:00Z",
                     "  pending: next occurrence 2026-12-20 09:00 in Asia/Kolkata, 2026-12-20T03:30:00Z",
                     "→ no decision"]


def test_preview_of_a_scheduled_campaign_in_the_users_timezone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """u1 lives in Auckland: at the last record it is 19:00 there, so the next 09:00 is the 10th in Auckland
    (2026-12-09T20:00Z), before the campaign zone's (Berlin, 2026-12-10T08:00Z)."""
    push, records, _ = _project(tmp_path, _campaign("deal", "send every day at 09:00", '''
    start 2026-12-01 00:00
    timezone "Europe/Berlin"
    deliver in user timezone'''))
    lines = _preview(capsys, push, records, "deal")
    assert lines[1].endswith(": 2026-12-10 09:00 in Pacific/Auckland")
    assert lines[2] == "  decision at 2026-12-09T20:00:00Z: send"


def test_preview_of_a_schedule_with_no_occurrence_left(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Sent once on the 5th: after the last record there is no occurrence, so the 5th's decision stands
    and the preview says why."""
    push, records, _ = _project(tmp_path, _campaign("once", "send once at 2026-12-05 10:00", '''
    timezone "Europe/Berlin"'''))
    lines = _preview(capsys, push, records, "once")
    assert lines[1] == "  the schedule has no occurrence at or after the last record (2026-12-09T06:00:00Z)"
    assert lines[2] == "  decision at 2026-12-05T09:00:00Z: send"

