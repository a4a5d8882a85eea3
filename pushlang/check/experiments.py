"""Checks on A/B tests: the variants `message ID P% ...` (SPEC §12.3) and the winner test (§12.4)."""

from __future__ import annotations

import datetime as dt
import itertools

from pushlang import ast
from pushlang.builtins import WEEKDAYS
from pushlang.check.context import CampaignView, CheckContext, repeats
from pushlang.diagnostics import codes
from pushlang.syntax.literals import duration_text

MIN_VARIANTS, MAX_VARIANTS = 2, 8
ALL = 10000  # basis points: the weights of a campaign's variants add up to exactly this


def basis_points(percent: float) -> int:
    """A variant's weight P% in basis points, `round(P × 100)` (SPEC §12.3)."""
    return round(percent * 100)


def variants(ctx: CheckContext) -> None:
    """A plain message beside variants, 2 to 8 variants, one id each, weights adding up to 100%."""
    for view in ctx.campaigns:
        found = view.variants
        if not found:
            continue
        plain = view.plain_messages
        if plain:
            for message in plain:
                ctx.report(codes.MESSAGE_AND_VARIANTS, view.path, message.span,
                           f"campaign `{view.node.id}` has variants and a message without an id and a weight",
                           notes=(f"the first variant, `{found[0].variant}`, is at line {found[0].span.line}",),
                           help="give it an id and a weight, `message a 50% {`, or remove the variants")
            continue  # what the variants should be is unclear: their count and weights are not checked
        for message, first in repeats(found, lambda m: m.variant):
            assert message.variant_span is not None
            ctx.report(codes.DUPLICATE_VARIANT, view.path, message.variant_span,
                       f"variant `{message.variant}` is given twice",
                       notes=(f"the first is at line {first.span.line}",),
                       help="give each variant its own id")
        if len(found) < MIN_VARIANTS:
            only = found[0]
            assert only.variant_span is not None
            ctx.report(codes.VARIANT_COUNT, view.path, only.variant_span,
                       f"campaign `{view.node.id}` has one variant: an A/B test needs 2 to {MAX_VARIANTS}",
                       help="add a second variant, or write the one message as `message { ... }`")
            continue
        for extra in found[MAX_VARIANTS:MAX_VARIANTS + 1]:
            assert extra.variant_span is not None
            ctx.report(codes.VARIANT_COUNT, view.path, extra.variant_span,
                       f"campaign `{view.node.id}` has {len(found)} variants: at most {MAX_VARIANTS}",
                       help=f"keep the {MAX_VARIANTS} that matter most")
        _weights(ctx, view, found)


def _weights(ctx: CheckContext, view: CampaignView, found: list[ast.Message]) -> None:
    points = [basis_points(m.weight or 0.0) for m in found]
    total = sum(points)
    if total == ALL:
        return
    last = found[-1]
    assert last.weight_span is not None
    rest = ALL - sum(points[:-1])
    help = (f"make them add up to 100%: variant `{last.variant}` at {_percent(rest)}" if 0 < rest <= ALL
            else "make them add up to 100%")
    ctx.report(codes.VARIANT_WEIGHTS, view.path, last.weight_span,
               f"the variants' weights add up to {_percent(total)}, not 100%", help=help,
               notes=("weights count in basis points, round(P × 100); they must add up to exactly 10000",))


def _percent(points: int) -> str:
    return f"{points / 100:g}%"


