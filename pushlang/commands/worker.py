"""`pushlang worker`: run the campaigns on partitions of a Redis (scale-out)."""

from __future__ import annotations

import argparse

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "worker", help="run campaigns on partitions of a Redis (scale-out)",
        description="Own partitions of the input streams on a Redis through expiring leases and run the "
                    "campaigns over them; outputs go to the streams out:{p}. Start as many as needed: "
                    "partitions are shared among the live workers and move when one joins or dies.",
    )
    common.add_paths(p)
    common.add_scaleout_options(p, "worker")
    p.add_argument("--lease-ms", type=common.positive, default=3000, metavar="MS", help="lease time (default 3000)")
    p.add_argument("--batch", type=common.positive, default=500, metavar="N",
                   help="records per transaction (default 500)")
    p.add_argument("--keep-outputs", type=common.positive, metavar="N",
                   help="entries each out:{p} keeps, about (default 20000): a consumer further behind loses "
                        "the oldest")
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.runtime.instants import US
    from pushlang.scaleout.streams import KEEP_OUTPUTS
    from pushlang.scaleout.worker import Worker
    from pushlang.service.options import ServerOptions

    compiled, config = common.compile_checked(args.paths, config_path=args.config)
    try:
        options = ServerOptions.from_config(config)
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None
    client = common.scaleout_client(args.redis, args.partitions, args.clock)
    worker = Worker(client, compiled, args.id, args.partitions, args.lease_ms, args.batch, log=common.log_to_stderr,
                    clock=args.clock, max_skew_us=options.max_clock_skew * US,
                    keep_outputs=args.keep_outputs or KEEP_OUTPUTS)
    s = worker.stats
    common.run_worker(worker, args.idle_exit, client, lambda: f"{s['records']} records, {s['batches']} batches, "
               f"{s['dead_letters']} dead letters, {s['taken']} partitions taken, {s['released']} released")
    return common.EXIT_OK
