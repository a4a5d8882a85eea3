"""Memory of `pushlang serve` under many distinct users, beside a baseline measured in the same run.

Starts a real `pushlang serve` (its SQLite store in a temporary folder, one live campaign that
sends on "Signed Up") and posts N distinct users over HTTP with the API token, in batches: each user
a profile, a Web Push subscription (to ``https://push.example.test/…``: there is no `[vapid]`, so
nothing is delivered and each send is recorded ``failed`` / ``delivery_not_configured``) and a
"Signed Up" event, so that each makes a decision, an outbox entry and activity rows. It samples the
server's VmRSS and VmHWM from /proc/PID/status along the way.

Two runs, each its own server: ``[store] cache_users = C`` (the bound under test), and the baseline
with ``cache_users = 0`` (every user stays in memory, as before the bound). The budget of the
bounded run is C users at the cost of a cached user measured in the baseline (its RSS growth per
user); the verdict is whether the bounded server's peak RSS stays under that budget + 150 MiB.
With ``--no-baseline`` the cost of a user is the bounded run's own RSS growth per user while its
cache fills, and no unbounded server runs.

    python bench/serve_memory.py [--users 300000] [--cache-users 50000] [--batch 3000] [--no-baseline]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-serve-memory-token"
MIB = 1024 * 1024
MARGIN_MIB = 150
CAMPAIGN = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  when {
    limit 1 per campaign
  }
  message {
    title "Welcome, @{user.first_name | default: 'friend'}"
    body "Thanks for joining"
    url "https://shop.example.com/welcome"
  }
}
'''
COUNTRIES = ["IN", "US", "DE", "FR", "BR", "GB"]


@dataclass
class Run:
    label: str
    cache_users: int
    samples: dict[int, tuple[int, int]] = field(default_factory=dict)  # users posted → (VmRSS, VmHWM) bytes
    start_rss: int = 0
    seconds: float = 0.0
    end: tuple[int, int] = (0, 0)
    tables: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found["VmRSS"], found["VmHWM"]


def batch_body(first: int, count: int, ts: int) -> bytes:
    lines = []
    for n in range(first, first + count):
        user = f"user-{n:07d}"
        lines.append(json.dumps({"type": "profile", "user": user, "ts": ts, "props": {
            "first_name": f"Name{n}", "country": COUNTRIES[n % len(COUNTRIES)], "plan": "free", "visits": n % 17}}))
        lines.append(json.dumps({"type": "subscribe", "user": user, "ts": ts, "platform": "chrome",
                                 "endpoint": f"https://push.example.test/send/{user}",
                                 "keys": {"p256dh": "B" + "x" * 86, "auth": "y" * 22}}))
        lines.append(json.dumps({"user": user, "ts": ts, "name": "Signed Up", "props": {"source": "landing"}}))
    return "\n".join(lines).encode()


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"pushlang serve exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("pushlang serve did not start within 30 s")


def run(label: str, cache_users: int, users: int, batch: int, checkpoints: list[int]) -> Run:
    result = Run(label, cache_users)
    tty = sys.stderr.isatty()  # a progress line that rewrites itself, else one line per checkpoint
    with tempfile.TemporaryDirectory(prefix="pushlang-serve-memory-") as tmp:
        folder = Path(tmp)
        (folder / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
        (folder / "pushlang.toml").write_text(f"[store]\ncache_users = {cache_users}\n", encoding="utf-8")
        port = free_port()
        env = {**os.environ, "PUSHLANG_API_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", "welcome.push", "--port", str(port),
                                 "--store", "state.db"], cwd=folder, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, proc)
            result.start_rss = memory(proc.pid)[0]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
            started = time.perf_counter()
            posted = 0
            while posted < users:
                count = min(batch, users - posted)
                conn.request("POST", "/v1/records", body=batch_body(posted, count, int(time.time())), headers=headers)
                response = conn.getresponse()
                answer = json.loads(response.read())
                if response.status != 200 or answer.get("accepted") != 3 * count:
                    raise SystemExit(f"batch at user {posted}: HTTP {response.status} {answer}")
                posted += count
                rss, hwm = memory(proc.pid)
                if posted in checkpoints or posted == users:
                    result.samples[posted] = (rss, hwm)
                if tty or posted in result.samples:
                    rate = posted / (time.perf_counter() - started)
                    print(f"\r{label}: {posted:,}/{users:,} users, RSS {rss / MIB:,.0f} MiB, peak {hwm / MIB:,.0f} MiB,"
                          f" {rate:,.0f} users/s ", end="" if tty else "\n", file=sys.stderr, flush=True)
            result.seconds = time.perf_counter() - started
            if tty:
                print(file=sys.stderr)
            drain(folder / "state.db", users)  # the background deliveries finish, the outbox empties
            result.end = memory(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        db = sqlite3.connect(folder / "state.db")
        result.tables = {
            "users": db.execute("SELECT count(*) FROM users").fetchone()[0],
            "sends": db.execute("SELECT count(*) FROM sends").fetchone()[0],
            "activity send": db.execute("SELECT count(*) FROM activity WHERE outcome = 'send'").fetchone()[0],
            "activity failed": db.execute("SELECT count(*) FROM activity WHERE outcome = 'failed'").fetchone()[0],
            "outbox rows": db.execute("SELECT count(*) FROM meta WHERE key LIKE 'outbox:%'").fetchone()[0],
        }
        db.close()
    return result


def drain(path: Path, users: int, timeout: float = 120.0) -> None:
    """Wait until every send has its delivery record (here: failed, not configured)."""
    deadline = time.time() + timeout
    db = sqlite3.connect(path, timeout=10)
    try:
        while time.time() < deadline:
            done = db.execute("SELECT count(*) FROM activity WHERE outcome = 'failed'").fetchone()[0]
            if done >= users:
                return
            time.sleep(0.2)
    finally:
        db.close()


def mib(value: int) -> str:
    return f"{value / MIB:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=300_000, help="distinct users to post (default 300,000)")
    ap.add_argument("--cache-users", type=int, default=50_000,
                    help="[store] cache_users of the bounded run (default 50,000, serve's default)")
    ap.add_argument("--batch", type=int, default=3_000, help="users per POST (3 records each; default 3,000)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unbounded run")
    args = ap.parse_args()
    if args.users < 1 or args.cache_users < 1 or args.batch < 1:
        ap.error("--users, --cache-users and --batch must be 1 or more")

    step = max(args.batch, args.users // 10)
    checkpoints = sorted({min(args.users, args.batch * -(-n // args.batch))
                          for n in (10_000, args.cache_users, *range(step, args.users + 1, step))})
    bounded = run(f"cache_users = {args.cache_users:,}", args.cache_users, args.users, args.batch, checkpoints)
    baseline = None if args.no_baseline else run("cache_users = 0 (unbounded)", 0, args.users, args.batch, checkpoints)

    # The cost of a cached user: RSS growth per user of the unbounded server, or of the bounded
    # one while its cache fills.
    source = baseline or bounded
    last = max(n for n in source.samples if baseline is not None or n <= args.cache_users)
    first = min(source.samples)
    if last > first:
        per_user = (source.samples[last][0] - source.samples[first][0]) / (last - first)
    else:
        per_user = (source.samples[last][0] - source.start_rss) / last
    budget = per_user * args.cache_users

    runs = [bounded] + ([baseline] if baseline is not None else [])
    print(f"pushlang serve, {args.users:,} distinct users (profile + subscription + event each), "
          f"batches of {args.batch:,} users")
    print(f"{'users posted':>14}" + "".join(f"  {r.label + ' RSS / peak MiB':>40}" for r in runs))
    print(f"{'at start':>14}" + "".join(f"  {mib(r.start_rss):>40}" for r in runs))
    for n in sorted(bounded.samples):
        cells = []
        for r in runs:
            rss, hwm = r.samples.get(n, (0, 0))
            cells.append(f"  {mib(rss) + ' / ' + mib(hwm):>40}")
        print(f"{n:>14,}" + "".join(cells))
    print(f"{'drained':>14}" + "".join(f"  {mib(r.end[0]) + ' / ' + mib(r.end[1]):>40}" for r in runs))
    print(f"{'users/s':>14}" + "".join(f"  {args.users / r.seconds:>40,.0f}" for r in runs))
    for r in runs:
        print(f"{r.label}: " + ", ".join(f"{k} {v:,}" for k, v in r.tables.items()))
    print(f"a cached user costs {per_user / 1024:,.1f} KiB "
          f"({'measured on the unbounded server' if baseline else 'measured while the cache filled'}); "
          f"budget = {args.cache_users:,} users × that = {mib(int(budget))} MiB")
    peak = max(hwm for _, hwm in bounded.samples.values())
    peak = max(peak, bounded.end[1])
    limit = budget + MARGIN_MIB * MIB
    ok = peak < limit
    print(f"peak RSS of the bounded server {mib(peak)} MiB, RSS < budget + {MARGIN_MIB} MiB "
          f"({mib(int(limit))} MiB): {'OK' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
