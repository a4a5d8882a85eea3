"""Where the grammar and the standard library are: inside the installed package, or in the repo."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _find(name: str) -> Path:
    for base in (_PACKAGE / "_data", _REPO):
        candidate = base / name
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"pushlang's {name}/ is missing from the installation")


def grammar_file() -> Path:
    return _find("grammar") / "pushlang.lark"


def stdlib_dir() -> Path:
    return _find("stdlib")
