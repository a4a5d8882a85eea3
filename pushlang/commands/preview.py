"""`pushlang preview`: what a campaign does for one user and why, step by step (SPEC §9.3)."""

from __future__ import annotations

import argparse

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "preview", help="the message one user would get, or why not",
        description="Replay the records and show what the campaign did for one user, step by step (SPEC "
                    "§9.3): the trigger, each decision with every step's verdict, a delay and the decision "
                    "made again when it ends, and the rendered message. These are the replay's own "
                    "decisions, so preview and replay always agree. Without --at, every record is replayed, a "
                    "scheduled campaign is shown at its next occurrence at or after the last record (from "
                    "`start`, before `end`, in the user's own zone with `deliver in user timezone`), and a "
                    "pending delay or timer of this user is followed to its decision; with --at, the records "
                    "up to that instant (a later timer or occurrence is shown as pending). When a scheduled "
                    "campaign has not reached the user by --at, it shows what the steps would say then.",
    )
    common.add_paths(p)
    p.add_argument("--campaign", required=True, metavar="ID")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--events", required=True, metavar="FILE", help="records as JSON Lines (.gz too), or -")
    p.add_argument("--at", metavar="DATETIME",
                   help="replay up to this instant (without a zone: in the campaign's timezone, as reach --at)")
    common.add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.runtime.instants import command_line_instant
    from pushlang.runtime.preview import preview, render_preview
    from pushlang.runtime.records import open_records, read_records

    compiled, _ = common.compile_checked(args.paths, config_path=args.config)
    campaign = common.find_campaign(compiled, args.campaign)
    at = command_line_instant(args.at, "--at", compiled, campaign) if args.at is not None else None
    with open_records(args.events) as lines:
        records = list(read_records(lines))
    print(render_preview(preview(compiled, records, args.campaign, args.user, at)))
    return common.EXIT_OK
