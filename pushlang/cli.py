"""The ``pushlang`` command line: ``main(argv) -> int`` (0 clean, 1 findings, 2 usage or internal error),
the one error boundary of every command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pushlang import __version__, compiled
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
    lsp,
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
            dispatch, explain, forget, lsp)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pushlang",
        description="Campaigns-as-code for web push notifications: check, format and compile .push files, "
                    "replay and explain campaigns, run them live.",
        epilog="Run `pushlang COMMAND --help` for a command's options. "
               "Exit codes: 0 clean, 1 problems found, 2 usage or internal error.",
    )
    runtime = "compiled runtime" if compiled() else "pure Python"
    root.add_argument("--version", action="version", version=f"pushlang {__version__} ({runtime})")
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
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the boundary
        return code
    except Findings:  # the diagnostics are shown
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `pushlang … | head`: the reader has what it wanted
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:
        message = problem_of(exc)
        if message is None:
            raise
        print(f"pushlang: error: {message}", file=sys.stderr)
        return EXIT_USAGE


def problem_of(exc: BaseException) -> str | None:
    """What an error that bad input or the environment caused means, in words; None for a bug."""
    import gzip
    import sqlite3
    import tomllib
    import zlib

    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return f"a compressed input is corrupt or truncated ({exc or type(exc).__name__}): check the .gz file"
    if isinstance(exc, ModuleNotFoundError):
        if exc.name == "redis":
            return "this command needs Redis support: pip install 'pushlang[redis]'"
        if (exc.name or "").split(".")[0] in ("pygls", "lsprotocol"):
            return "the language server needs its extra: pip install 'pushlang[lsp]'"
        return None
    if isinstance(exc, ValueError):  # a UsageError, or bad input a library reported in words
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, sqlite3.DatabaseError):
        return f"the store is not a pushlang SQLite file or is damaged ({exc})"
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"pushlang.toml is not valid TOML ({exc})"
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read"
    if isinstance(exc, OverflowError):
        return f"a date or number is out of range ({exc})"
    if type(exc).__module__.startswith("redis"):
        return f"Redis: {exc} (is the server running and the URL right?)"
    return None


def _quiet_stdout() -> None:
    """After a closed pipe: send what is still buffered nowhere, so the interpreter's own flush at
    exit does not complain."""
    import contextlib
    import os

    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
