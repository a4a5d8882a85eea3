"""Web Push message encryption (RFC 8291): ``aes128gcm`` (RFC 8188), one record, on ``cryptography``.

Per message: a fresh ephemeral P-256 key and a random 16-byte salt; ECDH with the subscriber's
key; HKDF-SHA256 three times (the input keying material, salted with the auth secret, then the
content encryption key and the nonce); AES-128-GCM over the payload and its padding delimiter; the
RFC 8188 header (salt, record size, the ephemeral public key). These are the steps of http_ece's
``encrypt``, which pywebpush's ``WebPusher.encode`` calls, with the same primitives; done here,
a message costs what they cost and no more: no copy of the subscription, the public key
serialised once instead of three times. tests/test_webpush_encryption.py checks it byte for byte
against RFC 8291's worked example (§5, Appendix A), and against http_ece's decryption.
"""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RECORD_SIZE = 4096  # RFC 8291 §4: a push service must accept a 4096-byte body
_P256 = ec.SECP256R1()
_ECDH = ec.ECDH()
_SHA256 = hashes.SHA256()
_KEY_INFO = b"Content-Encoding: aes128gcm\x00"
_NONCE_INFO = b"Content-Encoding: nonce\x00"
_LAST_RECORD = b"\x02"  # RFC 8188 §2: the padding delimiter of the last record (no padding after it)


def b64url_decode(text: str) -> bytes:
    """URL-safe base64 with or without its padding, as browsers give subscription keys."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(payload: bytes, ua_public: bytes, auth_secret: bytes, *,
            ephemeral: ec.EllipticCurvePrivateKey | None = None, salt: bytes | None = None) -> bytes:
    """The ``aes128gcm`` body of one push message for the subscriber whose key is ``ua_public``
    (the uncompressed P-256 point, 65 bytes) and whose auth secret is ``auth_secret``.

    ``ephemeral`` and ``salt`` are for tests (a worked example); a message always gets new ones.
    The record is as large as the payload needs, so a payload over 3,993 bytes makes a body over
    4096 that a push service refuses (413), as with http_ece. Raises ``ValueError`` when the keys
    are not a P-256 point and a non-empty secret."""
    if len(ua_public) != 65 or ua_public[0] != 4:
        raise ValueError("the subscriber's key is not an uncompressed P-256 point")
    if not auth_secret:
        raise ValueError("the subscription has no auth secret")
    receiver = ec.EllipticCurvePublicKey.from_encoded_point(_P256, ua_public)
    if ephemeral is None:
        ephemeral = ec.generate_private_key(_P256)
    if salt is None:
        salt = os.urandom(16)
    as_public = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = ephemeral.exchange(_ECDH, receiver)
    ikm = HKDF(_SHA256, 32, salt=auth_secret, info=b"WebPush: info\x00" + ua_public + as_public).derive(shared)
    cek = HKDF(_SHA256, 16, salt=salt, info=_KEY_INFO).derive(ikm)
    nonce = HKDF(_SHA256, 12, salt=salt, info=_NONCE_INFO).derive(ikm)
    record = AESGCM(cek).encrypt(nonce, payload + _LAST_RECORD, None)
    size = max(RECORD_SIZE, len(record))
    return salt + size.to_bytes(4, "big") + bytes((len(as_public),)) + as_public + record
