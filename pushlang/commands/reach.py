"""`pushlang reach`: estimate a campaign's audience, reachable users and control group."""

from __future__ import annotations

import argparse
import os
import sys

from pushlang.commands import common

DESCRIPTION = """\
Estimate a campaign's reach from a state store: how many known users its `who` holds for (the
audience, with segments and `did` conditions), how many of those have an active subscription on a
platform the campaign allows (reachable; Safari only when the message has a url), the reachable
users per platform (a user counts once per platform), and how many of them the control step holds
out: the global holdout of the config ([experiments] global_holdout, counted apart) and the
campaign's control group. For a campaign with variants, the expected split: the reachable users not
held out per variant (by their bucket, as the pipeline chooses), and for a winner test the size of
the test group (per variant) and of the rest, who get the winner. For a campaign that delivers at
best time, how the reachable users spread over the day: the hour each one is decided at (s + k,
chosen from their history as the engine chooses it at an occurrence s = --at), in the campaign's
timezone, as a histogram (`best_time_hours` in JSON). Shares are of the known users (users with any
record at or before --at); a variant's share is of the users not held out.

State comes from --events (records replayed into the store first) and/or an existing --store (e.g.
the SQLite file a `pushlang replay --store` left). Into memory, the replay keeps only what the count
reads (profiles, subscriptions, the history the campaigns read) and makes no decisions; into a
--store it is the whole replay, decisions discarded, so that a later `pushlang replay --store` goes
on from it. Over a SQLite store the audience is counted in SQL where its conditions translate
exactly; otherwise, and over the in-memory store, each user is evaluated in turn. The output says
which was done.

Not counted: start/end, DND, limits, and messages that would fail to render. A live campaign's
`who` is evaluated without a triggering event, so conditions on event.* are false."""


def add_parser(subparsers: common.Subparsers) -> argparse.ArgumentParser:
    """Add the ``reach`` command to the ``pushlang`` sub-command parsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "reach", help="estimate a campaign's audience, reachable users, control group and variant split",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  pushlang reach examples/ --campaign advent_sale --events examples/events.jsonl.gz\n"
               "  pushlang replay examples/ --events events.jsonl --store sqlite:///state.db > /dev/null\n"
               "  pushlang reach examples/ --campaign advent_sale --store sqlite:///state.db --format json",
    )
    common.add_paths(p)
    p.add_argument("--campaign", required=True, metavar="ID", help="the id of the campaign to estimate")
    p.add_argument("--events", metavar="FILE",
                   help="records as JSON Lines (.gz too, - for stdin) replayed into the store first; "
                        "with --store they are added to it, as `pushlang replay --store` would")
    p.add_argument("--store", metavar="URL",
                   help="state store: sqlite:///file.db (counted in SQL) or memory (the default; needs --events)")
    p.add_argument("--at", metavar="DATETIME",
                   help="the instant to estimate at: who is known, and the `did` windows (default: the latest "
                        "record's time); without a zone it is in the campaign's timezone")
    common.add_config(p)
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    return p


def run(args: argparse.Namespace) -> int:
    """``pushlang reach``: 0 when counted, 1 when the campaigns do not compile, 2 for bad input."""
    import sqlite3

    import msgspec

    from pushlang.runtime.instants import command_line_instant
    from pushlang.runtime.reach import count_reach, notes_for, render_text
    from pushlang.runtime.records import open_records
    from pushlang.runtime.replay import replay
    from pushlang.runtime.sqlite_store import open_store
    from pushlang.runtime.store import PersistentStore

    compiled, _ = common.compile_checked(args.paths, config_path=args.config)
    campaign = common.find_campaign(compiled, args.campaign)
    if not args.events and args.store in (None, "memory", "memory:"):
        raise common.UsageError("nothing to count: give --events FILE to replay and/or --store sqlite:///FILE")
    if args.store and args.store.startswith("sqlite:///") and not args.events:
        path = args.store[len("sqlite:///"):]
        if path and not os.path.exists(path):
            raise common.UsageError(f"--store {args.store}: {path} does not exist (give --events to fill a new store)")
    at = command_line_instant(args.at, "--at", compiled, campaign) if args.at is not None else None
    try:
        store = open_store(args.store)
    except sqlite3.DatabaseError as exc:
        raise common.UsageError(f"--store {args.store}: {exc}") from None
    try:
        if args.events:
            # a store kept on disk is filled as `pushlang replay --store` fills it (a later replay goes on
            # from it); one in memory, thrown away afterwards, needs only the users' state: no decisions
            with open_records(args.events) as lines:
                summary = replay(compiled, lines, store, lambda decision: None,
                                 deciding=isinstance(store, PersistentStore))
            if summary.rejects:
                print(f"pushlang reach: {len(summary.rejects):,} of {summary.records + len(summary.rejects):,} "
                      f"records rejected (`pushlang replay --rejects FILE` lists them)", file=sys.stderr)
        clock: int | None = store.meta("clock")
        if at is None:
            if clock is None:
                raise common.UsageError("the store holds no records, so there is no latest instant: give --at DATETIME")
            at = clock
        counted = count_reach(compiled, campaign, store, at)
    except sqlite3.DatabaseError as exc:
        raise common.UsageError(f"--store {args.store}: {exc}") from None
    finally:
        store.close()
    counted.notes = notes_for(compiled, campaign, at, clock, from_store=not args.events) + counted.notes
    if args.format == "json":
        print(msgspec.json.format(msgspec.json.encode(counted.to_json()), indent=2).decode())
    else:
        print(render_text(counted))
    return common.EXIT_OK
