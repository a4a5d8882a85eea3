"""bench/dispatch.py still runs end to end: a tiny run, every mode's line printed (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_dispatch_runs_every_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/dispatch.py", "--subscriptions", "50", "--sync-sample", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for prefix in ("(a) pywebpush.webpush() loop", "(b) pywebpush.webpush_async() loop", "(c) crypto floor",
                   "(d) pushlang WebPushChannel"):
        assert any(line.startswith(prefix) for line in lines), f"no line for {prefix!r}:\n{proc.stdout}"
    assert "(a) was measured on a sample of 10 of the 50 subscriptions" in proc.stdout
    assert any(line.startswith("(d) / (c) crypto floor:") for line in lines), proc.stdout
    assert any(line.startswith("(d) / (b) webpush_async loop:") for line in lines), proc.stdout
    # the service accepted and decrypted every push of (d), in every round
    check = [line for line in lines if line.startswith("service check (d):")]
    assert check and check[0].endswith("-> OK"), proc.stdout
