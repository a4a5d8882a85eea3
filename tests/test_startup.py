"""Start-up: building the command line imports no network, terminal or delivery library.

Which modules a process imports, not how long it takes (bench/startup.py measures the time).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pushlang import __version__
from pushlang.commands import diff as diff_command
from pushlang.commands import lint as lint_command
from pushlang.diagnostics import render
from pushlang.runtime import diff

REPO = Path(__file__).resolve().parent.parent
# Imported only where a command needs them: the service and delivery (aiohttp, pywebpush, py_vapid,
# cryptography, aioapns, requests), the REPL and progress bars (prompt_toolkit, pygments), Redis.
NETWORK_AND_TERMINAL = {"aiohttp", "prompt_toolkit", "pywebpush", "py_vapid", "cryptography", "aioapns",
                        "requests", "redis", "pygments"}
# What the parser of every command needs none of either: the compiler, the runtime and their libraries.
COMPILER_AND_RUNTIME = {"lark", "msgspec", "pendulum"}


def imported(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules (dotted names) `python -X importtime -m pushlang ARGS` imports, and the process."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "pushlang", *args], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", run.stderr, flags=re.MULTILINE))
    assert "pushlang.cli" in names and "argparse" in names, run.stderr[-2000:]  # the report was read
    return names, run


def tops(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_version_imports_no_library_a_command_needs() -> None:
    names, run = imported("--version")
    assert run.returncode == 0
    assert run.stdout.startswith(f"pushlang {__version__} (")  # and the runtime's kind: tests/test_cli.py
    assert "pushlang.commands.send_test" in names  # every command was registered on the parser
    assert not tops(names) & (NETWORK_AND_TERMINAL | COMPILER_AND_RUNTIME)
    assert not {n for n in names if n.startswith(("pushlang.runtime", "pushlang.dispatch", "pushlang.service",
                                                   "pushlang.compiler", "pushlang.syntax", "pushlang.repl"))}


def test_help_imports_no_library_a_command_needs() -> None:
    names, run = imported("--help")
    assert run.returncode == 0 and "send-test" in run.stdout
    assert not tops(names) & (NETWORK_AND_TERMINAL | COMPILER_AND_RUNTIME)


def test_lint_imports_the_compiler_but_no_network_or_terminal_library() -> None:
    names, run = imported("lint", "examples/")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "files checked: no problems" in run.stdout
    assert {"lark", "msgspec"} <= tops(names)
    assert not tops(names) & NETWORK_AND_TERMINAL


def test_the_parser_s_copies_of_library_constants_agree() -> None:
    """Two constants are written out in the commands so that building the parser imports no renderer
    and no runtime; they stay the ones of the modules that own them."""
    assert lint_command.FORMATS == render.FORMATS
    assert diff_command.DEFAULT_USERS == diff.DEFAULT_USERS
