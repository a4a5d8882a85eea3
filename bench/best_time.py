"""Best-time scoring (SPEC §12.6) in SQL on the SQLite store beside the same scores in memory.

The SQLite store counts in SQL over its events index; the in-memory store in Python over the
histories it holds. Both are measured in the same run, on the same users.

100,000 users with 50 events each (5 event names, over the 100 days before the occurrence s, most in
one or two preferred hours of the user's own day), spread over 10 zones: half-hour and 45-minute
ones, and zones whose DST changes inside the 90-day window (Europe, North America, Adelaide). The
data is generated once, loaded into a SQLite file through the store API, and into an in-memory store
the same way (each event's props: one shared empty dict, so the in-memory side is as lean as it gets).

The scoring is what the engine's ``_best_times`` does at an occurrence: the users in id order, in
batches of 500; per batch one ``hour_counts`` call per zone, with the zone's offset runs over the
window; then ``best_time.decide`` for every user (`between 09:00 and 21:00`). The user's zone is given
to both sides alike (the engine reads it from the profile it already holds). Timed: the counting and
the deciding, separately and together.

Each side runs ``--rounds`` times, interleaved, each time in a fresh process (so SQLite opens the store
anew: no user cached, a cold page cache) and with RSS sampled during the scoring; then once more each
under tracemalloc, for the Python allocations of the scoring alone (not with ``--no-tracemalloc``).
Every user's 24 hour counts and chosen k must be the same on both sides in every round (exit status 1
otherwise), and the SQLite store must hold no user in memory after the scoring (the histories are
counted in SQL, never loaded).

    python bench/best_time.py [--users 100000] [--events 50] [--rounds 3] [--by both|on|off] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from array import array
from pathlib import Path
from typing import Any

from pushlang import plan
from pushlang.runtime import best_time
from pushlang.runtime.instants import HOUR, US, iso, parse_instant

ZONES = ["UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles",
         "America/St_Johns", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo", "Australia/Adelaide"]
NAMES = ["App Opened", "Viewed Product", "Added To Cart", "Charged", "Page View"]
WEIGHTS = [0.3, 0.3, 0.15, 0.05, 0.2]
BY = ("App Opened", "Viewed Product")  # with `by`: the events scored
S = parse_instant("2026-12-01T08:00:00Z")  # the occurrence: (s − 90d, s] holds the autumn DST changes
DAYS = 100  # events spread over the days before s; those older than 90 days are not counted
BATCH = 500  # users per batch, as the engine's _BEST_BATCH
LABELS = {"sqlite": "SQLite (SQL over the index)", "memory": "in memory (Python)"}
MIB = 1024 * 1024


def user_id(n: int) -> str:
    return f"u{n:07d}"


def generate(users: int, per_user: int, seed: int = 7) -> tuple[bytes, bytes, array[int]]:
    """Each user's zone (an index into ZONES), and per user ``per_user`` events in time order: their
    names (indexes into NAMES) and instants (µs). Most of a user's events fall in two preferred local
    hours (read with the zone's offset at s, so an hour moves by one across a DST change)."""
    rng = random.Random(seed)
    offsets = [best_time.offset_of(S, zone) for zone in ZONES]
    midnight = S - S % best_time.DAY
    cumulative = [sum(WEIGHTS[:i + 1]) for i in range(len(WEIGHTS))]
    zones, names, stamps = bytearray(), bytearray(), array("q")
    for n in range(users):
        z = rng.randrange(len(ZONES))
        zones.append(z)
        first, second = rng.randrange(24), rng.randrange(24)
        events = []
        for _ in range(per_user):
            r = rng.random()
            hour = first if r < 0.4 else second if r < 0.6 else rng.randrange(24)
            ts = midnight - rng.randrange(1, DAYS + 1) * best_time.DAY + hour * HOUR + rng.randrange(HOUR) - offsets[z]
            r = rng.random()
            events.append((ts, next((i for i, c in enumerate(cumulative) if r < c), len(NAMES) - 1)))
        events.sort()
        for ts, name in events:
            stamps.append(ts)
            names.append(name)
        if (n + 1) % 20_000 == 0:
            print(f"  generated {n + 1:,} users", file=sys.stderr)
    return bytes(zones), bytes(names), stamps


def load(store: Any, data: tuple[bytes, bytes, array[int]], per_user: int, progress: bool = False) -> None:
    """The users, their zones (in the profile) and their events, through the store API."""
    zones, names, stamps = data
    empty: dict[str, Any] = {}
    add_event = store.add_event
    for n, z in enumerate(zones):
        first = n * per_user
        state = store.user(user_id(n), stamps[first])
        store.merge_profile(state, {"timezone": ZONES[z]})
        for i in range(first, first + per_user):
            add_event(state, NAMES[names[i]], stamps[i], empty)
        if (n + 1) % 1000 == 0:
            store.commit()
            if progress and (n + 1) % 20_000 == 0:
                print(f"  loaded {n + 1:,} users", file=sys.stderr)
    store.commit()


class RssSampler:
    """The process's resident set size, sampled every few milliseconds in a thread: its peak."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.start = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def score(store: Any, zone_of: list[str], spec: plan.BestTime, out: array[int]) -> dict[str, float]:
    """Every user's 24 hour counts and chosen k, into ``out`` (25 ints a user, in user order, allocated
    beforehand so that it is not counted as the scoring's memory), as the engine does it at s: batches
    of BATCH users, one ``hour_counts`` call per zone of a batch, then ``decide``."""
    since = S - best_time.WINDOW
    counting = deciding = running = 0.0
    for first in range(0, len(zone_of), BATCH):
        t0 = time.perf_counter()
        by_zone: dict[str, list[str]] = {}
        for n in range(first, min(first + BATCH, len(zone_of))):
            by_zone.setdefault(zone_of[n], []).append(user_id(n))
        counts: dict[str, list[int]] = {}
        runs: dict[str, best_time.Runs] = {}
        for zone, ids in by_zone.items():
            t = time.perf_counter()
            runs[zone] = best_time.offset_runs(zone, since, S + best_time.DAY)
            running += time.perf_counter() - t
            counts.update(store.hour_counts(ids, spec.events, since, S, runs[zone]))
        t1 = time.perf_counter()
        for n in range(first, min(first + BATCH, len(zone_of))):
            hours = counts[user_id(n)]
            choice = best_time.decide(spec, hours, S, zone_of[n], None, None, runs[zone_of[n]])
            at = 25 * n
            out[at:at + 24] = array("i", hours)
            out[at + 24] = choice.k
        t2 = time.perf_counter()
        counting += t1 - t0
        deciding += t2 - t1
    return {"counts_s": counting, "decide_s": deciding, "runs_s": running}


def child(mode: str, work: Path, by: bool, trace: bool, out: Path) -> dict[str, Any]:
    """One side, once: open (SQLite) or build (in memory) the store, score every user, write the scores."""
    with (work / "data.pickle").open("rb") as f:
        data, per_user = pickle.load(f)
    zone_of = [ZONES[z] for z in data[0]]
    spec = plan.BestTime("09:00:00", "21:00:00", BY if by else ())
    store: Any
    if mode == "sqlite":
        from pushlang.runtime.sqlite_store import SqliteStore

        store = SqliteStore(work / "bench.db")
    else:
        from pushlang.runtime.store import MemoryStore

        store = MemoryStore()
        load(store, data, per_user)
    del data
    scores = array("i", [0]) * (25 * len(zone_of))
    gc.collect()
    if trace:
        tracemalloc.start()
    with RssSampler() as rss:
        start = time.perf_counter()
        parts = score(store, zone_of, spec, scores)
        seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    tracemalloc.stop()
    with out.open("wb") as f:
        scores.tofile(f)
    return {**parts, "seconds": seconds, "rss_start": rss.start, "rss_peak": rss.peak, "traced_peak": traced,
            "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "users_in_memory": len(store._users)}


def spawn(mode: str, work: Path, by: bool, trace: bool, out: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--mode", mode, "--workdir", str(work), "--out", str(out)]
    command += ["--by", "on" if by else "off"] + (["--trace"] if trace else [])
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def variant(work: Path, users: int, by: bool, rounds: int, traced: bool) -> bool:
    """Both sides ``rounds`` times, interleaved, then (``traced``) once each under tracemalloc; the
    table; the checks."""
    what = f'`by "{BY[0]}", "{BY[1]}"`' if by else "every event (no `by`)"
    found: dict[str, list[dict[str, Any]]] = {"sqlite": [], "memory": []}
    outputs: list[tuple[str, Path]] = []
    for n in range(rounds + traced):
        trace = n == rounds
        for mode in ("sqlite", "memory") if n % 2 == 0 else ("memory", "sqlite"):
            step = "tracemalloc run" if trace else f"round {n + 1}/{rounds}"
            print(f"{what}: {step}: {LABELS[mode]} ...", file=sys.stderr)
            out = work / f"{mode}-{'by' if by else 'all'}-{n}.bin"
            result = spawn(mode, work, by, trace, out)
            print(f"  {result['seconds']:.2f} s", file=sys.stderr)
            outputs.append((mode, out))
            if trace:
                found[mode][0]["traced_peak"] = result["traced_peak"]
            else:
                found[mode].append(result)

    print(f"scores: {what}; {rounds} interleaved rounds each, each in a fresh process")
    print(f"{'':28} {'counts s':>8} {'decide s':>8} {'total s':>8} {'min s':>6} {'max s':>6} {'spread':>6} "
          f"{'users/s':>9}")
    medians: dict[str, dict[str, float]] = {}
    for mode, runs in found.items():
        total = [r["seconds"] for r in runs]
        m = medians[mode] = {key: statistics.median(r[key] for r in runs)
                             for key in ("seconds", "counts_s", "decide_s", "runs_s", "rss_start", "rss_peak")}
        spread = (max(total) - min(total)) / m["seconds"]
        print(f"{LABELS[mode]:28} {m['counts_s']:8.2f} {m['decide_s']:8.2f} {m['seconds']:8.2f} {min(total):6.2f} "
              f"{max(total):6.2f} {spread:6.1%} {users / m['seconds']:9,.0f}")
    sql, mem = medians["sqlite"], medians["memory"]
    print(f"(of the counts, the zones' offset runs: {sql['runs_s']:.2f} s and {mem['runs_s']:.2f} s; "
          "the same work on both sides)")
    print(f"SQLite / in memory, time: counts {sql['counts_s'] / mem['counts_s']:.2f}×, "
          f"total {sql['seconds'] / mem['seconds']:.2f}×")
    print(f"{'memory, MiB':28} {'RSS at start':>12} {'RSS peak':>9} {'growth':>7} {'tracemalloc peak':>17}")
    for mode in found:
        m = medians[mode]
        peak = found[mode][0]["traced_peak"]
        print(f"{LABELS[mode]:28} {m['rss_start'] / MIB:12,.0f} {m['rss_peak'] / MIB:9,.0f} "
              f"{(m['rss_peak'] - m['rss_start']) / MIB:7,.0f} "
              f"{'not measured' if peak is None else f'{peak / MIB:.1f}':>17}")
    print("(RSS: sampled every 5 ms during the scoring, medians of the rounds; at start: the interpreter, the "
          "store and, in memory, every history; tracemalloc: Python allocations of the scoring alone, not "
          "SQLite's page cache)")
    ratios = f"SQLite / in memory, peak RSS: {sql['rss_peak'] / mem['rss_peak']:.2f}×"
    if traced:
        ratios += f", tracemalloc peak: {found['sqlite'][0]['traced_peak'] / found['memory'][0]['traced_peak']:.2f}×"
    print(ratios)

    ok = True
    loaded = max(r["users_in_memory"] for r in found["sqlite"])
    print(f"SQLite store after the scoring: {loaded:,} users loaded into memory"
          f"{'' if loaded == 0 else ' -> NOT 0: the scoring loaded histories'}")
    ok = ok and loaded == 0
    reference = array("i")
    reference.frombytes(outputs[0][1].read_bytes())
    differing = 0
    for mode, path in outputs[1:]:
        other = array("i")
        other.frombytes(path.read_bytes())
        if other != reference:
            bad = [n for n in range(users) if other[25 * n:25 * n + 25] != reference[25 * n:25 * n + 25]]
            differing = max(differing, len(bad))
            if bad:
                n = bad[0]
                print(f"  {LABELS[mode]} ({path.name}) differs, first {user_id(n)}: counts "
                      f"{list(other[25 * n:25 * n + 24])} k {other[25 * n + 24]}, against counts "
                      f"{list(reference[25 * n:25 * n + 24])} k {reference[25 * n + 24]}")
    if differing or len(reference) != 25 * users:
        print(f"identical scores: NO ({differing:,} of {users:,} users differ)")
        ok = False
    else:
        counted = sum(sum(reference[25 * n:25 * n + 24]) for n in range(users))
        later = sum(1 for n in range(users) if reference[25 * n + 24])
        print(f"identical scores: yes ({users:,} users: the 24 hour counts and the chosen k of each, every run "
              f"of both sides; {counted:,} events counted, {later:,} users decided at k > 0)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000, help="users (default 100,000)")
    ap.add_argument("--events", type=int, default=50, help="events per user (default 50)")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of each side, interleaved (default 3)")
    ap.add_argument("--by", choices=("both", "on", "off"), default="both",
                    help=f'score the events named in `by` ({", ".join(BY)}), every event, or both (default)')
    ap.add_argument("--tracemalloc", action=argparse.BooleanOptionalAction, default=True,
                    help="after the timed rounds, run each side once more under tracemalloc for the Python "
                         "allocations of the scoring (about 10× slower; default on)")
    ap.add_argument("--mode", choices=("sqlite", "memory"), help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.users < 1 or args.events < 1 or args.rounds < 1:
        ap.error("--users, --events and --rounds must be at least 1")

    if args.mode:  # a child process: one side, once; figures as JSON on stdout
        print(json.dumps(child(args.mode, Path(args.workdir), args.by == "on", args.trace, Path(args.out))))
        return 0

    from pushlang.runtime.sqlite_store import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"generating {args.users:,} users × {args.events} events ...", file=sys.stderr)
        data = generate(args.users, args.events)
        with (work / "data.pickle").open("wb") as f:
            pickle.dump((data, args.events), f)
        print("loading them into a SQLite store ...", file=sys.stderr)
        start = time.perf_counter()
        with SqliteStore(work / "bench.db", cache_size=1000) as store:
            load(store, data, args.events, progress=True)
        print(f"  loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        size = (work / "bench.db").stat().st_size

        print(f"{args.users:,} users × {args.events} events ({args.users * args.events:,}), {len(ZONES)} zones "
              f"(half-hour, 45-minute and DST-changing ones), s = {iso(S)}, `between 09:00 and 21:00`, "
              f"{best_time.WINDOW // (86400 * US)}-day window; SQLite file {size / MIB:,.0f} MiB")
        ok = True
        for by in {"both": (False, True), "on": (True,), "off": (False,)}[args.by]:
            print()
            ok = variant(work, args.users, by, args.rounds, args.tracemalloc) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
