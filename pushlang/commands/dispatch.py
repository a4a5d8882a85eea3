"""`pushlang dispatch`: deliver the outboxes of a Redis scale-out (dispatch worker)."""

from __future__ import annotations

import argparse
import sys

from pushlang.commands.common import EXIT_FINDINGS, Subparsers, add_config, compile_shown, positive
from pushlang.scaleout.keys import DEFAULT_PARTITIONS


def add_parser(commands: Subparsers) -> argparse.ArgumentParser:
    d: argparse.ArgumentParser = commands.add_parser(
        "dispatch", help="deliver the outboxes of a Redis scale-out (dispatch worker)",
        description="Consume the outbox streams ob:{p} of a Redis (consumer group `dispatch`) and deliver "
                    "the sends through the [vapid]/[apns] settings of pushlang.toml; delivery records go to "
                    "out:{p}. Each send_id is delivered at most once, however many dispatch workers run.",
    )
    d.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories (the workers' campaigns)")
    d.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db (rediss:// for TLS)")
    d.add_argument("--partitions", type=positive, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions (default {DEFAULT_PARTITIONS})")
    d.add_argument("--id", metavar="NAME", help="dispatch worker id (default: host-pid-random)")
    d.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit when nothing came for this long (default: run until interrupted)")
    add_config(d)
    return d


def run(args: argparse.Namespace) -> int:
    import redis

    from pushlang.dispatch.dispatcher import DeliverySettings
    from pushlang.scaleout.dispatch import DispatchWorker

    result = compile_shown(args.paths, config_path=args.config)
    if result.plan is None:
        return EXIT_FINDINGS
    settings = DeliverySettings.from_config(result.config)
    for problem in settings.problems():
        print(f"pushlang dispatch: missing {problem}", file=sys.stderr)
    client = redis.Redis.from_url(args.redis)
    worker = DispatchWorker(client, result.plan, settings, args.partitions, args.id,
                            log=lambda message: print(message, file=sys.stderr, flush=True))
    try:
        worker.run(idle_exit=args.idle_exit)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    s = worker.stats
    print(f"{worker.id}: {s['sends']} sends, {s['delivered']} delivered, {s['failed']} failed, "
          f"{s['duplicates']} duplicates, {s['interrupted']} interrupted, {s['claimed']} claimed",
          file=sys.stderr, flush=True)
    return 1 if worker.halts else 0
