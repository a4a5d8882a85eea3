"""Best time (SPEC §12.6) as `:why` and `reach` show it: the engine's own choice, observed.

`:why` shows the 24 scores and the chosen k of an occurrence now, and a decision already waiting for
its s + k; `reach` spreads the reachable users over the hours they are decided at. Both choose with
:mod:`pushlang.runtime.best_choice`, as the engine does: the same hours as the engine's decisions,
and the same in memory and in SQL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pushlang import plan
from pushlang.commands.reach import add_parser, run
from pushlang.compiler import compile_paths
from pushlang.repl import Session
from pushlang.runtime import reach
from pushlang.runtime.instants import US, iso, parse_instant, wall
from pushlang.runtime.outcomes import Output
from pushlang.runtime.preview import Note, preview
from pushlang.runtime.reach import COUNTED_IN_SQL, Reach, count_reach, render_text
from pushlang.runtime.records import decode_record
from pushlang.runtime.replay import replay
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore

AT = "2026-12-14T08:00:00Z"  # the occurrence: 09:00 in Berlin

CAMPAIGNS = """\
campaign digest "Digest" {
  send once at 2026-12-14 09:00
  who {
    user.plan == "pro"
  }
  when {
    timezone "Europe/Berlin"
    deliver at best time between 08:00 and 22:00 by "App Opened"
  }
  message {
    title "Your week"
    body "What happened"
    url "https://shop.example.com/week"
  }
}

