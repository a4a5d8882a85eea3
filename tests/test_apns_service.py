"""The loopback APNs (tests/peers/apns_service.py) is a real peer: aioapns, unmodified, talks to it
over a verified TLS handshake and HTTP/2 and gets Apple-shaped answers (issue 4, acceptance 2).

aioapns is pointed at the service with ``svc.point_aioapns(apns)`` (host/port of the protocol class
and the pool's SSL context) or process-wide with ``svc.redirect_aioapns(monkeypatch)``; see the
module docstring of ``peers.apns_service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h2", reason="the loopback APNs needs h2 (pip install h2)")
pytest.importorskip("jwt", reason="the loopback APNs needs PyJWT (pip install 'pyjwt[crypto]')")
pytest.importorskip("cryptography", reason="the loopback APNs needs cryptography")
pytest.importorskip("aioapns", reason="the APNs client under test is aioapns (pip install aioapns)")

import aioapns.connection
from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from peers.apns_service import (
    ApnsService,
    ProviderKey,
    Reply,
    close_aioapns,
    forge_unsigned_token,
    make_device_token,
    make_provider_key,
)

TOPIC = "web.com.example.shop"
MESSAGE: dict[str, Any] = {
    "aps": {
        "alert": {"title": "Still thinking it over?", "body": "Your cart is waiting — 2 items", "action": "View"},
        "url-args": ["cart"],
    }
}


@pytest.fixture
def key() -> ProviderKey:
    return make_provider_key()


@pytest.fixture
def svc(key: ProviderKey) -> Iterator[ApnsService]:
    with ApnsService(key, topic=TOPIC) as service:
        yield service


async def _send(
    svc: ApnsService,
    requests: Sequence[NotificationRequest],
    *,
    key: str,
    key_id: str,
    team_id: str,
    point: bool = True,
    concurrent: bool = False,
) -> list[NotificationResult]:
    """Build an aioapns client inside the running loop, point it at ``svc``, send, close."""
    apns = APNs(
        key=key,
        key_id=key_id,
        team_id=team_id,
        topic=TOPIC,
        use_sandbox=False,
        max_connection_attempts=1,
    )
    if point:
        svc.point_aioapns(apns)
    try:
        if concurrent:
            return list(await asyncio.gather(*(apns.send_notification(r) for r in requests)))
        return [await apns.send_notification(r) for r in requests]
    finally:
        await close_aioapns(apns)


def send(svc: ApnsService, provider: ProviderKey, *requests: NotificationRequest, **kw: Any) -> list[NotificationResult]:
    options: dict[str, Any] = {
        "key": provider.private_key_pem,
        "key_id": provider.key_id,
        "team_id": provider.team_id,
    }
    options.update(kw)
    return asyncio.run(_send(svc, requests, **options))


def note(token: str, message: dict[str, Any] | None = None, **kw: Any) -> NotificationRequest:
    return NotificationRequest(device_token=token, message=message or MESSAGE, **kw)


# ---- the peer is real: TLS with the test CA, ALPN h2 -------------------------------------------


def test_tls_handshake_is_verified_against_the_test_ca_and_negotiates_h2(svc: ApnsService) -> None:
    async def handshake(context: ssl.SSLContext, server_hostname: str) -> str | None:
        reader, writer = await asyncio.open_connection(
            svc.host, svc.port, ssl=context, server_hostname=server_hostname
        )
        ssl_object = writer.get_extra_info("ssl_object")
        chosen: str | None = ssl_object.selected_alpn_protocol()
        issuer = ssl_object.getpeercert()["issuer"]
        assert ("commonName", "pushlang loopback APNs test CA") in [pair for rdn in issuer for pair in rdn]
        # The server speaks first in HTTP/2: a SETTINGS frame (type 0x4) on stream 0.
        frame_header = await asyncio.wait_for(reader.readexactly(9), timeout=5)
        assert frame_header[3] == 0x4 and int.from_bytes(frame_header[5:9], "big") == 0
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):  # the server may still be writing
            await writer.wait_closed()
        return chosen

    assert asyncio.run(handshake(svc.client_ssl_context(), "127.0.0.1")) == "h2"
    assert asyncio.run(handshake(svc.client_ssl_context(), "localhost")) == "h2"

    # Not trusting the test CA (the system store only) fails the handshake: the TLS is genuine.
    untrusting = ssl.create_default_context(cafile=None)
    untrusting.load_verify_locations(cadata=_unrelated_ca_pem())
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake(untrusting, "127.0.0.1"))
    # A name the certificate was not issued for fails too.
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(handshake(svc.client_ssl_context(), "api.push.apple.com"))


def _unrelated_ca_pem() -> str:
    with ApnsService(make_provider_key()) as other:
        return Path(other.ca_file).read_text()


def test_ca_file_is_a_temporary_file_removed_on_stop(key: ProviderKey) -> None:
    service = ApnsService(key, topic=TOPIC).start()
    ca_file = Path(service.ca_file)
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    service.stop()
    assert not ca_file.exists()


# ---- the answers, through aioapns --------------------------------------------------------------


def test_200_delivers_the_payload_exactly(svc: ApnsService, key: ProviderKey, tmp_path: Path) -> None:
    token = make_device_token()
    p8 = key.write_p8(tmp_path)  # what an operator configures: the .p8 file Apple issued
    assert p8.stat().st_mode & 0o777 == 0o600
    [result] = send(
        svc,
        key,
        note(token, push_type=PushType.ALERT, priority=10, time_to_live=3600),
        key=p8.read_text(),
    )

    assert result.is_successful and result.status == "200" and result.description is None
    [record] = svc.requests
    assert record.status == 200 and record.reason is None
    assert record.apns_id == result.notification_id
    assert record.method == "POST" and record.path == f"/3/device/{token}" and record.token == token
    assert record.payload == MESSAGE  # exactly what was sent, nothing added or lost
    assert record.safari_problems == []
    assert record.topic == TOPIC
    assert record.push_type == "alert" and record.priority == "10"
    assert record.expiration is not None and abs(int(record.expiration) - (time.time() + 3600)) < 60
    assert record.jwt_header == {"alg": "ES256", "kid": key.key_id, "typ": "JWT"}
    assert record.jwt_claims is not None and record.jwt_claims["iss"] == key.team_id
    assert time.time() - record.jwt_claims["iat"] < 60 and record.jwt_error is None
    assert "authorization" not in record.headers
    assert record.alpn == "h2"


def test_scripted_410_is_unregistered_with_a_timestamp(svc: ApnsService, key: ProviderKey) -> None:
    token = make_device_token()
    svc.script(token, [410])
    before = int(time.time() * 1000)
    [result] = send(svc, key, note(token))
    assert not result.is_successful
    assert result.status == "410" and result.description == "Unregistered"
    assert isinstance(result.timestamp, int) and before - 1000 <= result.timestamp <= int(time.time() * 1000)
    # the script is used up: the next request gets the default 200
    [again] = send(svc, key, note(token))
    assert again.status == "200"
    assert [r.status for r in svc.requests_for(token)] == [410, 200]


def test_scripted_410_with_apples_other_reason_and_timestamp(svc: ApnsService, key: ProviderKey) -> None:
    token = make_device_token()
    svc.script(token, [Reply(410, "ExpiredToken", timestamp_ms=1_700_000_000_000)])
    [result] = send(svc, key, note(token))
    assert (result.status, result.description, result.timestamp) == ("410", "ExpiredToken", 1_700_000_000_000)


def test_400_bad_device_token_scripted_and_malformed(svc: ApnsService, key: ProviderKey) -> None:
    token = make_device_token()
    svc.script(token, [400])
    scripted, malformed = send(svc, key, note(token), note("not-a-device-token"))
    assert (scripted.status, scripted.description) == ("400", "BadDeviceToken")
    assert (malformed.status, malformed.description) == ("400", "BadDeviceToken")


def test_jwt_signed_with_the_wrong_key_is_403_invalid_provider_token(svc: ApnsService, key: ProviderKey) -> None:
    token = make_device_token()
    svc.script(token, [200])
    impostor = make_provider_key(key_id=key.key_id, team_id=key.team_id)  # same ids, other key
    [result] = send(svc, key, note(token), key=impostor.private_key_pem)
    assert (result.status, result.description) == ("403", "InvalidProviderToken")
    [record] = svc.requests
    assert record.jwt_claims is None and record.jwt_error is not None and "Signature" in record.jwt_error
    assert svc.pending_script(token) == [Reply(200)]  # a rejected request does not consume the script


@pytest.mark.parametrize("field", ["key_id", "team_id"])
def test_jwt_with_another_key_id_or_team_is_403(svc: ApnsService, key: ProviderKey, field: str) -> None:
    [result] = send(svc, key, note(make_device_token()), **{field: "ZZZZZZZZZZ"})
    assert (result.status, result.description) == ("403", "InvalidProviderToken")


def test_jwt_older_than_an_hour_is_403_expired_provider_token(
    svc: ApnsService, key: ProviderKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_hours_ago = time.time() - 7200
    monkeypatch.setattr(aioapns.connection, "time", types.SimpleNamespace(time=lambda: two_hours_ago))
    [result] = send(svc, key, note(make_device_token()))
    assert (result.status, result.description) == ("403", "ExpiredProviderToken")
    [record] = svc.requests
    assert record.jwt_error is not None and "old" in record.jwt_error


def test_unsigned_jwt_is_403(svc: ApnsService, key: ProviderKey, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = forge_unsigned_token({"iss": key.team_id, "iat": int(time.time())}, kid=key.key_id)
    monkeypatch.setattr(
        aioapns.connection.JWTAuthorizationHeaderProvider, "get_header", lambda self: f"bearer {forged}"
    )
    [result] = send(svc, key, note(make_device_token()))
    assert (result.status, result.description) == ("403", "InvalidProviderToken")


def test_503_then_recovery_and_429(svc: ApnsService, key: ProviderKey) -> None:
    flaky, throttled = make_device_token(), make_device_token()
    svc.script(flaky, [503, 503, 200])
    svc.script(throttled, [429])
    results = send(svc, key, note(flaky), note(flaky), note(flaky), note(throttled))
    assert [(r.status, r.description) for r in results] == [
        ("503", "ServiceUnavailable"),
        ("503", "ServiceUnavailable"),
        ("200", None),
        ("429", "TooManyRequests"),
    ]
    assert [r.status for r in svc.requests_for(flaky)] == [503, 503, 200]


def test_wrong_topic_and_oversized_payload(svc: ApnsService, key: ProviderKey) -> None:
    token = make_device_token()
    big = {"aps": {"alert": {"title": "t", "body": "x" * 5000, "action": "View"}, "url-args": []}}
    other_topic, too_large = send(svc, key, note(token, apns_topic="web.com.example.other"), note(token, big))
    assert (other_topic.status, other_topic.description) == ("400", "TopicDisallowed")
    assert (too_large.status, too_large.description) == ("413", "PayloadTooLarge")


def test_concurrent_streams_share_one_connection(svc: ApnsService, key: ProviderKey) -> None:
    tokens = [make_device_token() for _ in range(50)]
    svc.script(tokens[7], [410])
    results = send(svc, key, *(note(t) for t in tokens), concurrent=True)
    assert sorted(r.status for r in results) == ["200"] * 49 + ["410"]
    assert len(svc.requests) == 50 and {r.token for r in svc.requests} == set(tokens)
    assert svc.connections_accepted == 1
    assert len({r.stream_id for r in svc.requests}) == 50


def test_delayed_reply_does_not_block_other_streams(svc: ApnsService, key: ProviderKey) -> None:
    slow, fast = make_device_token(), make_device_token()
    svc.script(slow, [Reply(200, delay=0.5)])
    started = time.monotonic()
    send(svc, key, note(slow), note(fast), concurrent=True)
    assert time.monotonic() - started >= 0.5
    assert [r.token for r in svc.requests] == [fast, slow]


def test_redirect_aioapns_process_wide(svc: ApnsService, key: ProviderKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that builds its own ``APNs(...)`` (no hook) reaches the service after the redirect;
    aioapns's default context offers no ALPN, so the service speaks HTTP/2 by prior knowledge."""
    svc.redirect_aioapns(monkeypatch)
    token = make_device_token()
    svc.script(token, [410])
    ok, gone = send(svc, key, note(make_device_token()), note(token), point=False)
    assert (ok.status, gone.status, gone.description) == ("200", "410", "Unregistered")
    assert {r.alpn for r in svc.requests} == {None}
