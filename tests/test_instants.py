"""`wall` (the engine's cached wall clock) agrees with `local` (pendulum's zone data) everywhere,
DST changes at odd minutes included."""

from __future__ import annotations

import random

import pendulum

from pushlang.runtime.instants import HOUR, US, from_local, local, wall

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
