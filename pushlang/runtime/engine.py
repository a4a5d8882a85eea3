"""The engine: plans evaluated against records on an injected clock and store (SPEC §3–9).

Records go in through ``feed``; every decision comes out through ``emit`` as an ``Output``.
The same input always gives the same output: the only clock is the records' time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec

from pushlang import plan
from pushlang.config import is_timezone
from pushlang.runtime.evaluate import MISSING, Compiler, Env, Fn, History, as_datetime
from pushlang.runtime.instants import US, from_datetime, from_local, iso, wall
from pushlang.runtime.records import Event, Profile, Record, Subscribe, Unsubscribe
from pushlang.runtime.render import (
    MAX_PLAINTEXT,
    MessageRenderer,
    MissingProperty,
    Rendered,
    payload_size,
    web_push_payload,
)
from pushlang.runtime.schedule import next_occurrence
from pushlang.runtime.store import MemoryStore, Subscription, Timer, UserState, Window


class Output(msgspec.Struct, frozen=True):
    """One output record (SPEC §9.4). Fields without a value are null."""

    at: str
    campaign: str
    user: str
    outcome: str  # send | control | delay | suppress | convert | delivered | failed
    reason: str | None = None
    send_id: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    platforms: list[str] | None = None
    until: str | None = None
    revenue: float | None = None
    status: int | None = None  # delivered / failed: the push service's answer
    attempts: int | None = None  # delivered / failed: how many requests it took


@dataclass(frozen=True)
class SendJob:
    """A `send` decision as the dispatcher needs it: the rendered message and where it goes."""

    at: int
    campaign: plan.Campaign
    user: str
    send_id: str
    rendered: Rendered
    targets: tuple[Subscription, ...]


def send_id_for(campaign: str, user: str, trigger: int) -> str:
    """Stable for the same campaign, user and trigger instant, so a restart never sends twice."""
    return hashlib.sha256(f"{campaign}\x1f{user}\x1f{trigger}".encode()).hexdigest()[:24]


def in_control_group(campaign: str, user: str, percent: float) -> bool:
    digest = hashlib.sha256(f"{campaign}:{user}".encode()).hexdigest()
    return int(digest[:8], 16) % 10000 < percent * 100


class UserHistory(History):
    __slots__ = ("state",)

    def __init__(self, state: UserState) -> None:
        self.state = state

    def events(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        return self.state.history.get(name, [])


def period_keys(at: int, zone: str) -> dict[str, str]:
    """The limit periods an instant falls in, in a zone: local calendar day, ISO week, ever."""
    day = wall(at, zone)
    year, week, _ = day.isocalendar()
    return {"day": day.date().isoformat(), "week": f"{year}-W{week:02d}", "campaign": "all"}


def _together(timers: list[Timer]) -> list[Timer | list[Timer]]:
    """Timers due at one instant, a campaign's occurrences in every zone as one batch at the first's place.

    Decisions at one instant go in campaign-id, then user-id order (SPEC §9.2), also across the
    zones of `deliver in user timezone`.
    """
    out: list[Timer | list[Timer]] = []
    batches: dict[str, list[Timer]] = {}
    for timer in timers:
        if timer.kind != "occurrence":
            out.append(timer)
        elif timer.campaign in batches:
            batches[timer.campaign].append(timer)
        else:
            out.append(batches.setdefault(timer.campaign, [timer]))
    return out


def _stale(period: str, oldest_day: str, oldest_week: str) -> bool:
    """Whether a counter's period (``2026-12-01``, ``2026-W49`` or ``all``) is before the oldest kept."""
    if "-W" in period:
        return _week(period) < _week(oldest_week)
    return period != "all" and period < oldest_day


def _week(period: str) -> tuple[int, int]:
    year, _, week = period.partition("-W")
    return int(year), int(week)


@lru_cache(maxsize=256)
def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


