"""Best time (SPEC §12.6) against a reference written from the spec's words.

The property replays a generated campaign (`send once at …`, `deliver at best time`, with or without
`between`, `by`, `cutoff`, `end`, `deliver in user timezone`) over generated histories with the real
engine, on MemoryStore and on SqliteStore, and reads each user's decision instant s + k from the
output. The reference recomputes s and k from the raw events with zoneinfo alone: score(k) counts the
events (named in `by`, else all) with ts in (s − 90d, s] whose local hour in the user's zone is the
local hour of s + k; the candidates are the k whose local time of day at s + k is in [from, to) of
`between` (across midnight when to < from), before `end` and before the cut-off on the scheduled
date in the schedule's zone; the highest score wins, the smallest k among ties, k = 0 with no
candidate. Occurrences are drawn near the DST changes of the zones (s + k across a change, or a
history on both sides of one), in zones with half-hour offsets and a half-hour DST (Lord Howe).

Also: the zone offsets ``offset_runs`` gives, checked against zoneinfo for zones with changes in
the window; and the decision at s + k is the occurrence's (its send_id hashes s) made with the whole
pipeline at s + k.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushlang import plan
from pushlang.compiler import compile_text
from pushlang.runtime import best_time
from pushlang.runtime.instants import US
from pushlang.runtime.outcomes import Output
from pushlang.runtime.replay import replay
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore, Store

ZONES = ["UTC", "Asia/Kolkata", "Australia/Lord_Howe", "America/New_York", "Europe/Berlin", "Pacific/Chatham",
         "America/St_Johns", "Australia/Adelaide"]
NAMES = ["App Opened", "Viewed Product", "Added To Cart"]
HOUR = 3600
DAY = 86400
UTC = dt.UTC
FROM = int(dt.datetime(2025, 10, 1, tzinfo=UTC).timestamp())  # the occurrences are drawn in [FROM, TO)
TO = int(dt.datetime(2027, 4, 1, tzinfo=UTC).timestamp())
# SQLite files where syncing costs nothing, when the system has such a place (the property is about the SQL)
MEMORY_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None


# ---- the reference: zoneinfo and the spec's words, nothing of the implementation ------------------


def offset(ts: int, zone: str) -> int:
    """The zone's UTC offset at an instant (seconds)."""
    delta = dt.datetime.fromtimestamp(ts, ZoneInfo(zone)).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


@cache
def transitions(zone: str, since: int = FROM - 120 * DAY, until: int = TO + 2 * DAY) -> tuple[int, ...]:
    """The instants (seconds) at which the zone's offset changes in (since, until]: an hourly scan,
    then a bisection to the second."""
    found = []
    at, before = since, offset(since, zone)
    while at < until:
        step = min(at + HOUR, until)
        after = offset(step, zone)
        if after != before:
            low, high = at, step
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle, zone) == after:
                    high = middle
                else:
                    low = middle
            found.append(high)
            before = after
        at = step
    return tuple(found)


DST_ZONES = [z for z in ZONES if transitions(z)]


def instant_of(wall_time: str, zone: str) -> int:
    """A local date-time ("YYYY-MM-DD HH:MM") in a zone: in the spring gap it moves forward by the gap,
    in the autumn overlap it is the later instant (SPEC §5)."""
    naive = dt.datetime.fromisoformat(wall_time)
    return int(max(naive.replace(tzinfo=ZoneInfo(zone), fold=fold).timestamp() for fold in (0, 1)))


def wall(ts: int, zone: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(zone))


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True)
class Reference:
    s: int
    k: int
    cutoff: int | None  # the cut-off instant on the scheduled date, if any


def reference(case: Case, user: User) -> Reference | None:
    """The user's occurrence s and chosen k, or None when the campaign has no occurrence for them."""
    user_zone = user.zone or case.zone
    schedule_zone = user_zone if case.user_timezone else case.zone
    s = instant_of(case.send_at, schedule_zone)
    end = instant_of(case.end, case.zone) if case.end is not None else None
    if end is not None and s >= end:
        return None
    cutoff = instant_of(f"{case.send_at[:10]} {case.cutoff}", schedule_zone) if case.cutoff is not None else None
    hours = [0] * 24
    for ts, name in user.events:
        if s - 90 * DAY < ts <= s and (case.by is None or name in case.by):
            hours[wall(ts, user_zone).hour] += 1
    best_k, best = 0, -1
    for k in range(24):
        at = s + k * HOUR
        local = wall(at, user_zone)
        if case.between is not None:
            start, stop = (minutes(t) for t in case.between)
            time_of_day = local.hour * 60 + local.minute  # s is on a whole minute, so is s + k
            inside = start <= time_of_day < stop if start < stop else (time_of_day >= start or time_of_day < stop)
            if not inside:
                continue
        if end is not None and at >= end:
            continue
        if cutoff is not None and at >= cutoff:
            continue
        if hours[local.hour] > best:
            best_k, best = k, hours[local.hour]
    return Reference(s, best_k, cutoff)