def winner_test(ctx: CheckContext) -> None:
    """Where a winner test may stand, what it needs, and whether its winner comes in time."""
    for view in ctx.campaigns:
        for test in view.tests[:1]:
            if not 0 < test.percent < 100:
                ctx.report(codes.TEST_PERCENT_OUT_OF_RANGE, view.path, test.percent_span,
                           f"a test group of {test.percent:g}% leaves "
                           + ("nobody to test the variants" if test.percent <= 0 else "nobody to get the winner"),
                           help="use a share between 0% and 100%, exclusive: 10–20% is usual")
            if view.trigger is not None and not view.scheduled:
                ctx.report(codes.WINNER_ON_LIVE, view.path, test.winner_span,
                           "a winner test needs a scheduled campaign: a live one decides each user at their event",
                           help="remove the `test` line (the variants still split the users by weight), "
                                "or schedule the campaign with `send ...`")
            if not view.variants:
                ctx.report(codes.WINNER_WITHOUT_VARIANTS, view.path, test.winner_span,
                           f"campaign `{view.node.id}` has no variants to choose a winner from",
                           help="write 2 to 8 variants `message ID P% { ... }`, or remove the `test` line")
            for item in view.when_items("user_timezone"):
                ctx.report(codes.WINNER_WITH_USER_TIMES, view.path, test.winner_span,
                           "a winner test cannot go with `deliver in user timezone`: "
                           "there is no one instant to send the test group and then the rest",
                           notes=(f"`deliver in user timezone` is at line {item.span.line}",),
                           help="remove `deliver in user timezone`, or the `test` line")
            for item in view.when_items("best_time")[:1]:  # a second one is `duplicate-item`
                ctx.report(codes.WINNER_WITH_BEST_TIME, view.path, test.winner_span,
                           "a winner test cannot go with `deliver at best time`: each user is decided "
                           "at their own hour, so there is no one instant to send the test group and then the rest",
                           notes=(f"`deliver at best time` is at line {item.span.line}",),
                           help="remove `deliver at best time`, or the `test` line")
            if test.by == "conversions" and not view.conversions:
                ctx.report(codes.WINNER_NEEDS_CONVERSION, view.path, test.by_span,
                           f"a winner `by conversions` needs a `conversion`: campaign `{view.node.id}` has none",
                           help='add `conversion "EVENT" within DURATION`, or choose the winner `by clicks`')
            if view.scheduled and test.after > 0:  # `after 0s` is a zero-duration error
                _too_late(ctx, view, test)


# ---- does s + D reach the next occurrence, `end` or the cut-off? ---------------------------------
#
# In the campaign's local clock time (a DST change, an hour a year, is not counted):
# - the next occurrence: D ≥ the shortest gap between two occurrences. `send at` dates: the closest
#   two. A recurring schedule repeats over a period (a day; a week; `every N days`: N days; monthly:
#   28 days, the shortest month) with its occurrences at fixed offsets in it (its times of day, on
#   each weekday): the shortest gap between two neighbours, the last and the next period's first too;
# - `end`: the last occurrence before `end` (and at or after `start`) plus D is at or after `end`;
# - the cut-off: an occurrence's time of day plus D is at or after `cutoff` on the same date.

_DAY = 86400


def _too_late(ctx: CheckContext, view: CampaignView, test: ast.WinnerTest) -> None:
    schedule = view.trigger
    assert isinstance(schedule, ast.Schedule)
    after = test.after
    reasons: list[str] = []
    gap = _shortest_gap(schedule)
    if gap is not None and after >= gap:
        reasons.append(f"the next occurrence: two sends of this schedule can be {duration_text(gap)} apart")
    end = _datetime(view.when_value("end"))
    last = _last_before(schedule, _datetime(view.when_value("start")), end)
    late_end = end is not None and last is not None and last + dt.timedelta(seconds=after) >= end
    if late_end and end is not None and last is not None:
        reasons.append(f"`end`: the send at {_shown(last)} would choose its winner at "
                       f"{_shown(last + dt.timedelta(seconds=after))}, at or after `end` {_shown(end)}")
    cutoff = _seconds(view.when_value("cutoff"))
    late_cutoff = [t for t in _times_of_day(schedule) if cutoff is not None and t + after >= cutoff]
    if late_cutoff and cutoff is not None:
        reasons.append(f"the cut-off: a send at {_clock(late_cutoff[0])} would choose its winner at or after "
                       f"`cutoff {_clock(cutoff)}` on its date")
    if reasons:
        ctx.report(codes.WINNER_TOO_LATE, view.path, test.after_span,
                   f"`after {duration_text(after)}` reaches {reasons[0]}",
                   notes=tuple(f"it also reaches {r}" for r in reasons[1:]),
                   help="the users outside the test group are decided then: use a shorter `after`"
                        + (", or move `end` or `cutoff` later" if late_end or late_cutoff else ""))


