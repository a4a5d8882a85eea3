"""Scale-out throughput end to end on Redis Streams, beside the single-process SQLite replay of the same records.

The records and campaigns of bench/replay.py (`generate`, `campaigns_text`); a redis-server of our own
on a free loopback port in a temporary directory, without persistence. Modes, each measured in this run:

- sqlite: `replay` with `SqliteStore` in a temporary file, in its own process (the baseline);
- N workers (1 and 2 by default): fresh Redis data (FLUSHALL), `ingest` of every record plus the end
  markers at the last record's instant (timed alone, in this process), then N processes of
  `python -m pushlang worker ... --idle-exit --clock records`, timed from their launch (import and
  compile included) until every partition stream is acknowledged (no lag, nothing pending);
- idle: FLUSHALL, one worker on the wall clock launched and timed until it holds every lease (start-up
  with P partitions × 100 campaigns), two more launched, and once the shares settled the CPU of each
  of the 3 (and of redis-server) over ``--idle-seconds`` with no input.

The issue-14 figures close the output: idle CPU per worker (target < 5% of a core), start-up (< 2 s),
and records per worker CPU-second with 1 and 2 workers (2 workers ≥ 90% of 1: each worker's CPU per
record, which two workers sharing cores with redis-server does not distort as wall time would).

End to end = ingest + processing. Printed: seconds, records/s and the ratio to the SQLite replay per
mode, the 2-worker / 1-worker ratio, CPU seconds of redis-server (INFO cpu), of the workers (/proc or
psutil) and of the ingest client per phase, and what bounds the rate on this machine's cores. Honesty
check: every worker run must decide exactly what the replay decides (same multiset of decisions), else
exit 1.

The worker ids are announced in the `workers` set before launch, as long-running workers would be, so
that the first one up does not take every partition and hand half back a beat later.

    python bench/scaleout.py [--records 200000] [--users 20000] [--workers 1,2] [--partitions 256]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLL = 0.1  # seconds between completion checks (one pipelined XINFO GROUPS per partition)


def _replay_bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_replay", ROOT / "bench" / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _canonical(out: dict[str, Any]) -> str:
    return json.dumps(out, sort_keys=True)


# ---- CPU time of a process ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a running process: psutil, else /proc/<pid>/stat, else None."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# ---- the SQLite replay (child process) ---------------------------------------------------------


def run_replay(work: Path) -> dict[str, Any]:
    from pushlang.compiler import compile_paths
    from pushlang.runtime.records import decode_record
    from pushlang.runtime.replay import replay
    from pushlang.runtime.sqlite_store import SqliteStore

    result = compile_paths([str(work / "bench.push")])
    assert result.plan is not None, result.diagnostics
    lines = (work / "records.jsonl").read_bytes().splitlines()
    until = max(decode_record(line).ts for line in lines)  # as the workers' end markers
    encode = msgspec.json.Encoder().encode
    outputs: list[bytes] = []
    store = SqliteStore(str(work / "replay.db"))
    cpu0 = time.process_time()
    start = time.perf_counter()
    with (work / "records.jsonl").open("rb") as f:
        replay(result.plan, f, store, lambda o: outputs.append(encode(o)), until=until)
    store.close()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    (work / "replay.out").write_bytes(b"\n".join(outputs))
    return {"seconds": elapsed, "cpu": cpu, "decisions": len(outputs)}


# ---- the workers -------------------------------------------------------------------------------


def remaining(client: Any, partitions: int) -> int | None:
    """Entries not yet acknowledged over every partition (None: not known yet)."""
    from pushlang.scaleout import keys

    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xinfo_groups(keys.stream_key(p))
        pipe.xlen(keys.stream_key(p))
    replies = pipe.execute(raise_on_error=False)
    total = 0
    for p in range(partitions):
        groups, length = replies[2 * p], replies[2 * p + 1]
        if isinstance(groups, Exception) or not groups:
            total += int(length) if not isinstance(length, Exception) else 0
            continue
        lag = groups[0].get("lag")
        if lag is None:
            return None
        total += int(groups[0]["pending"]) + int(lag)
    return total


def run_workers(client: Any, url: str, work: Path, lines: list[bytes], n: int, partitions: int,
                batch: int) -> dict[str, Any]:
    from pushlang.scaleout import ingest, keys

    client.flushall()
    # ingest, alone
    r0, c0, t0 = redis_cpu(client), time.process_time(), time.perf_counter()
    accepted, rejects = ingest.ingest(client, lines, partitions, end_at_last=True)
    ingest_s = time.perf_counter() - t0
    ingest_cpu, ingest_redis = time.process_time() - c0, redis_cpu(client) - r0
    assert accepted == len(lines) and not rejects, (accepted, rejects[:3])

    # processing: launch, then poll until every stream is acknowledged
    ids = [f"bench-{n}w-{i}" for i in range(n)]
    now_ms = int(client.time()[0]) * 1000
    client.zadd(keys.WORKERS_KEY, {wid: now_ms + 5000 for wid in ids})  # announced (module doc)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r1 = redis_cpu(client)
    t1 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "pushlang", "worker", str(work / "bench.push"),
                               "--redis", url, "--partitions", str(partitions), "--id", wid, "--batch", str(batch),
                               "--idle-exit", "1", "--clock", "records"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for wid in ids]
    leased_at: float | None = None
    at_lease: tuple[list[float | None], float] = ([None] * n, 0.0)
    left_at_lease: int | None = None
    logs: list[str] = []
    worker_cpu: list[float | None] = [None] * n
    try:
        while True:
            if leased_at is None:
                pipe = client.pipeline(transaction=False)
                for p in range(partitions):
                    pipe.exists(keys.lease_key(p))
                if sum(pipe.execute()) == partitions:
                    leased_at = time.perf_counter() - t1
                    at_lease = ([cpu_seconds(p.pid) for p in procs], redis_cpu(client))
                    left_at_lease = remaining(client, partitions)
            left = remaining(client, partitions)
            # CPU read while the processes are alive (they exit on their own after --idle-exit)
            worker_cpu = [cpu_seconds(p.pid) if p.poll() is None else worker_cpu[i] for i, p in enumerate(procs)]
            if left == 0:
                break
            dead = [p for p in procs if p.poll() is not None]
            if len(dead) == n:
                raise RuntimeError(f"every worker exited with {left} entries left: "
                                   + "".join(p.stderr.read() for p in procs if p.stderr))
            time.sleep(POLL)
        process_s = time.perf_counter() - t1
        process_redis = redis_cpu(client) - r1
    finally:
        for p in procs:
            try:
                _out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                _out, err = p.communicate()
            if p.returncode != 0:
                print(err, file=sys.stderr)
            logs.append(err)
    outputs = ingest.collect_outputs(client, partitions)
    missing_cpu = any(c is None for c in worker_cpu)
    return {"ingest": ingest_s, "process": process_s, "startup": leased_at or float("nan"),
            "ingest_cpu": ingest_cpu, "ingest_redis": ingest_redis, "process_redis": process_redis,
            "steady_records": left_at_lease if left_at_lease is not None else len(lines),
            "expired": sum(log.count("expired") + log.count("lost the lease") for log in logs),
            "summary": [log.strip().splitlines()[-1] for log in logs if log.strip()],
            "steady_redis": process_redis - (at_lease[1] - r1 if leased_at is not None else process_redis),
            "steady_worker_cpu": None if missing_cpu or None in at_lease[0] else
            [float(c) - float(c0) for c, c0 in zip(worker_cpu, at_lease[0], strict=True)],  # type: ignore[arg-type]
            "worker_cpu": None if missing_cpu else [float(c) for c in worker_cpu if c is not None],
            "outputs": Counter(_canonical(o) for o in outputs), "decisions": len(outputs)}


def run_idle(client: Any, url: str, work: Path, n: int, partitions: int, seconds: float) -> dict[str, Any]:
    """``n`` workers on the wall clock over an empty Redis: the time until one of them took every lease
    (started alone: import, compile, ``partitions`` engines), then the CPU each uses over ``seconds``
    once all have their share, and redis-server's."""
    from pushlang.scaleout import keys

    client.flushall()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def launch(i: int) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "pushlang", "worker", str(work / "bench.push"), "--redis", url,
                                 "--partitions", str(partitions), "--id", f"idle-{i}", "--clock", "wall"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def leased() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.get(keys.lease_key(p))
        return list(pipe.execute())

    procs = [launch(0)]
    started = time.perf_counter()
    try:
        while not all(leased()):
            if procs[0].poll() is not None:
                raise RuntimeError(f"the worker exited: {procs[0].stderr.read() if procs[0].stderr else ''}")
            time.sleep(0.01)
        startup = time.perf_counter() - started
        procs += [launch(i) for i in range(1, n)]
        deadline = time.monotonic() + 60
        while len({h for h in leased() if h is not None}) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # the shares settle (leases released and taken)
        c0, r0, t0 = [cpu_seconds(p.pid) for p in procs], redis_cpu(client), time.perf_counter()
        time.sleep(seconds)
        c1, r1, wall = [cpu_seconds(p.pid) for p in procs], redis_cpu(client), time.perf_counter() - t0
    finally:
        for p in procs:
            p.terminate()
            p.communicate(timeout=30)
    share = [(b - a) / wall if a is not None and b is not None else float("nan") for a, b in zip(c0, c1, strict=True)]
    return {"startup": startup, "worker_share": share, "redis_share": (r1 - r0) / wall, "seconds": wall}


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    ap.add_argument("--partitions", type=int, default=256)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="how long the idle CPU is measured")
    ap.add_argument("--replay-child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.replay_child:
        print(json.dumps(run_replay(Path(args.replay_child))))
        return 0

    sys.path.insert(0, str(ROOT / "tests"))
    from redis_server import redis_server

    bench = _replay_bench()
    counts = [int(x) for x in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"generating {args.records:,} records over {args.users:,} users ...", file=sys.stderr)
        bench.generate(work / "records.jsonl", args.records, args.users)
        (work / "bench.push").write_text(bench.campaigns_text(), encoding="utf-8")
        lines = (work / "records.jsonl").read_bytes().splitlines()

        print("running the SQLite replay ...", file=sys.stderr)
        child = subprocess.run([sys.executable, __file__, "--replay-child", tmp], capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return 1
        base = json.loads(child.stdout)
        expected = Counter(_canonical(msgspec.json.decode(line))
                           for line in (work / "replay.out").read_bytes().splitlines() if line)

        runs: dict[int, dict[str, Any]] = {}
        with redis_server(work / "redis") as client:
            kw = client.connection_pool.connection_kwargs
            url = f"redis://{kw['host']}:{kw['port']}/0"
            version = client.info("server")["redis_version"]
            for n in counts:
                print(f"running {n} worker(s) ...", file=sys.stderr)
                runs[n] = run_workers(client, url, work, lines, n, args.partitions, args.batch)
            print("measuring 3 idle workers ...", file=sys.stderr)
            idle = run_idle(client, url, work, 3, args.partitions, args.idle_seconds)

    n_rec = args.records
    cores = os.cpu_count() or 1
    print(f"{n_rec:,} records, {args.users:,} users, 100 campaigns, {args.partitions} partitions, batch {args.batch}; "
          f"redis-server {version} on loopback, no persistence; {cores} CPU cores")
    print(f"{'mode':40} {'seconds':>8} {'records/s':>10} {'vs SQLite':>9} {'decisions':>10}")

    def row(label: str, seconds: float, decisions: int | str = "") -> None:
        dec = f"{decisions:,}" if isinstance(decisions, int) else decisions
        print(f"{label:40} {seconds:8.2f} {n_rec / seconds:10,.0f} {base['seconds'] / seconds:8.2f}x {dec:>10}")

    row("replay, SQLite store (1 process)", base["seconds"], base["decisions"])
    for n, r in runs.items():
        w = "worker" if n == 1 else "workers"
        row(f"{n} {w}: end to end (ingest + process)", r["ingest"] + r["process"], r["decisions"])
        row("  ingest (1 client, pipelined XADD)", r["ingest"])
        row("  process (launch -> all acknowledged)", r["process"])
        print(f"    of which startup (import, compile, leases): {r['startup']:.2f}s")
    if 1 in runs and 2 in runs:
        e2e = (runs[1]["ingest"] + runs[1]["process"]) / (runs[2]["ingest"] + runs[2]["process"])
        proc = runs[1]["process"] / runs[2]["process"]
        print(f"2 workers / 1 worker: {e2e:.2f}x end to end, {proc:.2f}x processing alone")

    print("\nCPU seconds per phase (wall | redis-server | workers or ingest client):")
    print(f"  replay SQLite: wall {base['seconds']:.2f} | process CPU {base['cpu']:.2f}")
    for n, r in runs.items():
        wc = r["worker_cpu"]
        wtext = " + ".join(f"{c:.2f}" for c in wc) if wc else "n/a"
        print(f"  {n}w ingest:  wall {r['ingest']:.2f} | redis {r['ingest_redis']:.2f} | client {r['ingest_cpu']:.2f}")
        print(f"  {n}w process: wall {r['process']:.2f} | redis {r['process_redis']:.2f} | workers {wtext}")

    # what bounds it: CPU per record of the workers and of redis while processing, against the cores
    top = max(runs)
    r = runs[top]
    wc = r["steady_worker_cpu"]
    if wc:
        # after startup (every lease taken): the steady state of the processing phase
        wall, redis_s, workers_s = r["process"] - r["startup"], r["steady_redis"], sum(wc)
        busy = (redis_s + workers_s) / wall
        steady = max(1, r["steady_records"])
        per_w, per_r = workers_s / steady * 1e6, redis_s / steady * 1e6
        cpu_ceiling = cores / ((workers_s + redis_s) / steady)
        redis_ceiling = steady / redis_s if redis_s else float("inf")
        worker_util = workers_s / (top * wall)
        print(f"\nwhat bounds it on {cores} cores ({top} workers, processing after the {r['startup']:.1f}s startup, "
              f"{wall:.1f}s, {steady:,} records left, {steady / wall:,.0f} records/s): workers + redis used {busy:.2f} of "
              f"{cores} cores (each worker {worker_util:.0%} busy, redis-server {redis_s / wall:.0%}); per record "
              f"{per_w:.0f} µs in the workers vs {per_r:.0f} µs in redis -> ", end="")
        if busy >= 0.85 * cores:
            print(f"CPU-bound: the {cores} cores are full, shared by the workers and redis; at these costs "
                  f"{cores} cores cap processing at ~{cpu_ceiling:,.0f} records/s "
                  f"(redis alone, single-threaded, would cap it at ~{redis_ceiling:,.0f}); "
                  f"{'the workers (Python engine) take most of it' if per_w > per_r else 'redis takes most of it'}.")
        elif redis_s / wall >= 0.85:
            print(f"redis-bound: its one thread is saturated (cap ~{redis_ceiling:,.0f} records/s).")
        else:
            print(f"not CPU-bound: the cores are not full; round trips / waiting (batch {args.batch}) limit it.")
        print(f"startup: {r['startup']:.1f}s of {r['process']:.1f}s processing is launching, compiling and taking "
              f"{args.partitions} leases (one engine + state per partition); leases expired or lost during "
              f"the run: {r['expired']}.")
        for line in r["summary"]:
            print(f"  {line}")
        ingest_share = r["ingest"] / (r["ingest"] + r["process"])
        print(f"ingest (one client) is {ingest_share:.0%} of the {top}-worker end-to-end time: "
              f"client {r['ingest_cpu'] / n_rec * 1e6:.0f} µs/record, redis {r['ingest_redis'] / n_rec * 1e6:.0f} µs/record.")
    else:
        print("\nwhat bounds it: workers' CPU time unavailable (no psutil, no /proc)")

    print(f"\nIssue 14 figures ({args.partitions} partitions, 100 campaigns):")
    print(f"{'measure':62} {'value':>12} {'target':>12}")
    shares = ", ".join(f"{x:.1%}" for x in idle["worker_share"])
    print(f"{'idle CPU of each of 3 wall-clock workers (' + format(idle['seconds'], '.0f') + ' s)':62} "
          f"{max(idle['worker_share']):11.1%} {'< 5%':>12}   ({shares}; redis-server {idle['redis_share']:.1%})")
    print(f"{'start-up: one worker launched until every lease is taken':62} {idle['startup']:11.2f}s {'< 2 s':>12}")
    per_cpu: dict[int, float] = {}
    for n, r in runs.items():
        wc = r["steady_worker_cpu"]
        if wc:
            per_cpu[n] = max(1, r["steady_records"]) / sum(wc)
            print(f"{f'records per worker CPU-second, {n} worker(s) (after start-up)':62} {per_cpu[n]:12,.0f}")
    if 1 in per_cpu and 2 in per_cpu:
        print(f"{'  2 workers / 1 worker':62} {per_cpu[2] / per_cpu[1]:11.0%} {'>= 90%':>12}")

    ok = True
    for n, r in runs.items():
        same = r["outputs"] == expected
        print(f"check {n} worker(s): {r['decisions']:,} decisions vs replay {base['decisions']:,}, "
              f"same set: {'yes' if same else 'NO'}")
        ok = ok and same and r["decisions"] == base["decisions"]
    if not ok:
        print("FAILED: a worker run did not decide what the replay decides", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
