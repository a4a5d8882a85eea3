"""`pushlang repl`: the operator's interactive REPL (or a script of its inputs on standard input)."""

from __future__ import annotations

import argparse
import sys

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "repl", help="the operator's interactive REPL",
        description="Explore and debug campaigns: load .push files, type definitions, feed records, move a "
                    "virtual clock, and ask why a user did or did not get a push. `:help` inside lists the "
                    "commands. With standard input not a terminal, reads a script (`pushlang repl < script`).",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help=".push files or directories to load")
    p.add_argument("--store", metavar="URL", help="state store: memory (default) or sqlite:///file.db")
    common.add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.repl import Session, run_interactive, run_script

    session = Session(args.paths, store_url=args.store, config_path=args.config)
    try:
        if sys.stdin.isatty() and sys.stdout.isatty():
            return run_interactive(session)
        return run_script(session, sys.stdin)
    finally:
        session.store.close()
