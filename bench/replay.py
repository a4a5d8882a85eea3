"""Replay throughput and memory on a generated stream, beside a floor measured in the same run.

1,000,000 records over 100,000 users and 100 campaigns (80 single action with 1–3 property
conditions, 20 inaction windows; a few with behaviour predicates). Like a real site's stream, half
of the events are traffic no campaign reacts to, and the decisions made are printed beside the rates. Each mode runs in its own
process so that its peak memory is its own:

- floor: decode the same lines with msgspec and dispatch by event name, no rule work;
- a second reference, "conditions": the floor plus evaluating the compiled `where` of every
  campaign the event triggers, and for each that holds one bare output record (its `send_id` and
  UTC time, no pipeline step); no user state, audience, limits, DND, timers or rendering;
- replay with the in-memory store;
- replay with the SQLite store (a new file);
- the bound: the in-memory replay of a copy of this tree whose engine skips every decision (its
  ``_decide`` and ``_decide_again`` return at once): every record, trigger, `where`, timer,
  cancellation and all user state, and no pipeline step, send or output record. The reference
  keeps no state, but every replay must, so this is the least work a replay does: the in-memory
  target can be met only if this row's share of the reference is above it.

The five run ``--rounds`` times each (default 5), interleaved, each in a process of its own; the
table has each one's median, fastest and slowest time, the spread ((max − min) / median) and its
peak memory, and then the targets of issue #19, each marked met or not; under the first, the bound's
share of the reference, the time the target leaves the decisions (the reference's time / 40% less the
bound's) and the time they take (the replay's less the bound's):

- in-memory replay ≥ 40% of the reference's events/s;
- SQLite replay ≥ 60% of the in-memory replay's events/s;
- peak memory of a replay < 400 MiB at 1,000,000 records over 100,000 users.

A ratio is of the medians; beside it, the lowest and highest ratio of one round's pair (the runs of
a round are next to each other in time, so a busy machine moves both) and the ratio of the median CPU
times (which other processes on a busy machine do not inflate). With ``--baseline DIR`` (another
checkout, or a compiled copy of one made by bench/compiled_tree.py: the header says which) its two
replays run in the same rounds, and its targets are printed below this tree's: a before and after
measured under the same load. With ``--compiled`` a copy of this tree whose runtime
is compiled (bench/compiled_tree.py: the mypyc build, about a minute, twice: the bound's copy too)
runs its reference, its two replays and its bound in the same rounds, and its targets are printed
too, its replays against its own reference.

With ``--controls`` it times the in-memory replay of the same records twice, ``--rounds`` times each,
interleaved: as generated, and with the delivery controls on every campaign (`throttle 1 per minute`,
and `min_gap = "10m"` in the config), and prints both rows, how often the controls acted, and the
ratio (target: within 10%).

With ``--against DIR`` (another checkout of pushlang, e.g. ``git worktree add /tmp/base main``) it
instead times the in-memory replay of this tree and of that one, ``--rounds`` times each, interleaved,
on the same records, and prints both medians with their spread, and whether the decisions are
identical: the check that a change did not make replay slower.

    python bench/replay.py [--records 1000000] [--users 100000] [--rounds 5] [--baseline DIR] [--compiled]
    python bench/replay.py --controls [--rounds 5]
    python bench/replay.py --against /tmp/base [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

EVENTS = [f"Event {i}" for i in range(20)]  # the events campaigns react to
OTHER_EVENTS = [f"Page {i}" for i in range(40)]  # the rest of a site's traffic: no campaign reacts
COUNTRIES = ["IN", "US", "DE", "FR", "BR", "GB"]
ZONES = ["Asia/Kolkata", "America/New_York", "Europe/Berlin", "Europe/Paris", "America/Sao_Paulo", "Europe/London"]


CONTROLS = "    throttle 10 per minute\n"  # with --controls, on every campaign; and min_gap in the config
CONTROLS_CONFIG = '[limits]\nmin_gap = "10m"\n'


def campaigns_text(seed: int = 1, controls: bool = False) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(80):
        event = EVENTS[i % len(EVENTS)]
        conditions = [f"event.price > {rng.randint(40, 95)}", f'event.category == "c{rng.randint(0, 9)}"',
                      f'user.country in ["{rng.choice(COUNTRIES)}", "{rng.choice(COUNTRIES)}"]']
        where = " and ".join(conditions[: rng.randint(1, 3)])
        who = '  who {\n    did "Viewed Product" at least 2 times in last 7d\n  }\n' if i % 16 == 0 else ""
        out.append(f'campaign single_{i:02d} {{\n  platforms chrome, firefox\n  on "{event}" where {where}\n{who}'
                   f'  when {{\n    limit 3 per day\n{CONTROLS if controls else ""}  }}\n  message {{\n    title "Hi @{{user.name | default: \'there\'}}"\n'
                   f'    body "Offer {i} for @{{event.category | default: \'you\'}}"\n  }}\n}}\n')
    for i in range(20):
        who = '  who {\n    did "Viewed Product" at least 1 times in last 7d\n  }\n' if i % 5 == 0 else ""
        trigger = ("Added To Cart", "Viewed Product", "Event 1", "Event 2", "Event 3")[i % 5]
        out.append(f'campaign inaction_{i:02d} {{\n  platforms chrome, firefox\n'
                   f'  on "{trigger}" where event.price > {40 + 2 * i}\n'
                   f'  unless "Charged" within {10 + i}m\n{who}'
                   f'  when {{\n    dnd 22:00 to 07:00 delay\n    limit 1 per day\n{CONTROLS if controls else ""}  }}\n'
                   f'  message {{\n    title "Your cart"\n    body "@{{event.product | default: \'Something\'}} is waiting"\n  }}\n}}\n')
    return "\n".join(out)


def generate(path: Path, records: int, users: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    t = 1_796_112_000  # 2026-12-01T08:00:00Z
    step = 10 * 86400 / records
    encoder = msgspec.json.Encoder()
    with path.open("wb") as f:
        for n in range(records):
            user = f"u{rng.randrange(users)}"
            ts = int(t + n * step)
            r = rng.random()
            if n < users:  # everyone gets a profile and most a subscription early on
                user = f"u{n}"
                if rng.random() < 0.5:
                    i = rng.randrange(len(ZONES))
                    record = {"type": "profile", "user": user, "ts": ts,
                              "props": {"country": COUNTRIES[i], "timezone": ZONES[i], "name": f"N{n}"}}
                else:
                    record = {"type": "subscribe", "user": user, "ts": ts, "platform": "chrome",
                              "endpoint": f"https://push.example.net/{user}", "keys": {"p256dh": "k", "auth": "a"}}
            elif r < 0.15:
                record = {"user": user, "ts": ts, "name": "Viewed Product", "props": {"price": rng.randint(1, 100)}}
            elif r < 0.22:
                record = {"user": user, "ts": ts, "name": "Added To Cart",
                          "props": {"price": rng.randint(1, 120), "product": "Lamp"}}
            elif r < 0.26:
                record = {"user": user, "ts": ts, "name": "Charged", "props": {"amount": rng.randint(5, 200)}}
            elif r < 0.5:
                record = {"user": user, "ts": ts, "name": rng.choice(EVENTS),
                          "props": {"price": rng.randint(1, 100), "category": f"c{rng.randint(0, 9)}"}}
            else:
                record = {"user": user, "ts": ts, "name": rng.choice(OTHER_EVENTS), "props": {"path": "/"}}
            f.write(encoder.encode(record))
            f.write(b"\n")


def run_mode(mode: str, records: Path, campaigns: Path, workdir: Path) -> dict[str, float]:
    start, cpu_start = time.perf_counter(), time.process_time()
    decisions = 0
    if mode == "floor":
        from pushlang.runtime.records import _decoder

        handlers: dict[str | None, int] = {name: 0 for name in [*EVENTS, "Viewed Product", "Added To Cart", "Charged"]}
        handlers.update({name: 0 for name in OTHER_EVENTS})
        with records.open("rb") as f:
            for line in f:
                raw = _decoder.decode(line)
                if raw.name in handlers:
                    handlers[raw.name] += 1
    elif mode == "conditions":
        from pushlang.compiler import compile_paths
        from pushlang.runtime.engine import Engine
        from pushlang.runtime.evaluate import Env
        from pushlang.runtime.instants import US, iso
        from pushlang.runtime.outcomes import Output
        from pushlang.runtime.pipeline import send_id_for
        from pushlang.runtime.records import _decoder
        from pushlang.runtime.store import MemoryStore

        result = compile_paths([str(campaigns)])
        assert result.plan is not None, result.diagnostics
        by_trigger = Engine(result.plan, MemoryStore(), lambda _: None).by_trigger
        profile: dict[str, object] = {}
        outputs: list[Output] = []
        start, cpu_start = time.perf_counter(), time.process_time()
        with records.open("rb") as f:
            for line in f:
                raw = _decoder.decode(line)
                for c in by_trigger.get(raw.name or "", ()):
                    ts = int(raw.ts) * US
                    if c.trigger_where(Env(raw.user, profile, ts, None, c.segments, raw.name, ts, raw.props)):
                        outputs.append(Output(iso(ts), c.id, raw.user, "send", None, send_id_for(c.id, raw.user, ts)))
                        if len(outputs) == 1000:
                            decisions += len(outputs)
                            outputs.clear()
        decisions += len(outputs)
    else:
        from pushlang.compiler import compile_paths
        from pushlang.runtime.replay import replay
        from pushlang.runtime.store import MemoryStore

        if mode == "controls":  # the same campaigns with the delivery controls, and their config beside them
            campaigns = workdir / "controls" / "bench.push"
        result = compile_paths([str(campaigns)])
        assert result.plan is not None, result.diagnostics
        if mode == "sqlite":
            from pushlang.runtime.sqlite_store import SqliteStore

            for suffix in ("", "-wal", "-shm"):  # a new file each round: a store left by the last would resume
                (workdir / f"bench.db{suffix}").unlink(missing_ok=True)
            store: MemoryStore = SqliteStore(str(workdir / "bench.db"))
        else:
            store = MemoryStore()
        start, cpu_start = time.perf_counter(), time.process_time()
        count = [0]
        digest = hashlib.sha256()
        encode = msgspec.json.Encoder().encode
        reasons: dict[str, int] = {}

        def emit(out: Any) -> None:  # an Output (no import: a --baseline checkout may keep it elsewhere)
            count[0] += 1
            if mode == "versus":
                digest.update(encode(out))
            elif out.reason is not None:
                reasons[out.reason] = reasons.get(out.reason, 0) + 1

        with records.open("rb") as f:
            replay(result.plan, f, store, emit)
        store.close()
        decisions = count[0]
        if mode == "versus":
            elapsed = time.perf_counter() - start
            return {"seconds": elapsed, "cpu": time.process_time() - cpu_start, "decisions": decisions,
                    "digest": digest.hexdigest()}
        if mode in ("memory", "controls", "bound"):
            elapsed = time.perf_counter() - start
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            return {"seconds": elapsed, "cpu": time.process_time() - cpu_start, "peak_mib": peak_mib,
                    "decisions": decisions, "reasons": reasons}
    elapsed = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "cpu": time.process_time() - cpu_start, "peak_mib": peak_mib, "decisions": decisions}


def interleaved(work: Path, runs: dict[str, tuple[str, str | None]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Each run (label → its mode and the PYTHONPATH of its tree, None: this one) ``rounds`` times, in
    turns whose order alternates, each in a process of its own."""
    found: dict[str, list[dict[str, Any]]] = {label: [] for label in runs}
    labels = list(runs)
    for n in range(rounds):
        for label in labels if n % 2 == 0 else labels[::-1]:
            mode, path = runs[label]
            env = dict(os.environ)
            if path is not None:
                env["PYTHONPATH"] = path
            print(f"round {n + 1}/{rounds}: {label} ...", file=sys.stderr)
            child = subprocess.run([sys.executable, __file__, "--mode", mode, "--workdir", str(work)],
                                   capture_output=True, text=True, env=env, cwd=work)
            if child.returncode != 0:
                raise SystemExit(child.stderr)
            found[label].append(json.loads(child.stdout))
    return found


