"""RFC 8291 message encryption (pushlang/dispatch/ece.py) is the real thing.

Byte for byte RFC 8291's worked example (§5, with the intermediate values of Appendix A), which
the example's own user agent key decrypts with http_ece; fresh keys and salt for every message,
each decrypting with http_ece (the library pywebpush encrypts with); unusable keys refused.
"""

from __future__ import annotations

import http_ece  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pushlang.dispatch import ece
from pushlang.dispatch.ece import b64url_decode

# RFC 8291 §5 and Appendix A
PLAINTEXT = b"When I grow up, I want to be a watermelon"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
AUTH_SECRET = "BTBZMqHH6r4Tts7J_aSIgg"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEq"
        "KK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def private_key(text: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(text), "big"), ec.SECP256R1())


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_the_worked_example_of_rfc_8291_byte_for_byte() -> None:
    body = ece.encrypt(PLAINTEXT, b64url_decode(UA_PUBLIC), b64url_decode(AUTH_SECRET),
                       ephemeral=private_key(AS_PRIVATE), salt=b64url_decode(SALT))
    assert body == b64url_decode(BODY)
    assert raw_public(private_key(UA_PRIVATE)) == b64url_decode(UA_PUBLIC)  # the example's own key pair
    plain = http_ece.decrypt(body, private_key=private_key(UA_PRIVATE), auth_secret=b64url_decode(AUTH_SECRET),
                             version="aes128gcm")
    assert bytes(plain) == PLAINTEXT


@pytest.mark.parametrize("size", [0, 1, 357, 3993, 4079, 5000])
def test_every_message_has_fresh_keys_and_decrypts_with_http_ece(size: int) -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    secret = bytes(range(16))
    payload = bytes(i % 251 for i in range(size))
    first, second = (ece.encrypt(payload, raw_public(browser), secret) for _ in range(2))
    assert first[:16] != second[:16] and first[21:86] != second[21:86]  # salt, ephemeral key
    for body in (first, second):
        assert bytes(http_ece.decrypt(body, private_key=browser, auth_secret=secret, version="aes128gcm")) == payload
        assert len(body) == 86 + size + 17
        assert int.from_bytes(body[16:20], "big") == max(4096, size + 17) and body[20] == 65
    assert (len(first) <= 4096) == (size <= 3993)  # the most a push service must take (SPEC §9.5)


def test_keys_that_are_not_a_p256_point_and_a_secret_are_refused() -> None:
    good, secret = raw_public(ec.generate_private_key(ec.SECP256R1())), b"s" * 16
    compressed = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.CompressedPoint)
    for key, auth in [(good[:-1], secret), (b"\x04" + b"\x01" * 64, secret), (compressed, secret), (good, b"")]:
        with pytest.raises(ValueError):
            ece.encrypt(b"{}", key, auth)
