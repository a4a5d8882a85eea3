"""The ``pushlang`` command line: ``main(argv) -> int`` (0 clean, 1 findings, 2 usage or internal error),
the one error boundary of every command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pushlang import __version__
from pushlang.commands import (
    compile,
    diff,
    dispatch,
    explain,
    fmt,
    forget,
    ingest,
    keys,
    lint,
    preview,
    reach,
    repl,
    replay,
    send_test,
    serve,
    stats,
    worker,
)
from pushlang.commands.common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, Findings

# The commands, in the order `pushlang --help` lists them.
COMMANDS = (lint, fmt, compile, replay, preview, stats, diff, reach, keys, send_test, repl, serve, worker, ingest,
            dispatch, explain, forget)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pushlang",
        description="Campaigns-as-code for web push notifications: check, format and compile .push files, "
                    "replay and explain campaigns, run them live.",
        epilog="Run `pushlang COMMAND --help` for a command's options. "
               "Exit codes: 0 clean, 1 problems found, 2 usage or internal error.",
    )
    root.add_argument("--version", action="version", version=f"pushlang {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands).set_defaults(run=command.run)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    root = parser()
    try:
        args = root.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return int(exc.code or 0)
    if args.command is None:
        root.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except Findings:  # the diagnostics are shown
        return EXIT_FINDINGS
    except ValueError as exc:  # a UsageError, or bad input a library reported in words
        print(f"pushlang: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        print("pushlang: error: this command needs Redis support: pip install 'pushlang[redis]'", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if not type(exc).__module__.startswith("redis"):
            raise
        print(f"pushlang: error: Redis: {exc} (is the server running and the URL right?)", file=sys.stderr)
        return EXIT_USAGE
