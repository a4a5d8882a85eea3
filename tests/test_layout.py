"""The architecture holds (DESIGN.md "Layout: the file list is the architecture").

Imports point only down the layers: syntax < check < plan < runtime < dispatch < hosts < commands < cli.
Only the syntax layer imports Lark, only the commands parse arguments, the runtime never reaches up
to the compiler, the renderers of diagnostics or a host, there is no import cycle, and the plan
never holds source text.
"""

from __future__ import annotations

import ast as pyast
import re
from pathlib import Path

import msgspec

from pushlang import plan

PACKAGE = Path(__file__).resolve().parent.parent / "pushlang"

# Each module or package of pushlang, by layer, lowest first. A module may import its own layer and
# the ones below it. `base` is what every layer shares (text, diagnostics, settings, the event loop).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("source", "resources", "builtins", "settings", "diagnostics", "aio", "__init__")),
    ("syntax", ("syntax", "ast", "loader", "config", "schema", "highlight", "editors")),
    ("check", ("check",)),
    ("plan", ("plan", "compiler")),
    ("runtime", ("runtime",)),
    ("dispatch", ("dispatch",)),
    ("hosts", ("service", "scaleout", "repl", "lsp")),
    ("commands", ("commands",)),
    ("cli", ("cli", "__main__")),
]
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: Path) -> set[str]:
    """The pushlang modules (dotted, without ``pushlang.``) and the top-level packages a file imports."""
    tree = pyast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, pyast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "pushlang" or node.module.startswith("pushlang."):
                # `from pushlang.runtime import stats` imports the module pushlang.runtime.stats
                found.update(m for a in node.names if _exists(m := f"{node.module}.{a.name}"))
    found.discard("pushlang")
    return found


def _exists(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        own = _module(path)
        graph[own] = {m.removeprefix("pushlang.") for m in _imports(path) if m.startswith("pushlang.")}
        graph[own].discard(own)
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


def test_every_module_has_a_layer() -> None:
    assert not {_top(m) for m in _graph()} - set(RANK), "add the new module to LAYERS"


def test_imports_only_point_down_the_layers() -> None:
    upward = [f"{m} ({LAYERS[RANK[_top(m)]][0]}) imports {d} ({LAYERS[RANK[_top(d)]][0]})"
              for m, deps in _graph().items() for d in deps if RANK[_top(d)] > RANK[_top(m)]]
    assert not upward, "\n".join(sorted(upward))


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep):], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_runtime_reaches_neither_the_compiler_nor_the_renderers_nor_a_host() -> None:
    banned = ("compiler", "diagnostics.render", "service", "scaleout", "repl", "commands", "dispatch")
    found = [f"{m} imports {d}" for m, deps in _graph().items() if _top(m) == "runtime"
             for d in deps if any(d == b or d.startswith(b + ".") for b in banned)]
    assert not found, found


def test_only_the_commands_parse_arguments() -> None:
    importers = {_module(p) for p in PACKAGE.rglob("*.py") if "argparse" in _imports(p)}
    assert importers
    assert all(m == "cli" or m.startswith("commands") for m in importers), importers


def test_only_the_syntax_layer_imports_lark() -> None:
    importers = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                 if any(m == "lark" or m.startswith("lark.") for m in _imports(p))}
    assert importers
    assert all(name.startswith("syntax/") for name in importers), importers


# The rules of the steps, as functions of runtime/pipeline.py, and who else may call them.
RULES = {
    "dnd_until": set(),
    "cutoff_instant": set(),
    "in_control_group": {"runtime.audience_sql", "runtime.reach"},  # reach counts the control group in SQL
    "in_global_holdout": {"runtime.reach"},  # reach counts the global holdout, in SQL too
    "variant_of": {"runtime.reach"},  # reach counts the expected split over the variants
    "in_test_group": {"runtime.engine", "runtime.reach"},  # the engine defers the rest to s + D; reach counts
    "safari_rule": set(),
    "deliverable": {"runtime.reach"},  # reach counts the platforms the render step would keep
    "reachable": set(),
}
# The suppress reasons of SPEC §9.3 (`dnd` and `cutoff` are also plan field names, checked as rules).
REASONS = ("campaign_ended", "not_in_audience", "unreachable", "missing_property", "safari_requires_url",
           "payload_too_large", "campaign_limit", "global_limit")
# Where a decision could be re-implemented: everything that is not the syntax, the checks or a channel.
DECIDERS = ("runtime", "repl", "service", "scaleout", "commands", "dispatch.send_test")


def test_one_module_decides_the_steps_of_the_pipeline() -> None:
    """A step of SPEC §9.3 is decided in runtime/pipeline.py only: elsewhere no decision is built, no
    step's reason is written and no step's rule is called (but where RULES allows it)."""
    building = re.compile(r"\b(Suppress|Control|Delay|Send)\(")
    reason = re.compile(r"[\"'](" + "|".join(REASONS) + r")[\"']")
    rule = re.compile(r"\b(" + "|".join(RULES) + r")\(")
    found = []
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        if module == "runtime.pipeline" or not any(module == d or module.startswith(d + ".") for d in DECIDERS):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            hits = [m.group(0) for m in building.finditer(code)] + [m.group(0) for m in reason.finditer(code)]
            hits += [m.group(0) for m in rule.finditer(code) if module not in RULES[m.group(1)]]
            if module == "runtime.engine":  # the on-date trigger's own suppressions (SPEC §3), before any step
                hits = [h for h in hits if h not in ('Suppress(', '"missing_property"')]
            if hits and not code.lstrip().startswith(("def ", "class ")):
                found.append(f"{module}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_plan_structs_are_frozen_and_carry_no_spans() -> None:
    structs = [obj for obj in vars(plan).values()
               if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj.__module__ == plan.__name__]
    assert len(structs) > 20
    for struct in structs:
        assert struct.__struct_config__.frozen, struct
        assert not any("span" in f for f in struct.__struct_fields__), struct
