"""`wall` (the engine's cached wall clock) agrees with `local` (pendulum's zone data) everywhere,
DST changes at odd minutes included; `iso` (a minute's text kept) with strftime; the DND end of a day
(worked out once) with `from_local`."""

from __future__ import annotations

import datetime as dt
import random

import pendulum

from pushlang import plan
from pushlang.runtime.instants import HOUR, US, from_local, iso, local, wall
from pushlang.runtime.pipeline import dnd_until

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham",
         "America/St_Johns", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC", "Africa/Casablanca",
         "America/Sao_Paulo", "Antarctica/Troll"]


def test_wall_is_local_without_its_zone_at_random_instants() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        zone = rng.choice(ZONES)
        at = rng.randrange(0, 4_102_444_800) * US + rng.randrange(US)  # 1970 to 2100
        assert wall(at, zone) == local(at, zone).replace(tzinfo=None), (zone, at)


def test_wall_around_every_transition_of_2026() -> None:
    """Each DST change of the year, probed minute by minute across the hours around it."""
    checked = transitions = 0
    for zone in ZONES:
        tz = pendulum.timezone(zone)
        start = pendulum.datetime(2026, 1, 1, tz="UTC")
        previous = tz.utcoffset(start)
        for hour in range(0, 366 * 24):
            t = start.add(hours=hour)
            offset = tz.utcoffset(t)
            if offset == previous:
                continue
            previous = offset
            transitions += 1
            middle = from_local(t.in_timezone(zone).naive().isoformat(), zone)
            for minute in range(-150, 151):
                at = middle + minute * 60 * US
                assert wall(at, zone) == local(at, zone).replace(tzinfo=None), (zone, at)
                checked += 1
    # two each in Berlin, New York, Lord Howe (a 30-minute change), Chatham, St John's, Casablanca
    # (around Ramadan) and Troll (two hours); none in the other five
    assert (transitions, checked) == (14, 14 * 301)
    assert HOUR == 3600 * US


def test_iso_is_strftime_in_and_across_minutes() -> None:
    """Instants in time order (a minute's text is kept) and at random (it is not), 1970 to 2100."""
    rng = random.Random(11)
    ordered = sorted(rng.randrange(0, 4_102_444_800) * US + rng.randrange(US) for _ in range(5_000))
    start = 1_796_112_000 * US
    ordered += [start + n * 700_000 for n in range(2_000)]  # many to a minute, and every second of them
    for at in ordered + [rng.randrange(0, 4_102_444_800 * US) for _ in range(20_000)]:
        expected = dt.datetime.fromtimestamp(at // US, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert iso(at) == expected, at


def test_dnd_end_is_from_local_on_its_day() -> None:
    """The end of the DND period an instant falls in, at random instants, zones and hours, DST
    changes included: the same instant as `from_local` of the end's date and time."""
    rng = random.Random(5)
    found = 0
    for _ in range(20_000):
        zone = rng.choice(ZONES)
        start, end = (f"{rng.randrange(24):02d}:{rng.choice(['00', '30'])}:00" for _ in range(2))
        if start == end:
            continue
        dnd = plan.Dnd(start, end, "delay")
        at = rng.randrange(1_735_689_600, 1_830_297_600) * US  # 2025 to 2027
        until = dnd_until(dnd, at, zone)
        if until is None:
            continue
        found += 1
        now = wall(at, zone)
        day = now.date() + dt.timedelta(days=now.time().isoformat() >= end)
        assert until == from_local(f"{day.isoformat()}T{end}", zone), (zone, start, end, at)
    assert found > 5_000
