"""`pushlang explain`: what a diagnostic code means and how to fix it."""

from __future__ import annotations

import argparse

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "explain", help="what a diagnostic code means and how to fix it",
        description="Explain a diagnostic code (PL200) or name (unknown-segment); without one, list all codes.",
    )
    p.add_argument("code", nargs="?", help="a code such as PL200 or a name such as unknown-segment")
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.diagnostics import CODES, lookup
    from pushlang.diagnostics.render import render_explain

    if args.code is None:
        width = max(len(c.name) for c in CODES.values())
        for c in CODES.values():
            print(f"{c.code}  {c.name:<{width}}  {c.severity.value:<7}  {c.summary}")
        return common.EXIT_OK
    code = lookup(args.code)
    if code is None:
        raise common.UsageError(f"unknown code `{args.code}`; `pushlang explain` lists them all")
    print(render_explain(code))
    return common.EXIT_OK
