"""`pushlang keys`: the VAPID key pair that signs Web Push requests, and the user tokens of browsers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    keys: argparse.ArgumentParser = commands.add_parser("keys", help="VAPID keys for Web Push, user tokens for browsers",
                               description="Create or inspect the VAPID key pair that signs Web Push requests; "
                                           "make the secret and the user tokens of the browser endpoint.")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="create a key pair",
                         description="Create a VAPID key pair: the private key is written to --out with mode "
                                     "0600 and never printed; the public key (the applicationServerKey your "
                                     "site's JavaScript subscribes with) is printed.")
    gen.add_argument("--out", default="vapid_private.pem", metavar="FILE",
                     help="where the private key goes (default: vapid_private.pem)")
    gen.add_argument("--force", action="store_true", help="replace an existing key file")
    show = sub.add_parser("public", help="print the public key of an existing private key file")
    show.add_argument("file", metavar="FILE")
    token = sub.add_parser("user-token", help="sign a user id for the browser endpoint (tests, the demo page)",
                           description="Print a user token for USER, signed with [server] user_token_secret of "
                                       "pushlang.toml: what your site hands to subscribe.js so that the browser "
                                       "may post records for USER (docs/security.md). Sites sign in their own "
                                       "backend; this is for tests and the demo page (/sdk/demo?user=…&token=…).")
    token.add_argument("user", metavar="USER")
    token.add_argument("--ttl", default="30d", metavar="DURATION",
                       help="how long the token is valid, e.g. 1h, 7d, 4w (default 30d)")
    common.add_config(token)
    sub.add_parser("user-secret", help="print a fresh random secret for [server] user_token_secret",
                   description="Print a fresh random secret (32 bytes, base64url) for [server] user_token_secret.")
    return keys


def run(args: argparse.Namespace) -> int:
    from pushlang.dispatch.keys import generate, load_public

    if args.keys_command == "user-token":
        return _user_token(args)
    if args.keys_command == "user-secret":
        from pushlang.service.identity import new_secret

        print(new_secret())
        print("set it in pushlang.toml as [server] user_token_secret; to rotate, move the old one to "
              "[server] previous_user_token_secret until the tokens signed with it have expired", file=sys.stderr)
        return common.EXIT_OK
    if args.keys_command == "public":
        print(load_public(Path(args.file)))
        return common.EXIT_OK
    path = Path(args.out)
    try:
        public = generate(path, force=args.force)
    except FileExistsError:
        raise common.UsageError(f"{path} exists; keep it (subscriptions depend on it) or pass --force") from None
    print(public)
    print(f"private key written to {path} (mode 0600); set it in pushlang.toml as [vapid] private_key_file, "
          "and use the line above as applicationServerKey in your site's subscribe code", file=sys.stderr)
    return common.EXIT_OK


def _user_token(args: argparse.Namespace) -> int:
    from pushlang.config import find_config, load_config, parse_duration
    from pushlang.diagnostics import Sink
    from pushlang.runtime.instants import US, iso
    from pushlang.service.identity import UserTokens

    ttl = parse_duration(args.ttl)
    if not ttl:
        raise common.UsageError(f"--ttl {args.ttl!r} is not a duration: a whole number and s, m, h, d or w (e.g. 30d)")
    path = find_config(args.config, [])
    if path is None:
        raise common.UsageError("no pushlang.toml here (or pass --config FILE): the token is signed with its "
                                "[server] user_token_secret")
    sink = Sink()
    config = load_config(path, sink)
    if sink.items:
        raise common.UsageError(f"{path}: {sink.items[0].message}")
    server = config.raw.get("server", {})
    tokens = UserTokens.from_server(server if isinstance(server, dict) else {})
    if not tokens.configured:
        raise common.UsageError(f"{path} has no [server] user_token_secret; `pushlang keys user-secret` prints one")
    token, expires = tokens.issue(args.user, ttl)
    print(token)
    print(f"valid for user `{args.user}` until {iso(expires * US)}", file=sys.stderr)
    return common.EXIT_OK
