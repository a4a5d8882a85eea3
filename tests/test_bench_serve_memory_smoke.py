"""bench/serve_memory.py still runs end to end: a tiny run of both servers (no memory figure asserted)."""

from __future__ import annotations

from bench_env import run_bench


def test_bench_serve_memory_runs_both_servers() -> None:
    proc = run_bench("serve_memory.py", "--users", "2000", "--cache-users", "500", "--batch", "500", timeout=300,
                     codes=(0, 1))  # 1: the verdict is not met
    lines = proc.stdout.splitlines()
    assert any(line.split()[:1] == ["2,000"] and line.count("/") == 2 for line in lines), proc.stdout
    for label in ("cache_users = 500", "cache_users = 0 (unbounded)"):
        # every user decided, its send recorded and its delivery too; no outbox row left behind
        assert (f"{label}: users 2,000, sends 2,000, activity send 2,000, activity failed 2,000, outbox rows 0"
                in lines), proc.stdout
    assert any(line.startswith("peak RSS of the bounded server") and "RSS < budget + 150 MiB" in line
               for line in lines), proc.stdout
    assert "users/s" in proc.stderr  # the progress lines