def medians(found: dict[str, list[dict[str, Any]]], records: int, width: int) -> dict[str, float]:
    """One row per run: the median, the fastest and the slowest time, the spread, the median CPU time
    (what other processes on the machine take from it does not count there), the peak memory (the
    highest of its rounds) and the decisions."""
    print(f"{'':{width}} {'median s':>9} {'min s':>7} {'max s':>7} {'events/s':>10} {'spread':>7} "
          f"{'CPU s':>7} {'peak MiB':>9} {'decisions':>10}")
    out = {}
    for label, runs in found.items():
        seconds = [float(r["seconds"]) for r in runs]
        median = out[label] = statistics.median(seconds)
        spread = (max(seconds) - min(seconds)) / median
        cpu = statistics.median(float(r.get("cpu", 0)) for r in runs)
        peak = max(float(r.get("peak_mib", 0)) for r in runs)
        print(f"{label:{width}} {median:9.2f} {min(seconds):7.2f} {max(seconds):7.2f} {records / median:10,.0f} "
              f"{spread:7.1%} {cpu:7.2f} {peak:9.0f} {int(float(runs[0]['decisions'])):10,}")
    return out


def target(words: str, met: bool) -> str:
    return f"{words} -> {'met' if met else 'NOT MET'}"


def ratio_row(found: dict[str, list[dict[str, Any]]], part: str, whole: str, words: str, goal: float) -> str:
    """``part``'s events/s as a share of ``whole``'s: of the medians, the range of one round's pair (the
    two ran one after the other), and of the median CPU times; met or not by the medians."""
    def median(label: str, what: str) -> float:
        return statistics.median(float(r[what]) for r in found[label])

    share = median(whole, "seconds") / median(part, "seconds")
    rounds = [float(w["seconds"]) / float(p["seconds"]) for p, w in zip(found[part], found[whole], strict=True)]
    cpu = median(whole, "cpu") / median(part, "cpu")
    return target(f"{words}: {share:.1%} (rounds {min(rounds):.1%}–{max(rounds):.1%}; on CPU time {cpu:.1%}; "
                  f"target ≥ {goal:.0%})", share >= goal)


