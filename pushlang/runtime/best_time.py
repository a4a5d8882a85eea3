"""Best time (SPEC §12.6): the hour after an occurrence s at which each user is decided.

At s every known user gets 24 scores, one per k = 0…23: how many of their events (those named in
`by`, else every event) in (s − 90d, s] fell in the local hour of day that s + k has. The candidates
are the k whose local time of day at s + k is in the `between` window, and s + k before `end` and
before the cut-off on the local date of s; the chosen k has the highest score, the smallest k among
ties, and k = 0 with no candidate. The decision is then made at s + k, as if the occurrence were there.

The counting is the store's (:meth:`~pushlang.runtime.store.MemoryStore.hour_counts`: in Python over
the user's history in memory and in Redis' partition state, in SQL over the events index in SQLite);
a zone's UTC offsets over the window come from here as ``runs``, so that the local hour of an event
is ``(ts + offset) // 1h mod 24`` everywhere, half-hour zones and DST changes included.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pushlang import plan
from pushlang.runtime.instants import HOUR, US, from_local, iso, local, wall

WINDOW = 90 * 86400 * US  # how far back the scores look: (s − 90d, s]
DAY = 86400 * US
_STEP = 6 * HOUR  # a zone's offset is sampled this often; a change between two samples is searched to the µs

Runs = tuple[tuple[int, int], ...]  # (from this instant, the zone's UTC offset in µs), in time order


def offset_of(at: int, zone: str) -> int:
    offset = local(at, zone).utcoffset()
    assert offset is not None
    return (offset.days * 86400 + offset.seconds) * US + offset.microseconds


@lru_cache(maxsize=256)
def offset_runs(zone: str, since: int, until: int) -> Runs:
    """The zone's UTC offsets over [since, until]: the first run starts at ``since``, each next one at
    the instant the offset changes."""
    runs = [(since, offset_of(since, zone))]
    at = since
    while at < until:
        step = min(at + _STEP, until)
        after = offset_of(step, zone)
        if after != runs[-1][1]:
            low, high = at, step  # the change is in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                if offset_of(middle, zone) == after:
                    high = middle
                else:
                    low = middle
            runs.append((high, after))
        at = step
    return tuple(runs)


def local_hour(ts: int, runs: Runs, starts: list[int] | None = None) -> int:
    """The local hour of day (0–23) of an instant within the runs."""
    if len(runs) == 1:
        offset = runs[0][1]
    else:
        i = bisect.bisect_right(starts if starts is not None else [r[0] for r in runs], ts) - 1
        offset = runs[max(i, 0)][1]
    return (ts + offset) // HOUR % 24


def count_hours(events: Sequence[Sequence[tuple[int, Any]]], since: int, until: int, runs: Runs) -> list[int]:
    """How many of the events (each a user's history of one name) fall in each local hour, in (since, until]."""
    counts = [0] * 24
    starts = [r[0] for r in runs]
    for history in events:
        for ts, _ in history:
            if since < ts <= until:
                counts[local_hour(ts, runs, starts)] += 1
    return counts


@dataclass(frozen=True)
class Choice:
    """The best-time decision for one user at an occurrence s: the 24 scores, which k were candidates,
    the chosen k (what `preview` and `:why` show)."""

    s: int
    zone: str  # the user's zone: scores and the `between` window are read in it
    scores: tuple[int, ...]  # k = 0…23
    candidates: tuple[bool, ...]
    k: int
    events: tuple[str, ...]  # the `by` events; none: every event

    @property
    def at(self) -> int:
        return self.s + self.k * HOUR

    def summary(self) -> str:
        """One line: the chosen hour and why."""
        at_local = f"{wall(self.at, self.zone):%H:%M} in {self.zone}"
        n = sum(self.candidates)
        if not n:
            why = "no hour is a candidate (the window, `end` or the cut-off leaves none): k = 0"
        elif max(self.scores[k] for k in range(24) if self.candidates[k]) == 0:
            why = "no event scores a candidate hour: the first candidate"
        else:
            why = f"score {self.scores[self.k]}, the highest of {n} candidate hour{'s' if n != 1 else ''}" + (
                ", the earliest of the ties" if sum(1 for k in range(24) if self.candidates[k]
                                                     and self.scores[k] == self.scores[self.k]) > 1 else "")
        return f"best time: k = {self.k}, decided at {iso(self.at)} ({at_local}): {why}"

    def chart(self) -> list[str]:
        """The 24 scores as a small bar chart, one column per k, with the local hours under it, the
        candidates marked and the chosen k pointed at."""
        top = max(self.scores) or 1
        rows = 3
        blocks = " ▁▂▃▄▅▆▇█"
        lines = []
        for row in range(rows, 0, -1):
            cells = []
            for score in self.scores:
                eighths = round(score * rows * 8 / top) - (row - 1) * 8
                cells.append(blocks[max(0, min(8, eighths))] * 2)
            label = f"{max(self.scores):>4} " if row == rows else "     "
            lines.append(f"{label}│{' '.join(cells)}".rstrip())
        lines.append("   0 └" + "─" * (24 * 3 - 1))
        hours = [wall(self.s + k * HOUR, self.zone).hour for k in range(24)]
        lines.append("      " + " ".join(f"{h:02d}" for h in hours) + "  local hour at s + k")
        lines.append("      " + " ".join("··" if c else "  " for c in self.candidates) + "  candidates")
        lines.append("      " + "   " * self.k + f"▲ k = {self.k}")
        lines.append("      scores, k = 0…23: " + " ".join(str(x) for x in self.scores))
        return lines

    def words(self) -> str:
        """The summary and the chart, as `preview` prints a note."""
        what = ", ".join(f'"{e}"' for e in self.events) if self.events else "every event"
        head = (f"{self.summary()}\n  scores: {what} in the 90 days to {iso(self.s)}, by the hour of day in "
                f"{self.zone}")
        return "\n".join([head, *("  " + line for line in self.chart())])


def local_seconds(s: int, zone: str, runs: Runs | None = None) -> tuple[int, ...]:
    """The local time of day (seconds) at s + k for k = 0…23: from the zone's offset runs when they
    cover s + 23h, else from the zone itself."""
    if runs is None or runs[0][0] > s:
        return tuple(_clock(wall(s + k * HOUR, zone)) for k in range(24))
    starts = [r[0] for r in runs]
    out = []
    for k in range(24):
        at = s + k * HOUR
        offset = runs[max(bisect.bisect_right(starts, at) - 1, 0)][1]
        out.append((at + offset) // US % 86400)
    return tuple(out)


def candidates(best: plan.BestTime, clock: tuple[int, ...], s: int, end: int | None,
               cutoff: int | None) -> tuple[bool, ...]:
    """Which k are candidates: the local time of day at s + k (``clock``) in `between` [from, to)
    (spanning midnight when to < from), s + k before ``end`` and before ``cutoff`` (the cut-off on the
    local date of s)."""
    window = None
    if best.start is not None and best.end is not None:
        window = (_seconds(best.start), _seconds(best.end))
    out = []
    for k in range(24):
        at = s + k * HOUR
        ok = (end is None or at < end) and (cutoff is None or at < cutoff)
        if ok and window is not None:
            seconds = clock[k]
            start, stop = window
            ok = start <= seconds < stop if start <= stop else (seconds >= start or seconds < stop)
        out.append(ok)
    return tuple(out)


def choose(scores: tuple[int, ...], allowed: tuple[bool, ...]) -> int:
    """The highest score among the candidates, the smallest k among ties; 0 with no candidate."""
    best_k, best = 0, -1
    for k in range(24):
        if allowed[k] and scores[k] > best:
            best_k, best = k, scores[k]
    return best_k


def decide(best: plan.BestTime, counts: list[int], s: int, zone: str, end: int | None,
           cutoff: int | None, runs: Runs | None = None) -> Choice:
    """score(k) = the events counted in the local hour that s + k has (an hour repeated on an autumn
    DST day scores twice, one skipped in spring does not); then the candidates and the choice.
    ``runs``: the zone's offsets from before s to s + 24h (else looked up)."""
    clock = local_seconds(s, zone, runs)
    scores = tuple(counts[seconds // 3600] for seconds in clock)
    allowed = candidates(best, clock, s, end, cutoff)
    return Choice(s, zone, scores, allowed, choose(scores, allowed), best.events)


@lru_cache(maxsize=1024)
def cutoff_on(cutoff: str | None, date: str | None, zone: str) -> int | None:
    """The cut-off instant on a local date, in the schedule's zone."""
    if cutoff is None or not date:
        return None
    return from_local(f"{date}T{cutoff}", zone)


def _clock(t: dt.datetime) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s