campaign anytime {
  send once at 2026-12-14 09:00
  when {
    timezone "Europe/Berlin"
    end 2026-12-14 20:00
    cutoff 18:00
    deliver in user timezone
    deliver at best time
  }
  message {
    title "Any time"
    body "Of the day"
    url "https://shop.example.com/day"
  }
}
"""


def _profile(user: str, ts: str, **props: Any) -> dict[str, Any]:
    return {"type": "profile", "user": user, "ts": ts, "props": props}


def _subscribe(user: str, ts: str) -> dict[str, Any]:
    return {"type": "subscribe", "user": user, "ts": ts, "platform": "chrome",
            "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "k", "auth": "a"}}


def _event(user: str, ts: str, name: str = "App Opened") -> dict[str, Any]:
    return {"type": "event", "user": user, "ts": ts, "name": name}


def _records() -> list[dict[str, Any]]:
    """Users with known histories (local hours in their zone; `digest` between 08:00 and 22:00):
    a (Berlin) opens 3× at 18:20 and 5× at 07:10 (outside the window): 18:00 Berlin;
    b (New York) opens 2× at 20:30 NY: k = 17, 02:00 Berlin the next day;
    c (Kolkata, +05:30) opens 2× at 21:15: s + 8 is 21:30 there, 17:00 Berlin;
    d (Berlin) has no history: k = 0, 09:00;
    e (an unknown zone: Berlin's) opens 2× at 13:40, views a product 4× at 16:00 (not `by`): 13:00;
    f (a zone that is a number: Berlin's) opened 130 days ago and after s only: k = 0, 09:00;
    g has no subscription, h is not "pro", i is first seen after s: none of them is counted.
    b opens once more in January (20:30 EST), read in March in EDT."""
    records = [_profile("a", "2026-12-01T00:00:00Z", plan="pro", timezone="Europe/Berlin"),
               _profile("b", "2026-12-01T00:00:00Z", plan="pro", timezone="America/New_York"),
               _profile("c", "2026-12-01T00:00:00Z", plan="pro", timezone="Asia/Kolkata"),
               _profile("d", "2026-12-01T00:00:00Z", plan="pro", timezone="Europe/Berlin"),
               _profile("e", "2026-12-01T00:00:00Z", plan="pro", timezone="Mars/Base"),
               _profile("f", "2026-08-01T00:00:00Z", plan="pro", timezone=5),
               _profile("g", "2026-12-01T00:00:00Z", plan="pro"),
               _profile("h", "2026-12-01T00:00:00Z", plan="basic"),
               _profile("i", "2026-12-14T12:00:00Z", plan="pro")]
    records += [_subscribe(user, "2026-12-01T00:00:00Z") for user in "abcdeh"]
    records += [_subscribe("f", "2026-08-01T00:00:00Z"), _subscribe("i", "2026-12-14T12:00:00Z")]
    for day in (2, 3, 4):
        records.append(_event("a", f"2026-12-0{day}T17:20:00Z"))
    for day in (2, 3, 4, 5, 6):
        records.append(_event("a", f"2026-12-0{day}T06:10:00Z"))
    for day in (2, 3):
        records.append(_event("b", f"2026-12-0{day}T01:30:00Z"))
        records.append(_event("c", f"2026-12-0{day}T15:45:00Z"))
        records.append(_event("e", f"2026-12-0{day}T12:40:00Z"))
        records.append(_event("g", f"2026-12-0{day}T12:40:00Z"))
    for day in (2, 3, 4, 5):
        records.append(_event("e", f"2026-12-0{day}T15:00:00Z", "Viewed Product"))
    records += [_event("f", "2026-08-05T10:00:00Z"), _event("f", "2026-12-14T10:00:00Z"),
                _event("i", "2026-12-14T12:30:00Z"), _event("b", "2027-01-10T01:30:00Z")]
    return sorted(records, key=lambda r: parse_instant(r["ts"]))


DIGEST_HOURS = {2: 1, 9: 2, 13: 1, 17: 1, 18: 1}  # Berlin hour → users (a–f)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("best_time")
    (folder / "campaigns.push").write_text(CAMPAIGNS, encoding="utf-8")
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def compiled(project: Path) -> plan.Plan:
    result = compile_paths([str(project / "campaigns.push")])
    assert result.plan is not None, result.diagnostics
    return result.plan


def _replayed(compiled: plan.Plan, project: Path, store: MemoryStore, until: int | None = None,
              emit: Any = lambda out: None) -> MemoryStore:
    summary = replay(compiled, (project / "records.jsonl").read_bytes().splitlines(), store, emit, until=until)
    assert not summary.rejects
    return store


@pytest.fixture(scope="module")
def sqlite_store(compiled: plan.Plan, project: Path) -> Any:
    store = _replayed(compiled, project, SqliteStore(project / "state.db"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def memory_store(compiled: plan.Plan, project: Path) -> MemoryStore:
    return _replayed(compiled, project, MemoryStore())


def _reach(compiled: plan.Plan, campaign: str, store: MemoryStore, *, per_user: bool = False,
           at: str = AT) -> Reach:
    found = compiled.campaign(campaign)
    assert found is not None
    return count_reach(compiled, found, store, parse_instant(at), per_user=per_user)


# ---- reach ---------------------------------------------------------------------------------------


def test_reach_reads_the_local_hour_across_a_dst_change(compiled: plan.Plan, sqlite_store: SqliteStore) -> None:
    """At 2027-03-20T08:00Z New York is on EDT: b's 20:30 EST open of January is at 20:00 local, k = 16
    (00:00Z, 01:00 in Berlin); the December events are older than 90 days, so the rest take k = 0."""
    r = _reach(compiled, "digest", sqlite_store, at="2027-03-20T08:00:00Z")
    assert r.best_time_hours == [{1: 1, 9: 6}.get(hour, 0) for hour in range(24)]


def test_reach_spreads_the_users_over_their_best_hours(compiled: plan.Plan, sqlite_store: SqliteStore,
                                                       memory_store: MemoryStore) -> None:
    in_sql = _reach(compiled, "digest", sqlite_store)
    assert (in_sql.method, in_sql.counted) == ("sql", COUNTED_IN_SQL)
    assert in_sql.reachable == 6
    assert in_sql.best_time_hours == [DIGEST_HOURS.get(hour, 0) for hour in range(24)]
    assert in_sql.zone == "Europe/Berlin"
    in_memory = _reach(compiled, "digest", memory_store)
    per_user = _reach(compiled, "digest", sqlite_store, per_user=True)
    assert in_memory.method == per_user.method == "per_user"
    assert in_sql.numbers() == in_memory.numbers() == per_user.numbers()


@pytest.mark.parametrize("at", [AT, "2026-12-10T21:00:00Z", "2026-12-14T13:00:00Z", "2027-03-20T08:00:00Z"])
@pytest.mark.parametrize("campaign", ["digest", "anytime"])
def test_reach_hours_agree_in_sql_and_in_memory(campaign: str, at: str, compiled: plan.Plan,
                                                sqlite_store: SqliteStore, memory_store: MemoryStore) -> None:
    """The user's zone, `between`, `end`, the cut-off read on the local date of s in the user's zone
    (`deliver in user timezone`), every event without `by`: the same in SQL as in memory."""
    in_sql = _reach(compiled, campaign, sqlite_store, at=at)
    assert in_sql.method == "sql"
    assert in_sql.best_time_hours is not None and sum(in_sql.best_time_hours) == in_sql.reachable
    assert in_sql.numbers() == _reach(compiled, campaign, memory_store, at=at).numbers() \
        == _reach(compiled, campaign, sqlite_store, at=at, per_user=True).numbers()


def test_reach_hours_do_not_depend_on_the_batches(compiled: plan.Plan, sqlite_store: SqliteStore,
                                                  memory_store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = {store: _reach(compiled, "digest", store).numbers() for store in (sqlite_store, memory_store)}
    monkeypatch.setattr(reach, "BATCH", 2)  # a zone's users chosen for two at a time
    for store, numbers in whole.items():
        assert _reach(compiled, "digest", store).numbers() == numbers


def test_reach_hours_are_the_hours_the_engine_decides_at(compiled: plan.Plan, project: Path) -> None:
    decided: list[Output] = []
    _replayed(compiled, project, MemoryStore(), until=parse_instant(AT) + 86400 * US, emit=decided.append)
    hours = [0] * 24
    for out in decided:
        if out.campaign == "digest" and out.outcome == "send":  # g and h: suppressed at s
            hours[wall(parse_instant(out.at), "Europe/Berlin").hour] += 1
    assert hours == [DIGEST_HOURS.get(hour, 0) for hour in range(24)]
    assert hours == _reach(compiled, "digest", _replayed(compiled, project, MemoryStore())).best_time_hours


def test_reach_without_best_time_has_no_hours(compiled: plan.Plan, memory_store: MemoryStore) -> None:
    digest = compiled.campaign("digest")
    assert digest is not None
    plain = msgspec.structs.replace(digest, best_time=None)  # the same campaign without best time
    r = count_reach(compiled, plain, memory_store, parse_instant(AT))
    assert r.best_time_hours is None and r.to_json()["best_time_hours"] is None
    assert "best time" not in render_text(r)


def test_reach_text_shows_the_histogram(compiled: plan.Plan, sqlite_store: SqliteStore) -> None:
    text = render_text(_reach(compiled, "digest", sqlite_store))
    lines = text.splitlines()
    start = lines.index(f"best time: the 6 reachable users by the hour they are decided at (s + k, s = {AT}), "
                        "in Europe/Berlin:")
    rows = lines[start + 1:start + 25]
    assert [row[2:4] for row in rows] == [f"{hour:02d}" for hour in range(24)]
    assert rows[0] == "  00  0       -"
    assert rows[9] == "  09  2   33.3%  " + "█" * 40
    assert rows[2] == "  02  1   16.7%  " + "█" * 20
    assert rows[18] == "  18  1   16.7%  " + "█" * 20
    assert any(line.startswith("note: best time: the hours are each reachable user's s + k") for line in lines)


def _args(*argv: str) -> argparse.Namespace:
    root = argparse.ArgumentParser(prog="pushlang")
    add_parser(root.add_subparsers(dest="command"))
    return root.parse_args(["reach", *argv])


def test_reach_command_json_and_text(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    push, records = str(project / "campaigns.push"), str(project / "records.jsonl")
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run(_args(push, "--campaign", "digest", "--events", records, "--store", db, "--at", AT,
                     "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "sql"
    assert data["best_time_hours"] == {f"{hour:02d}": DIGEST_HOURS.get(hour, 0) for hour in range(24)}
    assert run(_args(push, "--campaign", "anytime", "--store", db, "--at", AT)) == 0
    out = capsys.readouterr().out
    assert "best time: the 7 reachable users by the hour they are decided at" in out
    assert "note: deliver in user timezone: each user's own occurrence" in out


# ---- :why ----------------------------------------------------------------------------------------


def _session(project: Path, said: list[str]) -> Session:
    session = Session(out=said.append)
    session.handle(f":load {project / 'campaigns.push'}")
    for r in _records():
        if parse_instant(r["ts"]) < parse_instant(AT):
            session.handle(f":record {json.dumps(r)}")
    return session


def test_why_shows_the_scores_the_engine_chooses_with(project: Path, compiled: plan.Plan) -> None:
    said: list[str] = []
    session = _session(project, said)
    session.handle(f":time {AT}")
    session.handle(":why digest a")
    why = said[-1]
    assert why.startswith(f"campaign digest, user a, now {AT}\nat an occurrence now (s = {AT}):\n"
                          "  best time: k = 9, decided at 2026-12-14T17:00:00Z (18:00 in Europe/Berlin): score 3, "
                          "the highest of 14 candidate hours\n"), why
    assert "      scores, k = 0…23: 0 0 0 0 0 0 0 0 0 3 0 0 0 0 0 0 0 0 0 0 0 0 5 0" in why  # 07:xx: not a candidate
    assert ("waiting: the occurrence at s = 2026-12-14T08:00:00Z decides this user at their best time, "
            "s + k = 2026-12-14T17:00:00Z (k = 9); the decision waits for it") in why
    assert "the steps as if decided now (the engine decides at s + k = 2026-12-14T17:00:00Z):\n  ✓ audience" in why

    # the very note the engine gave `preview` at that occurrence, line for line
    records = [decode_record(json.dumps(r)) for r in _records()]
    seen = preview(compiled, records, "digest", "a", at=parse_instant(AT))
    notes = [o for o in seen.observed if isinstance(o, Note)]
    assert notes and all(f"  {line}" in why.splitlines() for line in notes[0].text.splitlines())

    session.handle(":reach digest")  # the REPL's store, at its clock: every user as at an occurrence now
    assert f"best time: the 6 reachable users by the hour they are decided at (s + k, s = {AT})" in said[-1]

    session.handle(":time 2026-12-14T17:00:00Z")  # the engine decides a at s + k
    assert any(s.startswith("2026-12-14T17:00:00Z  digest  a  send") for s in said)
    session.handle(":why digest a")
    assert "waiting:" not in said[-1]
    assert "at an occurrence now (s = 2026-12-14T17:00:00Z):" in said[-1]


def test_why_before_the_occurrence_and_for_a_decision_at_once(project: Path) -> None:
    said: list[str] = []
    session = _session(project, said)
    session.handle(":why digest b")  # now: the last record, 07:10 Berlin on the 6th
    why = said[-1]
    now = iso(session.clock)
    assert f"at an occurrence now (s = {now}):" in why and "waiting:" not in why
    assert "  best time: k = " in why
    session.handle(f":time {AT}")
    session.handle(":why digest d")  # no history: k = 0, decided at s at once
    why = said[-1]
    assert "  best time: k = 0, decided at 2026-12-14T08:00:00Z (09:00 in Europe/Berlin): no event scores a " \
           "candidate hour: the first candidate" in why
    assert "waiting:" not in why and "the steps, decided at s (k = 0):\n  ✓ audience" in why
    session.handle(":why anytime b")  # `deliver in user timezone`: the cut-off on b's date, in New York
    assert "  best time: k = 0, decided at 2026-12-14T08:00:00Z (03:00 in America/New_York)" in said[-1]
