"""`reach`: how many users a campaign's audience holds and how many of them it can reach.

Over the SQLite store the audience is counted in SQL where its `who` translates exactly
(:mod:`pushlang.runtime.audience_sql`); otherwise, and over the in-memory store, every known user is
run through the campaign's own pipeline steps (audience, reachable, control: the engine's, through
the tracer), so the per-user count and a replay never disagree. The output says which was done.

A best-time campaign (SPEC §12.6) also spreads its reachable users over the day: each one's s + k as
the engine chooses it at an occurrence s = the instant counted at (:mod:`pushlang.runtime.best_choice`:
the store's hour counts, in SQL on SQLite, a batch of users at a time), by the local hour in the
campaign's timezone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushlang import plan
from pushlang.runtime.audience_sql import AudienceQuery, Untranslatable, uses
from pushlang.runtime.best_choice import BATCH, Asked, choices, occurrence_now
from pushlang.runtime.campaigns import CompiledCampaign, compile_campaign, compile_segments
from pushlang.runtime.instants import iso, wall
from pushlang.runtime.outcomes import Control
from pushlang.runtime.pipeline import (
    Attempt,
    Pipeline,
    channels,
    deliverable,
    duration_words,
    in_control_group,
    in_global_holdout,
    in_test_group,
    trace,
    user_zone,
    variant_of,
)
from pushlang.runtime.store import Store, UserState

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
    # the reachable users in the global holdout (SPEC §8): part of ``control``, which counts every user
    # the control step holds out (reason global_holdout, or the campaign's own control group)
    global_holdout: int = 0
    global_holdout_percent: float = 0.0
    # a campaign with variants (SPEC §12.3): the reachable users not held out, per variant id (in the
    # order written), by their bucket; ``weights`` in basis points
    variants: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    # a winner test (SPEC §12.4): the users not held out in the test group, per variant by their bucket
    # (the rest get the winner)
    test: plan.WinnerTest | None = None
    test_variants: dict[str, int] = field(default_factory=dict)
    # best time (SPEC §12.6): the reachable users by the local hour (0–23, in ``zone``, the campaign's
    # timezone) of s + k, chosen as at an occurrence s = ``at``; None for a campaign without best time
    best_time_hours: list[int] | None = None
    zone: str = "UTC"

    @property
    def control_group(self) -> int:
        """The users held out by the campaign's own control group (the global holdout aside)."""
        return self.control - self.global_holdout

    @property
    def sendable(self) -> int:
        """The reachable users the control step lets through: the ones a variant is chosen for."""
        return self.reachable - self.control

    @property
    def test_group(self) -> int:
        return sum(self.test_variants.values())

    def numbers(self) -> dict[str, Any]:
        """What two ways of counting must agree on."""
        return {"known_users": self.known_users, "audience": self.audience, "reachable": self.reachable,
                "by_platform": self.by_platform, "control": self.control, "global_holdout": self.global_holdout,
                "variants": self.variants, "test_variants": self.test_variants,
                "best_time_hours": self.best_time_hours}

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
            "control_group": self.control_group,
            "global_holdout": self.global_holdout,
            "global_holdout_percent": self.global_holdout_percent,
            "variants": {v: {"users": n, "share": _share(n, self.sendable), "weight_percent": self.weights[v] / 100}
                         for v, n in self.variants.items()},
            "test": None if self.test is None else {
                "percent": self.test.percent,
                "by": self.test.by,
                "after": self.test.after,
                "test_group": self.test_group,
                "test_group_share": _share(self.test_group, self.sendable),
                "test_group_variants": self.test_variants,
                "rest": self.sendable - self.test_group,
            },
            "best_time_hours": None if self.best_time_hours is None else {
                f"{hour:02d}": n for hour, n in enumerate(self.best_time_hours)},
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
                return _count_sql(Path(store.path), store, compiled, campaign, at, query)
    return _count_per_user(compiled, campaign, store, at, f"evaluated per user: {reason}")


