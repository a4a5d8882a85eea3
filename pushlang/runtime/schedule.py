"""When a scheduled campaign runs (SPEC §3): occurrences in a zone, with pendulum's calendar and DST."""

from __future__ import annotations

import datetime as dt

from pushlang import plan
from pushlang.runtime.instants import from_local, local, local_parts

Occurrence = tuple[int, str]  # (instant, the scheduled local date)
_HORIZON_DAYS = 366 * 3


def next_occurrence(schedule: plan.Schedule, tz: str, not_before: int, end: int | None) -> Occurrence | None:
    """The first occurrence at or after ``not_before`` and before ``end``, in zone ``tz``.

    Never one before ``not_before`` (the recurring-day precaution: the first send is on or after
    `start`, whatever day the file was written); months without the day are skipped.
    """
    if isinstance(schedule, (plan.SendOnce, plan.SendDates)):
        dates = [schedule.at] if isinstance(schedule, plan.SendOnce) else list(schedule.at)
        candidates = sorted((from_local(d, tz), d[:10]) for d in dates)
        return next((c for c in candidates if c[0] >= not_before and (end is None or c[0] < end)), None)
    times = [tuple(int(x) for x in t.split(":")) for t in schedule.times]
    day = local(not_before, tz).date() - dt.timedelta(days=1)  # a day early: DST can pull instants back
    for _ in range(_HORIZON_DAYS):
        if _matches(schedule, day):
            for hour, minute, second in times:  # ascending: so are their instants on one day
                instant = local_parts(day.year, day.month, day.day, hour, minute, second, tz)
                if end is not None and instant >= end:
                    return None
                if instant >= not_before:
                    return instant, day.isoformat()
        day += dt.timedelta(days=1)
    return None


def _matches(schedule: plan.Schedule, day: dt.date) -> bool:
    if isinstance(schedule, plan.SendDaily):
        return True
    if isinstance(schedule, plan.SendWeekly):
        return day.isoweekday() in schedule.weekdays
    if isinstance(schedule, plan.SendEvery):
        since = dt.date.fromisoformat(schedule.since)
        return day >= since and (day - since).days % schedule.days == 0
    assert isinstance(schedule, plan.SendMonthly)
    if schedule.day == plan.LAST_DAY:
        return (day + dt.timedelta(days=1)).month != day.month
    return day.day == schedule.day
