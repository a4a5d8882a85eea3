"""VAPID keys (RFC 8292): a P-256 key pair; the private half goes to a 0600 file, never to output."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def application_server_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """The public key as the browser's `applicationServerKey`: URL-safe base64, uncompressed point."""
    raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate(path: Path, *, force: bool = False) -> str:
    """Write a new private key to ``path`` (mode 0600) and return the application server key."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when --force rewrites a file that had looser permissions
        os.write(fd, pem)
    finally:
        os.close(fd)
    return application_server_key(key.public_key())


def load_public(path: Path) -> str:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return application_server_key(key.public_key())


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="VAPID keys for Web Push",
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


def run(args: argparse.Namespace) -> int:
    if args.keys_command == "public":
        print(load_public(Path(args.file)))
        return 0
    path = Path(args.out)
    try:
        public = generate(path, force=args.force)
    except FileExistsError:
        raise ValueError(f"{path} exists; keep it (subscriptions depend on it) or pass --force") from None
    print(public)
    print(f"private key written to {path} (mode 0600); set it in pushlang.toml as [vapid] private_key_file, "
          "and use the line above as applicationServerKey in your site's subscribe code", file=sys.stderr)
    return 0
