"""Instants are integer microseconds since the epoch, UTC: exact to compare and to add."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING

import pendulum

if TYPE_CHECKING:
    from pushlang import plan

US = 1_000_000
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def from_datetime(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def to_datetime(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


def iso(us: int) -> str:
    """``2026-12-01T08:15:00Z``: UTC, seconds precision (SPEC §9.4)."""
    global _last_minute
    minute, second = divmod(us // US, 60)
    last = _last_minute
    if last[0] != minute:  # the decisions of one minute share its text up to the seconds
        day, minute_of_day = divmod(minute, 1440)
        last = _last_minute = (minute, f"{_iso_day(day)}T{_TWO_DIGITS[minute_of_day // 60]}:"
                                       f"{_TWO_DIGITS[minute_of_day % 60]}:")
    return last[1] + _SECONDS[second]  # (one assignment above: a thread never reads one minute's text for another)


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_SECONDS = tuple(f"{n:02d}Z" for n in range(60))
_last_minute: tuple[int, str] = (-1, "")


@lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    return (EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%d")


def parse_instant(text: str) -> int:
    """An ISO-8601 date-time with a zone; ValueError when it has none or does not parse."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("has no timezone")
    return from_datetime(value)


def parse_datetime(text: str, tz: str, what: str = "the date-time") -> int:
    """A date-time a person typed (``--at``, ``--until``, the REPL's ``:time``): ISO-8601 with a zone,
    or a local date-time (``2026-12-10 10:00``, ``2026-12-10T10:00``) read in ``tz`` (SPEC §11).
    ValueError, in words, for anything else."""
    text = text.strip()
    try:
        return parse_instant(text)
    except ValueError:
        pass
    try:
        return from_local(text.replace(" ", "T", 1), tz)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a date-time: write 2026-12-10T10:00:00Z, or "
                         f"'2026-12-10 10:00' for a local time in {tz}") from None


def command_line_instant(text: str, what: str, compiled: plan.Plan, campaign: plan.Campaign | None = None) -> int:
    """A date-time given on the command line (``--at``, ``--until``), the one rule of SPEC §11: as written
    when it has a zone; without one, in the timezone of ``campaign`` (the one ``--campaign`` names),
    else the config's ``timezone``, else UTC. (A campaign's ``timezone`` is already its own, else the
    config's, else UTC; ``settings.timezone`` the config's, else UTC.)"""
    return parse_datetime(text, campaign.timezone if campaign is not None else compiled.settings.timezone, what)


@lru_cache(maxsize=1024)
def zone(name: str) -> pendulum.Timezone | pendulum.FixedTimezone:
    return pendulum.timezone(name)


def local(us: int, tz: str) -> dt.datetime:
    """The wall-clock date-time of an instant in a zone (pendulum's zone data)."""
    return (EPOCH + dt.timedelta(microseconds=us)).astimezone(zone(tz))


HOUR = 3600 * US
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_UNKNOWN = object()
_hour_offsets: dict[tuple[str, int], int | None] = {}


def wall(us: int, tz: str) -> dt.datetime:
    """``local(us, tz)`` without its zone: the naive wall-clock date-time, for the engine's hot path.

    A zone's UTC offset is looked up once per hour of UTC time and reused; an hour in which the
    offset changes (a DST change at any minute) is left to ``local``. The last instant asked is
    answered again without a look-up (the decisions of one record, the steps of one decision)."""
    global _last_wall
    last = _last_wall
    if last[0] == us and last[1] == tz:
        return last[2]
    key = (tz, us // HOUR)
    offset = _hour_offsets.get(key, _UNKNOWN)
    if offset is _UNKNOWN:
        if len(_hour_offsets) >= 100_000:
            _hour_offsets.clear()
        offset = _hour_offsets[key] = _offset_through(tz, key[1] * HOUR)
    if offset is None:
        found = local(us, tz).replace(tzinfo=None)
    else:
        assert isinstance(offset, int)
        found = _EPOCH_NAIVE + dt.timedelta(microseconds=us + offset)
    _last_wall = (us, tz, found)  # one assignment: a thread never reads one instant's time for another
    return found


_last_wall: tuple[int | None, str, dt.datetime] = (None, "", _EPOCH_NAIVE)


def _offset_through(tz: str, start: int) -> int | None:
    """The zone's UTC offset (µs) if it is the same for the whole hour from ``start``, else None."""
    first, last = local(start, tz).utcoffset(), local(start + HOUR - 1, tz).utcoffset()
    if first is None or first != last:
        return None
    return (first.days * 86400 + first.seconds) * US + first.microseconds


def from_local(naive_iso: str, tz: str) -> int:
    """A naive local date-time in a zone as an instant.

    A time in the spring gap moves forward by the gap; a time in the autumn overlap is the later
    instant (SPEC §5), which is pendulum's default resolution.
    """
    naive = dt.datetime.fromisoformat(naive_iso)
    return local_parts(naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second, tz)


def local_parts(year: int, month: int, day: int, hour: int, minute: int, second: int, tz: str) -> int:
    # Both readings of an ambiguous or missing wall time; the later instant is the one SPEC §5 (and
    # pendulum, by default) chooses: the spring gap moves forward, the autumn overlap takes the later.
    zone_info = zone(tz)
    first = dt.datetime(year, month, day, hour, minute, second, tzinfo=zone_info, fold=0)
    return max(from_datetime(first), from_datetime(first.replace(fold=1)))
