"""VAPID keys (RFC 8292): a P-256 key pair; the private half goes to a 0600 file, never to output."""

from __future__ import annotations

import base64
import os
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
