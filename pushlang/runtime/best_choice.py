"""The best-time choice (SPEC §12.6) of users at an occurrence s, in one place: what the engine does
at an occurrence, what `:why` shows and what `reach` spreads over the day.

The scores are the store's (:meth:`~pushlang.runtime.store.MemoryStore.hour_counts`, one call per
zone: SQL over the events index on SQLite), the decision is :func:`pushlang.runtime.best_time.decide`
with the campaign's `end` and the cut-off on the local date of s.
"""

from __future__ import annotations

from collections.abc import Sequence

from pushlang.runtime import best_time
from pushlang.runtime.best_time import Choice
from pushlang.runtime.campaigns import CompiledCampaign
from pushlang.runtime.instants import wall
from pushlang.runtime.pipeline import user_zone
from pushlang.runtime.store import Store, UserState

BATCH = 500  # users whose best time is chosen together (one store call per zone)

# One user to choose for: (user id, their zone, the schedule's local date of s, the zone that date and
# the cut-off are read in: the user's with `deliver in user timezone`, else the campaign's).
Asked = tuple[str, str, str | None, str]


def choices(store: Store, c: CompiledCampaign, asked: Sequence[Asked], s: int) -> list[Choice]:
    """The choice of each user at the occurrence s, in the order asked: their events counted by the
    store by local hour, one call per zone, then the 24 scores, the candidates and the chosen k."""
    spec = c.plan.best_time
    assert spec is not None
    since = s - best_time.WINDOW
    by_zone: dict[str, list[str]] = {}
    for user, zone, _, _ in asked:
        by_zone.setdefault(zone, []).append(user)
    counts: dict[str, list[int]] = {}
    runs = {zone: best_time.offset_runs(zone, since, s + best_time.DAY) for zone in by_zone}
    for zone, ids in by_zone.items():
        counts.update(store.hour_counts(ids, spec.events, since, s, runs[zone]))
    return [best_time.decide(spec, counts[user], s, zone, c.end,
                             best_time.cutoff_on(c.plan.cutoff, date, schedule_zone), runs[zone])
            for user, zone, date, schedule_zone in asked]


def choice_for(store: Store, c: CompiledCampaign, state: UserState, s: int, date: str | None,
               schedule_zone: str) -> Choice:
    """One user's choice at the occurrence s (scored in their zone, :func:`user_zone`)."""
    return choices(store, c, [(state.user, user_zone(c, state), date, schedule_zone)], s)[0]


def occurrence_now(c: CompiledCampaign, zone: str, now: int) -> tuple[str, str]:
    """As if a scheduled campaign's occurrence were at ``now`` for a user whose zone is ``zone``: its
    local date and the zone that date and the cut-off are read in (the user's with `deliver in user
    timezone`, else the campaign's)."""
    schedule_zone = zone if c.plan.deliver_in_user_timezone else c.tz
    return wall(now, schedule_zone).date().isoformat(), schedule_zone
