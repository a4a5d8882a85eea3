"""`reach`: how many users a campaign's audience holds and how many of them it can reach.

Over the SQLite store the audience is counted in SQL where its `who` translates exactly
(:mod:`pushlang.runtime.audience_sql`); otherwise, and over the in-memory store, every known user is
run through the campaign's own pipeline steps (audience, reachable, control: the engine's, through
the tracer), so the per-user count and a replay never disagree. The output says which was done.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushlang import plan
from pushlang.runtime.audience_sql import AudienceQuery, Untranslatable, uses
from pushlang.runtime.campaigns import compile_campaign, compile_segments
from pushlang.runtime.instants import iso
from pushlang.runtime.pipeline import (
    Attempt,
    Control,
    Pipeline,
    channels,
    deliverable,
    duration_words,
    in_control_group,
    trace,
)
from pushlang.runtime.store import Store

COUNTED_IN_SQL = "counted in SQL"
REACH_STEPS = ("audience", "reachable", "control")  # the pipeline steps a reach counts with


# ---- the result --------------------------------------------------------------------------------


@dataclass
class Reach:
    """The numbers of one campaign at one instant, and how they were counted."""

    campaign: str
    name: str
    at: int
    known_users: int
    audience: int
    reachable: int
    by_platform: dict[str, int]  # every platform counted, in PLATFORMS order; a user once per platform
    control: int
    control_percent: float
    method: str  # "sql" | "per_user"
    counted: str  # COUNTED_IN_SQL, or "evaluated per user: <reason>"
    notes: list[str] = field(default_factory=list)

    def numbers(self) -> dict[str, Any]:
        """What two ways of counting must agree on."""
        return {"known_users": self.known_users, "audience": self.audience, "reachable": self.reachable,
                "by_platform": self.by_platform, "control": self.control}

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "at": iso(self.at),
            "known_users": self.known_users,
            "audience": self.audience,
            "audience_share": _share(self.audience, self.known_users),
            "reachable": self.reachable,
            "reachable_share": _share(self.reachable, self.known_users),
            "by_platform": self.by_platform,
            "control": self.control,
            "control_percent": self.control_percent,
            "method": self.method,
            "counted": self.counted,
            "notes": self.notes,
        }


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# ---- counting ----------------------------------------------------------------------------------


def count_reach(compiled: plan.Plan, campaign: plan.Campaign, store: Store, at: int, *,
                per_user: bool = False) -> Reach:
    """Count ``campaign``'s reach at ``at`` over ``store`` (committed): in SQL when the store is SQLite
    and the audience translates (unless ``per_user``), else user by user; with notes on what the
    campaign's delivery controls will do to those users."""
    result = _count(compiled, campaign, store, at, per_user)
    result.notes = delivery_notes(compiled.settings, campaign, result.reachable, result.control)
    return result


def _count(compiled: plan.Plan, campaign: plan.Campaign, store: Store, at: int, per_user: bool) -> Reach:
    from pushlang.runtime.sqlite_store import SqliteStore

    reason = "per_user was asked for" if per_user else "the in-memory store has no SQL (count a --store sqlite:///FILE in SQL)"
    if not per_user and isinstance(store, SqliteStore):
        if store.path in ("", ":memory:") or store.path.startswith("file:"):
            reason = "the SQLite store is not a plain file that a second, read-only connection can open"
        else:
            try:
                query = AudienceQuery(compiled, campaign, at)
            except Untranslatable as exc:
                reason = str(exc)
            else:
                return _count_sql(Path(store.path), campaign, at, query)
    return _count_per_user(compiled, campaign, store, at, f"evaluated per user: {reason}")


def _count_per_user(compiled: plan.Plan, campaign: plan.Campaign, store: Store, at: int, counted: str) -> Reach:
    """Every known user through the campaign's audience, reachable and control steps."""
    c = compile_campaign(campaign, compile_segments(compiled, campaign.timezone))
    pipeline = Pipeline(c, compiled.settings)
    allowed = channels(campaign)
    has_url = campaign.message.url is not None
    known = members = reachable = control = 0
    by_platform = dict.fromkeys(allowed, 0)
    for user in store.user_ids():
        state = store.get(user)
        if state is None or state.first_seen > at:
            continue
        known += 1
        a = Attempt(c, state, at, compiled.settings, env=c.env(state, at))
        t = trace(pipeline, a, only=REACH_STEPS)
        if t.verdicts and t.verdicts[-1].step == "audience" and t.decision is not None:
            continue
        members += 1
        platforms = {s.platform for s in deliverable(a.subscriptions, has_url)}
        if not platforms:
            continue
        reachable += 1
        for platform in platforms:
            by_platform[platform] += 1
        if isinstance(t.decision, Control):
            control += 1
    return Reach(campaign.id, campaign.name, at, known, members, reachable, by_platform, control,
                 campaign.control_percent, "per_user", counted)


