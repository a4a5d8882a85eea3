"""bench/best_time.py still runs end to end: a tiny run of both variants, both sides' rows printed, the
scores identical and no user loaded by the SQLite scoring (no timing or memory figure asserted)."""

from __future__ import annotations

import pytest
from bench_env import run_bench

pytestmark = pytest.mark.slow  # a benchmark smoke run (subprocesses)


def test_bench_best_time_scores_identical_on_both_stores() -> None:
    proc = run_bench("best_time.py", "--users", "200", "--events", "8", "--rounds", "1", timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("200 users × 8 events (1,600), 10 zones"), proc.stdout
    for label in ("SQLite (SQL over the index)", "in memory (Python)"):
        assert sum(line.startswith(label) for line in lines) == 4, proc.stdout  # time and memory, both variants
    assert [line for line in lines if line.startswith("scores:")] == [
        "scores: every event (no `by`); 1 interleaved rounds each, each in a fresh process",
        'scores: `by "App Opened", "Viewed Product"`; 1 interleaved rounds each, each in a fresh process',
    ], proc.stdout
    assert sum(line.startswith("SQLite / in memory, time:") for line in lines) == 2, proc.stdout
    assert lines.count("SQLite store after the scoring: 0 users loaded into memory") == 2, proc.stdout
    same = [line for line in lines if line.startswith("identical scores:")]
    assert len(same) == 2 and all(line.startswith("identical scores: yes (200 users:") for line in same), proc.stdout
    assert "round 1/1: SQLite (SQL over the index) ..." in proc.stderr  # the progress lines