# ---- generated cases -------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: str
    zone: str | None  # the profile's timezone; None: no profile, the campaign's zone
    events: tuple[tuple[int, str], ...]  # (ts in seconds, name)


@dataclass(frozen=True)
class Case:
    zone: str  # the campaign's
    send_at: str  # `send once at`, "YYYY-MM-DD HH:MM"
    user_timezone: bool
    between: tuple[str, str] | None
    by: tuple[str, ...] | None
    cutoff: str | None
    end: str | None
    users: tuple[User, ...]
    batch: int = 1000  # the replay's commit batch on SQLite: 1 puts every event in the table before s

    def source(self) -> str:
        when = [f'timezone "{self.zone}"']
        if self.end is not None:
            when.append(f"end {self.end}")
        if self.user_timezone:
            when.append("deliver in user timezone")
        if self.cutoff is not None:
            when.append(f"cutoff {self.cutoff}")
        best = "deliver at best time"
        if self.between is not None:
            best += f" between {self.between[0]} and {self.between[1]}"
        if self.by is not None:
            best += " by " + ", ".join(f'"{name}"' for name in self.by)
        when.append(best)
        inner = "\n".join(f"    {line}" for line in when)
        return (f"campaign best {{\n  send once at {self.send_at}\n  when {{\n{inner}\n  }}\n"
                '  message {\n    title "t"\n    body "b"\n    url "https://shop.example.com/b"\n  }\n}\n')

    def lines(self) -> list[bytes]:
        """The records, in time order: each user's subscription and profile 100 days before the
        earliest history, then the events."""
        first = min([ts for u in self.users for ts, _ in u.events] + [instant_of(self.send_at, "UTC") - 97 * DAY])
        joined = first - 5 * DAY
        records: list[tuple[int, dict[str, object]]] = []
        for u in self.users:
            records.append((joined, {"type": "subscribe", "user": u.id, "ts": iso(joined), "platform": "chrome",
                                     "endpoint": f"https://push.example/{u.id}", "keys": {"p256dh": "k", "auth": "a"}}))
            if u.zone is not None:
                records.append((joined, {"type": "profile", "user": u.id, "ts": iso(joined),
                                         "props": {"timezone": u.zone}}))
            records.extend((ts, {"type": "event", "user": u.id, "name": name, "ts": iso(ts)}) for ts, name in u.events)
        records.sort(key=lambda r: r[0])
        return [msgspec.json.encode(r) for _, r in records]

    def until(self) -> int:
        return max(instant_of(self.send_at, u.zone or self.zone) for u in self.users) + 2 * DAY

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return "\n".join([self.source(), *(line.decode() for line in self.lines())])


def iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def local_text(ts: int, zone: str) -> str:
    return wall(ts, zone).strftime("%Y-%m-%d %H:%M")


def times_of_day(minute: int) -> st.SearchStrategy[int]:
    """A minute of the day, often on the occurrence's ``minute`` (or a quarter or half an hour from it,
    the minutes s + k has in zones 15 or 30 minutes apart), so that s + k meets the bound exactly."""
    quarters = [(minute + q) % 60 for q in (0, 0, 0, 15, 30, 45)]
    aligned = st.tuples(st.integers(0, 23), st.sampled_from(quarters)).map(lambda hm: hm[0] * 60 + hm[1])
    return st.one_of(aligned, aligned, st.integers(0, 24 * 60 - 1))