def _count_per_user(compiled: plan.Plan, campaign: plan.Campaign, store: Store, at: int, counted: str) -> Reach:
    """Every known user through the campaign's audience, reachable and control steps; the variant of each
    user the control step lets through by the pipeline's own rule."""
    c = compile_campaign(campaign, compile_segments(compiled, campaign.timezone))
    pipeline = Pipeline(c, compiled.settings)
    allowed = channels(campaign)
    has_url = campaign.message.url is not None
    test = campaign.test
    known = members = reachable = control = holdout = 0
    by_platform = dict.fromkeys(allowed, 0)
    variants = {v.id: 0 for v in campaign.variants}
    test_variants = dict(variants) if test is not None else {}
    best = _BestHours(store, c, at) if campaign.best_time is not None else None
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
        if best is not None:
            best.add(user, user_zone(c, state))
        if isinstance(t.decision, Control):
            control += 1
            holdout += t.decision.reason == "global_holdout"
        elif variants:
            variant = variant_of(c, user)
            variants[variant] += 1
            if test is not None and in_test_group(c.id, user, test.percent):
                test_variants[variant] += 1
    return _reach(compiled, campaign, at, (known, members, reachable, control, holdout), by_platform,
                  variants, test_variants, "per_user", counted, None if best is None else best.done())


def _reach(compiled: plan.Plan, campaign: plan.Campaign, at: int, totals: tuple[int, int, int, int, int],
           by_platform: dict[str, int], variants: dict[str, int], test_variants: dict[str, int], method: str,
           counted: str, best_time_hours: list[int] | None) -> Reach:
    known, members, reachable, control, holdout = totals
    return Reach(campaign.id, campaign.name, at, known, members, reachable, by_platform, control,
                 campaign.control_percent, method, counted, global_holdout=holdout,
                 global_holdout_percent=compiled.settings.global_holdout, variants=variants,
                 weights={v.id: v.weight for v in campaign.variants}, test=campaign.test,
                 test_variants=test_variants, best_time_hours=best_time_hours, zone=campaign.timezone)


class _BestHours:
    """The reachable users' s + k at an occurrence s = ``at``, by the local hour in the campaign's
    timezone: chosen by the engine's own function for a batch of users of one zone at a time (the
    store counts the batch's events by hour in one call: in SQL on SQLite)."""

    def __init__(self, store: Store, c: CompiledCampaign, at: int) -> None:
        self.store, self.c, self.at = store, c, at
        self.hours = [0] * 24
        self.batches: dict[str, list[Asked]] = {}  # the user's zone → the users waiting to be chosen for

    def add(self, user: str, zone: str) -> None:
        """A reachable user whose zone (:func:`user_zone`) is ``zone``."""
        date, schedule_zone = occurrence_now(self.c, zone, self.at)
        batch = self.batches.setdefault(zone, [])
        batch.append((user, zone, date, schedule_zone))
        if len(batch) >= BATCH:
            self._choose(zone)

    def _choose(self, zone: str) -> None:
        for choice in choices(self.store, self.c, self.batches.pop(zone), self.at):
            self.hours[wall(choice.at, self.c.tz).hour] += 1

    def done(self) -> list[int]:
        for zone in list(self.batches):
            self._choose(zone)
        return self.hours


