"""What a campaign does for one user, and why: the engine's own decisions, observed step by step.

`preview` replays the records with an :class:`~pushlang.runtime.engine.Observer` attached and keeps
what the engine did for one (campaign, user): the triggers, the decisions with every step's verdict,
the delays and the decisions made again after them. So it says what a replay says, by construction.
`explain_now` is the REPL's `:why`: the decision the same steps would make at the current instant.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pushlang import plan
from pushlang.runtime.best_choice import occurrence_now
from pushlang.runtime.campaigns import CompiledCampaign
from pushlang.runtime.engine import Engine, Observer
from pushlang.runtime.instants import iso, wall
from pushlang.runtime.outcomes import Delay
from pushlang.runtime.pipeline import Attempt, Trace, pending_from, trace, user_zone
from pushlang.runtime.records import Event, Record
from pushlang.runtime.store import MemoryStore, Timer
from pushlang.runtime.why import message_lines, verdict, verdict_line

FOLLOW = 100  # at most this many pending timers are followed to their decision


@dataclass
class Note:
    """Something the engine did about a trigger that is not a decision."""

    at: int
    text: str


Observation = Note | Trace


@dataclass
class Preview:
    campaign: str
    user: str
    horizon: int  # the records were replayed up to here (timers due by then fired)
    observed: list[Observation] = field(default_factory=list)  # the last trigger's story, in order
    hypothetical: Trace | None = None  # nothing was decided: what the steps say at the horizon
    pending: list[str] = field(default_factory=list)  # timers of this user and campaign still due
    never: str | None = None  # why there is nothing to show at all
    schedule: str | None = None  # a scheduled campaign without a next occurrence: why the last one is shown

    @property
    def final(self) -> Trace | None:
        """The decision that stands: the last one observed, else the hypothetical one."""
        traces = [o for o in self.observed if isinstance(o, Trace)]
        return traces[-1] if traces else self.hypothetical

    @property
    def outcome(self) -> str:
        final = self.final
        return "no decision" if final is None or final.decision is None else final.decision.outcome

    @property
    def reason(self) -> str | None:
        final = self.final
        return None if final is None else final.reason


@dataclass
class _Story:
    """What one trigger (or one occurrence) led to: its note, then its decisions."""

    items: list[Observation]
    due: int | None = None  # the decision its trigger armed or scheduled (None: decided at once)
    decided: bool = False
    delays: set[str | None] = field(default_factory=set)  # send_ids it delayed
    last: int = 0  # when it was last decided, in the order of the engine's decisions


class _Collector(Observer):
    """Keeps what the engine did for one campaign and user, story by story: a decision goes with the
    trigger whose timer it is, a decision made again with the story that delayed it."""

    def __init__(self, campaign: str, user: str) -> None:
        self.campaign, self.user = campaign, user
        self.stories: list[_Story] = []
        self.decisions = 0

    def watches(self, campaign: str, user: str) -> bool:
        return campaign == self.campaign and user == self.user

    def noted(self, campaign: str, user: str, at: int, text: str, *, trigger: bool, due: int | None = None) -> None:
        note = Note(at, text)
        if trigger or not self.stories:
            self.stories.append(_Story([note], due))
            return
        waiting = [s for s in self.stories if s.due == due and not s.decided]  # a timer cancelled
        (waiting[-1] if waiting else self.stories[-1]).items.append(note)

    def decided(self, t: Trace) -> None:
        if t.again:
            story = next((s for s in reversed(self.stories) if t.send_id in s.delays), None)
        else:
            story = next((s for s in reversed(self.stories) if not s.decided and s.due == t.at), None)
            last = self.stories[-1] if self.stories else None
            if story is None and last is not None and not last.decided and last.due is None and \
                    isinstance(last.items[0], Note) and last.items[0].at == t.at:
                story = last  # a trigger that decides at once
        if story is None:  # an occurrence of a scheduled campaign (or a delay seen from its start)
            story = _Story([])
            self.stories.append(story)
        story.items.append(t)
        story.decided = True
        self.decisions += 1
        story.last = self.decisions
        if isinstance(t.decision, Delay):
            story.delays.add(t.send_id)

    def last_story(self) -> list[Observation]:
        """The story of the latest decision, then what later triggers did without one yet (nothing, or
        a timer still pending); with no decision at all, the last trigger's story."""
        decided = [s for s in self.stories if s.decided]
        if not decided:
            return self.stories[-1].items if self.stories else []
        latest = max(decided, key=lambda s: s.last)
        later = self.stories[self.stories.index(latest) + 1:]
        return latest.items + [item for s in later if not s.decided for item in s.items]


