"""`pushlang keys`: a real P-256 pair, the private key only in a 0600 file, never in any output."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushlang.cli import main


def _secret_forms(pem: bytes) -> list[str]:
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    body = "".join(pem.decode().splitlines()[1:-1])
    return [body, body[:40], raw.hex(), base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
            base64.b64encode(raw).decode()]


def test_generate_writes_a_0600_key_and_prints_only_the_public_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "vapid.pem"
    assert main(["keys", "generate", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    out, err = capsys.readouterr()
    public = out.strip()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    point = base64.urlsafe_b64decode(public + "=" * (-len(public) % 4))
    assert len(point) == 65 and point[0] == 4  # an uncompressed P-256 point: the applicationServerKey
    assert point == key.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
    for secret in _secret_forms(pem):
        assert secret not in out and secret not in err and secret not in caplog.text
    assert main(["keys", "public", str(path)]) == 0
    assert capsys.readouterr().out.strip() == public


def test_generate_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vapid.pem"
    assert main(["keys", "generate", "--out", str(path)]) == 0
    first = path.read_bytes()
    assert main(["keys", "generate", "--out", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert path.read_bytes() == first
    path.chmod(0o644)
    assert main(["keys", "generate", "--out", str(path), "--force"]) == 0
    assert path.read_bytes() != first and stat.S_IMODE(path.stat().st_mode) == 0o600
