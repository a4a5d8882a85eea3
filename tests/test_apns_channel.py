"""The APNs channel (legacy Safari) against the loopback APNs through real aioapns: SPEC §9.5's payload
and error taxonomy (issue 4, acceptance 2)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("h2", reason="the loopback APNs needs h2 (pip install h2)")
pytest.importorskip("jwt", reason="the loopback APNs needs PyJWT (pip install 'pyjwt[crypto]')")
pytest.importorskip("aioapns", reason="the APNs channel uses aioapns (pip install aioapns)")

import aioapns.connection
from aioapns import APNs
from peers.apns_service import ApnsService, ProviderKey, Reply, make_device_token, make_provider_key

from pushlang.dispatch.apns import ApnsChannel, ApnsCredentials, make_client, safari_payload
from pushlang.dispatch.base import Delivery

TOPIC = "web.com.example.shop"
DEEP_LINK = "https://shop.example.com/cart?utm_source=push&items=2"
PAYLOAD = safari_payload("Still thinking it over?", "Your cart is waiting — 2 items", DEEP_LINK)


@pytest.fixture
def key() -> ProviderKey:
    return make_provider_key()


@pytest.fixture
def svc(key: ProviderKey) -> Any:
    with ApnsService(key, topic=TOPIC) as service:
        yield service


def credentials(provider: ProviderKey, directory: Path) -> ApnsCredentials:
    """What an operator configures: the .p8 file Apple issued, its key id, the team id."""
    return ApnsCredentials(provider.write_p8(directory), provider.key_id, provider.team_id, TOPIC)


@pytest.fixture
def creds(key: ProviderKey, tmp_path: Path) -> ApnsCredentials:
    return credentials(key, tmp_path)


def pointed_at(svc: ApnsService) -> Callable[[ApnsCredentials], APNs]:
    """The client factory: the channel's default client, dialling the loopback service."""
    def factory(c: ApnsCredentials) -> APNs:
        apns = make_client(c)
        svc.point_aioapns(apns)
        return apns
    return factory