@st.composite
def cases(draw: st.DrawFn, across: bool = False) -> Case:
    """A campaign and its users. ``across``: every user in the campaign's zone, s 1 to 23 hours
    before one of its changes, habits mostly at the hours after it (s + k across the change)."""
    zone = draw(st.sampled_from(DST_ZONES if across else ZONES))
    user_zones = draw(st.lists(st.sampled_from([None, zone] if across else [None, zone, *ZONES]), min_size=1,
                               max_size=4))
    user_timezone = draw(st.booleans())
    # The occurrence: near a change of one of the zones (s + k across it, or a history on both
    # sides of it), else anywhere. `send once at` is that instant's local time in the campaign's
    # zone, or, with `deliver in user timezone`, in the zone whose change it is near.
    anchors = sorted({zone, *(z for z in user_zones if z is not None)} & set(DST_ZONES))
    if anchors and (across or draw(st.integers(0, 3))):
        anchor = draw(st.sampled_from(anchors))
        change = draw(st.sampled_from([t for t in transitions(anchor) if FROM <= t < TO]))
        before = st.integers(-26 * 60, 3 * 60)
        moved = draw(st.integers(-23 * 60, -60) if across else st.one_of(before, before, st.integers(1, 80 * DAY // 60)))
        at = change + moved * 60
    else:
        anchor, change = zone, None
        at = draw(st.integers(FROM // 60, TO // 60 - 1)) * 60
    send_at = local_text(at, anchor if user_timezone else zone)
    scheduled = minutes(send_at[11:])
    between = None
    if draw(st.booleans()):
        start, stop = draw(times_of_day(scheduled % 60)), draw(times_of_day(scheduled % 60))
        if (stop - start) % (24 * 60) >= 60:  # a window of an hour or more (a shorter one is a lint error)
            between = (hhmm(start), hhmm(stop))
    by = None
    if draw(st.booleans()):
        by = tuple(draw(st.lists(st.sampled_from([*NAMES, "Never Sent"]), min_size=1, max_size=3, unique=True)))
    cutoff = None
    if draw(st.integers(0, 2)) == 0:  # mostly after the scheduled time of day, so that it removes late k
        hour, minute = divmod(scheduled, 60)
        later = st.integers(scheduled + 1, 24 * 60 + 1).map(lambda m: min(m, 24 * 60 - 1))
        if hour < 23:  # the same minute, a later hour: s + k meets it exactly
            later = st.one_of(st.integers(hour + 1, 23).map(lambda h: h * 60 + minute), later)
        cutoff = hhmm(draw(st.one_of(later, later, times_of_day(minute))))
    end = None
    if draw(st.integers(0, 3)) == 0:
        after = draw(st.one_of(st.integers(1, 30).map(lambda h: h * 60), st.integers(30, 30 * 60)))
        end = local_text(instant_of(send_at, zone) + after * 60, zone)
    users = []
    for i, user_zone in enumerate(user_zones):
        s = instant_of(send_at, (user_zone or zone) if user_timezone else zone)
        # around s, some at the window's edges; some at the user's zone changes (the exact second)
        near = [t - s for t in transitions(user_zone or zone) if -95 * DAY <= t - s <= 5 * DAY]
        offsets = st.one_of(
            st.integers(-95 * DAY, 5 * DAY),
            st.sampled_from([-90 * DAY - 1, -90 * DAY, -90 * DAY + 1, -1, 0, 1]),
            *([st.sampled_from(near).flatmap(lambda t: st.integers(t - 2, t + 1))] if near else []))
        moments = [(s + o, name) for o, name in draw(st.lists(st.tuples(offsets, st.sampled_from(NAMES)), max_size=30))]
        if across or draw(st.booleans()):  # a habit: several events at one local hour on earlier days
            hour, name = draw(st.integers(0, 23)), draw(st.sampled_from(NAMES))
            if change is not None and (across or draw(st.booleans())):  # an hour after the change: s + k crosses it
                hour = wall(change + draw(st.integers(0, 22)) * HOUR, user_zone or zone).hour
            elif between is not None and draw(st.booleans()):  # the hour of a bound, or the one before it
                bound = minutes(draw(st.sampled_from(between))) // 60
                hour = (bound - draw(st.integers(0, 1))) % 24
            today = wall(s, user_zone or zone).date()
            for days_ago, minute in draw(st.lists(st.tuples(st.integers(1, 89), st.integers(0, 59)), min_size=1,
                                                  max_size=12)):
                day = today - dt.timedelta(days=days_ago)
                moments.append((instant_of(f"{day} {hour:02d}:{minute:02d}", user_zone or zone), name))
        users.append(User(f"u{i}", user_zone, tuple(sorted(moments))))
    return Case(zone, send_at, user_timezone, between, by, cutoff, end, tuple(users), draw(st.sampled_from([1, 3, 1000])))


def decisions(case: Case, compiled: plan.Plan, store: Store, batch: int = 1000) -> list[Output]:
    outputs: list[Output] = []
    replay(compiled, case.lines(), store, outputs.append, until=case.until() * US, batch=batch)
    store.close()
    return outputs


def check(case: Case, outputs: Iterable[Output], where: str) -> None:
    got: dict[str, list[Output]] = {}
    for out in outputs:
        assert out.user is not None
        got.setdefault(out.user, []).append(out)
    for user in case.users:
        want = reference(case, user)
        mine = got.pop(user.id, [])
        if want is None:
            assert not mine, f"{where}: {user.id} has no occurrence before `end`, yet {mine}"
            continue
        at = want.s + want.k * HOUR
        assert len(mine) == 1, f"{where}: {user.id}: expected one decision at {iso(at)}, got {mine}"
        out = mine[0]
        assert out.at == iso(at), (f"{where}: {user.id}: decided at {out.at}, expected s = {iso(want.s)}, k = "
                                   f"{want.k}: {iso(at)}")
        if want.cutoff is not None and at >= want.cutoff:  # no candidate left: k = 0, past the cut-off
            assert (out.outcome, out.reason) == ("suppress", "cutoff"), out
        else:
            assert (out.outcome, out.reason) == ("send", None), out
    assert not got, f"{where}: decisions for unknown users {got}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_the_engine_chooses_the_reference_k(case: Case) -> None:
    replayed_like_the_reference(case)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(across=True))
def test_the_engine_chooses_the_reference_k_across_a_change(case: Case) -> None:
    replayed_like_the_reference(case)


def replayed_like_the_reference(case: Case) -> None:
    result = compile_text("best.push", case.source())
    assert result.plan is not None, result.diagnostics
    check(case, decisions(case, result.plan, MemoryStore()), "memory")
    with tempfile.TemporaryDirectory(dir=MEMORY_DIR) as folder:
        store = SqliteStore(str(Path(folder) / "state.db"))
        check(case, decisions(case, result.plan, store, case.batch), f"SQLite, batch {case.batch}")


# ---- the offsets the counting reads local hours with ---------------------------------------------


def at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).timestamp())


@pytest.mark.parametrize("zone, since, until", [
    ("Europe/Berlin", "2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"),
    ("America/New_York", "2025-12-10T13:00:00+00:00", "2026-03-11T13:00:00+00:00"),
    ("America/St_Johns", "2026-02-01T00:00:00+00:00", "2026-11-30T00:00:00+00:00"),
    ("Australia/Lord_Howe", "2026-01-15T00:00:00+00:00", "2026-10-15T00:00:00+00:00"),
    ("Pacific/Chatham", "2026-03-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00"),
    ("Australia/Adelaide", "2026-07-10T06:00:00+00:00", "2026-10-09T06:00:00+00:00"),
    ("Asia/Kolkata", "2026-01-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
    ("UTC", "2026-01-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),
])
def test_offset_runs_start_at_each_change_with_zoneinfo_offsets(zone: str, since: str, until: str) -> None:
    low, high = at(since), at(until)
    runs = best_time.offset_runs(zone, low * US, high * US)
    changes = [t for t in transitions(zone, low - DAY, high + DAY) if low < t <= high]
    assert [start for start, _ in runs] == [low * US, *(t * US for t in changes)]
    for start, offset_us in runs:
        assert offset_us == offset(start // US, zone) * US
    for change in changes:  # the microsecond before a change still has the earlier offset
        i = [start for start, _ in runs].index(change * US)
        assert runs[i - 1][1] == offset(change - 1, zone) * US != runs[i][1]


@pytest.mark.parametrize("zone", ZONES)
def test_local_hours_from_the_runs_are_zoneinfo_hours(zone: str) -> None:
    """Every 7 minutes over 100 days around a change (or any 100 days), and at each second around the
    changes: the local hour read from the runs is the wall-clock hour."""
    changes = [t for t in transitions(zone) if at("2026-01-01T00:00:00+00:00") <= t]
    middle = changes[0] if changes else at("2026-06-01T00:00:00+00:00")
    low, high = middle - 95 * DAY, middle + 5 * DAY
    runs = best_time.offset_runs(zone, low * US, high * US)
    starts = [start for start, _ in runs]
    moments = list(range(low + 1, high + 1, 7 * 60))
    moments += [t + d for t in changes if low < t <= high for d in range(-3, 4)]
    for ts in moments:
        assert best_time.local_hour(ts * US, runs, starts) == wall(ts, zone).hour, (zone, iso(ts))


def test_count_hours_reads_each_event_with_its_own_offset() -> None:
    """(since, until], each event in the local hour of its own day: New York's EST then EDT."""
    zone = "America/New_York"
    since, until = at("2025-12-08T01:00:00+00:00"), at("2026-03-10T13:00:00+00:00")
    runs = best_time.offset_runs(zone, since * US, until * US)
    events = [at(t) * US for t in ("2025-12-08T01:00:00+00:00",    # at since: out
                                   "2025-12-08T01:00:01+00:00",    # 20:00 EST
                                   "2026-03-08T06:59:59+00:00",    # 01:59 EST
                                   "2026-03-08T07:00:00+00:00",    # 03:00 EDT
                                   "2026-03-09T07:30:00+00:00",    # 03:30 EDT
                                   "2026-03-10T13:00:00+00:00",    # at until: in, 09:00 EDT
                                   "2026-03-10T13:00:01+00:00")]   # after until: out
    counts = best_time.count_hours([[(ts, {}) for ts in events]], since * US, until * US, runs)
    assert {h: n for h, n in enumerate(counts) if n} == {20: 1, 1: 1, 3: 2, 9: 1}


# ---- the decision at s + k is the occurrence's -----------------------------------------------------

DIGEST = """
campaign digest {{
  send once at 2026-12-14 09:00
  when {{
    timezone "UTC"
    {best}
  }}
  message {{
    title "Your week"
    body "What happened"
    url "https://shop.example.com/week"
  }}
}}
"""


def replayed(source: str, records: list[dict[str, object]], until: str) -> list[Output]:
    result = compile_text("digest.push", source)
    assert result.plan is not None, result.diagnostics
    outputs: list[Output] = []
    replay(result.plan, [msgspec.json.encode(r) for r in records], MemoryStore(), outputs.append,
           until=at(until) * US)
    return outputs


def subscribed(user: str, ts: str) -> dict[str, object]:
    return {"type": "subscribe", "user": user, "ts": ts, "platform": "chrome", "endpoint": f"https://push.example/{user}",
            "keys": {"p256dh": "k", "auth": "a"}}


def test_a_decision_at_s_plus_k_has_the_send_id_of_the_occurrence_at_s() -> None:
    """send_id hashes the trigger instant, the occurrence s (SPEC §9.4): the send at s + k has the id the
    same campaign without best time gives at s."""
    records = [subscribed("u1", "2026-12-01T00:00:00Z"),
               {"type": "event", "user": "u1", "name": "App Opened", "ts": "2026-12-02T15:20:00Z"}]
    best = replayed(DIGEST.format(best="deliver at best time"), records, "2026-12-15T00:00:00+00:00")
    plain = replayed(DIGEST.format(best=""), records, "2026-12-15T00:00:00+00:00")
    assert [(o.at, o.outcome) for o in best] == [("2026-12-14T15:00:00Z", "send")]
    assert [(o.at, o.outcome) for o in plain] == [("2026-12-14T09:00:00Z", "send")]
    assert best[0].send_id == plain[0].send_id is not None


def test_the_pipeline_runs_at_s_plus_k() -> None:
    """k is chosen at s; what happens to the user up to s + k counts for the decision there: an
    unsubscription after s makes it unreachable, a subscription after s (not known at s) gets none."""
    records = [subscribed("u1", "2026-12-01T00:00:00Z"), subscribed("u2", "2026-12-01T00:00:00Z"),
               {"type": "event", "user": "u1", "name": "App Opened", "ts": "2026-12-02T15:20:00Z"},
               {"type": "event", "user": "u2", "name": "App Opened", "ts": "2026-12-02T15:20:00Z"},
               {"type": "unsubscribe", "user": "u1", "ts": "2026-12-14T12:00:00Z", "endpoint": "https://push.example/u1"},
               subscribed("u3", "2026-12-14T12:00:00Z")]
    outputs = replayed(DIGEST.format(best="deliver at best time"), records, "2026-12-15T00:00:00+00:00")
    assert [(o.at, o.user, o.outcome, o.reason) for o in outputs] == [
        ("2026-12-14T15:00:00Z", "u1", "suppress", "unreachable"), ("2026-12-14T15:00:00Z", "u2", "send", None)]
