"""The README's language tour compiles, and CI runs the README's own test command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from pushlang.compiler import compile_text

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_push_blocks_in_readme_compile() -> None:
    blocks = re.findall(r"```push\n(.*?)```", README, re.DOTALL)
    assert blocks
    for block in blocks:
        result = compile_text(str(ROOT / "README.push"), block)
        assert not result.diagnostics, result.diagnostics
        assert result.plan is not None


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    section = README.split("## Quick start", 1)[1]
    commands = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert commands is not None
    lines = commands.group(1).strip().splitlines()
    assert len(lines) == 2
    assert "pytest" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in ci
    assert "README.md" in ci and "sed -n 2p" in ci


def _pushlang(command: str) -> list[str]:
    """A README command line as argv for this interpreter (`.venv/bin/pushlang …` → `python -m pushlang …`)."""
    words = shlex.split(command)
    assert words[0].endswith("pushlang"), command
    return [sys.executable, "-m", "pushlang", *words[1:]]


def test_the_readme_commands_run_on_a_fresh_copy(tmp_path: Path) -> None:
    """Every command the README asks a newcomer to run (not the test command, not the servers) works
    on a copy of the repository's files, and the output it shows is what comes out."""
    for name in ("examples", "stdlib", "docs"):
        shutil.copytree(ROOT / name, tmp_path / name)
    quick = re.search(r"```sh\n(.*?)```", README.split("## Quick start", 1)[1], re.DOTALL)
    assert quick is not None
    first = quick.group(1).strip().splitlines()[0]
    replay = first.split("&& ")[-1]  # the install is this environment's; the replay is the main job
    then = README.split("Then try", 1)[1].split("\n\n", 1)[0].replace("\n", " ")
    tries = re.findall(r"`(\.venv/bin/pushlang [^`]+)`", then)
    assert len(tries) == 3, tries
    for command in [replay, *tries]:
        run = subprocess.run(_pushlang(command), cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (command, run.stderr[-500:])
        assert "Traceback" not in run.stderr
    assert (tmp_path / "decisions.jsonl").stat().st_size > 0 and (tmp_path / "shop.db").is_file()
    # the lint example: the command and its output, exactly
    shown = re.search(r"```text\n\$ (pushlang lint [^\n]+)\n(.*?)```", README, re.DOTALL)
    assert shown is not None
    run = subprocess.run(_pushlang(shown.group(1)), cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NO_COLOR": "1"})
    assert run.returncode == 1 and run.stdout.strip() == shown.group(2).strip()
    explain = re.search(r"`(pushlang explain PL\d+)`", README)
    assert explain is not None
    run = subprocess.run(_pushlang(explain.group(1)), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "unknown-segment" in run.stdout