def bound_row(found: dict[str, list[dict[str, Any]]], memory: str, bound: str, reference: str, goal: float) -> str:
    """The bound's share of the reference, and what the decisions may cost for the in-memory replay to
    reach ``goal`` of the reference beside what they cost: the replay's time less the bound's (medians)."""
    def median(label: str) -> float:
        return statistics.median(float(r["seconds"]) for r in found[label])

    decisions = int(float(found[memory][0]["decisions"]))
    budget, spent = median(reference) / goal - median(bound), median(memory) - median(bound)
    allowed = (f"leaves the {decisions:,} decisions {budget:.2f} s ({budget / decisions * 1e6:.2f} µs each)"
               if budget > 0 else f"is missed even if the {decisions:,} decisions cost nothing")
    return (f"    the bound, no decision at all / reference: {median(reference) / median(bound):.1%}; "
            f"the target {allowed}; they take {spent:.2f} s ({spent / decisions * 1e6:.2f} µs each)")


LABELS = {"floor": "floor: msgspec decode + dispatch by name",
          "conditions": "reference: floor + conditions + bare outputs",
          "memory": "replay, in-memory store", "sqlite": "replay, SQLite store",
          "bound": "bound: in-memory replay, no decision"}

# The bound's copy of the tree: the engine's two ways into the pipeline return at once.
SKIPPED = ("    def _decide(self", "    def _decide_again(self")


