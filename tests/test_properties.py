"""Invariants of the runtime over generated record streams (SPEC §5, §9), checked with hypothesis.

Never inside the user's local DND; never over a campaign limit or the global limit; the same input
gives byte-identical output; a replay split in two (or three) with a SQLite store in between decides
exactly what one replay decides; a daily schedule reaches each user who keeps one zone once per
local date, at the right instant on DST days too.

Streams: a few users with profiles in real zones (or none), Chrome subscriptions that come and go,
and events at strictly increasing minutes over a few days around 2026-03-29 and 2026-10-25, the
days Europe changes clocks. Timestamps are strictly increasing so "the profile at that time" and
the split point are unambiguous (records at one instant would be processed before a timer due at
that instant in one run, but after it when the split falls between them).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pendulum
import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from pushlang import plan
from pushlang.compiler import compile_text
from pushlang.config import load_config
from pushlang.diagnostics import Sink
from pushlang.runtime.instants import US
from pushlang.runtime.outcomes import Output
from pushlang.runtime.replay import replay
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore

# ---- the campaigns -------------------------------------------------------------------------------

CART_NOW = """
campaign cart_now "Added to cart, right away" {
  platforms chrome
  on "Added To Cart"
  when {
    timezone "Europe/Berlin"
    dnd 21:00 to 09:00 delay
    limit 2 per day
  }
  message {
    title "Hi @{user.first_name | default: 'friend'}"
    body "Your cart is waiting"
    url "https://shop.example.com/cart"
  }
}
"""

BROWSE_NUDGE = """
campaign browse_nudge "Viewed, not added" {
  platforms chrome
  on "Viewed Product"
  unless "Added To Cart" within 30m
  when {
    timezone "America/New_York"
    dnd 22:00 to 07:00 discard
    limit 1 per week
  }
  message {
    title "Still looking?"
    body "It is still in stock"
    url "https://shop.example.com/"
  }
}
"""

# 02:30 does not exist in Berlin on 2026-03-29 and happens twice there on 2026-10-25.
DAILY_DIGEST = """
campaign daily_digest "Daily digest" {
  platforms chrome
  send every day at 02:30
  when {
    start {start}
    timezone "UTC"
    deliver in user timezone
  }
  message {
    title "Today's picks"
    body "New arrivals"
    url "https://shop.example.com/new"
  }
}
"""

CAMPAIGN_TEXTS = [CART_NOW, BROWSE_NUDGE, DAILY_DIGEST]
GLOBAL_PER_USER_PER_DAY = 3
DAILY_TIME = (2, 30)

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC"]
# Carts and views often, so that limits are reached; a view needs a cart-free half hour to send.
EVENTS = ["Added To Cart"] * 3 + ["Viewed Product"] * 3 + ["Charged"]
# Three days from the day before each European DST change; a stream covers six hours of it, a
# day or all three days.
WINDOWS = [dt.datetime(2026, 3, 28, tzinfo=dt.UTC), dt.datetime(2026, 10, 24, tzinfo=dt.UTC)]
WINDOW_MINUTES = 3 * 24 * 60


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> list[plan.Plan]:
    """One plan per stream window: the daily schedule starts on the window's first day (a start
    months earlier would only make the replay fire hundreds of occurrences nobody is known for)."""
    folder = tmp_path_factory.mktemp("properties")
    config_path = folder / "pushlang.toml"
    config_path.write_text(f"[limits]\nglobal_per_user_per_day = {GLOBAL_PER_USER_PER_DAY}\n", encoding="utf-8")
    sink = Sink()
    config = load_config(str(config_path), sink)
    assert not sink.items
    assert config.settings.global_per_user_per_day == GLOBAL_PER_USER_PER_DAY
    compiled = []
    for start in WINDOWS:
        text = "\n".join(CAMPAIGN_TEXTS).replace("{start}", start.strftime("%Y-%m-%d %H:%M"))
        result = compile_text(str(folder / "campaigns.push"), text, config=config)
        assert result.plan is not None, result.diagnostics
        assert not result.diagnostics, result.diagnostics
        compiled.append(result.plan)
    return compiled


# ---- the record streams --------------------------------------------------------------------------


@dataclass
class Stream:
    window: int  # index into WINDOWS, and so into the plans
    lines: list[str]

    def __repr__(self) -> str:  # what hypothesis prints for a failing example: the JSON lines
        return f"Stream(window={self.window}, lines=[\n" + ",\n".join(repr(line) for line in self.lines) + "])"


def _subscribe(user: str, n: int) -> dict[str, object]:
    return {"type": "subscribe", "user": user, "platform": "chrome", "endpoint": f"https://push.example/{user}/{n}",
            "keys": {"p256dh": "BPk", "auth": "x1"}}


@st.composite
def record_bodies(draw: st.DrawFn, users: list[str]) -> dict[str, object]:
    user = draw(st.sampled_from(users))
    kind = draw(st.sampled_from(["event"] * 8 + ["profile"] * 2 + ["subscribe", "unsubscribe"]))
    if kind == "event":
        return {"user": user, "name": draw(st.sampled_from(EVENTS)), "props": {"price": draw(st.integers(1, 200))}}
    if kind == "profile":
        props: dict[str, object] = {"first_name": draw(st.sampled_from(["Asha", "Ben", "Chloé"]))}
        if draw(st.booleans()):
            props["timezone"] = draw(st.sampled_from(ZONES))
        return {"type": "profile", "user": user, "props": props}
    if kind == "subscribe":
        return _subscribe(user, draw(st.integers(1, 2)))
    return {"type": "unsubscribe", "user": user, "endpoint": f"https://push.example/{user}/{draw(st.integers(1, 2))}"}


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    users = [f"u{i}" for i in range(1, draw(st.integers(1, 3)) + 1)]
    bodies: list[dict[str, object]] = []
    for user in users:  # most users start with a zone and a subscription, so decisions get far
        if draw(st.integers(0, 3)):
            bodies.append({"type": "profile", "user": user, "props": {"timezone": draw(st.sampled_from(ZONES))}})
        if draw(st.integers(0, 4)):
            bodies.append(_subscribe(user, 1))
    bodies += draw(st.lists(record_bodies(users), min_size=8, max_size=40))
    # A short span crowds the sends of one local day, so that the limits are reached.
    span = draw(st.sampled_from([6 * 60, 24 * 60, WINDOW_MINUTES]))
    # Strictly increasing whole minutes: DND and schedule boundaries are hit exactly now and then.
    offsets = sorted(draw(st.lists(st.integers(0, span), min_size=len(bodies), max_size=len(bodies))))
    minutes = [m + i for i, m in enumerate(offsets)]
    window = draw(st.integers(0, len(WINDOWS) - 1))
    start = WINDOWS[window] + dt.timedelta(hours=draw(st.integers(0, (WINDOW_MINUTES - span) // 60)))
    lines = [json.dumps({**body, "ts": _ts(start, minute)}) for body, minute in zip(bodies, minutes, strict=True)]
    return Stream(window, lines)


def _ts(start: dt.datetime, minute: int) -> str:
    return (start + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- running and reading the outputs ------------------------------------------------------------


def run(compiled: plan.Plan, lines: list[str], store: MemoryStore | None = None,
        until: int | None = None) -> list[Output]:
    out: list[Output] = []
    summary = replay(compiled, lines, store if store is not None else MemoryStore(), out.append, until=until)
    assert not summary.rejects, summary.rejects
    return out


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class Zones:
    """The user's zone at an instant: the latest profile `timezone` at or before it, else the campaign's.

    With strictly increasing timestamps, "at or before" is exact: a decision at an instant sees
    the records at that instant (they come before the timers due then) and no later ones.
    """

    def __init__(self, lines: list[str]) -> None:
        self.first: dict[str, dict[str, Any]] = {}
        self.changes: dict[str, list[tuple[dt.datetime, str]]] = {}
        for line in lines:
            record = json.loads(line)
            self.first.setdefault(record["user"], record)
            zone = record.get("props", {}).get("timezone") if record.get("type") == "profile" else None
            if zone:
                self.changes.setdefault(record["user"], []).append((instant(record["ts"]), zone))

    def at(self, user: str, when: dt.datetime, fallback: str) -> str:
        zone = fallback
        for ts, name in self.changes.get(user, []):
            if ts > when:
                break
            zone = name
        return zone

    def steady(self) -> dict[str, str]:
        """Users who have one zone from their first record on (a profile with it) to the end."""
        found = {}
        for user, changes in self.changes.items():
            names = {name for _, name in changes}
            first = self.first[user]
            if len(names) == 1 and first.get("type") == "profile" and first["props"].get("timezone") in names:
                found[user] = names.pop()
        return found


def local(at: dt.datetime, zone: str) -> pendulum.DateTime:
    return pendulum.instance(at).in_timezone(zone)


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def in_dnd(when: pendulum.DateTime, dnd: plan.Dnd) -> bool:
    """[from, to) in local wall-clock time; `to` before `from` spans midnight (SPEC §5)."""
    t = when.hour * 3600 + when.minute * 60 + when.second
    start, end = _seconds(dnd.start), _seconds(dnd.end)
    return start <= t < end if start < end else (t >= start or t < end)


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the properties ------------------------------------------------------------------------------


@PROPERTY
@given(stream=streams())
def test_never_sends_inside_local_dnd(plans: list[plan.Plan], stream: Stream) -> None:
    """No `send` falls in [from, to) of the campaign's DND in the user's zone at the send, even
    when the zone changed while the push waited. A `delay` is decided inside DND, its `until` is
    outside it (in the zone of that instant), and a delayed send is at the `until` of its last delay."""
    compiled = plans[stream.window]
    campaigns = {c.id: c for c in compiled.campaigns}
    zones = Zones(stream.lines)
    delays: dict[str, Output] = {}
    for out in run(compiled, stream.lines):
        campaign = campaigns[out.campaign]
        if campaign.dnd is None or out.send_id is None:
            continue
        at = instant(out.at)
        zone = zones.at(out.user, at, campaign.timezone)
        if out.outcome == "delay":
            assert out.until is not None and instant(out.until) > at, out
            assert in_dnd(local(at, zone), campaign.dnd), f"a delay outside DND: {out}"
            assert not in_dnd(local(instant(out.until), zone), campaign.dnd), f"delayed into DND: {out}"
            delays[out.send_id] = out
        if out.outcome != "send":
            continue
        delay = delays.get(out.send_id)
        if delay is not None:
            assert out.at == delay.until, f"sent at {out.at}, not at the end of its delay {delay}"
        assert not in_dnd(local(at, zone), campaign.dnd), (
            f"{out.campaign} sent to {out.user} at {local(at, zone).isoformat()} ({zone}), inside DND "
            f"{campaign.dnd.start}-{campaign.dnd.end}")


@PROPERTY
@given(stream=streams())
def test_never_over_a_campaign_or_global_limit(plans: list[plan.Plan], stream: Stream) -> None:
    """Sends per (campaign, user, local day | ISO week) ≤ the campaign's limit; per (user, local day)
    ≤ the global limit. The local day of a send is its date in the user's zone at the send."""
    compiled = plans[stream.window]
    campaigns = {c.id: c for c in compiled.campaigns}
    zones = Zones(stream.lines)
    per_period: Counter[tuple[str, str, str]] = Counter()
    per_day: Counter[tuple[str, str]] = Counter()
    outputs = run(compiled, stream.lines)
    target(sum(o.reason in ("campaign_limit", "global_limit") for o in outputs), label="limit suppressions")
    for out in outputs:
        if out.outcome != "send":
            continue
        campaign = campaigns[out.campaign]
        at = instant(out.at)
        when = local(at, zones.at(out.user, at, campaign.timezone))
        year, week, _ = when.isocalendar()
        periods = {"day": when.date().isoformat(), "week": f"{year}-W{week:02d}", "campaign": "ever"}
        for limit in campaign.limits:
            key = (out.campaign, out.user, periods[limit.period])
            per_period[key] += 1
            assert per_period[key] <= limit.count, f"{key}: {per_period[key]} sends, limit {limit.count}"
        day = (out.user, periods["day"])
        per_day[day] += 1
        assert per_day[day] <= GLOBAL_PER_USER_PER_DAY, f"{day}: {per_day[day]} sends of all campaigns"


