"""`pushlang serve`: the live service on one machine, or (with --redis) the ingest API of a scale-out."""

from __future__ import annotations

import argparse

from pushlang.commands import common
from pushlang.scaleout.keys import DEFAULT_PARTITIONS


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "serve", help="the live service: ingest API, wall-clock timers, real delivery, stats",
        description="Run campaigns live: records in over HTTP (POST /v1/records with a bearer token from "
                    "PUSHLANG_API_TOKEN), timers on the wall clock, sends delivered with the credentials of "
                    "pushlang.toml, everything durable in one SQLite file. GET /healthz, /v1/campaigns, "
                    "/v1/stats, /dashboard; the browser SDK at /sdk/sw.js and /sdk/subscribe.js (POST "
                    "/v1/browser/records with a user token, see docs/security.md). SIGHUP or POST /v1/reload "
                    "reloads the campaign files when they compile; POST /v1/channels/NAME/resume after a "
                    "rejected key is fixed; DELETE /v1/users/ID erases a user. [server] in pushlang.toml: "
                    "max_clock_skew, shutdown_grace, user_token_secret, trusted_proxies (README).",
    )
    common.add_paths(p)
    common.add_config(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=common.port, default=8080, help="port (default 8080)")
    p.add_argument("--store", default="pushlang.db", metavar="FILE",
                   help="the SQLite file (default pushlang.db; sqlite:///file.db works too)")
    p.add_argument("--redis", metavar="URL",
                   help="scale-out: only take records in (POST /v1/records and /v1/browser/records, with an "
                        "Idempotency-Key for safe retries) and append them to the partition streams of this Redis "
                        "or Redis Cluster, for `pushlang worker` processes (docs/scale-out.md)")
    p.add_argument("--partitions", type=common.positive, default=DEFAULT_PARTITIONS,
                   help=f"with --redis: the number of partitions (default {DEFAULT_PARTITIONS})")
    common.add_clock(p)
    return p


def run(args: argparse.Namespace) -> int:
    common.check_paths(args.paths)
    common.check_listen(args.host, args.port)
    if args.redis is not None:
        from pushlang.config import find_config, load_config
        from pushlang.diagnostics import Sink
        from pushlang.scaleout.connection import LayoutMismatch
        from pushlang.scaleout.ingest import serve_ingest
        from pushlang.service.identity import BrowserGuard
        from pushlang.service.options import ServerOptions, server_table

        config = load_config(find_config(args.config, args.paths), Sink())
        options, browser = ServerOptions.from_config(config), BrowserGuard.from_server(server_table(config))
        common.scaleout_client(args.redis, args.partitions, args.clock).close()  # said in words, before listening
        try:
            return serve_ingest(args.redis, args.partitions, host=args.host, port=args.port, options=options,
                                clock=args.clock, browser=browser)
        except LayoutMismatch as exc:
            raise common.UsageError(str(exc)) from None
    from pushlang.service.app import serve

    return serve(args.paths, host=args.host, port=args.port, config_path=args.config,
                 store_path=args.store.removeprefix("sqlite:///"))