@dataclass
class CampaignRuntime:
    """A campaign of the plan, compiled: closures for its conditions and message."""

    plan: plan.Campaign
    tz: str
    start: int | None
    end: int | None
    audience: Callable[[Env], bool]
    renderer: MessageRenderer
    segments: dict[str, Fn]
    trigger_where: Callable[[Env], bool] = field(default=lambda env: True)
    unless_where: Callable[[Env], bool] = field(default=lambda env: True)
    at: Fn | None = None
    conversion_where: Callable[[Env], bool] = field(default=lambda env: True)
    revenue: Fn | None = None
    id: str = ""
    is_live: bool = True
    # for the trigger loop, derived from the plan: [arm_from, arm_until) µs, the kind of trigger
    arm_from: int = 0
    arm_until: int = 0
    single: bool = False  # a single action: decide at once
    inaction: bool = False  # an inaction window: arm a timer `within` µs ahead
    within: int = 0
    inaction_key: str = ""  # the inaction timer's key, less the user id

    def __post_init__(self) -> None:
        self.id, self.is_live = self.plan.id, self.plan.is_live
        self.arm_from = -(1 << 63) if self.start is None else self.start
        self.arm_until = 1 << 63 if self.end is None else self.end
        trigger = self.plan.trigger
        self.single = isinstance(trigger, plan.SingleAction)
        if isinstance(trigger, plan.InactionWithin):
            self.inaction, self.within = True, trigger.within * US
        self.inaction_key = f"inaction:{self.id}:"


