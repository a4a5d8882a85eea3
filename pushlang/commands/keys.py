"""`pushlang keys`: create or inspect the VAPID key pair that signs Web Push requests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pushlang.commands import common
from pushlang.dispatch.keys import generate, load_public


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    keys: argparse.ArgumentParser = commands.add_parser("keys", help="VAPID keys for Web Push",
                               description="Create or inspect the VAPID key pair that signs Web Push requests.")
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
    return keys


def run(args: argparse.Namespace) -> int:
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
