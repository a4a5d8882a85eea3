"""The real `pushlang repl` in a pseudo-terminal: it starts, completes on Tab, answers, leaves on Ctrl-D."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

pexpect = pytest.importorskip("pexpect", reason="the terminal test drives the REPL with pexpect")


def repl_in_a_terminal(home: Path, cwd: Path, *paths: str) -> Any:
    """`pushlang repl PATHS` in a pseudo-terminal (the installed command, else `python -m pushlang`)."""
    exe = shutil.which("pushlang", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    command, args = (exe, ["repl", *paths]) if exe else (sys.executable, ["-m", "pushlang", "repl", *paths])
    env = {**os.environ, "HOME": str(home), "TERM": "xterm", "NO_COLOR": "1"}
    return pexpect.spawn(command, args, cwd=str(cwd), env=env, encoding="utf-8", timeout=30, dimensions=(50, 200))


def test_repl_in_a_terminal(tmp_path: Path) -> None:
    example = str(Path(__file__).resolve().parent.parent / "examples" / "abandoned_cart.push")
    child = repl_in_a_terminal(tmp_path, tmp_path, example)
    try:
        child.expect("pushlang REPL")
        child.expect("push>")
        child.send("camp\t")  # Tab completes the keyword
        child.expect("aign")
        child.send("\x15")  # Ctrl-U: clear the line
        child.send(":why cart_ab\t")  # after `:why`, a campaign id (not the segment cart_abandoners)
        child.expect("andoned_10m")
        child.sendline("")
        child.expect("error: which user")  # the whole id was completed: the command found the campaign
        child.sendline(":help")
        child.expect(":load PATH")
        child.expect("push>")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_the_readme_transcript_is_what_the_repl_says(tmp_path: Path) -> None:
    """The README's REPL session, typed into the real REPL in a terminal: every line it shows comes out."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme.split("### The REPL\n\n```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0] == "$ pushlang repl examples/"
    steps: list[tuple[str, list[str]]] = []
    for line in block[1:]:
        if line.startswith("push> "):
            steps.append((line[len("push> "):], []))
        else:
            steps[-1][1].append(line)
    assert len(steps) >= 5 and all(expected for _, expected in steps)
    child = repl_in_a_terminal(tmp_path, root, "examples/")
    try:
        child.expect("push>")
        for typed, expected in steps:
            child.sendline(typed)
            for line in expected:
                child.expect_exact(line.strip())
            child.expect("push>")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
