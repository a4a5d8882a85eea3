"""The architecture holds: only the syntax layer imports Lark, and the plan never holds source text."""

from __future__ import annotations

import ast as pyast
from pathlib import Path

import msgspec

from pushlang import plan

PACKAGE = Path(__file__).resolve().parent.parent / "pushlang"


def _imports(path: Path) -> set[str]:
    tree = pyast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, pyast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_syntax_layer_imports_lark() -> None:
    importers = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "lark" in _imports(p)}
    assert importers
    assert all(name.startswith("syntax/") for name in importers), importers


def test_plan_structs_are_frozen_and_carry_no_spans() -> None:
    structs = [obj for obj in vars(plan).values()
               if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == plan.__name__]
    assert len(structs) > 20
    for struct in structs:
        assert struct.__struct_config__.frozen, struct
        assert not any("span" in f for f in struct.__struct_fields__), struct
