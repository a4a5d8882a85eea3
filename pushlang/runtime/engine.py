"""The engine: plans evaluated against records on an injected clock and store (SPEC §3–9).

Records go in through ``feed``; every decision comes out through ``emit`` as an ``Output``.
The same input always gives the same output: the only clock is the records' time. Which decision
a user gets is the pipeline's (:mod:`pushlang.runtime.pipeline`); the engine finds the moments
that need one (triggers, timers, occurrences) and applies what was decided.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
from mypy_extensions import mypyc_attr

from pushlang import plan
from pushlang.runtime import best_choice, best_time
from pushlang.runtime.campaigns import CompiledCampaign, UserHistory, compile_campaign, compile_segments
from pushlang.runtime.evaluate import MISSING, Env, Fn, as_datetime
from pushlang.runtime.instants import US, from_datetime, iso
from pushlang.runtime.outcomes import (
    Control,
    Delay,
    Output,
    PendingSend,
    QueuedSend,
    Send,
    Skip,
    Suppress,
    Target,
)
from pushlang.runtime.pipeline import (
    LAST_SEND,
    ROLLING,
    THROTTLE,
    Attempt,
    Decision,
    Pipeline,
    Trace,
    Verdict,
    control_lang,
    global_key,
    in_test_group,
    pending_from,
    pending_payload,
    targets,
    throttle_period,
    trace,
    user_zone,
    valid_zone,
)
from pushlang.runtime.records import Event, Profile, Record, Subscribe, Unsubscribe
from pushlang.runtime.schedule import next_occurrence
from pushlang.runtime.significance import best_two, compare
from pushlang.runtime.store import Store, Subscription, Timer, UserState, Window

_HOUR = 3600 * US


@dataclass(frozen=True)
class SendJob:
    """A `send` decision as the dispatcher needs it: the rendered send and where it goes."""

    at: int
    campaign: plan.Campaign
    user: str
    send: PendingSend
    targets: tuple[Subscription, ...]

    @property
    def send_id(self) -> str:
        return self.send.send_id

    @property
    def message(self) -> plan.Message:
        """The message this send was rendered from: its variant's, else the campaign's (its ttl, urgency…)."""
        return self.campaign.message_of(self.send.variant, self.send.lang)

    def queued(self) -> QueuedSend:
        """What an outbox keeps of it (the service's, and scale-out's ``ob:{p}``)."""
        return QueuedSend(**msgspec.structs.asdict(self.send), at=self.at, campaign=self.campaign.id,
                          user=self.user, targets=tuple(Target.of(s) for s in self.targets))

    @classmethod
    def from_queued(cls, queued: QueuedSend, campaign: plan.Campaign,
                    targets: tuple[Subscription, ...] | None = None) -> SendJob:
        """The job of an outbox entry; ``targets``: where it goes now (default: the entry's own)."""
        if targets is None:
            targets = tuple(t.subscription() for t in queued.targets)
        return cls(queued.at, campaign, queued.user, queued.pending(), targets)


@mypyc_attr(allow_interpreted_subclasses=True)  # extended by preview and the tests
class Observer:
    """Sees what the engine does (preview, the tests); the engine calls it only when one is attached,
    and only about the campaigns and users it ``watches``. ``decided`` gets the tracer's run of every
    such decision, before it is applied."""

    def watches(self, campaign: str, user: str) -> bool:
        return True

    def decided(self, trace: Trace) -> None:
        """A decision, step by step."""

    def noted(self, campaign: str, user: str, at: int, text: str, *, trigger: bool, due: int | None = None) -> None:
        """Something the engine did that is not a decision: ``trigger`` for what an event of the trigger
        did (armed or scheduled a decision ``due`` then, decided now, nothing), else what happened to
        it later (cancelled)."""


INTERACTIONS = {"Push Viewed": "viewed", "Push Clicked": "clicked"}


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


def _stale(period: str, oldest_day: str, oldest_week: tuple[int, int]) -> bool:
    """Whether a counter's period (``2026-12-01``, ``2026-W49`` or ``all``) is before the oldest kept
    (an instant, ``@…``, is dropped when its window has passed, as the next send finds it)."""
    if "-W" in period:
        return _week(period) < oldest_week
    return period[:1].isdigit() and period < oldest_day  # a day; not ``all``, ``last`` or ``@…``


def _week(period: str) -> tuple[int, int]:
    year, _, week = period.partition("-W")
    return int(year), int(week)


@lru_cache(maxsize=64)
def _oldest_kept(today: str) -> tuple[str, tuple[int, int]]:
    """The oldest local day and ISO week whose counters a limit can still read on ``today``: the day
    before yesterday (the margin covers a user whose zone moves west and steps back into the previous
    local day) and last week."""
    day = dt.date.fromisoformat(today)
    year, week, _ = (day - dt.timedelta(days=7)).isocalendar()
    return (day - dt.timedelta(days=2)).isoformat(), (year, week)


class CompiledPlan:
    """A plan compiled for the engine: each campaign's closures (:class:`CompiledCampaign`), its
    pipeline, the indexes from event names to campaigns, and how long each event stays readable.
    Nothing here depends on a store: build it once and share it among every engine of one process
    that runs the same plan (a worker's partitions)."""

    def __init__(self, compiled: plan.Plan) -> None:
        self.plan = compiled
        self.settings = compiled.settings
        self._segments_by_tz: dict[str, dict[str, Fn]] = {}
        # descending priority, then campaign id: the order of one record's decisions (SPEC §9.2, §12.2)
        self.campaigns = [compile_campaign(c, self.segments(c.timezone))
                          for c in sorted(compiled.campaigns, key=lambda c: (-c.priority, c.id))]
        self.priorities = {c.id: c.plan.priority for c in self.campaigns if c.plan.priority}
        self.throttled = any(c.plan.throttle is not None for c in self.campaigns)
        self.pipelines = {c.id: Pipeline(c, self.settings) for c in self.campaigns}
        self.by_trigger: dict[str, list[CompiledCampaign]] = {}
        self.by_unless: dict[str, list[CompiledCampaign]] = {}
        self.by_conversion: dict[str, list[CompiledCampaign]] = {}
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
        # best time without `by` scores every event: each is kept 90 days (SPEC §12.6)
        self.keep_every: int | None = None
        if any(c.best_time is not None and not c.best_time.events for c in compiled.campaigns):
            self.keep_every = best_time.WINDOW
            self.retention = {name: max(keep, best_time.WINDOW) for name, keep in self.retention.items()}
        self.by_user_zone = [c for c in self.campaigns if not c.is_live and c.plan.deliver_in_user_timezone]
        self.scheduled = [c for c in self.campaigns if not c.plan.is_live]

    def segments(self, tz: str) -> dict[str, Fn]:
        """The plan's segments compiled in a zone (one set per zone, shared by its campaigns)."""
        found = self._segments_by_tz.get(tz)
        if found is None:
            found = self._segments_by_tz[tz] = compile_segments(self.plan, tz)
        return found

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
            for event in c.best_time.events if c.best_time is not None else ():
                windows[event] = max(windows.get(event, 0), best_time.WINDOW)
        for s in compiled.segments.values():
            visit(s)
        return windows


class Engine:
    def __init__(self, compiled: plan.Plan | CompiledPlan, store: Store, emit: Callable[[Output], None],
                 on_send: Callable[[SendJob], None] | None = None, keep_history: int | None = None,
                 observer: Observer | None = None, *, deciding: bool = True) -> None:
        """``compiled``: the plan, or a :class:`CompiledPlan` of it shared with other engines.
        ``keep_history`` (µs): keep every event that long, not only what the campaigns read
        (the REPL, where the operator asks questions the campaigns do not). ``observer``: told of
        every decision step by step (slower: each decision is traced as well as made).
        ``deciding=False``: only the users' state is kept (profiles, subscriptions, the history the
        campaigns read, as the plan retains it): no trigger, timer or occurrence, no output. What
        `reach` needs of a log it replays into a store that is thrown away afterwards."""
        shared = compiled if isinstance(compiled, CompiledPlan) else CompiledPlan(compiled)
        self.compiled = shared
        self.plan = shared.plan
        self.store = store
        self.emit = emit
        self.on_send = on_send  # the dispatcher, when pushes are really delivered
        self.observer = observer
        self.settings = shared.settings
        self.clock: int = store.meta("clock", 0)
        self._at_clock: int = store.meta("records_at_clock", 0)
        self.campaigns = shared.campaigns
        self.pipelines = shared.pipelines
        self.by_trigger = shared.by_trigger if deciding else {}
        self.by_unless = shared.by_unless if deciding else {}
        self.by_conversion = shared.by_conversion if deciding else {}
        self.by_id = shared.by_id
        self.retention = shared.retention
        self.keep_history = keep_history if shared.keep_every is None else max(keep_history or 0, shared.keep_every)
        self._by_user_zone = shared.by_user_zone if deciding else []
        # the work done (timers fired, users visited by occurrences): what advance's budget counts
        self.work = 0
        self._stop_at: int | None = None  # stop an advance when ``work`` reaches it
        self.firing: list[str] = []  # the keys of the timers being fired (a host isolates a failing one)
        # an advance stopped at a winner test whose tally is not complete yet (scale-out: other partitions
        # have not reached s + D); the host tries again later
        self.waiting = False
        # the live decisions made at the current trigger instant, per campaign and user: the next one's
        # ordinal (SPEC §9.4); kept in the store, so a replay resumed within an instant goes on counting
        saved = store.meta("ordinals") or {}
        self._ordinals: dict[str, int] = dict(saved.get("n", {}))
        self._ordinals_at: int = saved.get("at", -1)
        self._throttle_hour = -1  # the clock's hour when throttle periods were last forgotten
        # winner tests under way: campaign → occurrence s → its test sends and their hits (kept in the store)
        self._tests: dict[str, dict[int, dict[str, Any]]] = {}
        for key, test in store.meta_items("test:"):
            campaign, _, s = key[len("test:"):].rpartition(":")
            self._tests.setdefault(campaign, {})[int(s)] = test
        for c in shared.scheduled if deciding else ():
            self._ensure_occurrence(c, c.tz if c.plan.deliver_in_user_timezone else "")

    def _observing(self, campaign: str, user: str) -> Observer | None:
        observer = self.observer
        return observer if observer is not None and observer.watches(campaign, user) else None

    def segments(self, tz: str) -> dict[str, Fn]:
        """The plan's segments compiled in a zone (one set per zone, shared by its campaigns)."""
        return self.compiled.segments(tz)

    # ---- time ----------------------------------------------------------------------------------

    def advance(self, until: int, *, inclusive: bool = False, budget: int | None = None) -> bool:
        """Fire the timers due before ``until`` (or at it, when ``inclusive``), in time order.

        ``budget``: stop once about that much work is done (timers fired, users an occurrence
        visited; at least one), so that a host can commit a long occurrence in parts. What is left of
        the instant it stopped at stays in the store as timers due then (an occurrence as its
        continuation after the last user done), so the next call goes on where this one stopped and
        every decision is the one an uninterrupted call makes. Returns whether it reached ``until``."""
        store = self.store
        self._stop_at = None if budget is None else self.work + max(1, budget)
        try:
            while (due := store.next_due()) is not None and (due < until or (inclusive and due == until)):
                self.clock = max(self.clock, due)
                batch = _together(self._in_order(store.pop_due(due)))
                for i, timer in enumerate(batch):
                    if self._stop_at is not None and self.work >= self._stop_at:
                        self._put_back(batch[i:])
                        store.set_meta("clock", self.clock)
                        return False
                    if isinstance(timer, Timer):
                        self.firing = [timer.key]
                        self.work += 1
                        if not self._fire(timer):
                            self._put_back(batch[i + 1:])
                            store.set_meta("clock", self.clock)
                            return False
                    elif (c := self.by_id.get(timer[0].campaign)) is not None:
                        self.firing = [t.key for t in timer]
                        if not self._occurrence(c, timer):
                            self._put_back(batch[i + 1:])
                            store.set_meta("clock", self.clock)
                            return False
                self.firing = []
        finally:
            self._stop_at = None
        self.firing = []
        self.clock = max(self.clock, until)
        store.set_meta("clock", self.clock)
        if self.compiled.throttled and self.clock // _HOUR > self._throttle_hour:
            self._throttle_hour = self.clock // _HOUR
            store.throttle_forget(self.clock)
        return True

    def _in_order(self, timers: list[Timer]) -> list[Timer]:
        """Timers due at one instant in descending priority, then campaign id, then user id (SPEC §9.2)."""
        priorities = self.compiled.priorities
        if priorities:
            timers.sort(key=lambda t: (-priorities.get(t.campaign, 0), t.campaign, t.user))
        return timers

    def _put_back(self, timers: list[Timer | list[Timer]]) -> None:
        """Timers popped and not fired (an advance out of budget): due again, in the same order."""
        for item in timers:
            for timer in item if isinstance(item, list) else [item]:
                self.store.add_timer(timer)

    def drop_timer(self, key: str) -> Timer | None:
        """Forget a timer without firing it (a host isolates one whose firing keeps failing); for a
        scheduled occurrence, the campaign's next one is armed. Returns the timer, if there was one."""
        timer = self.store.timer(key)
        if timer is None:
            return None
        self.store.cancel_timer(key)
        c = self.by_id.get(timer.campaign)
        if timer.kind == "occurrence" and c is not None:
            self.store.set_meta(f"occurrence:{c.id}:{timer.user}:next", timer.due + 1)
            self._ensure_occurrence(c, timer.user)
        return timer

    def finish(self, until: int | None = None) -> None:
        """The end of the input: timers due at or before ``until`` (default: the clock) fire."""
        self.advance(self.clock if until is None else max(until, self.clock), inclusive=True)
        self.store.commit()

    # ---- records -------------------------------------------------------------------------------

    def feed(self, record: Record) -> None:
        ts = record.ts
        later = ts > self.clock
        due = self.store.next_due()
        if due is not None and due < ts:  # timers due before the record fire first (SPEC §9.2), also
            self.advance(ts)              # those a late record (live: older than the clock) started
        elif later:  # nothing falls due before the record: the clock just moves (advance's own result)
            self.clock = ts
            self.store.set_meta("clock", ts)
        if later:
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
        if name in INTERACTIONS:
            self._interaction(state, event)
        for c in self.by_unless.get(name, ()):
            self._maybe_cancel(c, state, event)
        env: Env | None = None
        user = state.user
        watched = self.observer is not None
        for c in self.by_trigger.get(name, ()):
            observer = self._observing(c.id, user) if watched else None
            if ts < c.arm_from or ts >= c.arm_until:
                if observer is not None:
                    observer.noted(c.id, user, ts, f'"{name}" at {iso(ts)} is outside the campaign\'s '
                                                   "[start, end): it arms nothing", trigger=True)
                continue  # a trigger outside [start, end) arms nothing
            if env is None or env.segments is not c.segments:  # one Env serves the campaigns of a zone
                env = Env(user, state.profile, ts, UserHistory(state), c.segments, name, ts, event.props)
            if not c.trigger_where(env):
                if observer is not None:
                    observer.noted(c.id, user, ts, f'"{name}" at {iso(ts)}: its `where` is false', trigger=True)
                continue
            if c.single:
                if observer is not None:
                    observer.noted(c.id, user, ts, f'"{name}" at {iso(ts)} triggers a decision now', trigger=True)
                self._decide(c, state, ts, env, trigger_at=ts)
            elif c.inaction:
                if observer is not None:
                    observer.noted(c.id, user, ts, f'"{name}" at {iso(ts)} arms a timer due {iso(ts + c.within)}',
                                   trigger=True, due=ts + c.within)
                self.store.add_timer(Timer(ts + c.within, c.id, user, c.inaction_key + user, "inaction",
                                           {"event": name, "ts": ts, "props": event.props}))
            else:
                self._schedule_at(c, state, env, event)

    def _interaction(self, state: UserState, event: Event) -> None:
        """A `Push Viewed` / `Push Clicked` of one of the user's sends: a `viewed` / `clicked` record,
        so that stats over the decisions count them as stats over the live service do. The campaign
        is the event's `props.campaign` (the SDK sends it), also one no longer loaded."""
        send_id, campaign = event.props.get("send_id"), event.props.get("campaign")
        if isinstance(send_id, str) and send_id in state.sends and isinstance(campaign, str) and campaign:
            self.emit(Output(iso(event.ts), campaign, state.user, INTERACTIONS[event.name], send_id=send_id))
            if self._tests and event.name == "Push Clicked":
                c = self.by_id.get(campaign)
                if c is not None and c.plan.test is not None and c.plan.test.by == "clicks":
                    self._hit(campaign, send_id, event.ts)

    def _maybe_cancel(self, c: CompiledCampaign, state: UserState, event: Event) -> None:
        timer = self.store.timer(c.inaction_key + state.user)
        if timer is None or event.ts > timer.due:
            return
        trigger = timer.payload
        if event.ts < trigger["ts"]:
            return  # an F before E cancels nothing, even when its record arrives late
        env = c.env(state, event.ts, event)
        env.trigger, env.trigger_name, env.trigger_ts = trigger["props"], trigger["event"], trigger["ts"]
        if c.unless_where(env):
            self.store.cancel_timer(timer.key)
            if (observer := self._observing(c.id, state.user)) is not None:
                observer.noted(c.id, state.user, event.ts, f'"{event.name}" at {iso(event.ts)} cancels the timer '
                                                           f"armed at {iso(trigger['ts'])}", trigger=False, due=timer.due)

    def _schedule_at(self, c: CompiledCampaign, state: UserState, env: Env, event: Event) -> None:
        assert c.at is not None
        value = c.at(env)
        when = as_datetime(value, c.tz) if value is not MISSING else None
        if when is None:
            self._trigger_time(c, state, event, Suppress("missing_property"), "the `at` time has no value")
            return
        due = from_datetime(when)
        if due <= event.ts:
            self._trigger_time(c, state, event, Suppress("past_due"), f"the `at` time {iso(due)} is not after "
                                                                      f"the event's {iso(event.ts)}")
            return
        if (observer := self._observing(c.id, state.user)) is not None:
            observer.noted(c.id, state.user, event.ts, f'"{event.name}" at {iso(event.ts)} schedules a decision '
                                                       f"at {iso(due)}", trigger=True, due=due)
        key = f"at:{c.id}:{state.user}:{event.ts}"
        n = 1
        while self.store.timer(key if n == 1 else f"{key}#{n}") is not None:
            n += 1  # a second trigger at the same instant schedules a decision of its own
        key = key if n == 1 else f"{key}#{n}"
        self.store.add_timer(Timer(due, c.id, state.user, key, "at",
                                   {"event": event.name, "ts": event.ts, "props": event.props}))

    def _trigger_time(self, c: CompiledCampaign, state: UserState, event: Event, decision: Suppress,
                      why: str) -> None:
        """An on-date trigger whose time is missing or not after the event (SPEC §3): suppressed at once,
        before there is a decision instant to hash a send_id on (the record's send_id is null)."""
        if (observer := self._observing(c.id, state.user)) is not None:
            observer.noted(c.id, state.user, event.ts, f'"{event.name}" at {iso(event.ts)}: {why}', trigger=True)
            observer.decided(Trace(c.id, state.user, event.ts, False, [Verdict("at", decision, why)], decision))
        self._output(c, state.user, event.ts, decision.outcome, decision.reason)

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
            env = c.env(state, event.ts, event)
            if not c.conversion_where(env):
                continue
            revenue = None
            if c.revenue is not None:
                value = c.revenue(env)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    revenue = float(value)
            self.store.close_window(state, window)
            self.emit(Output(iso(event.ts), c.id, state.user, "convert", send_id=window.send_id, revenue=revenue,
                             variant=window.variant, lang=window.lang))
            if self._tests and c.plan.test is not None and c.plan.test.by == "conversions":
                self._hit(c.id, window.send_id, event.ts)

    # ---- timers --------------------------------------------------------------------------------

    def _fire(self, timer: Timer) -> bool:
        """Whether the advance goes on (False: an occurrence out of budget, or a winner to wait for)."""
        c = self.by_id.get(timer.campaign)
        if c is None:
            return True  # the campaign is no longer loaded
        if timer.kind in ("occurrence", "winner"):
            return self._occurrence(c, [timer])
        state = self.store.user(timer.user, timer.due)
        if timer.kind == "delay":
            self._decide_again(c, state, timer.due, pending_from(timer.payload))
            return True
        payload = timer.payload
        if timer.kind == "best":  # the occurrence at s, for this user at s + k: send_id and cut-off are s's
            self._decide(c, state, timer.due, c.env(state, timer.due), trigger_at=payload["s"],
                         date=payload["date"], schedule_zone=payload["zone"])
            return True
        env = Env(state.user, state.profile, timer.due, UserHistory(state), c.segments, payload["event"],
                  payload["ts"], payload["props"])
        self._decide(c, state, timer.due, env, trigger_at=timer.due)
        return True

    def _ensure_occurrence(self, c: CompiledCampaign, zone: str, not_before: int | None = None) -> None:
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
        if not valid_zone(zone):
            return
        for c in self._by_user_zone:
            self._ensure_occurrence(c, zone, not_before=self.clock)

    def _occurrence(self, c: CompiledCampaign, timers: list[Timer]) -> bool:
        """One instant of a scheduled campaign, for every zone due then: users in user-id order.

        With a winner test (SPEC §12.4) an occurrence at s decides the test group only and leaves a
        ``winner`` timer at s + D, which picks the winner and then decides every other user known at s
        with it (a campaign with a test has one zone: lint forbids `deliver in user timezone`).

        False when the advance's budget ran out first: the users after the last one done wait in
        continuation timers (key ``<occurrence key>@<instant>``, payload ``after``: that user)."""
        at = timers[0].due
        dates = {timer.user: timer.payload["date"] for timer in timers}  # zone → the scheduled local date
        after: dict[str, str] = {}  # zone → the last user done before (a continuation)
        test = c.plan.test
        winner_of: int | None = timers[0].payload.get("winner_of")  # the winner's phase: the occurrence s
        variant: str | None = timers[0].payload.get("variant")
        for timer in timers:
            if "after" in timer.payload:
                after[timer.user] = timer.payload["after"]
                continue
            if winner_of is not None:
                variant = self._winner(c, winner_of, at)
                if variant is None:  # not every part of the tally is in: this timer waits, as it was
                    self.store.add_timer(timer)
                    self.waiting = True
                    return False
                continue
            self.store.set_meta(timer.key + ":next", at + 1)
            self._ensure_occurrence(c, timer.user)
            if test is not None:  # the test group is decided now, the others when the winner is known
                self._open_test(c, at)
                self.store.add_timer(Timer(at + test.after * US, c.id, timer.user, f"winner:{c.id}:{at}", "winner",
                                           {"date": timer.payload["date"], "winner_of": at}))
        known_at = at if winner_of is None else winner_of
        by_user_zone = c.plan.deliver_in_user_timezone
        uids = self.store.user_ids()
        if after and len(after) == len(timers):
            uids = uids[bisect.bisect_right(uids, min(after.values())):]
        stop = self._stop_at
        last: str | None = None
        best: list[tuple[UserState, str, str]] | None = [] if c.plan.best_time is not None else None
        for uid in uids:
            if stop is not None and self.work >= stop and last is not None:
                if best:
                    self._best_times(c, best, at)
                for timer in timers:
                    key = timer.key if "after" in timer.payload else f"{timer.key}@{at}"
                    self.store.add_timer(Timer(at, c.id, timer.user, key, timer.kind,
                                               {**timer.payload, "after": last, "variant": variant}))
                return False
            self.work += 1
            last = uid
            state = self.store.get(uid)
            if state is None or state.first_seen > known_at:
                continue  # not a known user at the occurrence (SPEC §3)
            zone = user_zone(c, state) if by_user_zone else ""
            date = dates.get(zone)
            if date is None or (zone in after and uid <= after[zone]):
                continue
            if test is not None and in_test_group(c.id, uid, test.percent) != (winner_of is None):
                continue  # the test group at s, everybody else at s + D
            if best is not None:  # decided at their best hour, chosen for a batch of users at once
                best.append((state, date, zone if by_user_zone else c.tz))
                if len(best) >= best_choice.BATCH:
                    self._best_times(c, best, at)
                    best = []
                continue
            self._decide(c, state, at, c.env(state, at), trigger_at=at, date=date,
                         schedule_zone=zone if by_user_zone else c.tz, variant=variant)
        if best:
            self._best_times(c, best, at)
        return True

    # ---- best time (SPEC §12.6): each user decided at s + k, k chosen at s from their history ----

    def _best_times(self, c: CompiledCampaign, users: list[tuple[UserState, str, str]], s: int) -> None:
        """Choose k for each of these users (known at s, in user-id order) and decide them at s + k:
        at once for k = 0, else by a ``best`` timer. The store counts their events by local hour, one
        call per zone."""
        asked = [(state.user, user_zone(c, state), date, schedule_zone) for state, date, schedule_zone in users]
        for (state, date, schedule_zone), choice in zip(users, best_choice.choices(self.store, c, asked, s),
                                                        strict=True):
            user = state.user
            if self.observer is not None and (observer := self._observing(c.id, user)) is not None:
                observer.noted(c.id, user, s, choice.words(), trigger=True, due=choice.at)
            if choice.k == 0:
                self._decide(c, state, s, c.env(state, s), trigger_at=s, date=date, schedule_zone=schedule_zone)
            else:
                self.store.add_timer(Timer(choice.at, c.id, user, f"best:{c.id}:{user}:{s}", "best",
                                           {"s": s, "date": date, "zone": schedule_zone}))

    # ---- winner tests (SPEC §12.4): the test sends of an occurrence, their clicks or conversions ----

    def _open_test(self, c: CompiledCampaign, s: int) -> None:
        test: dict[str, Any] = {"sent": {}, "hit": {}}  # send_id → variant; send_id → 1 (a click or a conversion)
        self._tests.setdefault(c.id, {})[s] = test
        self.store.set_meta(f"test:{c.id}:{s}", test)

    def _tested(self, c: CompiledCampaign, send_id: str, at: int, variant: str | None) -> None:
        """A `send` of the test group at its occurrence s (a delayed one, sent later, does not count)."""
        test = self._tests.get(c.id, {}).get(at)
        if test is not None and variant is not None:
            test["sent"][send_id] = variant
            self.store.set_meta(f"test:{c.id}:{at}", test)

    def _hit(self, campaign: str, send_id: str, ts: int) -> None:
        """A click (or a conversion) of a test send, counted when it falls in (s, s + D]."""
        c = self.by_id.get(campaign)
        if c is None or c.plan.test is None:
            return
        window = c.plan.test.after * US
        for s, test in self._tests.get(campaign, {}).items():
            if send_id in test["sent"] and s < ts <= s + window and send_id not in test["hit"]:
                test["hit"][send_id] = 1
                self.store.set_meta(f"test:{campaign}:{s}", test)

    def _winner(self, c: CompiledCampaign, s: int, at: int) -> str | None:
        """The winner of the test at occurrence s, chosen at ``at`` = s + D, with its `winner` record; None
        while the store has not every part of the tally (scale-out: the other partitions)."""
        test = self._tests.get(c.id, {}).get(s) or {"sent": {}, "hit": {}}
        hit = test["hit"]
        local = {v.id: [0, 0] for v in c.plan.variants}  # variant → [hits, sends], in the order written
        for send_id, variant in test["sent"].items():
            if variant in local:
                local[variant][1] += 1
                local[variant][0] += send_id in hit
        tally = self.store.test_tally(c.id, s, local)
        if tally is None:
            return None
        self._tests.get(c.id, {}).pop(s, None)
        self.store.set_meta(f"test:{c.id}:{s}", None)
        tally = {v: tally[v] for v in local}
        winner, runner_up = best_two(tally)
        rates = {v: round(x / n, 4) if n else 0.0 for v, (x, n) in tally.items()}
        significant = compare(*tally[winner], *tally[runner_up]).significant
        if (observer := self.observer) is not None:
            spec = c.plan.test
            assert spec is not None
            observer.noted(c.id, "", at, f"the test of {iso(s)} ({spec.percent:g}% of the users, decided then): "
                                         f"winner {winner} by {spec.by}, rates {rates}"
                                         f"{' (significant)' if significant else ' (not significant)'}; "
                                         "everybody else known then is decided now with it", trigger=True)
        if self.store.writes_campaign_records:
            self.emit(Output(iso(at), c.id, None, "winner", variant=winner, rates=rates, significant=significant))
        return winner

    # ---- decisions (SPEC §9.3): the pipeline decides, the engine applies -----------------------

    def _decide(self, c: CompiledCampaign, state: UserState, at: int, env: Env, *, trigger_at: int,
                date: str | None = None, schedule_zone: str | None = None, variant: str | None = None) -> None:
        pipeline = self.pipelines[c.id]
        ordinal = self._ordinal(c, state.user, trigger_at)
        a = Attempt(c, state, at, self.settings, env, trigger_at, date, schedule_zone, slots=self.store,
                    ordinal=ordinal, variant=variant)
        if self.observer is not None and (observer := self._observing(c.id, state.user)) is not None:
            observer.decided(trace(pipeline, Attempt(c, state, at, self.settings, env=env, trigger_at=trigger_at,
                                                     date=date, schedule_zone=schedule_zone, slots=self.store,
                                                     ordinal=ordinal, variant=variant)))
        self._apply(c, a, pipeline.decide(a))

    def _ordinal(self, c: CompiledCampaign, user: str, trigger_at: int) -> int:
        """How many decisions of this campaign for this user were made at this trigger instant: two
        triggers at one instant are two decisions, the second's send_id hashes ordinal 1 (SPEC §9.4).
        A scheduled campaign decides once per user and instant: always 0, nothing kept. The counts are
        kept under a hash of campaign and user: neither a user id nor a send_id is in the entry, so
        erasing a user leaves nothing of theirs there."""
        if not c.is_live:
            return 0
        if trigger_at != self._ordinals_at:
            self._ordinals = {}
            self._ordinals_at = trigger_at
        key = hashlib.blake2b(f"{c.id}\x1f{user}".encode(), digest_size=8).hexdigest()
        n = self._ordinals.get(key, 0)
        self._ordinals[key] = n + 1
        self.store.set_meta("ordinals", {"at": trigger_at, "n": self._ordinals})
        return n

    def _decide_again(self, c: CompiledCampaign, state: UserState, at: int, send: PendingSend) -> None:
        """A delayed decision at its `until`: the steps that run again (SPEC §9.3)."""
        pipeline = self.pipelines[c.id]
        a = Attempt(c, state, at, self.settings, send=send, slots=self.store)
        if self.observer is not None and (observer := self._observing(c.id, state.user)) is not None:
            observer.decided(trace(pipeline, Attempt(c, state, at, self.settings, send=send, slots=self.store),
                                   again=True))
        self._apply(c, a, pipeline.decide(a, again=True))

    def _apply(self, c: CompiledCampaign, a: Attempt, decision: Decision) -> None:
        if c.plan.throttle is not None and isinstance(decision, (Send, Delay)):
            decision = self._reserve(c, a, decision)
        if isinstance(decision, Suppress):
            self._output(c, a.state.user, a.at, "suppress", decision.reason, a.send_id, variant=a.chosen_variant,
                         lang=a.chosen_lang)
        elif isinstance(decision, Send):
            self._send(c, a, decision.send)
        elif isinstance(decision, Delay):
            user = a.state.user
            self._output(c, user, a.at, "delay", decision.reason, a.send_id, until=iso(decision.until),
                         variant=decision.send.variant, lang=decision.send.lang)
            self.store.add_timer(Timer(decision.until, c.id, user, f"delay:{c.id}:{user}:{a.send_id}", "delay",
                                       pending_payload(decision.send)))
        elif isinstance(decision, Control):
            lang = control_lang(a)  # the language they would have got (SPEC §9.4)
            self._output(c, a.state.user, a.at, "control", decision.reason, a.send_id, lang=lang)
            self._open_window(c, a.state, a.send_id, a.at, lang=lang)
        else:
            assert isinstance(decision, Skip)

    def _reserve(self, c: CompiledCampaign, a: Attempt, decision: Send | Delay) -> Decision:
        """Take the throttle slot a send (in its period) or a throttle delay (at its `until`) needs. The
        step found room there; another worker may have taken it since (scale-out): then the step,
        asked again, finds the next period with room."""
        throttle = c.plan.throttle
        assert throttle is not None
        while True:
            if isinstance(decision, Send):
                period = throttle_period(throttle, a.at)
                if decision.send.slot == period or self.store.throttle_take(c.id, period, throttle.count):
                    return decision
            elif decision.reason != "throttle":
                return decision  # a DND delay takes its slot when it is made again
            elif self.store.throttle_take(c.id, decision.until, throttle.count):
                return decision
            decision = THROTTLE.taken(a)

    def _send(self, c: CompiledCampaign, a: Attempt, send: PendingSend) -> None:
        """Step 12: count it, open its conversion window, write the record, hand it to the dispatcher."""
        p, state, at, send_id = c.plan, a.state, a.at, send.send_id
        user = state.user
        if send_id in state.sends:
            return  # this decision was sent before (a replayed record or a restart): never twice
        store = self.store
        store.add_send(state, send_id)
        periods = a.periods
        day = global_key(periods["day"])
        first_today = day not in state.counters
        prefix = c.counter_prefix
        keys = {prefix + periods[limit.period] for limit in p.limits if limit.period != "rolling"}
        keys.add(prefix + "all")
        keys.add(day)
        settings = self.settings
        if settings.global_per_user_per_week is not None:
            keys.add(global_key(periods["week"]))
        if c.rolling:  # the instants of this campaign's sends within its longest rolling window
            keys.add(f"{prefix}{ROLLING}{at}")
            self._forget_before(state, prefix + ROLLING, at - c.rolling * US)
        for key in keys:
            store.bump_counter(state, key)
        if settings.min_gap is not None:  # the user's last send, for min_gap
            store.set_counter(state, LAST_SEND, at)
        if first_today:  # once per user and local day: forget the counters no limit reads any more
            self._prune_counters(state, periods["day"])
        self._open_window(c, state, send_id, at, send.variant, send.lang)
        self.emit(Output(iso(at), c.id, user, "send", None, send_id, send.title, send.body, send.url,
                         list(send.platforms), variant=send.variant, lang=send.lang))
        if self._tests and c.plan.test is not None:
            self._tested(c, send_id, at, send.variant)
        if self.on_send is not None:
            self.on_send(SendJob(at, p, user, send, targets(c, state, send)))

    def _forget_before(self, state: UserState, prefix: str, before: int) -> None:
        """Drop the instants counted under ``prefix`` at or before ``before``: no window reaches them."""
        n = len(prefix)
        for key in [k for k in state.counters if k.startswith(prefix) and int(k[n:]) <= before]:
            self.store.drop_counter(state, key)

    def _prune_counters(self, state: UserState, today: str) -> None:
        """Drop the per-day and per-week counters no limit reads again (:func:`_oldest_kept`).
        Per-campaign totals (``|all``) stay."""
        oldest_day, oldest_week = _oldest_kept(today)
        for key in [k for k in state.counters if _stale(k.rpartition("|")[2], oldest_day, oldest_week)]:
            self.store.drop_counter(state, key)

    def _open_window(self, c: CompiledCampaign, state: UserState, send_id: str, at: int,
                     variant: str | None = None, lang: str | None = None) -> None:
        conversion = c.plan.conversion
        if conversion is not None:
            self.store.open_window(state, Window(c.id, send_id, at, at + conversion.within * US, variant, lang))

    def _output(self, c: CompiledCampaign, user: str, at: int, outcome: str, reason: str | None,
                send_id: str | None = None, *, until: str | None = None, variant: str | None = None,
                lang: str | None = None) -> None:
        self.emit(Output(iso(at), c.id, user, outcome, reason, send_id, until=until, variant=variant, lang=lang))