def bound_tree(tree: Path) -> Path:
    """Copy this tree to ``tree`` with every decision skipped (see the module's docstring)."""
    from compiled_tree import LEFT_OUT, ROOT

    shutil.copytree(ROOT, tree, ignore=LEFT_OUT)
    engine = tree / "pushlang" / "runtime" / "engine.py"
    text = engine.read_text(encoding="utf-8")
    for start in SKIPPED:
        at = text.find(start)
        end = text.find(") -> None:\n", at) + len(") -> None:\n")
        if at < 0 or text.count(start) != 1 or end < at:
            raise SystemExit(f"bench/replay.py: {engine.name} has no single {start.strip()!r}: update SKIPPED")
        text = text[:end] + "        return  # bench/replay.py: the bound, no decision\n" + text[end:]
    engine.write_text(text, encoding="utf-8")
    return tree


def targets(work: Path, rounds: int, records: int, users: int, baseline: Path | None = None,
            compiled: bool = False) -> int:
    """The floor, the reference and both replays, interleaved, with the targets of issue #19; with
    ``baseline`` (another checkout), its two replays too, in the same rounds, and its targets; with
    ``compiled``, a compiled copy of this tree's reference and replays, and its targets."""
    runs: dict[str, tuple[str, str | None]] = {LABELS[mode]: (mode, None)
                                               for mode in ("floor", "conditions", "memory", "sqlite")}
    runs[LABELS["bound"]] = ("bound", str(bound_tree(work / "bound")))
    prefixes = [""]
    if baseline is not None:
        runs.update({f"baseline: {LABELS[mode]}": (mode, str(baseline)) for mode in ("memory", "sqlite")})
        prefixes.append("baseline: ")
    if compiled:
        from compiled_tree import compiled_tree

        print("building the compiled copy of this tree ...", file=sys.stderr)
        compiled_tree(work / "compiled")
        print("building the compiled copy of the bound's tree ...", file=sys.stderr)
        compiled_tree(work / "compiled-bound", source=work / "bound")
        runs.update({f"compiled: {LABELS[mode]}": (mode, str(work / "compiled"))
                     for mode in ("conditions", "memory", "sqlite")})
        runs[f"compiled: {LABELS['bound']}"] = ("bound", str(work / "compiled-bound"))
        prefixes.append("compiled: ")
    found = interleaved(work, runs, rounds)
    kinds = {label: "compiled runtime" if r[0].get("compiled") else "pure Python" for label, r in found.items()}
    assert all((kind == "compiled runtime") == label.startswith("compiled: ") for label, kind in kinds.items()
               if not label.startswith("baseline: ")), kinds  # a baseline may be a compiled copy (compiled_tree.py)
    print(f"{records:,} records, {users:,} users, 100 campaigns, {rounds} interleaved rounds each"
          + (f" (baseline: {baseline}, {kinds['baseline: ' + LABELS['memory']]})" if baseline is not None else "")
          + ("; compiled: this tree's runtime built with mypyc" if compiled else ""))
    medians(found, records, 54 if len(prefixes) > 1 else 44)
    print("(decisions: output records; for the reference, one bare record per trigger whose `where` held)")
    for label, runs_of in found.items():  # a bound that decided something is not the bound: its patch failed
        decided = max(int(float(r["decisions"])) for r in runs_of)
        if decided and label.endswith(LABELS["bound"]):
            raise SystemExit(f"{label}: {decided:,} decisions; its copy of the tree still decides")
    for prefix in prefixes:
        memory, sqlite = prefix + LABELS["memory"], prefix + LABELS["sqlite"]
        reference = prefix + LABELS["conditions"] if prefix + LABELS["conditions"] in found else LABELS["conditions"]
        print(ratio_row(found, memory, reference, f"{prefix}in-memory replay / reference", 0.40))
        if prefix + LABELS["bound"] in found:
            print(bound_row(found, memory, prefix + LABELS["bound"], reference, 0.40))
        print(ratio_row(found, sqlite, memory, f"{prefix}SQLite replay / in-memory replay", 0.60))
        peaks = [float(r["peak_mib"]) for label in (memory, sqlite) for r in found[label]]
        print(target(f"{prefix}peak memory of a replay: {max(peaks):,.0f} MiB (lowest round {min(peaks):,.0f}; "
                     "target < 400 MiB)", max(peaks) < 400))
    return 0