def _shortest_gap(schedule: ast.Schedule) -> int | None:
    """Seconds between the two closest occurrences of a schedule, or None for a single send."""
    if not schedule.recurring:
        dates = sorted({d for d in (_datetime(x) for x in schedule.datetimes) if d is not None})
        gaps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(dates)]
        return min(gaps) if gaps else None
    times = sorted(set(_times_of_day(schedule)))
    if not times:
        return None
    if schedule.kind == "weekly":
        days = sorted({WEEKDAYS.index(d.value) for d in schedule.weekdays if d.value in WEEKDAYS})
        offsets, period = sorted(day * _DAY + t for day in days for t in times), 7 * _DAY
    else:
        days_in_period = {"daily": 1, "every": schedule.interval or 1, "monthly": 28}[schedule.kind]
        offsets, period = times, days_in_period * _DAY
    if not offsets:
        return None
    return min(b - a for a, b in zip(offsets, [*offsets[1:], offsets[0] + period], strict=True))


def _last_before(schedule: ast.Schedule, start: dt.datetime | None, end: dt.datetime | None) -> dt.datetime | None:
    """The last occurrence before ``end`` (at or after ``start``), in local clock time."""
    if end is None:
        return None
    if not schedule.recurring:
        found = [d for d in (_datetime(x) for x in schedule.datetimes)
                 if d is not None and d < end and (start is None or d >= start)]
        return max(found, default=None)
    times = sorted(set(_times_of_day(schedule)), reverse=True)
    since = start.date() if start is not None else None
    for back in range(max(62, schedule.interval or 0) + 1):  # every kind comes round within that
        day = end.date() - dt.timedelta(days=back)
        if since is not None and day < since:
            return None
        if not _occurs_on(schedule, day, since):
            continue
        for t in times:
            at = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=t)
            if at < end and (start is None or at >= start):
                return at
    return None


def _occurs_on(schedule: ast.Schedule, day: dt.date, since: dt.date | None) -> bool:
    if schedule.kind == "weekly":
        return any(WEEKDAYS.index(d.value) == day.weekday() for d in schedule.weekdays if d.value in WEEKDAYS)
    if schedule.kind == "monthly":
        if schedule.last_day:
            return (day + dt.timedelta(days=1)).day == 1
        return day.day == schedule.day
    if schedule.kind == "every" and since is not None:
        return (day - since).days % max(1, schedule.interval or 1) == 0
    return True


def _times_of_day(schedule: ast.Schedule) -> list[int]:
    """Seconds since midnight of each send of the schedule, in the order written."""
    if schedule.recurring:
        found = [_seconds(t) for t in schedule.times]
    else:
        found = [_seconds_of(d) for d in (_datetime(x) for x in schedule.datetimes) if d is not None]
    return [t for t in found if t is not None]


def _datetime(literal: ast.Literal | None) -> dt.datetime | None:
    if literal is None or not isinstance(literal.value, str):
        return None
    return dt.datetime.fromisoformat(literal.value)


def _seconds(literal: ast.Literal | None) -> int | None:
    if literal is None or not isinstance(literal.value, str):
        return None
    hour, minute, second = (int(x) for x in literal.value.split(":"))
    return hour * 3600 + minute * 60 + second


def _seconds_of(at: dt.datetime) -> int:
    return at.hour * 3600 + at.minute * 60 + at.second


def _clock(seconds: int) -> str:
    text = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return text.removesuffix(":00")


def _shown(at: dt.datetime) -> str:
    return at.isoformat(sep=" ").removesuffix(":00")



