"""bench/diff.py still runs end to end: a tiny run of both settings, both rows, the ratio against the
target and identical reports printed (no timing figure asserted)."""

from __future__ import annotations

import pytest
from bench_env import run_bench

pytestmark = pytest.mark.slow  # a benchmark smoke run (subprocesses)


def test_bench_diff_rows_and_identical_reports() -> None:
    proc = run_bench("diff.py", "--records", "3000", "--users", "300", "--rounds", "1", timeout=180)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("pushlang diff, 3,000 records, 300 users, 100 campaigns"), proc.stdout
    assert "1 interleaved rounds each" in lines[0]
    assert lines[1].split() == ["median", "s", "min", "s", "max", "s", "spread", "records/s", "CPU", "s", "cores",
                                "peak", "MiB"]
    assert lines[2].startswith("--jobs 1 ") and lines[3].startswith("--jobs 2 "), proc.stdout
    assert lines[4].startswith("--jobs 2 / --jobs 1: ") and "(target ≥ 1.7×) -> " in lines[4], proc.stdout
    assert lines[4].endswith(("-> met", "-> NOT MET")), proc.stdout
    assert lines[5].startswith("per round (in brackets: two busy processes beside one just before it"), proc.stdout
    assert lines[5].count("×") == 2, proc.stdout  # one round: its ratio and the machine's
    assert lines[6] == "reports byte-identical in every run: yes", proc.stdout
    assert lines[7].startswith("load average (1, 5, 15 min) before: "), proc.stdout
    assert "round 1/1: --jobs 1 ..." in proc.stderr and "round 1/1: --jobs 2 ..." in proc.stderr
