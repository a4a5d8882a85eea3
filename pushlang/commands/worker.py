"""`pushlang worker`: run the campaigns on partitions of a Redis (scale-out)."""

from __future__ import annotations

import argparse
import sys
import time

from pushlang.commands.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    Subparsers,
    add_config,
    add_paths,
    compile_shown,
    positive,
)
from pushlang.scaleout.keys import DEFAULT_PARTITIONS


def add_parser(commands: Subparsers) -> argparse.ArgumentParser:
    w: argparse.ArgumentParser = commands.add_parser(
        "worker", help="run campaigns on partitions of a Redis (scale-out)",
        description="Own partitions of the input streams on a Redis through expiring leases and run the "
                    "campaigns over them; outputs go to the streams out:{p}. Start as many as needed: "
                    "partitions are shared among the live workers and move when one joins or dies.",
    )
    add_paths(w)
    w.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db (rediss:// for TLS)")
    w.add_argument("--partitions", type=positive, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions: the same for ingest and every worker (default {DEFAULT_PARTITIONS})")
    w.add_argument("--id", metavar="NAME", help="worker id (default: host-pid-random); unique per process")
    w.add_argument("--lease-ms", type=int, default=3000, metavar="MS", help="lease time (default 3000)")
    w.add_argument("--batch", type=int, default=500, metavar="N", help="records per transaction (default 500)")
    w.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit when no partition had work for this long (default: run until interrupted)")
    add_config(w)
    return w



def run(args: argparse.Namespace) -> int:
    import redis

    from pushlang.scaleout.worker import Worker

    result = compile_shown(args.paths, config_path=args.config)
    if result.plan is None:
        return EXIT_FINDINGS
    client = redis.Redis.from_url(args.redis)
    worker = Worker(client, result.plan, args.id, args.partitions, args.lease_ms, args.batch,
                    log=lambda message: print(message, file=sys.stderr, flush=True))
    started = time.perf_counter()
    try:
        worker.run(idle_exit=args.idle_exit)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    s = worker.stats
    print(f"{worker.id}: {s['records']} records, {s['batches']} batches, {s['dead_letters']} dead letters, "
          f"{s['taken']} partitions taken, {s['released']} released, {time.perf_counter() - started:.1f}s",
          file=sys.stderr, flush=True)
    return EXIT_OK
