"""Packaging: the wheel carries the grammar and the standard library, and its console script works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (built,) = out.glob("pushlang-*.whl")
    return built


def test_wheel_contains_grammar_and_stdlib(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pushlang/_data/grammar/pushlang.lark" in names
    assert {"pushlang/_data/stdlib/segments.push", "pushlang/_data/stdlib/templates.push",
            "pushlang/_data/stdlib/icons.toml"} <= names
    assert "pushlang/cli.py" in names


@pytest.fixture(scope="module")
def bindir(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (dependencies from the package index)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    install = subprocess.run([str(scripts / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    return scripts


def test_installed_wheel_lints_a_copy_of_the_examples(bindir: Path, tmp_path: Path) -> None:
    shop = tmp_path / "elsewhere" / "shop"
    shutil.copytree(ROOT / "examples", shop)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    lint = subprocess.run([str(bindir / "pushlang"), "lint", "shop"], cwd=shop.parent,
                          capture_output=True, text=True, env=env)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "no problems" in lint.stdout
    # The grammar and stdlib come from the installed package, not from this checkout.
    where = subprocess.run([str(bindir / "python"), "-c",
                            "import pushlang.resources as r; print(r.grammar_file()); print(r.stdlib_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, check=True)
    assert str(ROOT) not in where.stdout
    assert "_data" in where.stdout
    bad = shop / "broken.push"
    bad.write_text('campaign broken {\n  on "Signed Up"\n  who {\n    segment nobody\n  }\n}\n', encoding="utf-8")
    failing = subprocess.run([str(bindir / "pushlang"), "lint", "shop"], cwd=shop.parent,
                             capture_output=True, text=True, env=env)
    assert failing.returncode == 1
    assert "shop/broken.push:4:13: error[PL200]" in failing.stdout
    module = subprocess.run([str(bindir / "python"), "-m", "pushlang", "explain", "PL200"],
                            capture_output=True, text=True, env=env)
    assert module.returncode == 0 and "unknown-segment" in module.stdout


def test_installed_wheel_lints_examples_beside_a_stdlib_copy(bindir: Path, tmp_path: Path) -> None:
    """The README's first command: the checkout's stdlib/ is the installed std module, not a duplicate."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    shutil.copytree(ROOT / "stdlib", tmp_path / "stdlib")
    lint = subprocess.run([str(bindir / "pushlang"), "lint", "examples/", "stdlib/"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "24 files checked: no problems." in lint.stdout
