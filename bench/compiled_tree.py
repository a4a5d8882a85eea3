"""Build a copy of this tree whose runtime is compiled: the wheel of the compiled build (mypyc, see
DEVELOPERS.md) built from a copy of the repository, and its extension modules put beside their sources,
where the import system takes them first. Run anything against it with ``PYTHONPATH=DIR``, from DIR
or a folder with no other checkout in it (``python -m`` puts the current folder first on the path).

    python bench/compiled_tree.py DIR        # about a minute; DIR must not exist

`bench/replay.py --compiled` measures such a tree beside this one; tests/test_compiled.py runs the
quick suite on one. The build runs in this interpreter's environment (``--no-isolation``): it needs
the `test` extra (hatch-mypyc, mypy, build) and a C compiler.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a copy leaves out: other builds, caches, installed packages, and the Quick start's outputs.
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "*.so", "build", "dist",
                                  ".*_cache", "*.db", "*.db-*", "decisions.jsonl")


def compiled_tree(tree: Path, source: Path = ROOT) -> list[str]:
    """Copy this repository (or another copy of it, ``source``) to ``tree`` and compile its runtime
    there; the extension modules put in place."""
    if shutil.which("cc") is None:
        raise SystemExit("no C compiler: the compiled build needs one (Debian: apt-get install gcc python3-dev)")
    shutil.copytree(source, tree, ignore=LEFT_OUT)
    with tempfile.TemporaryDirectory() as dist:
        build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist,
                                str(tree)], capture_output=True, text=True, timeout=900,
                               env={**os.environ, "HATCH_BUILD_HOOK_ENABLE_MYPYC": "true"})
        if build.returncode != 0:
            raise SystemExit(f"the compiled build failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}")
        (wheel,) = Path(dist).glob("pushlang-*.whl")
        with zipfile.ZipFile(wheel) as z:
            modules = sorted(name for name in z.namelist() if name.endswith(".so"))
            z.extractall(tree, modules)
    return modules


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("dir", type=Path, help="where the copy goes (must not exist)")
    args = ap.parse_args()
    for name in compiled_tree(args.dir.resolve()):
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
