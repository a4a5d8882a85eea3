"""The commands of `pushlang`: one module each, argparse and terminal output only.

Each module has ``add_parser(subparsers) -> ArgumentParser`` and ``run(args) -> int`` (an exit code);
:data:`COMMANDS` lists them in the order `pushlang --help` shows. The work is in the libraries below
(compiler, runtime, dispatch) and the hosts (service, scaleout, repl).
"""

from __future__ import annotations

from pushlang.commands import (
    compile,
    diff,
    dispatch,
    explain,
    fmt,
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

COMMANDS = (lint, fmt, compile, replay, preview, stats, diff, reach, keys, send_test, repl, serve, worker, ingest,
            dispatch, explain)
