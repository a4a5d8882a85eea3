"""How a benchmark's smoke test runs its bench/ script: in a process of its own, from the repository
(with it on the path), its output captured; a failure shows what it printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def require_compiler() -> None:
    """A C compiler for the compiled build (bench/compiled_tree.py), or skip saying so (fail in CI)."""
    from redis_server import missing

    if shutil.which("cc") is None:
        missing("no C compiler for the compiled build (apt-get install gcc; .ci/run installs it)")


def run_bench(script: str, *args: str, timeout: float, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """``python bench/<script> ARGS…``, finished; its exit status must be one of ``codes``."""
    proc = subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode in codes, proc.stdout + proc.stderr
    return proc