def run(svc: ApnsService, creds: ApnsCredentials, body: Callable[[ApnsChannel], Awaitable[Any]],
        **options: Any) -> tuple[Any, list[float]]:
    """Run ``body`` on a fresh event loop with a channel pointed at ``svc`` whose sleeps are recorded
    (jitter pinned to its top, so the backoff is exactly base · 2^(n-1))."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    options.setdefault("client_factory", pointed_at(svc))

    async def main() -> Any:
        async with ApnsChannel(creds, sleep=sleep, jitter=lambda: 1.0, **options) as channel:
            return await body(channel)

    return asyncio.run(main()), slept


def deliver(token: str, payload: dict[str, Any] = PAYLOAD,
            ttl: int = 3600) -> Callable[[ApnsChannel], Awaitable[Delivery]]:
    async def body(channel: ApnsChannel) -> Delivery:
        return await channel.deliver(token, payload, ttl=ttl)
    return body


def outcome(d: Delivery) -> tuple[bool, int | None, str | None, int, bool]:
    return (d.delivered, d.status, d.reason, d.attempts, d.deactivate)


# ---- the payload --------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "args"), [
    ("https://shop.example.com/cart?utm_source=push&items=2", ["cart?utm_source=push&items=2"]),
    ("https://shop.example.com/p/lamp-42", ["p/lamp-42"]),
    ("https://shop.example.com/", [""]),
    ("https://shop.example.com", [""]),
    ("https://shop.example.com/sale?", ["sale"]),
    ("https://shop.example.com/a/b?q=%20x#reviews", ["a/b?q=%20x"]),
])
def test_safari_payload_derives_url_args_from_the_deep_link(url: str, args: list[str]) -> None:
    assert safari_payload("T", "B", url) == {
        "aps": {"alert": {"title": "T", "body": "B", "action": "View"}, "url-args": args}}
    assert safari_payload("T", "B", url, action="Open")["aps"]["alert"]["action"] == "Open"
    with pytest.raises(ValueError):
        safari_payload("T", "B", "")


# ---- the answers, through aioapns ---------------------------------------------------------------


def test_200_delivers_the_payload_exactly(svc: ApnsService, creds: ApnsCredentials, key: ProviderKey) -> None:
    first, second = make_device_token(), make_device_token()

    async def body(channel: ApnsChannel) -> list[Delivery]:
        return [await channel.deliver(t, PAYLOAD, ttl=3600) for t in (first, second)]

    results, slept = run(svc, creds, body)
    assert [outcome(r) for r in results] == [(True, 200, None, 1, False)] * 2
    assert slept == []
    record = svc.requests[0]
    assert record.method == "POST" and record.path == f"/3/device/{first}" and record.status == 200
    assert record.payload == {
        "aps": {
            "alert": {"title": "Still thinking it over?", "body": "Your cart is waiting — 2 items",
                      "action": "View"},
            "url-args": ["cart?utm_source=push&items=2"],
        }
    }
    assert record.safari_problems == []
    assert record.topic == TOPIC  # the website push id
    assert record.push_type == "alert" and record.priority == "10"
    assert record.expiration is not None and abs(int(record.expiration) - (time.time() + 3600)) < 60
    assert record.jwt_header == {"alg": "ES256", "kid": key.key_id, "typ": "JWT"}
    assert record.jwt_claims is not None and record.jwt_claims["iss"] == key.team_id
    assert [r.token for r in svc.requests] == [first, second]
    assert svc.connections_accepted == 1  # one shared client


@pytest.mark.parametrize("reply", [Reply(410), Reply(410, "ExpiredToken")])
def test_410_unregistered_deactivates(svc: ApnsService, creds: ApnsCredentials, reply: Reply) -> None:
    token = make_device_token()
    svc.script(token, [reply])
    result, slept = run(svc, creds, deliver(token))
    assert outcome(result) == (False, 410, "subscription_gone", 1, True)
    assert slept == [] and len(svc.requests) == 1


def test_400_fails_without_retry(svc: ApnsService, creds: ApnsCredentials) -> None:
    scripted, other = make_device_token(), make_device_token()
    svc.script(scripted, [400])  # BadDeviceToken
    svc.script(other, [Reply(400, "BadMessageId")])

    async def body(channel: ApnsChannel) -> list[Delivery]:
        return [await channel.deliver(t, PAYLOAD, ttl=60) for t in (scripted, "not-a-device-token", other)]

    results, slept = run(svc, creds, body)
    assert [outcome(r) for r in results] == [
        (False, 400, "bad_device_token", 1, False),
        (False, 400, "bad_device_token", 1, False),
        (False, 400, "bad_request", 1, False),
    ]
    assert slept == []
    assert [(r.status, r.reason) for r in svc.requests] == [
        (400, "BadDeviceToken"), (400, "BadDeviceToken"), (400, "BadMessageId")]


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_errors_retry_with_backoff_then_deliver(svc: ApnsService, creds: ApnsCredentials,
                                                          status: int) -> None:
    token = make_device_token()
    svc.script(token, [status, status, 200])
    result, slept = run(svc, creds, deliver(token), base_delay=0.5)
    assert outcome(result) == (True, 200, None, 3, False)
    assert slept == [0.5, 1.0]
    assert [r.status for r in svc.requests_for(token)] == [status, status, 200]


def test_503_every_time_exhausts_the_retries(svc: ApnsService, creds: ApnsCredentials) -> None:
    token = make_device_token()
    svc.script(token, [503] * 6)
    result, slept = run(svc, creds, deliver(token), max_attempts=4, base_delay=0.5)
    assert outcome(result) == (False, 503, "retries_exhausted", 4, False)
    assert slept == [0.5, 1.0, 2.0]  # exponential; the jitter is pinned to its top
    assert [(r.status, r.reason) for r in svc.requests] == [(503, "ServiceUnavailable")] * 4


def test_a_timeout_is_retried_on_the_same_connection(svc: ApnsService, creds: ApnsCredentials,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    token = make_device_token()
    svc.script(token, [Reply(200, delay=1.0)])  # then the default 200
    result, slept = run(svc, creds, deliver(token), timeout=0.2)
    assert outcome(result) == (True, 200, None, 2, False)
    assert slept == [0.5]
    assert not [r for r in caplog.records if r.name == "asyncio"]  # the abandoned send was reaped


def test_a_timeout_is_retried_once_only_under_the_sends_collapse_id(svc: ApnsService,
                                                                   creds: ApnsCredentials) -> None:
    """APNs may have taken a request that timed out: one more try, and the device shows a copy
    that does arrive in place of the first (same apns-collapse-id)."""
    token = make_device_token()
    svc.script(token, [Reply(200, delay=1.0)] * 4)

    async def body(channel: ApnsChannel) -> Delivery:
        result = await channel.deliver(token, PAYLOAD, ttl=3600, collapse_id="9f2c1e0d4b3a29181716a5b4")
        await asyncio.sleep(1.2)  # the connection stays open for the late answers
        return result

    result, slept = run(svc, creds, body, timeout=0.2)
    assert outcome(result) == (False, None, "timeout", 2, False) and slept == [0.5]
    assert [r.collapse_id for r in svc.requests] == ["9f2c1e0d4b3a29181716a5b4"] * 2


def test_an_unreachable_service_is_a_retryable_network_error(svc: ApnsService,
                                                             creds: ApnsCredentials) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    def factory(c: ApnsCredentials) -> APNs:
        apns = make_client(c)
        svc.point_aioapns(apns)
        apns.pool.protocol_class = type("Closed", (apns.pool.protocol_class,), {"APNS_PORT": closed_port})
        return apns

    result, slept = run(svc, creds, deliver(make_device_token()), max_attempts=2, client_factory=factory)
    assert outcome(result) == (False, None, "retries_exhausted", 2, False)
    assert slept == [0.5]
    assert svc.requests == []


def test_an_oversized_payload_is_refused_before_sending(svc: ApnsService, creds: ApnsCredentials) -> None:
    big = safari_payload("t", "x" * 5000, DEEP_LINK)
    result, _ = run(svc, creds, deliver(make_device_token(), big))
    assert outcome(result) == (False, None, "payload_too_large", 0, False)
    assert svc.requests == []


# ---- invalid authentication halts the channel ---------------------------------------------------


def test_an_untrusted_provider_key_halts_the_channel_after_one_request(svc: ApnsService,
                                                                      tmp_path: Path) -> None:
    untrusted = credentials(make_provider_key(), tmp_path)  # a key the service was never told about
    tokens = [make_device_token() for _ in range(20)]
    halts: list[str] = []

    async def body(channel: ApnsChannel) -> tuple[list[Delivery], Delivery, str | None]:
        results = list(await asyncio.gather(*(channel.deliver(t, PAYLOAD, ttl=60) for t in tokens)))
        later = await channel.deliver(make_device_token(), PAYLOAD, ttl=60)
        return results, later, channel.halted

    (results, later, halted), slept = run(svc, untrusted, body, concurrency=20, on_halt=halts.append)
    assert [(r.status, r.reason) for r in svc.requests] == [(403, "InvalidProviderToken")]  # one probe
    assert sorted(r.reason or "" for r in results) == ["apns_auth_rejected"] + ["channel_halted"] * 19
    assert sum(r.attempts for r in results) == 1
    halted_ones = [outcome(r) for r in results if r.reason == "channel_halted"]
    assert halted_ones == [(False, None, "channel_halted", 0, False)] * 19
    assert outcome(later) == (False, None, "channel_halted", 0, False)
    assert len(halts) == 1 and halts[0] == halted
    assert "403 InvalidProviderToken" in halts[0] and untrusted.key_id in halts[0]
    assert slept == []


def test_an_expired_provider_token_halts_the_channel(svc: ApnsService, creds: ApnsCredentials,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    two_hours_ago = time.time() - 7200  # aioapns signs the JWT with this iat
    monkeypatch.setattr(aioapns.connection, "time", types.SimpleNamespace(time=lambda: two_hours_ago))
    halts: list[str] = []
    result, _ = run(svc, creds, deliver(make_device_token()), on_halt=halts.append)
    assert outcome(result) == (False, 403, "apns_auth_rejected", 1, False)
    assert len(halts) == 1 and "ExpiredProviderToken" in halts[0]


# ---- the .p8 key stays secret -------------------------------------------------------------------


def test_credentials_check_the_key_and_never_show_it(key: ProviderKey, tmp_path: Path) -> None:
    creds = credentials(key, tmp_path)
    for shown in (repr(creds), str(creds), f"{creds}", repr(ApnsChannel(creds))):
        assert "PRIVATE KEY" not in shown and _secret_lines(key) & set(shown.split()) == set()
        assert key.key_id in shown and TOPIC in shown
    assert creds.key == key.private_key_pem  # read from the file

    not_a_key = tmp_path / "AuthKey_BROKEN.p8"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LW1hdGVyaWFs\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError) as error:
        ApnsCredentials(not_a_key, key.key_id, key.team_id, TOPIC)
    assert "c2VjcmV0" not in str(error.value) and error.value.__cause__ is None
    with pytest.raises(ValueError, match="web"):
        ApnsCredentials(key.write_p8(tmp_path), key.key_id, key.team_id, "com.example.shop")


def _secret_lines(key: ProviderKey) -> set[str]:
    return {line for line in key.private_key_pem.splitlines() if line and not line.startswith("-----")}


def test_the_key_never_reaches_logs_or_output(svc: ApnsService, key: ProviderKey, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "good").mkdir()
    (tmp_path / "impostor").mkdir()
    good = credentials(key, tmp_path / "good")
    impostor_key = make_provider_key(key_id=key.key_id, team_id=key.team_id)  # same ids, other key
    impostor = credentials(impostor_key, tmp_path / "impostor")
    gone, bad, flaky = make_device_token(), make_device_token(), make_device_token()
    svc.script(gone, [410])
    svc.script(bad, [400])
    svc.script(flaky, [503, 200])

    async def body(channel: ApnsChannel) -> list[Delivery]:
        return [await channel.deliver(t, PAYLOAD, ttl=60) for t in (make_device_token(), gone, bad, flaky)]

    results, _ = run(svc, good, body)
    halted, _ = run(svc, impostor, deliver(make_device_token()))
    print(results, halted, good, impostor)  # even printing everything the channel hands back is safe

    assert [r.reason for r in results] == [None, "subscription_gone", "bad_device_token", None]
    assert halted.reason == "apns_auth_rejected"
    assert "APNs channel halted" in caplog.text and "InvalidProviderToken" in caplog.text
    captured = capsys.readouterr()
    for text in (caplog.text, captured.out, captured.err):
        assert "PRIVATE KEY" not in text
        for line in _secret_lines(key) | _secret_lines(impostor_key):
            assert line not in text
        assert "bearer" not in text.lower()  # nor the provider JWT signed with it
