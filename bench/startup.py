"""Start-up time of `pushlang --version` and `pushlang lint examples/`, beside `python -c pass`.

Each command runs ``--runs`` times in its own process, interleaved; the table gives the median wall
time, the fastest and slowest run, the spread ((max - min) / median) and the ratio of the median to
the median of ``python -c pass`` (what any Python program pays before its first line).

Then, for `--version` and `lint`, the import time of each third-party package the process imports
(from ``python -X importtime``, median of the runs): for a package, the cumulative time of each
import of it that is not already inside an import of the same package, summed. A package imported
inside another one (cryptography inside pywebpush) is counted in both rows; "all imports" is the
whole import time of the process.

With ``--against DIR`` (another checkout of pushlang, e.g. ``git worktree add /tmp/base main``)
both trees are measured in the same run, interleaved: the figures before and after a change.

    python bench/startup.py [--runs 20]
    python bench/startup.py --against /tmp/base [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
EXAMPLES = HERE / "examples"  # the same input for every tree
COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("pushlang --version", ["-m", "pushlang", "--version"]),
    ("pushlang lint examples/", ["-m", "pushlang", "lint", str(EXAMPLES)]),
]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with the bytecode cache, as installed code runs
    env["NO_COLOR"] = "1"
    return env


def _run(tree: Path, args: list[str], *, importtime: bool = False) -> tuple[float, str]:
    """Wall seconds of one process (cwd: the tree, so that `-m pushlang` finds that tree's package)."""
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), *args]
    start = time.perf_counter()
    child = subprocess.run(command, cwd=tree, env=_env(tree), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} in {tree} exited {child.returncode}:\n{child.stderr[-2000:]}")
    return seconds, child.stderr


def _check_tree(tree: Path) -> None:
    _, err = _run(tree, ["-c", "import sys, pushlang; print(pushlang.__file__, file=sys.stderr)"])
    if not Path(err.strip()).resolve().is_relative_to(tree):
        raise SystemExit(f"{tree}: `import pushlang` finds {err.strip()}, not this tree's package")


def import_times(stderr: str) -> dict[str, float]:
    """Milliseconds per third-party top-level package (outermost imports of it only), and "all imports"."""
    lines = [(int(cumulative), len(indent) // 2, name)
             for _, cumulative, indent, name in LINE.findall(stderr)]
    local = set(sys.stdlib_module_names) | {"pushlang", "__main__", "encodings", "site", "sitecustomize",
                                             "usercustomize", "_virtualenv"}
    found: dict[str, float] = defaultdict(float)
    ancestors: list[str] = []
    for cumulative, depth, name in reversed(lines):  # importtime prints children first: reversed, parents come first
        top = name.split(".")[0]
        above = ancestors[:depth]
        if depth == 0:
            found["all imports"] += cumulative / 1000
        if top not in local and not top.startswith("_") and top not in {a.split(".")[0] for a in above}:
            found[top] += cumulative / 1000
        ancestors = [*above, name]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="processes per command and tree (default 20)")
    ap.add_argument("--against", metavar="DIR", help="another checkout: measure it beside this tree")
    args = ap.parse_args()

    trees = {"this tree": HERE}
    if args.against:
        trees = {"baseline": Path(args.against).resolve(), "this tree": HERE}
    for tree in trees.values():
        _check_tree(tree)
    walls: dict[tuple[str, str], list[float]] = defaultdict(list)
    imports: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for tree in trees.values():  # warm the bytecode caches
        for _, command in COMMANDS:
            _run(tree, command)
    for n in range(args.runs):
        print(f"round {n + 1}/{args.runs} ...", file=sys.stderr)
        order = list(trees.items()) if n % 2 == 0 else list(reversed(trees.items()))
        for label, tree in order:
            for name, command in COMMANDS:
                walls[label, name].append(_run(tree, command)[0])
                if name != "python -c pass":
                    imports[label, name].append(import_times(_run(tree, command, importtime=True)[1]))

    print(f"start-up, {args.runs} processes each, interleaved ({sys.executable}, Python {sys.version.split()[0]})")
    if args.against:
        print(f"baseline: {trees['baseline']}")
    print(f"{'tree':10} {'command':24} {'median ms':>9} {'min':>6} {'max':>6} {'spread':>7} {'× python -c pass':>17}")
    for label in trees:
        floor = statistics.median(walls[label, "python -c pass"])
        for name, _ in COMMANDS:
            runs = walls[label, name]
            median = statistics.median(runs)
            print(f"{label:10} {name:24} {median * 1000:9.0f} {min(runs) * 1000:6.0f} {max(runs) * 1000:6.0f} "
                  f"{(max(runs) - min(runs)) / median:7.0%} {median / floor:17.1f}")

    for name, _ in COMMANDS[1:]:
        medians = {label: _medians(imports[label, name]) for label in trees}
        packages = sorted({p for m in medians.values() for p in m if p != "all imports"},
                          key=lambda p: -max(m.get(p, 0.0) for m in medians.values()))
        print(f"\nimport time of `{name}` (ms, median of {args.runs}; 0 = not imported)")
        print(f"{'package':20}" + "".join(f" {label:>10}" for label in trees))
        shown = [p for p in packages if max(m.get(p, 0.0) for m in medians.values()) >= 1.0]
        for package in ["all imports", *shown]:
            print(f"{package:20}" + "".join(f" {medians[label].get(package, 0.0):10.1f}" for label in trees))
        if len(shown) < len(packages):
            print(f"({len(packages) - len(shown)} more packages under 1 ms each)")
    return 0


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    packages = {p for r in runs for p in r}
    return {p: statistics.median(r.get(p, 0.0) for r in runs) for p in packages}


if __name__ == "__main__":
    sys.exit(main())
