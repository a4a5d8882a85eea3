"""The README's language tour compiles, and CI runs the README's own test command."""

from __future__ import annotations

import re
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
