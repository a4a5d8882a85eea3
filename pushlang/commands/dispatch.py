"""`pushlang dispatch`: deliver the outboxes of a Redis scale-out (dispatch worker)."""

from __future__ import annotations

import argparse

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "dispatch", help="deliver the outboxes of a Redis scale-out (dispatch worker)",
        description="Consume the outbox streams ob:{p} of a Redis (consumer group `dispatch`) and deliver "
                    "the sends through the [vapid]/[apns] settings of pushlang.toml; delivery records go to "
                    "out:{p}. Each send_id is delivered at most once, however many dispatch workers run; a "
                    "send older than its ttl is recorded failed (expired) instead.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories (the workers' campaigns)")
    common.add_scaleout_options(p, "dispatch worker")
    p.add_argument("--claim-idle", type=common.positive, default=30, metavar="SECONDS",
                   help="take over the entries of a dispatcher silent for this long (default 30)")
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.dispatch.dispatcher import DeliverySettings
    from pushlang.scaleout.dispatch import DispatchWorker

    compiled, config = common.compile_checked(args.paths, config_path=args.config)
    settings = DeliverySettings.from_config(config)
    missing = settings.problems()
    if missing:  # delivering without credentials would fail every send for good
        where = config.path or "pushlang.toml (none found)"
        raise common.UsageError(f"dispatch needs in {where}: " + "; ".join(missing) + " (nothing was delivered or "
                                "marked: the outboxes wait)")
    settings.check_keys()
    client = common.scaleout_client(args.redis, args.partitions, args.clock)
    worker = DispatchWorker(client, compiled, settings, args.partitions, args.id, claim_idle_ms=args.claim_idle * 1000,
                            expire_by_server_time=args.clock == "wall", log=common.log_to_stderr)
    s = worker.stats
    common.run_worker(worker, args.idle_exit, client, lambda: f"{s['sends']} sends, {s['delivered']} delivered, "
               f"{s['failed']} failed, {s['expired']} expired, {s['duplicates']} duplicates, "
               f"{s['interrupted']} interrupted, {s['claimed']} claimed")
    return common.EXIT_FINDINGS if worker.halts else common.EXIT_OK