class Engine:
    def __init__(self, compiled: plan.Plan, store: MemoryStore, emit: Callable[[Output], None],
                 on_send: Callable[[SendJob], None] | None = None, keep_history: int | None = None) -> None:
        """``keep_history`` (µs): keep every event that long, not only what the campaigns read
        (the REPL, where the operator asks questions the campaigns do not)."""
        self.plan = compiled
        self.store = store
        self.emit = emit
        self.on_send = on_send  # the dispatcher, when pushes are really delivered
        self.settings = compiled.settings
        self.clock: int = store.meta("clock", 0)
        self._at_clock: int = store.meta("records_at_clock", 0)
        self._segments_by_tz: dict[str, dict[str, Fn]] = {}
        self.campaigns = [self._compile(c) for c in sorted(compiled.campaigns, key=lambda c: c.id)]
        self.by_trigger: dict[str, list[CampaignRuntime]] = {}
        self.by_unless: dict[str, list[CampaignRuntime]] = {}
        self.by_conversion: dict[str, list[CampaignRuntime]] = {}
        self.by_id = {c.id: c for c in self.campaigns}
        for c in self.campaigns:
            trigger = c.plan.trigger
            if isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
                self.by_trigger.setdefault(trigger.event, []).append(c)
            if isinstance(trigger, plan.InactionWithin):
                self.by_unless.setdefault(trigger.unless_event, []).append(c)
            if c.plan.conversion is not None:
                self.by_conversion.setdefault(c.plan.conversion.event, []).append(c)
        self.retention = self._retention(compiled)
        self.keep_history = keep_history
        self._by_user_zone = [c for c in self.campaigns if not c.is_live and c.plan.deliver_in_user_timezone]
        self._zone_ok: dict[str, bool] = {}
        for c in self.campaigns:
            if not c.plan.is_live:
                self._ensure_occurrence(c, c.tz if c.plan.deliver_in_user_timezone else "")

    # ---- compiling -----------------------------------------------------------------------------

    def _segments(self, tz: str) -> dict[str, Fn]:
        found = self._segments_by_tz.get(tz)
        if found is None:
            compiler = Compiler(tz)
            found = self._segments_by_tz[tz] = {n: compiler.compile(e) for n, e in self.plan.segments.items()}
        return found

    def _compile(self, c: plan.Campaign) -> CampaignRuntime:
        compiler = Compiler(c.timezone)
        rt = CampaignRuntime(
            plan=c, tz=c.timezone,
            start=from_local(c.start, c.timezone) if c.start else None,
            end=from_local(c.end, c.timezone) if c.end else None,
            audience=compiler.condition(c.audience),
            renderer=MessageRenderer(c.message, compiler),
            segments=self._segments(c.timezone),
        )
        trigger = c.trigger
        if isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
            rt.trigger_where = compiler.condition(trigger.where)
        if isinstance(trigger, plan.InactionWithin):
            rt.unless_where = compiler.condition(trigger.unless_where)
        if isinstance(trigger, plan.OnDate):
            rt.at = compiler.compile(trigger.at)
        if c.conversion is not None:
            rt.conversion_where = compiler.condition(c.conversion.where)
            rt.revenue = compiler.compile(c.conversion.revenue) if c.conversion.revenue else None
        return rt

    @staticmethod
    def _retention(compiled: plan.Plan) -> dict[str, int]:
        """Event name → how far back (µs) any behaviour condition can read it."""
        windows: dict[str, int] = {}

        def visit(e: Any) -> None:
            if isinstance(e, plan.DidEvent):
                windows[e.event] = max(windows.get(e.event, 0), e.window * US)
            if isinstance(e, msgspec.Struct):
                for name in e.__struct_fields__:
                    value = getattr(e, name)
                    for item in value if isinstance(value, tuple) else (value,):
                        if isinstance(item, msgspec.Struct):
                            visit(item)

        for c in compiled.campaigns:
            visit(c)
        for s in compiled.segments.values():
            visit(s)
        return windows

    # ---- time ----------------------------------------------------------------------------------

    def advance(self, until: int, *, inclusive: bool = False) -> None:
        """Fire the timers due before ``until`` (or at it, when ``inclusive``), in time order."""
        store = self.store
        while (due := store.next_due()) is not None and (due < until or (inclusive and due == until)):
            self.clock = max(self.clock, due)
            for timer in _together(store.pop_due(due)):
                if isinstance(timer, Timer):
                    self._fire(timer)
                elif (c := self.by_id.get(timer[0].campaign)) is not None:
                    self._occurrence(c, timer)
        self.clock = max(self.clock, until)
        store.set_meta("clock", self.clock)

    def finish(self, until: int | None = None) -> None:
        """The end of the input: timers due at or before ``until`` (default: the clock) fire."""
        self.advance(self.clock if until is None else max(until, self.clock), inclusive=True)
        self.store.commit()

    # ---- records -------------------------------------------------------------------------------

    def feed(self, record: Record) -> None:
        ts = record.ts
        if ts > self.clock:
            self.advance(ts)
            self._at_clock = 0
        if ts == self.clock:  # how many records of this instant are done: a resumed replay skips them
            self._at_clock += 1
            self.store.set_meta("records_at_clock", self._at_clock)
        state = self.store.user(record.user, ts)
        if isinstance(record, Event):
            self._event(state, record)
        elif isinstance(record, Profile):
            self.store.merge_profile(state, record.props)
            zone = record.props.get("timezone")
            if isinstance(zone, str):
                self._new_zone(zone)
        elif isinstance(record, Subscribe):
            key = record.endpoint or record.device_token or ""
            self.store.put_subscription(state, Subscription(
                key, record.platform, ts, record.endpoint, record.keys, record.device_token))
        elif isinstance(record, Unsubscribe):
            self.store.set_active(state, record.endpoint or record.device_token or "", False)

    def _event(self, state: UserState, event: Event) -> None:
        name, ts = event.name, event.ts
        keep = self.retention.get(name, self.keep_history)
        if keep is not None:
            self.store.prune_history(state, name, ts - keep)
            self.store.add_event(state, name, ts, event.props)
        if state.windows:
            if name in self.by_conversion:
                self._conversions(state, event)
            for window in [w for w in state.windows if w.end < ts]:
                self.store.close_window(state, window)  # expired: nothing can convert it any more
        for c in self.by_unless.get(name, ()):
            self._maybe_cancel(c, state, event)
        env: Env | None = None
        user = state.user
        for c in self.by_trigger.get(name, ()):
            if ts < c.arm_from or ts >= c.arm_until:
                continue  # a trigger outside [start, end) arms nothing
            if env is None or env.segments is not c.segments:  # one Env serves the campaigns of a zone
                env = Env(user, state.profile, ts, UserHistory(state), c.segments, name, ts, event.props)
            if not c.trigger_where(env):
                continue
            if c.single:
                self._decide(c, state, ts, env, trigger_at=ts)
            elif c.inaction:
                self.store.add_timer(Timer(ts + c.within, c.id, user, c.inaction_key + user, "inaction",
                                           {"event": name, "ts": ts, "props": event.props}))
            else:
                self._schedule_at(c, state, env, event)

    def _maybe_cancel(self, c: CampaignRuntime, state: UserState, event: Event) -> None:
        timer = self.store.timer(c.inaction_key + state.user)
        if timer is None or event.ts > timer.due:
            return
        trigger = timer.payload
        if event.ts < trigger["ts"]:
            return  # an F before E cancels nothing, even when its record arrives late
        env = self.env_for(c, state, event.ts, event)
        env.trigger, env.trigger_name, env.trigger_ts = trigger["props"], trigger["event"], trigger["ts"]
        if c.unless_where(env):
            self.store.cancel_timer(timer.key)

    def _schedule_at(self, c: CampaignRuntime, state: UserState, env: Env, event: Event) -> None:
        assert c.at is not None
        value = c.at(env)
        when = as_datetime(value, c.tz) if value is not MISSING else None
        if when is None:
            self._output(c, state.user, event.ts, "suppress", "missing_property")
            return
        due = from_datetime(when)
        if due <= event.ts:
            self._output(c, state.user, event.ts, "suppress", "past_due")
            return
        key = f"at:{c.id}:{state.user}:{event.ts}"
        self.store.add_timer(Timer(due, c.id, state.user, key, "at",
                                   {"event": event.name, "ts": event.ts, "props": event.props}))

    def _conversions(self, state: UserState, event: Event) -> None:
        for window in list(state.windows):
            c = self.by_id.get(window.campaign)
            conversion = c.plan.conversion if c is not None else None
            if c is None or conversion is None:
                self.store.close_window(state, window)
                continue
            if event.ts > window.end:
                self.store.close_window(state, window)
                continue
            if conversion.event != event.name or not window.start < event.ts:
                continue
            env = self.env_for(c, state, event.ts, event)
            if not c.conversion_where(env):
                continue
            revenue = None
            if c.revenue is not None:
                value = c.revenue(env)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    revenue = float(value)
            self.store.close_window(state, window)
            self.emit(Output(iso(event.ts), c.id, state.user, "convert", send_id=window.send_id, revenue=revenue))

    # ---- timers --------------------------------------------------------------------------------

    def _fire(self, timer: Timer) -> None:
        c = self.by_id.get(timer.campaign)
        if c is None:
            return  # the campaign is no longer loaded
        if timer.kind == "occurrence":
            self._occurrence(c, [timer])
            return
        state = self.store.user(timer.user, timer.due)
        payload = timer.payload
        if timer.kind == "delay":
            self._redecide(c, state, timer)
            return
        env = Env(state.user, state.profile, timer.due, UserHistory(state), c.segments,
                  payload["event"], payload["ts"], payload["props"])
        self._decide(c, state, timer.due, env, trigger_at=timer.due)

    def _ensure_occurrence(self, c: CampaignRuntime, zone: str, not_before: int | None = None) -> None:
        key = f"occurrence:{c.id}:{zone}"
        if self.store.timer(key) is not None or self.store.meta(key + ":done"):
            return
        schedule = c.plan.trigger
        assert not isinstance(schedule, (plan.SingleAction, plan.InactionWithin, plan.OnDate))
        start = max(c.start or 0, not_before or 0, self.store.meta(key + ":next", 0))
        found = next_occurrence(schedule, zone or c.tz, start, c.end)
        if found is None:
            self.store.set_meta(key + ":done", True)
            return
        instant, date = found
        self.store.add_timer(Timer(instant, c.id, zone, key, "occurrence", {"date": date}))

    def _new_zone(self, zone: str) -> None:
        if not self._valid_zone(zone):
            return
        for c in self._by_user_zone:
            self._ensure_occurrence(c, zone, not_before=self.clock)

    def _occurrence(self, c: CampaignRuntime, timers: list[Timer]) -> None:
        """One instant of a scheduled campaign, for every zone due then: users in user-id order."""
        at = timers[0].due
        dates = {timer.user: timer.payload["date"] for timer in timers}  # zone → the scheduled local date
        for timer in timers:
            self.store.set_meta(timer.key + ":next", at + 1)
            self._ensure_occurrence(c, timer.user)
        by_user_zone = c.plan.deliver_in_user_timezone
        for uid in self.store.user_ids():
            state = self.store.get(uid)
            if state is None or state.first_seen > at:
                continue
            zone = self.user_zone(c, state) if by_user_zone else ""
            date = dates.get(zone)
            if date is None:
                continue
            env = self.env_for(c, state, at)
            if not c.audience(env):
                continue  # a scheduled campaign skips users outside its audience, without a record
            self._decide(c, state, at, env, trigger_at=at, scheduled_date=date,
                         schedule_zone=zone if by_user_zone else c.tz)

    # ---- the decision pipeline (SPEC §9.3) -----------------------------------------------------

    def env_for(self, c: CampaignRuntime, state: UserState, now: int, event: Event | None = None) -> Env:
        if event is None:
            return Env(state.user, state.profile, now, UserHistory(state), c.segments)
        return Env(state.user, state.profile, now, UserHistory(state), c.segments, event.name, event.ts, event.props)

    def _valid_zone(self, zone: str) -> bool:
        ok = self._zone_ok.get(zone)
        if ok is None:
            ok = self._zone_ok[zone] = is_timezone(zone)
        return ok

    def user_zone(self, c: CampaignRuntime, state: UserState) -> str:
        zone = state.profile.get("timezone")
        return zone if isinstance(zone, str) and self._valid_zone(zone) else c.tz

    def _decide(self, c: CampaignRuntime, state: UserState, at: int, env: Env, *, trigger_at: int,
                scheduled_date: str | None = None, schedule_zone: str | None = None) -> None:
        p = c.plan
        user = state.user
        send_id = send_id_for(c.id, user, trigger_at)
        if c.end is not None and at >= c.end:
            self._output(c, user, at, "suppress", "campaign_ended", send_id)
            return
        if c.is_live and not c.audience(env):
            self._output(c, user, at, "suppress", "not_in_audience", send_id)
            return
        subscriptions = [s for s in state.subscriptions.values() if s.active and s.platform in p.platforms]
        if not subscriptions:
            self._output(c, user, at, "suppress", "unreachable", send_id)
            return
        if p.control_percent and in_control_group(c.id, user, p.control_percent):
            self._output(c, user, at, "control", None, send_id)
            self._open_window(c, state, send_id, at)
            return
        try:
            rendered = c.renderer.render(env)
        except MissingProperty:
            self._output(c, user, at, "suppress", "missing_property", send_id)
            return
        if rendered.url is None:
            subscriptions = [s for s in subscriptions if s.platform != "safari"]
            if not subscriptions:
                self._output(c, user, at, "suppress", "safari_requires_url", send_id)
                return
        platforms = sorted({s.platform for s in subscriptions})
        if rendered.may_exceed(MAX_PLAINTEXT) and payload_size(
                web_push_payload(rendered, p.message, campaign=c.id, send_id=send_id)) > MAX_PLAINTEXT:
            self._output(c, user, at, "suppress", "payload_too_large", send_id)
            return
        pending = {"send_id": send_id, "title": rendered.title, "body": rendered.body, "url": rendered.url,
                   "image": rendered.image, "icon": rendered.icon, "buttons": [list(b) for b in rendered.buttons],
                   "platforms": platforms, "date": scheduled_date, "zone": schedule_zone}
        if p.dnd is not None:
            zone = self.user_zone(c, state)
            until = self.dnd_until(p.dnd, at, zone)
            if until is not None:
                if p.dnd.mode == "discard":
                    self._output(c, user, at, "suppress", "dnd", send_id)
                    return
                self._output(c, user, at, "delay", "dnd", send_id, until=iso(until))
                self.store.add_timer(Timer(until, c.id, user, f"delay:{c.id}:{user}:{send_id}", "delay", pending))
                return
        self._finish_decision(c, state, at, pending)

    def _redecide(self, c: CampaignRuntime, state: UserState, timer: Timer) -> None:
        at, pending = timer.due, timer.payload
        if c.end is not None and at >= c.end:
            self._output(c, state.user, at, "suppress", "campaign_ended", pending["send_id"])
            return
        dnd = c.plan.dnd
        if dnd is not None:
            # The user's zone may have changed while the push waited: never send inside local DND.
            until = self.dnd_until(dnd, at, self.user_zone(c, state))
            if until is not None:
                self._output(c, state.user, at, "delay", "dnd", pending["send_id"], until=iso(until))
                self.store.add_timer(Timer(until, c.id, state.user, timer.key, "delay", pending))
                return
        self._finish_decision(c, state, at, pending)

    def _finish_decision(self, c: CampaignRuntime, state: UserState, at: int, pending: dict[str, Any]) -> None:
        """Steps 7–10: cut-off, the campaign's limits, the global limit, then send."""
        p, user, send_id = c.plan, state.user, pending["send_id"]
        if p.cutoff is not None and pending.get("date"):
            cutoff = from_local(f"{pending['date']}T{p.cutoff}", pending.get("zone") or c.tz)
            if at >= cutoff:
                self._output(c, user, at, "suppress", "cutoff", send_id)
                return
        periods = period_keys(at, self.user_zone(c, state))
        for limit in p.limits:
            if state.counters.get(f"{c.id}|{periods[limit.period]}", 0) >= limit.count:
                self._output(c, user, at, "suppress", "campaign_limit", send_id)
                return
        global_key = f"*|{periods['day']}"
        cap = self.settings.global_per_user_per_day
        if cap is not None and not p.ignore_global_limits and state.counters.get(global_key, 0) >= cap:
            self._output(c, user, at, "suppress", "global_limit", send_id)
            return
        if send_id in state.sends:
            return  # this decision was sent before (a replayed record or a restart): never twice
        self.store.add_send(state, send_id)
        first_today = global_key not in state.counters
        for key in {f"{c.id}|{periods[limit.period]}" for limit in p.limits} | {f"{c.id}|all", global_key}:
            self.store.bump_counter(state, key)
        if first_today:  # once per user and local day: forget the counters no limit reads any more
            self._prune_counters(state, periods["day"])
        self._open_window(c, state, send_id, at)
        self.emit(Output(iso(at), c.id, user, "send", None, send_id, pending["title"], pending["body"],
                         pending["url"], pending["platforms"]))
        if self.on_send is not None:
            rendered = Rendered(pending["title"], pending["body"], pending["url"], pending.get("image"),
                                pending.get("icon"), tuple((b[0], b[1]) for b in pending.get("buttons", ())))
            targets = tuple(s for s in state.subscriptions.values()
                            if s.active and s.platform in p.platforms and (rendered.url or s.platform != "safari"))
            self.on_send(SendJob(at, p, user, send_id, rendered, targets))

    def _prune_counters(self, state: UserState, today: str) -> None:
        """Drop the per-day counters older than the day before yesterday and the per-week ones older
        than last week: no limit reads them again (the margin covers a user whose zone moves west
        and steps back into the previous local day). Per-campaign totals (``|all``) stay."""
        day = dt.date.fromisoformat(today)
        oldest_day = (day - dt.timedelta(days=2)).isoformat()
        year, week, _ = (day - dt.timedelta(days=7)).isocalendar()
        oldest_week = f"{year}-W{week:02d}"
        for key in [k for k in state.counters if _stale(k.rpartition("|")[2], oldest_day, oldest_week)]:
            self.store.drop_counter(state, key)

    def _open_window(self, c: CampaignRuntime, state: UserState, send_id: str, at: int) -> None:
        conversion = c.plan.conversion
        if conversion is not None:
            self.store.open_window(state, Window(c.id, send_id, at, at + conversion.within * US))

    def dnd_until(self, dnd: plan.Dnd, at: int, zone: str) -> int | None:
        """The end of the DND period ``at`` falls in, in the user's local time; None outside DND."""
        now = wall(at, zone)
        seconds = now.hour * 3600 + now.minute * 60 + now.second
        start, end = _seconds(dnd.start), _seconds(dnd.end)
        inside = start <= seconds < end if start < end else (seconds >= start or seconds < end)
        if not inside:
            return None
        day = now.date()
        if seconds >= end:  # the DND period started today and ends tomorrow
            day += dt.timedelta(days=1)
        return from_local(f"{day.isoformat()}T{dnd.end}", zone)

    def _output(self, c: CampaignRuntime, user: str, at: int, outcome: str, reason: str | None,
                send_id: str | None = None, *, until: str | None = None) -> None:
        self.emit(Output(iso(at), c.id, user, outcome, reason, send_id, until=until))
