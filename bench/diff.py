"""`pushlang diff --jobs 2` beside `--jobs 1` on the replay benchmark's records, interleaved in one run.

The records are bench/replay.py's (its generator: by default 1,000,000 records over 100,000 users and
its 100 campaigns). The old version is those campaigns; the new one widens the DND window of the 20
inaction campaigns (22:00–07:00 to 21:00–08:00, delayed) and lowers the daily limit of 10 single-action
ones from 3 to 2, so that the report has changed campaigns with users lost and sends moved.

Each round runs the real command, `python -m pushlang diff OLD NEW --events FILE --format json`, once
with `--jobs 1` (the two replays one after the other, in one process) and once with `--jobs 2` (the old
version in a worker process while the new one replays in the command's own), in turns whose order
alternates, each in a fresh process; the time is the command's wall time, start-up and compile
included. It prints one row per setting (median, fastest, slowest, spread over the rounds, the median
CPU time — about the same for both: the same two replays — the cores the command had, CPU time over
wall time, and the peak RSS of the command's largest process: with `--jobs 2` there are two such
processes), the ratio of the medians against the target (`--jobs 2` at least 1.7× as fast), the ratio
within each round beside what two busy processes gained over one just before the round (a few seconds
of pure Python: 2× on two idle cores, the most `--jobs 2` could gain then), whether every run's report
was byte-identical, and the load average before and after. The two jobs need two idle cores: on a busy machine `--jobs 2` has well under 2 cores, and the
rounds it shared with other work show as a wide spread. (Linux's autogroup scheduling shares the
CPUs between sessions, not processes: one busy process of another session leaves the command's two
one core.) Exit status 1 when the reports differ.

    python bench/diff.py [--records 1000000] [--users 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import campaigns_text, generate  # bench/replay.py: the records and the campaigns

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.7  # --jobs 2 / --jobs 1, in speed
LIMITED = 10  # single-action campaigns whose daily limit the new version lowers


def versions(work: Path) -> tuple[Path, Path]:
    """The old campaigns and the new ones, each in a folder of its own (no config: the defaults)."""
    old_text = campaigns_text()
    new_text = old_text.replace("dnd 22:00 to 07:00 delay", "dnd 21:00 to 08:00 delay")
    new_text = new_text.replace("limit 3 per day", "limit 2 per day", LIMITED)
    assert new_text != old_text
    folders = []
    for name, text in (("old", old_text), ("new", new_text)):
        folder = work / name
        folder.mkdir()
        (folder / "bench.push").write_text(text, encoding="utf-8")
        folders.append(folder)
    return folders[0], folders[1]


def run_diff(work: Path, jobs: int) -> tuple[float, float, float, str]:
    """One `pushlang diff` in a fresh process: its wall time (s), its CPU time (s, user + system, its
    worker's included), the peak RSS (MiB) of its largest process, and the sha256 of its report."""
    out = work / f"report-{jobs}.json"
    argv = [sys.executable, "-m", "pushlang", "diff", "old", "new", "--events", "records.jsonl",
            "--format", "json", "--jobs", str(jobs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with out.open("wb") as stdout, (work / "stderr.txt").open("w+b") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=stdout, stderr=stderr)
        # wait4: this child's own resource usage (its worker, reaped by it, counts in ru_maxrss as a maximum)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"pushlang diff --jobs {jobs} exited {proc.returncode}:\n{stderr.read().decode()}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, hashlib.sha256(out.read_bytes()).hexdigest()


def _spin(n: int) -> None:
    total = 0
    for i in range(n):
        total += i


def machine_ceiling(n: int = 10_000_000) -> float:
    """How much faster two busy Python processes finish than one does twice, on this machine now:
    2.0 with two idle cores, less when other work has them (the most `--jobs 2` can gain)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    times = []
    for k in (1, 2):
        workers = [context.Process(target=_spin, args=(n,)) for _ in range(k)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        times.append(time.perf_counter() - start)
    return 2 * times[0] / times[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="records to generate (default 1,000,000)")
    ap.add_argument("--users", type=int, default=100_000, help="users they come from (default 100,000)")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each setting, interleaved (default 5)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"generating {args.records:,} records over {args.users:,} users ...", file=sys.stderr)
        generate(work / "records.jsonl", args.records, args.users)
        versions(work)
        load_before = os.getloadavg()
        found: dict[int, list[tuple[float, float, float, str]]] = {1: [], 2: []}
        ceilings = []
        for n in range(args.rounds):
            ceilings.append(machine_ceiling())
            for jobs in (1, 2) if n % 2 == 0 else (2, 1):
                print(f"round {n + 1}/{args.rounds}: --jobs {jobs} ...", file=sys.stderr)
                found[jobs].append(run_diff(work, jobs))
        load_after = os.getloadavg()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"pushlang diff, {args.records:,} records, {args.users:,} users, 100 campaigns (20 changed DND, "
          f"{LIMITED} a lower limit), {args.rounds} interleaved rounds each, {cpus} CPUs")
    print(f"{'':9} {'median s':>9} {'min s':>7} {'max s':>7} {'spread':>7} {'records/s':>10} {'CPU s':>7} "
          f"{'cores':>5} {'peak MiB':>9}")
    medians = {}
    for jobs, runs in found.items():
        seconds = [r[0] for r in runs]
        median = medians[jobs] = statistics.median(seconds)
        spread = (max(seconds) - min(seconds)) / median
        cpu = statistics.median(r[1] for r in runs)
        cores = statistics.median(r[1] / r[0] for r in runs)
        peak = max(r[2] for r in runs)
        print(f"--jobs {jobs:<2} {median:9.2f} {min(seconds):7.2f} {max(seconds):7.2f} {spread:7.1%} "
              f"{args.records / median:10,.0f} {cpu:7.2f} {cores:5.2f} {peak:9,.0f}"
              + (" (each of 2 processes)" if jobs == 2 else ""))
    speedup = medians[1] / medians[2]
    print(f"--jobs 2 / --jobs 1: {speedup:.2f}× as fast (target ≥ {TARGET}×) -> "
          f"{'met' if speedup >= TARGET else 'NOT MET'}")
    rounds = [one[0] / two[0] for one, two in zip(found[1], found[2], strict=True)]
    print("per round (in brackets: two busy processes beside one just before it, the most --jobs 2 could gain): "
          + ", ".join(f"{r:.2f}× ({c:.2f}×)" for r, c in zip(rounds, ceilings, strict=True)))
    digests = {r[3] for runs in found.values() for r in runs}
    print(f"reports byte-identical in every run: {'yes' if len(digests) == 1 else 'NO'}")
    print("load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}"
          .format(*load_before, *load_after))
    return 0 if len(digests) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
