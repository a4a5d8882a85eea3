"""bench/lsp.py still runs end to end: two rounds, every row printed (no timing asserted)."""

from __future__ import annotations

from bench_env import run_bench


def test_bench_lsp_prints_every_row() -> None:
    proc = run_bench("lsp.py", "--rounds", "2", timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("workspace: 2,000 lines in 7 files"), proc.stdout
    for prefix in ("change in a 300-line file of the workspace", "change in one 2,000-line file",
                   "  pushlang lint FILE, in process", "  pushlang lint FILE, its own process",
                   "change in segments.push (7 files checked again)"):
        assert any(line.startswith(prefix) for line in lines), f"no row {prefix!r}:\n{proc.stdout}"
    assert all(line.rstrip().endswith(("met", "NOT MET")) for line in lines[2:4]), proc.stdout
