"""What every command shares: exit codes, usage errors, paths, and compiling with the diagnostics shown.

Every command module is imported to build the parser, so at their top they and this module import
only the standard library and this module: the compiler, the runtime and the libraries they need are
imported inside `run()` (`pushlang --version` and `--help` stay fast; tests/test_startup.py checks it)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

# Exit codes are interface (STYLE.md): 0 clean, 1 findings, 2 usage or internal error.
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

if TYPE_CHECKING:  # the `add_subparsers()` object every command registers on (generic only to mypy)
    from pushlang import plan
    from pushlang.config import Config

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction


class UsageError(ValueError):
    """Bad arguments or input the user can fix: printed as `pushlang: error: ...`, exit 2."""


def check_paths(paths: list[str]) -> list[str]:
    """The .push files the paths name; a usage error when a path is missing or holds none."""
    from pushlang.loader import expand_paths

    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    files = expand_paths(paths)
    if not files:
        raise UsageError(f"no .push files in {', '.join(paths)}")
    return files


class Findings(Exception):
    """The campaign files have errors, and they were shown: the command ends with exit 1."""


def compile_checked(paths: list[str], *, config_path: str | None = None,
                    schema_path: str | None = None) -> tuple[plan.Plan, Config]:
    """Compile as every command does: paths checked, the diagnostics on stderr; the plan and the
    config, or :class:`Findings` when there are errors."""
    from pushlang.compiler import compile_paths

    check_paths(paths)
    result = compile_paths(paths, config_path=config_path, schema_path=schema_path)
    result.report()
    if result.plan is None:
        raise Findings()
    return result.plan, result.config


def find_campaign(compiled: plan.Plan, campaign_id: str) -> plan.Campaign:
    """The campaign with this id, or a usage error that lists the ids there are."""
    campaign = compiled.campaign(campaign_id)
    if campaign is None:
        ids = ", ".join(sorted(c.id for c in compiled.campaigns)) or "none"
        raise UsageError(f"no campaign `{campaign_id}`; the campaigns are: {ids}")
    return campaign


def add_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")


def existing_file(text: str) -> str:
    """A file that must exist (argparse type): a usage error, exit 2, otherwise."""
    import os

    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no file {text}" if not os.path.exists(text) else f"{text} is not a file")
    return text


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", type=existing_file,
                   help="pushlang.toml to use (default: ./pushlang.toml, else one beside the given paths)")


def add_schema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schema", metavar="FILE",
                   help="event schema (TOML or JSON) that enables the property checks "
                        "(default: [lint] schema in the config)")


def whole_number(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of ``least`` or more."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be {least} or more")
        return value

    return convert


positive, non_negative = whole_number(1), whole_number(0)


def port(text: str) -> int:
    """A TCP port (argparse type): 1 to 65535, or 0 for any free one."""
    number = non_negative(text)
    if number > 65535:
        raise argparse.ArgumentTypeError("a port is between 1 and 65535 (0: any free port)")
    return number


def check_listen(host: str, port: int) -> None:
    """UsageError, before any work, when ``host`` is no address this machine can listen on."""
    import socket

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise UsageError(f"--host {host!r} is not an address to listen on ({exc}): e.g. 127.0.0.1 or 0.0.0.0") from None


def check_writable(path: str, what: str) -> None:
    """UsageError, before any work, when ``path`` cannot be written (its folder is missing…)."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{what} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a folder: give a file name")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{what} {path}: the folder {folder} is not writable")


def add_scaleout_options(p: argparse.ArgumentParser, what: str) -> None:
    """The options every scale-out worker takes: the Redis, the partitions, its id, when to stop."""
    from pushlang.scaleout.keys import DEFAULT_PARTITIONS

    p.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db (rediss:// for TLS)")
    p.add_argument("--partitions", type=positive, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions: the same for ingest and every worker (default {DEFAULT_PARTITIONS})")
    p.add_argument("--id", metavar="NAME", help=f"{what} id (default: host-pid-random); unique per process")
    p.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit when nothing came for this long (default: run until interrupted)")
    add_clock(p)
    add_config(p)


def add_clock(p: argparse.ArgumentParser) -> None:
    """``--clock wall|records``: the clock of a scale-out deployment (the same for all its processes)."""
    p.add_argument("--clock", choices=("wall", "records"), default="wall",
                   help="wall (default): a live deployment, time is Redis server time, records too far ahead of "
                        "it are refused; records: loading history, time is the records' own (as replay)")


def scaleout_client(url: str, partitions: int, clock: str | None) -> Any:
    """A client for the scale-out's Redis at ``url`` (a cluster client on a cluster node) whose layout
    was checked (:func:`pushlang.scaleout.connection.check_layout`; ``clock`` None: a process the clock
    does not concern): a usage error, in words, for a Redis that does not answer or is laid out
    otherwise."""
    import redis

    from pushlang.scaleout.connection import SOCKET_TIMEOUT, LayoutMismatch, check_layout, connect

    client = None
    try:
        client = connect(url)
        check_layout(client, partitions, clock)
    except BaseException as exc:
        if client is not None:
            client.close()
        if isinstance(exc, LayoutMismatch):
            raise UsageError(str(exc)) from None
        if isinstance(exc, redis.TimeoutError):
            raise UsageError(f"Redis: no answer from {url} within {SOCKET_TIMEOUT:g} s (is it a Redis, and is "
                             "the server healthy?)") from None
        raise
    return client


class Runs(Protocol):
    id: str

    def run(self, stop: Any = None, idle_exit: float | None = None) -> None: ...


def run_worker(worker: Runs, idle_exit: float | None, client: Any, report: Callable[[], str]) -> None:
    """Run a scale-out worker until it is idle for ``idle_exit`` seconds or interrupted (Ctrl-C), then
    close its connection and print what it did (``report``) with the time it took."""
    started = time.perf_counter()
    try:
        worker.run(idle_exit=idle_exit)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    print(f"{worker.id}: {report()}, {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
