"""bench/replay.py still runs end to end: a tiny run of two rounds with the compiled copy beside this tree,
every row and target printed (no timing asserted), the same decisions from every replay, and none from
the bound (the copy whose engine skips every decision)."""

from __future__ import annotations

import pytest
from bench_env import require_compiler, run_bench

pytestmark = pytest.mark.slow  # a benchmark smoke run (subprocesses, and two compiled builds: about two minutes)


def test_bench_replay_prints_every_row_and_target() -> None:
    require_compiler()
    proc = run_bench("replay.py", "--records", "3000", "--users", "300", "--rounds", "2", "--compiled", timeout=900)
    lines = proc.stdout.splitlines()
    for tree in ("", "compiled: "):
        for prefix in ("floor: msgspec decode", "reference: floor + conditions", "replay, in-memory store",
                       "replay, SQLite store", "bound: in-memory replay, no decision"):
            if tree and prefix.startswith("floor"):
                continue  # the floor is msgspec's alone: measured once
            row = next((line for line in lines if line.startswith(tree + prefix)), None)
            assert row is not None, f"no row {tree + prefix!r}:\n{proc.stdout}"
    replays = [line.split()[-1] for line in lines if line.startswith(("replay, ", "compiled: replay, "))]
    assert len(replays) == 4 and len(set(replays)) == 1, proc.stdout  # both stores, both runtimes: the same decisions
    verdicts = [line for line in lines if line.endswith(("-> met", "-> NOT MET"))]
    assert [v.split(":", 1)[1].split(":")[0].strip() if v.startswith("compiled: ") else v.split(":")[0]
            for v in verdicts] == ["in-memory replay / reference", "SQLite replay / in-memory replay",
                                   "peak memory of a replay"] * 2, proc.stdout
    assert sum(v.startswith("compiled: ") for v in verdicts) == 3, proc.stdout
    bounds = [line.split() for line in lines if line.startswith(("bound: ", "compiled: bound: "))]
    assert len(bounds) == 2 and all(row[-1] == "0" for row in bounds), proc.stdout  # no decision, both runtimes
    shares = [line for line in lines if line.strip().startswith("the bound, no decision at all / reference: ")]
    assert len(shares) == 2 and all("%" in line and " µs each" in line for line in shares), proc.stdout
