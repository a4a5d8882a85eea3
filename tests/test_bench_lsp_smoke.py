"""bench/lsp.py still runs end to end: two rounds, every row printed (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_lsp_prints_every_row() -> None:
    proc = subprocess.run([sys.executable, "bench/lsp.py", "--rounds", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("workspace: 2,000 lines in 7 files"), proc.stdout
    for prefix in ("change in a 300-line file of the workspace", "change in one 2,000-line file",
                   "  pushlang lint FILE, in process", "  pushlang lint FILE, its own process",
                   "change in segments.push (7 files checked again)"):
        assert any(line.startswith(prefix) for line in lines), f"no row {prefix!r}:\n{proc.stdout}"
    assert all(line.rstrip().endswith(("met", "NOT MET")) for line in lines[2:4]), proc.stdout
