"""`pushlang ingest`: append records to the partition streams of a Redis (scale-out)."""

from __future__ import annotations

import argparse
import sys

from pushlang.commands import common
from pushlang.scaleout.keys import DEFAULT_PARTITIONS


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    i: argparse.ArgumentParser = commands.add_parser(
        "ingest", help="append records to the partition streams of a Redis",
        description="Append JSON Lines records to the streams ev:{p} of a Redis (p = crc32(user) % N); "
                    "bad lines are reported with their line numbers and skipped. End markers — `the input "
                    "ends here: fire the timers due by then`, as `replay --until` does — are written only "
                    "with --until DATETIME (at that instant) or --end (at the last record's instant); "
                    "without them workers keep the timers pending for later input.",
    )
    i.add_argument("file", nargs="?", default="-", metavar="FILE", help="records as JSON Lines (.gz too), or - (default)")
    i.add_argument("--to", required=True, metavar="URL", help="redis://host:port/db")
    i.add_argument("--partitions", type=common.positive, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions (default {DEFAULT_PARTITIONS})")
    group = i.add_mutually_exclusive_group()
    group.add_argument("--until", metavar="DATETIME", help="then write end markers at this instant")
    group.add_argument("--end", action="store_true", help="then write end markers at the last record's instant")
    return i


def run(args: argparse.Namespace) -> int:
    import redis

    from pushlang.runtime.instants import parse_datetime
    from pushlang.runtime.records import open_records
    from pushlang.scaleout.ingest import end_of_input, ingest

    until = parse_datetime(args.until, "UTC", "--until") if args.until is not None else None
    client = redis.Redis.from_url(args.to)
    try:
        with open_records(args.file) as lines:
            accepted, rejects = ingest(client, lines, args.partitions, end_at_last=args.end)
        if until is not None:
            end_of_input(client, args.partitions, until)
    finally:
        client.close()
    for r in rejects:
        print(f"line {r.line}: {r.reason}", file=sys.stderr)
    print(f"ingested {accepted} records into {args.partitions} partitions, {len(rejects)} rejected",
          file=sys.stderr)
    return common.EXIT_FINDINGS if rejects else common.EXIT_OK