def controls(work: Path, rounds: int, records: int) -> int:
    """The in-memory replay with and without the delivery controls, interleaved, on the same records."""
    plain, paced = "replay, in-memory store", "the same, throttle + min_gap on every campaign"
    found = interleaved(work, {plain: ("memory", None), paced: ("controls", None)}, rounds)
    print(f"{records:,} records, 100 campaigns, in-memory replay, {rounds} interleaved rounds each")
    times = medians(found, records, 48)
    acted = found[paced][0]["reasons"]
    print("with the controls: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(acted.items())))
    ratio = times[plain] / times[paced]
    print(f"throughput with the controls / without: {ratio:.1%} (target ≥ 90%) -> "
          f"{'OK' if ratio >= 0.9 else 'BELOW TARGET'}")
    return 0


def versus(work: Path, other: Path, rounds: int, records: int) -> int:
    """This tree's in-memory replay against another checkout's, interleaved, on the same records.

    Each run hashes every output record (in both trees alike, outside the timed replay's own work
    only by one encode and one hash update per record) so that the decisions can be compared."""
    found = interleaved(work, {"this tree": ("versus", None), "baseline": ("versus", str(other))}, rounds)
    print(f"{records:,} records, in-memory replay, {rounds} interleaved rounds each (baseline: {other})")
    times = medians(found, records, 10)
    digests = {str(r["digest"]) for runs in found.values() for r in runs}
    print(f"this tree / baseline throughput: {times['baseline'] / times['this tree']:.1%} "
          f"(not lower than the baseline: {'yes' if times['this tree'] <= times['baseline'] else 'NO'}); "
          f"decisions identical: {'yes' if len(digests) == 1 else 'NO'}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--against", metavar="DIR", help="another checkout: time its replay beside this tree's")
    ap.add_argument("--rounds", type=int, default=5,
                    help="runs of each, interleaved (default 5)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another checkout: its replays in the same rounds as this tree's, and its targets")
    ap.add_argument("--compiled", action="store_true",
                    help="also a copy of this tree with its runtime compiled (mypyc), in the same rounds, and its targets")
    ap.add_argument("--controls", action="store_true",
                    help="time the replay with throttle and min_gap on every campaign beside the same without")
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.mode:  # a child process: one mode, figures as JSON on stdout
        work = Path(args.workdir)
        import pushlang

        compiled = getattr(pushlang, "compiled", lambda: False)()  # a baseline from before it may lack it
        print(json.dumps({**run_mode(args.mode, work / "records.jsonl", work / "bench.push", work),
                          "compiled": compiled}))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"generating {args.records:,} records over {args.users:,} users ...", file=sys.stderr)
        generate(work / "records.jsonl", args.records, args.users)
        (work / "bench.push").write_text(campaigns_text(), encoding="utf-8")
        (work / "controls").mkdir()
        (work / "controls" / "bench.push").write_text(campaigns_text(controls=True), encoding="utf-8")
        (work / "controls" / "pushlang.toml").write_text(CONTROLS_CONFIG, encoding="utf-8")
        if args.controls:
            return controls(work, args.rounds, args.records)
        if args.against:
            return versus(work, Path(args.against).resolve(), args.rounds, args.records)
        return targets(work, args.rounds, args.records, args.users,
                       Path(args.baseline).resolve() if args.baseline else None, args.compiled)


if __name__ == "__main__":
    sys.exit(main())