def _count_sql(path: Path, store: Store, compiled: plan.Plan, campaign: plan.Campaign, at: int,
               query: AudienceQuery) -> Reach:
    """The same numbers in one query; the control group, the global holdout, the variants and the test
    group are SQL functions that call the pipeline's own rules (so SQL never re-implements them). A
    best-time campaign's query also lists the reachable users with their profile's `timezone` (when a
    string), whose best times the store then scores (in SQL too) in batches."""
    allowed = channels(campaign)
    params = dict(query.params)
    names = []
    for i, platform in enumerate(allowed):
        params[f"platform{i}"] = platform
        names.append(f":platform{i}")
    platform_filter = f"s.platform IN ({', '.join(names)})" if names else "0"
    holdout_percent = compiled.settings.global_holdout
    in_holdout = "pushlang_in_global_holdout(user_id)" if holdout_percent else "0"
    in_control = "pushlang_in_control(user_id)" if campaign.control_percent else "0"
    test = campaign.test
    variant = "pushlang_variant(user_id)" if campaign.variants else "NULL"
    in_test = "pushlang_in_test(user_id)" if test is not None else "0"
    zones = ("""
        UNION ALL SELECT 'zone', r.user_id, CASE WHEN json_type(p.props, '$.timezone') = 'text'
          THEN json_extract(p.props, '$.timezone') END, 0
          FROM reachable r LEFT JOIN profiles p ON p.user_id = r.user_id""" if campaign.best_time is not None else "")
    sql = f"""
        WITH audience AS ({query.sql}),
        channels AS (
          SELECT DISTINCT s.user_id, s.platform
          FROM audience a JOIN subscriptions s ON s.user_id = a.user_id
          WHERE s.active = 1 AND {platform_filter}
        ),
        reachable AS (SELECT DISTINCT user_id FROM channels),
        held AS (SELECT user_id, {in_holdout} AS holdout, {in_holdout} OR {in_control} AS control FROM reachable),
        sendable AS (SELECT {variant} AS variant, {in_test} AS test FROM held WHERE NOT control)
        SELECT 'known', NULL, 0, count(*) FROM users WHERE first_seen <= :at
        UNION ALL SELECT 'audience', NULL, 0, count(*) FROM audience
        UNION ALL SELECT 'reachable', NULL, 0, count(*) FROM reachable
        UNION ALL SELECT 'control', NULL, 0, count(*) FROM held WHERE control
        UNION ALL SELECT 'holdout', NULL, 0, count(*) FROM held WHERE holdout
        UNION ALL SELECT 'platform', platform, 0, count(*) FROM channels GROUP BY platform
        UNION ALL SELECT 'variant', variant, test, count(*) FROM sendable WHERE variant IS NOT NULL
          GROUP BY variant, test{zones}
    """
    c = compile_campaign(campaign, compile_segments(compiled, campaign.timezone)) \
        if campaign.variants or campaign.best_time is not None else None
    reachable_zones: list[tuple[str, str | None]] = []  # best time: (user, the profile's `timezone` string)
    # Read-only: counting never changes the store, and WAL lets it read beside the store's writer.
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        cid = campaign.id
        if campaign.control_percent:
            percent = campaign.control_percent
            db.create_function("pushlang_in_control", 1,
                               lambda user: in_control_group(cid, user, percent), deterministic=True)
        if holdout_percent:
            db.create_function("pushlang_in_global_holdout", 1,
                               lambda user: in_global_holdout(user, holdout_percent), deterministic=True)
        if c is not None and campaign.variants:
            compiled_campaign = c
            db.create_function("pushlang_variant", 1, lambda user: variant_of(compiled_campaign, user),
                               deterministic=True)
        if test is not None:
            test_percent = test.percent
            db.create_function("pushlang_in_test", 1,
                               lambda user: in_test_group(cid, user, test_percent), deterministic=True)
        totals: dict[str, int] = {}
        by_platform = dict.fromkeys(allowed, 0)
        variants = {v.id: 0 for v in campaign.variants}
        test_variants = dict(variants) if test is not None else {}
        for kind, key, extra, n in db.execute(sql, params):
            if kind == "platform":
                by_platform[key] = n
            elif kind == "variant":
                variants[key] += n
                if extra:  # in the test group
                    test_variants[key] += n
            elif kind == "zone":
                reachable_zones.append((key, extra))
            else:
                totals[kind] = n
    finally:
        db.close()
    best_time_hours = None
    if c is not None and campaign.best_time is not None:
        best = _BestHours(store, c, at)
        for user, timezone in sorted(reachable_zones):
            # the pipeline's own rule for the user's zone, on the one profile property it reads
            best.add(user, user_zone(c, UserState(user, 0, {"timezone": timezone} if timezone is not None else {})))
        best_time_hours = best.done()
    return _reach(compiled, campaign, at, (totals["known"], totals["audience"], totals["reachable"],
                                           totals["control"], totals["holdout"]),
                  by_platform, variants, test_variants, "sql", COUNTED_IN_SQL, best_time_hours)


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
    if campaign.best_time is not None:
        notes.append("best time: the hours are each reachable user's s + k as the engine chooses it at an "
                     "occurrence s at the instant counted at (from their events in the 90 days before it); "
                     "the control group is decided at that hour too")
        if campaign.deliver_in_user_timezone:
            notes.append("deliver in user timezone: each user's own occurrence is at the schedule's time in their "
                         "zone; the hours here take the same s for every user")
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
    label = 18

    def row(name: str, n: int, extra: str = "") -> str:
        return f"{name:<{label}}{n:>{width},}{'   ' + extra if extra else ''}"

    def share(n: int) -> str:
        return f"{100 * n / result.known_users:.1f}% of known users" if result.known_users else ""

    lines = [f"reach of {result.campaign} \"{result.name}\" at {iso(result.at)}", result.counted, "",
             row("known users", result.known_users),
             row("audience", result.audience, share(result.audience)),
             row("reachable", result.reachable, share(result.reachable))]
    lines.extend(row(f"  {platform}", n) for platform, n in result.by_platform.items())
    if result.global_holdout_percent:
        lines.append(row("control", result.control, "held out of the reachable users"))
        lines.append(row("  global holdout", result.global_holdout,
                         f"{result.global_holdout_percent:g}% of all users, held out of every campaign "
                         "(reason global_holdout)"))
        lines.append(row("  control group", result.control_group,
                         f"this campaign's {result.control_percent:g}%" if result.control_percent
                         else "no control group"))
    elif result.control_percent:
        lines.append(row("control", result.control, f"control group {result.control_percent:g}% of the reachable users"))
    else:
        lines.append(row("control", result.control, "no control group"))
    lines.extend(_experiment_lines(result, row))
    lines.extend(_best_time_lines(result))
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)


