"""A real editor: Neovim's built-in LSP client (started headless) opens the README's broken example and gets
its diagnostic, and a hover of it, from `pushlang lsp` (tests/editors/neovim.lua)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "editors" / "neovim.lua"


def _nvim() -> str:
    found = shutil.which("nvim")
    if found is None:
        if os.environ.get("CI") == "true":  # .ci/run installs it: missing there is a failure
            pytest.fail("nvim is not on PATH in CI (.ci/run installs Debian's neovim)")
        pytest.skip("nvim is not on PATH (apt-get install neovim; .ci/run installs it)")
    return found


def test_neovim_gets_the_diagnostic_of_a_broken_file(tmp_path: Path) -> None:
    nvim = _nvim()
    shutil.copy(ROOT / "docs" / "broken.push", tmp_path / "broken.push")
    out = tmp_path / "report.json"
    env = {**os.environ, "PUSHLANG_PYTHON": sys.executable, "PUSHLANG_FILE": str(tmp_path / "broken.push"),
           "PUSHLANG_OUT": str(out), "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    run = subprocess.run([nvim, "--headless", "-u", "NONE", "-c", f"luafile {SCRIPT}"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=90)
    assert out.is_file(), (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report.get("error") is None, report  # (a Lua nil leaves the key out)
    # docs/broken.push:4:13: error[PL200]: unknown segment `big_spender` (LSP lines and columns count from 0)
    assert [(d["code"], d["line"], d["character"], d["severity"]) for d in report["diagnostics"]] == [("PL200", 3, 12, 1)]
    assert "unknown segment `big_spender`" in report["diagnostics"][0]["message"]
    assert "PL200" in report["hover"] and "unknown-segment" in report["hover"]
