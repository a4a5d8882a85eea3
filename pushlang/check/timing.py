"""Checks on time: the campaign window, timezones, schedules, TTL, limits, throttle and priority, best
time, windows."""

from __future__ import annotations

import zoneinfo

from pushlang import ast
from pushlang.check.context import CheckContext, repeats, walk
from pushlang.config import MAX_TTL, is_timezone
from pushlang.diagnostics import codes
from pushlang.diagnostics.sink import did_you_mean
from pushlang.source import Span
from pushlang.syntax.literals import duration_text


def window(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        start, end = view.when_value("start"), view.when_value("end")
        if start and end and isinstance(start.value, str) and isinstance(end.value, str) and end.value <= start.value:
            ctx.report(codes.END_NOT_AFTER_START, view.path, end.span,
                       f"`end` ({_shown(end.value)}) is not after `start` ({_shown(start.value)})",
                       help="decisions happen only in [start, end): move `end` after `start`")
        schedule = view.trigger
        if not isinstance(schedule, ast.Schedule):
            continue
        if schedule.recurring and start is None:
            ctx.report(codes.RECURRING_WITHOUT_START, view.path, schedule.span,
                       "a recurring schedule needs a `start`",
                       help="add `when { start YYYY-MM-DD HH:MM }`: the first send is the first "
                            "matching time at or after it")
        for when in schedule.datetimes:
            value = when.value
            if not isinstance(value, str):
                continue
            before = start is not None and isinstance(start.value, str) and value < start.value
            after = end is not None and isinstance(end.value, str) and value >= end.value
            if before or after:
                ctx.report(codes.SCHEDULE_OUTSIDE_WINDOW, view.path, when.span,
                           f"{_shown(value)} is {'before `start`' if before else 'at or after `end`'}: "
                           "it will never send",
                           help="decisions happen only in [start, end): move the date or widen the window")
        if schedule.kind == "monthly" and schedule.day is not None and schedule.day_span is not None:
            if not 1 <= schedule.day <= 31:
                ctx.report(codes.INVALID_DAY, view.path, schedule.day_span,
                           f"day {schedule.day} is not a day of the month", help="use a day from 1 to 31")
            elif schedule.day >= 29:
                ctx.report(codes.SKIPPED_MONTHS, view.path, schedule.day_span,
                           f"day {schedule.day} skips {_SKIPPED[schedule.day]}",
                           help="pick day 28 or earlier if every month should get a send")


def recurrence(ctx: CheckContext) -> None:
    """`send every 0 days`, and a time of day given twice in one recurring schedule."""
    for view in ctx.campaigns:
        for schedule in view.triggers:
            if not isinstance(schedule, ast.Schedule):
                continue
            if schedule.interval == 0 and schedule.interval_span is not None:
                ctx.report(codes.ZERO_INTERVAL, view.path, schedule.interval_span,
                           "`send every 0 days` never comes round",
                           help="use 1 or more days: `send every 1 day` is every day")
            times = [time for time in schedule.times if isinstance(time.value, str)]
            for time, first in repeats(times, lambda t: t.value):
                ctx.report(codes.DUPLICATE_TIME, view.path, time.span,
                           f"{_shown_time(str(time.value))} is given twice: two equal times are one occurrence",
                           notes=(f"the first is at line {first.span.line}, column {first.span.column}",),
                           help="remove it, or write the time that was meant")


def _shown_time(value: str) -> str:
    return value.removesuffix(":00")


_SKIPPED = {
    29: "February in common years",
    30: "February",
    31: "February, April, June, September and November",
}


def _shown(iso: str) -> str:
    return iso.replace("T", " ").removesuffix(":00")


def timezones(ctx: CheckContext) -> None:
    for view in ctx.campaigns:
        for item in view.when_items("timezone"):
            name = item.values[0].value
            if isinstance(name, str) and not is_timezone(name):
                ctx.report(codes.UNKNOWN_TIMEZONE, view.path, item.values[0].span,
                           f"unknown timezone `{name}`",
                           help=_zone_hint(name))


def _zone_hint(name: str) -> str:
    return did_you_mean(name, zoneinfo.available_timezones()) or 'use an IANA name like "Europe/Berlin"'


def message_ttl(ctx: CheckContext) -> None:
    fields = [(f, path) for group, path in ctx.written_fields() for f in group]
    for f, path in fields:
        if isinstance(f, ast.Ttl) and f.seconds > MAX_TTL:
            ctx.report(codes.TTL_TOO_LONG, path, f.span, f"`ttl` of {f.seconds // 86400} days is over 28 days",
                       help="use at most `28d` (or `4w`)")


def limits(ctx: CheckContext) -> None:
    """`limit 0`, and a rolling limit over no time."""
    for view in ctx.campaigns:
        for item in view.when_items("limit"):
            count, period = item.values
            if count.value == 0:
                ctx.report(codes.ZERO_LIMIT, view.path, item.span, "`limit 0` would block every send",
                           help="use 1 or more; to stop a campaign, set `end`")
            if period.kind == "duration" and period.value == 0:
                _zero(ctx, view.path, period.span)


def delivery_controls(ctx: CheckContext) -> None:
    """`throttle 0` and a priority outside −100..100 (SPEC §12.1, §12.2)."""
    for view in ctx.campaigns:
        for item in view.when_items("throttle"):
            count = item.values[0]
            if count.value == 0:
                ctx.report(codes.ZERO_THROTTLE, view.path, count.span, "throttle must be at least 1",
                           help="`throttle 0` would delay every send for ever; remove the line for no throttle")
        for item in view.when_items("priority"):
            value = item.values[0].value
            if isinstance(value, int) and not PRIORITY_MIN <= value <= PRIORITY_MAX:
                ctx.report(codes.PRIORITY_OUT_OF_RANGE, view.path, item.values[0].span,
                           f"priority {value} is outside {PRIORITY_MIN}..{PRIORITY_MAX}",
                           help=f"use a number from {PRIORITY_MIN} to {PRIORITY_MAX} (default 0): the higher wins")


PRIORITY_MIN, PRIORITY_MAX = -100, 100  # SPEC §12.2


def best_time(ctx: CheckContext) -> None:
    """`deliver at best time` (SPEC §12.6): a `between` window under an hour, an event listed twice in `by`."""
    for view in ctx.campaigns:
        for item in view.when_items("best_time"):
            window = [v for v in item.values if v.kind == "time"]
            if len(window) == 2:
                _best_time_window(ctx, view.path, window[0], window[1])
            events = [v for v in item.values if v.kind == "string"]
            for event, first in repeats(events, lambda e: e.value):
                ctx.report(codes.DUPLICATE_BEST_TIME_EVENT, view.path, event.span,
                           f"event \"{event.value}\" is given twice in `by`: it counts once",
                           notes=(f"the first is at line {first.span.line}, column {first.span.column}",),
                           help="remove it, or write the event that was meant")


BEST_TIME_MIN_WINDOW = 3600  # seconds: a `between` window holds one of s, s + 1h, ..., s + 23h (SPEC §12.6)
_DAY = 86400


def _best_time_window(ctx: CheckContext, path: str, start: ast.Literal, end: ast.Literal) -> None:
    if not isinstance(start.value, str) or not isinstance(end.value, str):
        return  # a malformed time is reported where it is read
    length = (_clock_seconds(end.value) - _clock_seconds(start.value)) % _DAY  # TO before FROM: over midnight
    if length >= BEST_TIME_MIN_WINDOW:
        return
    shown = f"{_shown_time(start.value)}–{_shown_time(end.value)}"
    ctx.report(codes.BEST_TIME_WINDOW_TOO_SHORT, path, start.span.to(end.span),
               f"the best-time window {shown} is "
               + (f"{duration_text(length)} long" if length else "empty")
               + f": it must be at least {duration_text(BEST_TIME_MIN_WINDOW)}",
               help="best time tries the scheduled time and each whole hour after it, and keeps those in "
                    "the window: make it an hour or more, or remove `between` to let every hour compete")


def _clock_seconds(value: str) -> int:
    """``HH:MM:SS`` → seconds since midnight."""
    hour, minute, second = (int(x) for x in value.split(":"))
    return hour * 3600 + minute * 60 + second


def durations(ctx: CheckContext) -> None:
    """Windows of zero length: `within 0m`, `in last 0d`, a winner `after 0h`."""
    exprs = [(c, s.path) for s in ctx.all_segments for c in s.node.conditions]
    for view in ctx.campaigns:
        exprs += [(e, view.path) for e in view.own_expressions()]
        for t in view.triggers:
            if isinstance(t, ast.OnTrigger) and t.unless is not None and t.unless.within == 0:
                _zero(ctx, view.path, t.unless.within_span)
        for conv in view.conversions:
            if conv.within == 0:
                _zero(ctx, view.path, conv.within_span)
        for test in view.tests:
            if test.after == 0:  # the winner's window (s, s + D]
                _zero(ctx, view.path, test.after_span)
    for expr, path in exprs:
        for node in walk(expr):
            if isinstance(node, ast.Did) and node.window == 0:
                _zero(ctx, path, node.window_span)


def _zero(ctx: CheckContext, path: str, span: Span) -> None:
    ctx.report(codes.ZERO_DURATION, path, span, "a window of zero length matches nothing",
               help="use a positive duration like `10m` or `7d`")
