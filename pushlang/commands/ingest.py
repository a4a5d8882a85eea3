"""`pushlang ingest`: append records to the partition streams of a Redis (scale-out)."""

from __future__ import annotations

import argparse
import sys

from pushlang.commands import common
from pushlang.scaleout.keys import DEFAULT_PARTITIONS


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    i: argparse.ArgumentParser = commands.add_parser(
        "ingest", help="append records to the partition streams of a Redis",
        description="Append JSON Lines records to the streams ev:{p} of a Redis or Redis Cluster "
                    "(p = crc32(user) % N); bad lines are reported with their line numbers and skipped. On the "
                    "wall clock, records more than [server] max_clock_skew ahead of Redis server time are "
                    "refused. Running the same input again within a day (after a cut, a crash) appends only "
                    "what is missing: each chunk of lines is appended once. End markers — `the input ends "
                    "here: fire the timers due by then`, as `replay --until` does — are written only with "
                    "--until DATETIME (at that instant) or --end (at the last record's instant); without them "
                    "workers keep the timers pending for later input.",
    )
    i.add_argument("file", nargs="?", default="-", metavar="FILE", help="records as JSON Lines (.gz too), or - (default)")
    i.add_argument("--to", required=True, metavar="URL", help="redis://host:port/db (any node of a cluster)")
    i.add_argument("--partitions", type=common.positive, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions (default {DEFAULT_PARTITIONS})")
    common.add_clock(i)
    common.add_config(i)
    group = i.add_mutually_exclusive_group()
    group.add_argument("--until", metavar="DATETIME", help="then write end markers at this instant")
    group.add_argument("--end", action="store_true", help="then write end markers at the last record's instant")
    return i


def run(args: argparse.Namespace) -> int:
    import redis

    from pushlang.config import find_config, load_config
    from pushlang.diagnostics import Sink
    from pushlang.runtime.instants import parse_datetime
    from pushlang.runtime.records import open_records
    from pushlang.scaleout.ingest import end_of_input, ingest
    from pushlang.service.options import ServerOptions

    until = parse_datetime(args.until, "UTC", "--until") if args.until is not None else None
    options = ServerOptions.from_config(load_config(find_config(args.config, []), Sink()))
    client = common.scaleout_client(args.to, args.partitions, args.clock)
    try:
        with open_records(args.file) as lines:
            accepted, rejects = ingest(client, lines, args.partitions, end_at_last=args.end, once=True,
                                       wall_clock=args.clock == "wall", admit=options.ahead)
        if until is not None:
            end_of_input(client, args.partitions, until)
    except redis.RedisError as exc:
        raise common.UsageError(f"Redis failed midway ({type(exc).__name__}: {exc}); the records before are "
                                "in the streams: run the same command again (within a day) to append the rest, "
                                "exactly once") from None
    finally:
        client.close()
    for r in rejects:
        print(f"line {r.line}: {r.reason}", file=sys.stderr)
    print(f"ingested {accepted} records into {args.partitions} partitions, {len(rejects)} rejected",
          file=sys.stderr)
    return common.EXIT_FINDINGS if rejects else common.EXIT_OK
