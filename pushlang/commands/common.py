"""What every command shares: exit codes, usage errors, paths, and compiling with the diagnostics shown."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, TypeAlias

from pushlang import plan
from pushlang.compiler import CompileResult, compile_paths
from pushlang.loader import expand_paths

# Exit codes are interface (STYLE.md): 0 clean, 1 findings, 2 usage or internal error.
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

if TYPE_CHECKING:  # the `add_subparsers()` object every command registers on (generic only to mypy)
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class UsageError(ValueError):
    """Bad arguments or input the user can fix: printed as `pushlang: error: ...`, exit 2."""


def check_paths(paths: list[str]) -> list[str]:
    """The .push files the paths name; a usage error when a path is missing or holds none."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    files = expand_paths(paths)
    if not files:
        raise UsageError(f"no .push files in {', '.join(paths)}")
    return files


def compile_shown(paths: list[str], *, config_path: str | None = None,
                  schema_path: str | None = None) -> CompileResult:
    """Compile as every command does: paths checked, the diagnostics on stderr (``result.plan`` is None
    when there are errors, and the command then exits 1)."""
    check_paths(paths)
    result = compile_paths(paths, config_path=config_path, schema_path=schema_path)
    result.report()
    return result


def find_campaign(compiled: plan.Plan, campaign_id: str) -> plan.Campaign:
    """The campaign with this id, or a usage error that lists the ids there are."""
    campaign = compiled.campaign(campaign_id)
    if campaign is None:
        ids = ", ".join(sorted(c.id for c in compiled.campaigns)) or "none"
        raise UsageError(f"no campaign `{campaign_id}`; the campaigns are: {ids}")
    return campaign


def add_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="pushlang.toml to use (default: ./pushlang.toml, else one beside the given paths)")


def add_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schema", metavar="FILE",
                   help="event schema (TOML or JSON) that enables the property checks "
                        "(default: [lint] schema in the config)")


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def non_negative(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value
