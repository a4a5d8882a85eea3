"""The real `pushlang repl` in a pseudo-terminal: it starts, completes on Tab, answers, leaves on Ctrl-D."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect", reason="the terminal test drives the REPL with pexpect")


def test_repl_in_a_terminal(tmp_path: Path) -> None:
    exe = shutil.which("pushlang", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    example = str(Path(__file__).resolve().parent.parent / "examples" / "abandoned_cart.push")
    command, args = (exe, ["repl", example]) if exe else (sys.executable, ["-m", "pushlang", "repl", example])
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "NO_COLOR": "1"}
    child = pexpect.spawn(command, args, cwd=str(tmp_path), env=env, encoding="utf-8", timeout=20,
                          dimensions=(40, 120))
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