@PROPERTY
@given(stream=streams())
def test_same_input_gives_byte_identical_output(plans: list[plan.Plan], stream: Stream) -> None:
    compiled = plans[stream.window]
    encoder = msgspec.json.Encoder()
    first = b"\n".join(encoder.encode(o) for o in run(compiled, stream.lines))
    second = b"\n".join(encoder.encode(o) for o in run(compiled, stream.lines))
    assert first == second


@PROPERTY
@given(stream=streams(), data=st.data())
def test_split_replay_through_sqlite_decides_like_one_replay(plans: list[plan.Plan], stream: Stream,
                                                            data: st.DataObject) -> None:
    """Replay lines[:k] into a SQLite file and close it; open the file again and replay lines[k:]
    (sometimes in two pieces, reopening in between): the same outputs, in the same order, as one
    in-memory replay of all the lines. Every piece but the last runs with until=None."""
    compiled = plans[stream.window]
    lines = stream.lines
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), min_size=1, max_size=2), label="split points"))
    # Sometimes run on past the last record, so that pending delays and timers fire at the end.
    hours = data.draw(st.none() | st.integers(0, 36), label="until: hours after the last record")
    until = None
    if hours is not None:
        last = instant(json.loads(lines[-1])["ts"]) + dt.timedelta(hours=hours)
        until = int(last.timestamp()) * US
    whole = run(compiled, lines, until=until)
    # Steer towards state that must survive the file: limits reached, decisions after the first cut.
    target(sum(o.reason in ("campaign_limit", "global_limit") for o in whole), label="limit suppressions")
    pieces = [lines[a:b] for a, b in zip([0, *cuts], [*cuts, len(lines)], strict=True)]
    resumed: list[Output] = []
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "state.db")
        for i, piece in enumerate(pieces):
            store = SqliteStore(path)
            try:
                resumed += run(compiled, piece, store, until=until if i == len(pieces) - 1 else None)
            finally:
                store.close()
    assert resumed == whole


