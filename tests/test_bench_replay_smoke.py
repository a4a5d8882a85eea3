"""bench/replay.py still runs end to end: a tiny run of two rounds, every row and target printed (no timing asserted)."""

from __future__ import annotations

import pytest
from bench_env import run_bench

pytestmark = pytest.mark.slow  # a benchmark smoke run (subprocesses)


def test_bench_replay_prints_every_row_and_target() -> None:
    proc = run_bench("replay.py", "--records", "3000", "--users", "300", "--rounds", "2", timeout=300)
    lines = proc.stdout.splitlines()
    for prefix in ("floor: msgspec decode", "reference: floor + conditions", "replay, in-memory store",
                   "replay, SQLite store"):
        row = next((line for line in lines if line.startswith(prefix)), None)
        assert row is not None, f"no row {prefix!r}:\n{proc.stdout}"
    replays = [line.split()[-1] for line in lines if line.startswith("replay, ")]
    assert len(set(replays)) == 1, proc.stdout  # both stores make the same decisions
    verdicts = [line for line in lines if line.endswith(("-> met", "-> NOT MET"))]
    assert [v.split(":")[0] for v in verdicts] == ["in-memory replay / reference", "SQLite replay / in-memory replay",
                                                   "peak memory of a replay"], proc.stdout
