"""The compiled build (DEVELOPERS.md): the runtime's hot path compiled with mypyc must behave exactly as
the pure-Python one. Slow: it builds the wheel (about a minute), then runs the quick suite and the
Redis scenario suites against the compiled modules and replays the Quick start's log both ways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_env import require_compiler, run_bench
from redis_server import require_redis

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with the compiled modules beside their sources (bench/compiled_tree.py)."""
    require_compiler()
    tree = tmp_path_factory.mktemp("compiled") / "tree"
    modules = run_bench("compiled_tree.py", str(tree), timeout=900).stdout.split()
    compiled = {Path(name).name.split(".")[0] for name in modules if name.startswith("pushlang/")}
    assert {"engine", "pipeline", "store", "sqlite_store", "replay"} <= compiled, modules
    return tree


def run(tree: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=tree, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONPATH": str(tree), **env})


def passed(suite: subprocess.CompletedProcess[str]) -> int:
    """How many tests a nested run passed; it must have failed, errored and skipped none."""
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-2000:]
    summary = suite.stdout.strip().splitlines()[-1]
    assert not any(word in summary for word in ("failed", "error", "skipped")), summary
    return int(summary.split(" passed")[0].split()[-1])


def test_the_quick_suite_passes_on_the_compiled_runtime(compiled_tree: Path) -> None:
    version = run(compiled_tree, "-m", "pushlang", "--version")
    assert "(compiled runtime)" in version.stdout, version.stdout + version.stderr
    suite = run(compiled_tree, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                PUSHLANG_EXPECT_COMPILED="1")
    assert passed(suite) > 1500


def test_the_redis_store_and_its_workers_run_the_scenarios_on_the_compiled_runtime(compiled_tree: Path) -> None:
    """The Redis store extends the compiled stores and reads users back from JSON: its scenario suite
    and the workers' (slow tests, so not in the quick suite) on the compiled runtime."""
    require_redis()  # the nested run would skip its tests without it
    suite = run(compiled_tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_redis_store.py",
                "tests/test_scenarios_worker.py", PUSHLANG_EXPECT_COMPILED="1")
    assert passed(suite) > 150


def test_the_compiled_runtime_replays_the_quick_start_byte_for_byte(compiled_tree: Path, tmp_path: Path) -> None:
    outputs = []
    for name, tree in (("pure", ROOT), ("compiled", compiled_tree)):
        out = tmp_path / f"{name}.jsonl"
        replay = run(tree, "-m", "pushlang", "replay", str(ROOT / "examples"), "--events",
                     str(ROOT / "examples" / "events.jsonl.gz"), "--store", f"sqlite:///{tmp_path / name}.db",
                     "--out", str(out))
        assert replay.returncode == 0, replay.stderr[-3000:]
        outputs.append(out.read_bytes())
    pure, compiled = outputs
    assert pure.count(b"\n") > 60_000
    assert compiled == pure