def wall_clock(day: dt.date, hour: int, minute: int, zone: str) -> dt.datetime:
    """A local time as an instant by SPEC §5: in the spring gap moved forward by the gap (02:30 →
    03:30), in the autumn overlap the later one. Both are the later of the two folds' readings."""
    naive = dt.datetime(day.year, day.month, day.day, hour, minute)
    return max(naive.replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(dt.UTC) for fold in (0, 1))


@PROPERTY
@given(stream=streams())
def test_daily_schedule_reaches_a_user_once_per_local_date(plans: list[plan.Plan], stream: Stream) -> None:
    """`send every day at 02:30` with `deliver in user timezone`, for users who keep one zone:
    exactly one decision for every local date whose 02:30 falls between their first record and
    the end of input, at that 02:30 (03:30 in Berlin on 2026-03-29, when 02:30 does not exist;
    the second 02:30 on 2026-10-25), and none at other times."""
    compiled = plans[stream.window]
    outputs = run(compiled, stream.lines)
    zones = Zones(stream.lines)
    end = instant(json.loads(stream.lines[-1])["ts"])
    for user, zone in zones.steady().items():
        decided = [o.at for o in outputs if o.campaign == "daily_digest" and o.user == user]
        begin = instant(zones.first[user]["ts"])
        expected = []
        day = local(begin, zone).date() - dt.timedelta(days=1)
        while (at := wall_clock(day, *DAILY_TIME, zone)) <= end:
            if at >= begin:
                expected.append(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
                if zone == "Europe/Berlin" and day.isoformat() in ("2026-03-29", "2026-10-25"):
                    event("a daily decision on a Berlin DST day")
            day += dt.timedelta(days=1)
        assert decided == expected, f"{user} in {zone}"


# ---- examples ------------------------------------------------------------------------------------


def test_dnd_is_checked_again_when_the_zone_changes_during_a_delay(plans: list[plan.Plan]) -> None:
    """The push waits for 09:00 in Berlin; meanwhile the user is in New York, where that instant
    is 04:00. It waits again, for 09:00 New York, instead of waking the user."""
    lines = [
        '{"type":"profile","user":"u1","ts":"2026-03-28T00:00:00Z","props":{"timezone":"Europe/Berlin"}}',
        '{"type":"subscribe","user":"u1","ts":"2026-03-28T00:00:00Z","platform":"chrome",'
        '"endpoint":"https://push.example/u1/1","keys":{"p256dh":"BPk","auth":"x1"}}',
        '{"user":"u1","ts":"2026-03-28T00:05:00Z","name":"Added To Cart","props":{"price":1}}',
        '{"type":"profile","user":"u1","ts":"2026-03-28T07:00:00Z","props":{"timezone":"America/New_York"}}',
    ]
    until = int(instant("2026-03-29T00:00:00Z").timestamp()) * US
    outputs = [o for o in run(plans[0], lines, until=until) if o.campaign == "cart_now"]
    assert [(o.at, o.outcome, o.until) for o in outputs] == [
        ("2026-03-28T00:05:00Z", "delay", "2026-03-28T08:00:00Z"),  # 01:05 in Berlin → 09:00 Berlin
        ("2026-03-28T08:00:00Z", "delay", "2026-03-28T13:00:00Z"),  # 04:00 in New York → 09:00 there
        ("2026-03-28T13:00:00Z", "send", None),
    ]
