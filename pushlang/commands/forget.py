"""`pushlang forget`: erase users from the SQLite file of `pushlang serve` (or of a replay's --store)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "forget", help="erase users from a store: profile, subscriptions, history, timers, outbox",
        description="Erase each USER from the store, one transaction per user: the profile, subscriptions, "
                    "event history, frequency counters, sends, conversion windows, pending timers and "
                    "outbox entries. The activity log's rows stay, so every figure of `pushlang stats` is "
                    "unchanged, but they are unlinked: the user id and the send ids become random ones "
                    "that nothing joins back to the user. Deleted content is overwritten in the file. "
                    "Stop `pushlang serve` first (it keeps users in memory); on a running service use "
                    "DELETE /v1/users/ID instead. A user the store does not know is reported and skipped.",
    )
    p.add_argument("users", nargs="+", metavar="USER", help="user ids to erase")
    p.add_argument("--store", required=True, metavar="FILE",
                   help="the SQLite file (of `pushlang serve`, or sqlite:///file.db of a replay)")
    return p


def run(args: argparse.Namespace) -> int:
    import sqlite3

    from pushlang.runtime.sqlite_store import SqliteStore

    path = args.store.removeprefix("sqlite:///")
    if not Path(path).is_file():  # never create an empty store to erase nothing from
        raise common.UsageError(f"no database {path}")
    try:
        store = SqliteStore(path)
    except sqlite3.DatabaseError as exc:
        raise common.UsageError(f"{path}: {exc}") from None
    with store:
        for user in args.users:
            try:
                erasure = store.forget(user)
            except sqlite3.DatabaseError as exc:
                raise common.UsageError(f"{path}: {exc} (erasing {user!r}; the users before it are erased)") from None
            if not erasure.found:
                print(f"{user}: not in the store, nothing erased")
                continue
            counts = erasure.counts
            erased = ", ".join(f"{kind} {n}" for kind, n in counts.items() if kind != "activity" and n)
            print(f"{user}: erased {erased}; {counts['activity']} activity rows unlinked")
    return common.EXIT_OK