def _experiment_lines(result: Reach, row: Callable[[str, int, str], str]) -> list[str]:
    """The expected split over the variants (SPEC §12.3) and the winner test's groups (§12.4)."""
    if not result.variants:
        return []
    sendable = result.sendable

    def of(n: int) -> str:
        return f"{100 * n / sendable:5.1f}%" if sendable else "    -"

    lines = ["", f"variants of the {sendable:,} reachable users not held out, by their bucket:"]
    lines.extend(row(f"  {variant}", n, f"{of(n)}   weight {result.weights[variant] / 100:g}%")
                 for variant, n in result.variants.items())
    t = result.test
    if t is not None:
        rest = sendable - result.test_group
        split = ", ".join(f"{variant} {n:,}" for variant, n in result.test_variants.items())
        lines.append(f"winner test {t.percent:g}% then winner by {t.by} after {duration_words(t.after)}:")
        lines.append(row("  test group", result.test_group, f"{of(result.test_group)}   {split}, at each occurrence"))
        lines.append(row("  rest", rest, f"{of(rest)}   the winner, {duration_words(t.after)} later"))
    return lines


HISTOGRAM_WIDTH = 40  # the longest bar of the best-time histogram, in characters
_EIGHTHS = " ▏▎▍▌▋▊▉"


def _best_time_lines(result: Reach) -> list[str]:
    """The reachable users by the local hour they are decided at (SPEC §12.6), one row per hour."""
    hours = result.best_time_hours
    if hours is None:
        return []
    lines = ["", f"best time: the {result.reachable:,} reachable users by the hour they are decided at "
                 f"(s + k, s = {iso(result.at)}), in {result.zone}:"]
    top, total, width = max(hours), sum(hours), len(f"{max(hours):,}")
    for hour, n in enumerate(hours):
        eighths = round(n * HISTOGRAM_WIDTH * 8 / top) if top else 0
        if n and not eighths:
            eighths = 1  # a user or more: never an empty bar
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        share = f"{100 * n / total:5.1f}%" if n else "     -"
        lines.append(f"  {hour:02d}  {n:>{width},}  {share}  {bar}".rstrip())
    return lines