def preview(compiled: plan.Plan, records: Iterable[Record], campaign_id: str, user: str,
            at: int | None = None) -> Preview:
    """Replay ``records`` up to ``at`` and keep the story of the user's last trigger (a live campaign) or
    occurrence (a scheduled one). Without ``at``: every record, then a scheduled campaign's next
    occurrence at or after the last record (from `start`, before `end`, in the user's own zone with
    `deliver in user timezone`), then every timer of this user and campaign still pending, so that a
    delay is followed to its end (as a replay whose input ended there would); at most ``FOLLOW`` steps.
    With ``at``: the records up to it; a later timer, the next occurrence too, is shown as pending."""
    collector = _Collector(campaign_id, user)
    store = MemoryStore()
    engine = Engine(compiled, store, lambda out: None, observer=collector)
    c = engine.by_id.get(campaign_id)
    if c is None:
        raise ValueError(f"no campaign `{campaign_id}`")
    records = list(records)
    horizon = at if at is not None else max((r.ts for r in records), default=0)
    for record in records:
        if record.ts <= horizon:
            engine.feed(record)
    engine.finish(horizon)
    state = store.get(user)
    occurrence = key = None  # the user's next occurrence of a scheduled campaign, its timer's key
    if not c.is_live and state is not None:
        key = f"occurrence:{c.id}:{user_zone(c, state) if c.plan.deliver_in_user_timezone else ''}"
        occurrence = store.timer(key)
    schedule = None
    if at is None and state is not None:
        if key is not None and store.meta(key + ":next") != horizon + 1:  # none decided at the last record
            if occurrence is None:
                schedule = f"the schedule has no occurrence at or after the last record ({iso(horizon)})" + (
                    f" before its end {iso(c.end)}" if c.end is not None else "")
            else:
                collector.stories.append(_Story([Note(occurrence.due, _next_occurrence(c, occurrence, horizon))],
                                                occurrence.due))
                horizon = occurrence.due
                engine.advance(horizon, inclusive=True)
        for _ in range(FOLLOW):  # a delay, or a trigger's timer, of this user
            due = [t.due for t in store.pending_timers(user) if t.campaign == campaign_id]
            if not due:
                break
            horizon = min(due)
            engine.advance(horizon, inclusive=True)
    result = Preview(campaign_id, user, horizon, collector.last_story(), schedule=schedule)
    waiting = [t for t in store.pending_timers(user) if t.campaign == campaign_id]
    result.pending = [f"{t.kind} timer due {iso(t.due)}" for t in waiting]
    if at is not None and occurrence is not None:
        result.pending.append(f"next occurrence {_local(c, occurrence)}, {iso(occurrence.due)}")
    if result.observed:
        return result
    trigger = c.plan.trigger
    if state is None:
        result.never = f"no record of user {user} at or before {iso(horizon)}"
    elif isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
        result.never = f'the user did not do "{trigger.event}" by {iso(horizon)}'
    elif c.start is not None and horizon < c.start:
        result.never = f"no occurrence reached this user by {iso(horizon)}: the campaign starts at {iso(c.start)}"
    elif not waiting:
        result.hypothetical = explain_now(engine, campaign_id, user)
    return result


def _local(c: CompiledCampaign, occurrence: Timer) -> str:
    """``2026-12-10 18:30 in America/New_York``: an occurrence as the schedule reads it."""
    zone = occurrence.user or c.tz  # an occurrence timer's user is its zone ("": the campaign's)
    return f"{occurrence.payload['date']} {wall(occurrence.due, zone):%H:%M} in {zone}"


def _next_occurrence(c: CompiledCampaign, occurrence: Timer, last: int) -> str:
    starts = f" (the campaign starts at {iso(c.start)})" if c.start is not None and c.start > last else ""
    return f"the next occurrence at or after the last record ({iso(last)}){starts}: {_local(c, occurrence)}"


def explain_now(engine: Engine, campaign_id: str, user: str, event: Event | None = None) -> Trace | None:
    """The decision the campaign's steps would make for ``user`` at the engine's clock, changing nothing.

    A delayed send of this user waiting in a timer is decided again (the steps that run again); else
    a new decision with ``event`` as the trigger (a live campaign; none: ``event.*`` is missing), as
    if a scheduled campaign's occurrence were now (the cut-off read on today's local date). None for
    a user the store does not know."""
    c = engine.by_id[campaign_id]
    state = engine.store.get(user)
    if state is None:
        return None
    pipeline, now = engine.pipelines[campaign_id], engine.clock
    delayed = [t for t in engine.store.pending_timers(user) if t.campaign == campaign_id and t.kind == "delay"]
    if delayed:
        send = pending_from(delayed[0].payload)
        return trace(pipeline, Attempt(c, state, now, engine.settings, send=send, slots=engine.store), again=True)
    date = zone = None
    if not c.is_live:  # the local date of an occurrence now, and the zone it and the cut-off are read in
        date, zone = occurrence_now(c, user_zone(c, state), now)
    return trace(pipeline, Attempt(c, state, now, engine.settings, env=c.env(state, now, event),
                                   date=date, schedule_zone=zone, slots=engine.store))


def render_preview(p: Preview) -> str:
    """The story in words: each trigger note, each decision step by step, the verdict and the message."""
    lines = [f"campaign {p.campaign}, user {p.user} (records replayed to {iso(p.horizon)})"]
    if p.never:
        lines.append(f"  {p.never}")
    if p.schedule:
        lines.append(f"  {p.schedule}")
    for o in p.observed:
        if isinstance(o, Note):
            lines.extend(f"  {line}" for line in o.text.splitlines())  # a best-time note has its chart
            continue
        lines.append(f"  {'decided again' if o.again else 'decision'} at {iso(o.at)}: {verdict(o)}")
        lines.extend(f"    {verdict_line(v)}" for v in o.verdicts)
    if p.hypothetical is not None:
        lines.append(f"  no occurrence reached this user by {iso(p.horizon)}; if one did now:")
        lines.extend(f"    {verdict_line(v)}" for v in p.hypothetical.verdicts)
    lines.extend(f"  pending: {what}" for what in p.pending)
    final = p.final
    lines.append(f"→ {verdict(final) if final is not None and final.decision is not None else p.outcome}")
    if final is not None:
        message = message_lines(final)
        if message:
            lines.append("")
            lines.extend(message)
    return "\n".join(lines)