def _count_sql(path: Path, campaign: plan.Campaign, at: int, query: AudienceQuery) -> Reach:
    allowed = channels(campaign)
    params = dict(query.params)
    names = []
    for i, platform in enumerate(allowed):
        params[f"platform{i}"] = platform
        names.append(f":platform{i}")
    platform_filter = f"s.platform IN ({', '.join(names)})" if names else "0"
    in_control = "pushlang_in_control(user_id)" if campaign.control_percent else "0"
    sql = f"""
        WITH audience AS ({query.sql}),
        channels AS (
          SELECT DISTINCT s.user_id, s.platform
          FROM audience a JOIN subscriptions s ON s.user_id = a.user_id
          WHERE s.active = 1 AND {platform_filter}
        ),
        reachable AS (SELECT DISTINCT user_id FROM channels)
        SELECT 'known', NULL, count(*) FROM users WHERE first_seen <= :at
        UNION ALL SELECT 'audience', NULL, count(*) FROM audience
        UNION ALL SELECT 'reachable', NULL, count(*) FROM reachable
        UNION ALL SELECT 'control', NULL, count(*) FROM reachable WHERE {in_control}
        UNION ALL SELECT 'platform', platform, count(*) FROM channels GROUP BY platform
    """
    # Read-only: counting never changes the store, and WAL lets it read beside the store's writer.
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        if campaign.control_percent:
            cid, percent = campaign.id, campaign.control_percent
            db.create_function("pushlang_in_control", 1,
                               lambda user: in_control_group(cid, user, percent), deterministic=True)
        totals: dict[str, int] = {}
        by_platform = dict.fromkeys(allowed, 0)
        for kind, platform, n in db.execute(sql, params):
            if kind == "platform":
                by_platform[platform] = n
            else:
                totals[kind] = n
    finally:
        db.close()
    return Reach(campaign.id, campaign.name, at, totals["known"], totals["audience"], totals["reachable"],
                 by_platform, totals["control"], campaign.control_percent, "sql", COUNTED_IN_SQL)


# ---- output ------------------------------------------------------------------------------------


def notes_for(compiled: plan.Plan, campaign: plan.Campaign, at: int, clock: int | None, *,
              from_store: bool) -> list[str]:
    notes = []
    if campaign.is_live:
        if uses(campaign.audience, compiled.segments, plan.Var, lambda v: v.root == "event"):
            notes.append("this live campaign's `who` is evaluated without a triggering event: its conditions "
                         "on event.* count as false (and `not` of them as true), so the audience when events "
                         "arrive can differ")
        else:
            notes.append("this live campaign's `who` is evaluated without a triggering event: these are the "
                         "users who would pass it if they triggered it now")
    if "safari" in campaign.platforms and campaign.message.url is None:
        notes.append("Safari subscriptions are not counted: the message has no url (SPEC §7)")
    if clock is not None and at < clock:
        notes.append(f"profiles and subscriptions are as of the latest record ({iso(clock)}), not as of "
                     "--at; --at moves who counts as known and the `did` windows")
    if from_store and uses(campaign.audience, compiled.segments, plan.DidEvent):
        notes.append("`did` conditions read the events the store kept: only the names that the campaigns "
                     "loaded when it was written needed, as far back as their windows")
    return notes


def delivery_notes(settings: plan.Settings, campaign: plan.Campaign, reachable: int, control: int) -> list[str]:
    """What the delivery controls (SPEC §5, §10, §12.1–12.2) will do to these users, in words."""
    notes = []
    t = campaign.throttle
    if t is not None:
        unit = "minute" if t.period == 60 else "hour"
        would = reachable - control
        periods = -(-would // t.count) if would else 0
        spread = (f"; an occurrence's {would:,} sends take at least {periods:,} {unit}{'s' if periods != 1 else ''},"
                  " the later ones delayed (reason throttle) to the first later period with room"
                  if not campaign.is_live and periods > 1 else
                  "; a burst above that is delayed (reason throttle) to the first later period with room")
        notes.append(f"throttle {t.count:,} per {unit}: at most {t.count:,} sends of this campaign in one UTC {unit}"
                     + spread)
    for limit in campaign.limits:
        if limit.period == "rolling":
            notes.append(f"limit {limit.count} per {duration_words(limit.window)}: at most {limit.count} of this "
                         f"campaign's pushes to a user in any {duration_words(limit.window)} (rolling)")
    if campaign.priority:
        notes.append(f"priority {campaign.priority}: at one instant, its decisions are made before those of "
                     "lower-priority campaigns, so it wins a collision on a limit")
    exempt = " (this campaign ignores global limits: it is exempt, its sends still count)" \
        if campaign.ignore_global_limits else ""
    if settings.global_per_user_per_week is not None:
        notes.append(f"global limit: {settings.global_per_user_per_week} pushes per user per local ISO week{exempt}")
    if settings.min_gap is not None:
        notes.append(f"min_gap {duration_words(settings.min_gap)}: no push within {duration_words(settings.min_gap)} "
                     f"after the user's previous push of any campaign{exempt}")
    return notes


def render_text(result: Reach) -> str:
    width = max(len(f"{n:,}") for n in (result.known_users, result.audience, result.reachable, result.control,
                                        *result.by_platform.values()))
    label = 16

    def row(name: str, n: int, extra: str = "") -> str:
        return f"{name:<{label}}{n:>{width},}{'   ' + extra if extra else ''}"

    def share(n: int) -> str:
        return f"{100 * n / result.known_users:.1f}% of known users" if result.known_users else ""

    lines = [f"reach of {result.campaign} \"{result.name}\" at {iso(result.at)}", result.counted, "",
             row("known users", result.known_users),
             row("audience", result.audience, share(result.audience)),
             row("reachable", result.reachable, share(result.reachable))]
    lines.extend(row(f"  {platform}", n) for platform, n in result.by_platform.items())
    if result.control_percent:
        lines.append(row("control", result.control,
                         f"control group {result.control_percent:g}% of the reachable users"))
    else:
        lines.append(row("control", result.control, "no control group"))
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
