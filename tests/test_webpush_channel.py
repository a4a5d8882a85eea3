"""The Web Push channel against the loopback push service: VAPID, encryption and SPEC §9.5's errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from peers.webpush_service import Reply, Subscription, WebPushService
from py_vapid import Vapid02

from pushlang.dispatch.base import Delivery
from pushlang.dispatch.keys import generate
from pushlang.dispatch.webpush import VapidAuth, WebPushChannel, WebPushTarget

SUBJECT = "mailto:ops@shop.example.com"


_RUNNING: list[WebPushService] = []


def serving(service: WebPushService) -> WebPushService:
    """Start the service in its background thread; the autouse fixture stops it after the test."""
    service.start_in_thread()
    _RUNNING.append(service)
    return service


@pytest.fixture(autouse=True)
def _stop_services() -> Any:
    yield
    while _RUNNING:
        _RUNNING.pop().stop_thread()


@pytest.fixture
def vapid(tmp_path: Path) -> tuple[VapidAuth, str]:
    path = tmp_path / "vapid.pem"
    public = generate(path)
    return VapidAuth(Vapid02.from_file(str(path)), SUBJECT), public


def target(sub: Subscription) -> WebPushTarget:
    return WebPushTarget(sub.endpoint, sub.p256dh, sub.auth)


def run(service: WebPushService, body: Callable[[WebPushChannel, list[float]], Awaitable[Any]],
        auth: VapidAuth, **options: Any) -> tuple[Any, list[float]]:
    """Run ``body`` on a fresh event loop with a channel whose sleeps are recorded (the service serves
    from its own thread)."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            channel = WebPushChannel(auth, session, sleep=sleep, jitter=lambda: 1.0, allow_loopback=True, **options)
            return await body(channel, slept)

    return asyncio.run(main()), slept


def test_delivers_the_exact_payload_with_headers_and_a_cached_jwt(vapid: tuple[VapidAuth, str]) -> None:
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    subs = [service.new_subscription(p) for p in ("chrome", "firefox", "edge", "safari")]
    payload = '{"title":"Still thinking, Asha?","body":"Your Lamp is waiting 🛒","send_id":"abc"}'.encode()

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return [await channel.deliver(target(s), payload, ttl=172800, urgency="high", topic="cart") for s in subs]

    results, _ = run(service, body, auth)
    assert all(r.delivered and r.status == 201 and r.attempts == 1 for r in results)
    requests = service.requests
    assert [r.payload for r in requests] == [payload] * 4  # decrypted by the service with each browser's key
    assert {(r.ttl, r.urgency, r.topic, r.auth_scheme, r.vapid_key) for r in requests} == {
        (172800, "high", "cart", "vapid", public)}
    assert requests[0].claims is not None and requests[0].claims["sub"] == SUBJECT
    assert requests[0].claims["aud"] == service.origin
    tokens = {r.headers["authorization"] for r in requests}
    assert len(tokens) == 1  # one JWT per push-service origin, reused until shortly before it expires


def test_gone_subscriptions_are_deactivated(vapid: tuple[VapidAuth, str]) -> None:
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    gone, missing = service.new_subscription(), service.new_subscription()
    service.script(gone.id, [410])
    service.script(missing.id, [404])

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return [await channel.deliver(target(s), b"{}", ttl=60) for s in (gone, missing)]

    results, _ = run(service, body, auth)
    assert [(r.delivered, r.status, r.reason, r.attempts, r.deactivate) for r in results] == [
        (False, 410, "subscription_gone", 1, True), (False, 404, "subscription_gone", 1, True)]


def test_429_waits_the_retry_after_then_delivers(vapid: tuple[VapidAuth, str]) -> None:
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    sub = service.new_subscription()
    service.script(sub.id, [Reply(429, retry_after=7), 201])

    async def body(channel: WebPushChannel, _: list[float]) -> Delivery:
        return await channel.deliver(target(sub), b"{}", ttl=60)

    result, slept = run(service, body, auth)
    assert (result.delivered, result.attempts) == (True, 2)
    assert slept == [7.0]
    assert [r.status for r in service.requests] == [429, 201]


def test_503_retries_with_backoff_then_fails(vapid: tuple[VapidAuth, str]) -> None:
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    sub = service.new_subscription()
    service.script(sub.id, [503] * 5)

    async def body(channel: WebPushChannel, _: list[float]) -> Delivery:
        return await channel.deliver(target(sub), b"{}", ttl=60)

    result, slept = run(service, body, auth, max_attempts=4, base_delay=0.5)
    assert (result.delivered, result.status, result.reason, result.attempts) == (False, 503, "retries_exhausted", 4)
    assert slept == [0.5, 1.0, 2.0]  # exponential; the jitter is pinned to its top in this test
    assert len(service.requests) == 4


def test_400_and_413_fail_without_retry(vapid: tuple[VapidAuth, str]) -> None:
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    bad, big = service.new_subscription(), service.new_subscription()
    service.script(bad.id, [400])

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return [await channel.deliver(target(bad), b"{}", ttl=60),
                await channel.deliver(target(big), b"x" * 5000, ttl=60)]

    results, slept = run(service, body, auth)
    assert [(r.reason, r.attempts) for r in results] == [("bad_request", 1), ("payload_too_large", 1)]
    assert slept == []


def test_a_subscription_with_unusable_keys_fails_alone(vapid: tuple[VapidAuth, str]) -> None:
    """Keys that are not a P-256 point and an auth secret (a bad subscription record) fail that one
    delivery before any request; the deliveries beside it go out."""
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    good = service.new_subscription()
    broken = [WebPushTarget(good.endpoint, "BPk", good.auth), WebPushTarget(good.endpoint, good.p256dh, "%%"),
              WebPushTarget(good.endpoint, good.p256dh[:-4], good.auth), WebPushTarget(good.endpoint, "", "")]

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return list(await asyncio.gather(*(channel.deliver(t, b"{}", ttl=60) for t in [*broken, target(good)])))

    results, slept = run(service, body, auth)
    assert [(r.delivered, r.reason, r.attempts) for r in results] == [
        (False, "invalid_subscription_keys", 0)] * 4 + [(True, None, 1)]
    assert len(service.requests) == 1 and service.requests[0].payload == b"{}" and slept == []



def test_an_endpoint_on_a_known_push_service_is_still_checked_whole(vapid: tuple[VapidAuth, str]) -> None:
    """Once an origin has passed, the channel checks only what else can be wrong with an endpoint
    there: its length and characters; the same endpoints fail on a fresh channel too."""
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))
    good = service.new_subscription()
    bad = [f"{good.endpoint}/x y", f"{good.endpoint}\t", f"{good.endpoint}\x7f", f"{good.endpoint}\u2003",
           f"{good.endpoint}?{'a' * 2048}"]

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        first = await channel.deliver(target(good), b"{}", ttl=60)
        return [first, *[await channel.deliver(WebPushTarget(e, good.p256dh, good.auth), b"{}", ttl=60) for e in bad]]

    async def fresh(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return [await channel.deliver(WebPushTarget(e, good.p256dh, good.auth), b"{}", ttl=60) for e in bad]

    results, _ = run(service, body, auth)
    assert [(r.delivered, r.reason) for r in results] == [(True, None)] + [(False, "invalid_endpoint")] * len(bad)
    assert [r.reason for r in run(service, fresh, auth)[0]] == ["invalid_endpoint"] * len(bad)
    assert len(service.requests) == 1



def test_bodies_encrypted_ahead_go_to_their_own_subscribers_and_never_out_after_a_halt(
        vapid: tuple[VapidAuth, str]) -> None:
    """A request's turn encrypts the bodies of the next pushes waiting for theirs: each still reaches
    its own subscriber, a push with unusable keys among them fails alone, and those still waiting
    when the channel halts never go out."""
    auth, public = vapid
    service = serving(WebPushService(application_server_key=public))  # checks and decrypts every request
    subs = [service.new_subscription() for _ in range(8)]
    later = [service.new_subscription() for _ in range(6)]
    service.script(later[1].id, [401])
    broken = WebPushTarget(subs[0].endpoint, "BPk", subs[0].auth)

    async def body(channel: WebPushChannel, _: list[float]) -> list[list[Delivery]]:
        first = await channel.deliver(target(subs[0]), b"probe", ttl=60)  # the probe, alone
        batch = [target(s) for s in subs[1:4]] + [broken] + [target(s) for s in subs[4:]]
        sent = await asyncio.gather(*(channel.deliver(t, t.endpoint.encode(), ttl=60) for t in batch))
        halted = await asyncio.gather(*(channel.deliver(target(s), b"{}", ttl=60) for s in later))
        return [[first], list(sent), list(halted)]

    (first, sent, halted), _ = run(service, body, auth, concurrency=1)
    assert first[0].delivered and [r.reason for r in sent] == [None] * 3 + ["invalid_subscription_keys"] + [None] * 4
    for sub in subs[1:]:
        assert service.payloads(sub.id) == [sub.endpoint.encode()]
    assert [(r.reason, r.attempts) for r in halted] == [(None, 1), ("vapid_rejected", 1)] + [
        ("channel_halted", 0)] * 4
    assert [r.subscription_id for r in service.requests[-2:]] == [later[0].id, later[1].id]
    assert len(service.requests) == 1 + 7 + 2


def test_a_rejected_vapid_key_halts_the_channel_after_one_attempt(tmp_path: Path) -> None:
    wrong = VapidAuth(Vapid02.from_file(str(_key(tmp_path, "wrong.pem"))), SUBJECT)
    service = serving(WebPushService(application_server_key=generate(tmp_path / "right.pem")))  # pinned
    subs = [service.new_subscription() for _ in range(25)]
    halts: list[str] = []

    async def body(channel: WebPushChannel, _: list[float]) -> list[Delivery]:
        return list(await asyncio.gather(*(channel.deliver(target(s), b"{}", ttl=60) for s in subs)))

    results, _ = run(service, body, wrong, concurrency=25, on_halt=halts.append)
    assert len(service.requests) == 1  # one probe, not one attempt per user
    assert service.requests[0].status == 403
    assert sorted(r.reason or "" for r in results) == ["channel_halted"] * 24 + ["vapid_rejected"]
    assert sum(r.attempts for r in results) == 1
    assert len(halts) == 1 and "403" in halts[0]


def _key(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    generate(path)
    return path


def test_vapid_auth_hides_the_key_and_checks_the_subject(tmp_path: Path) -> None:
    auth = VapidAuth(Vapid02.from_file(str(_key(tmp_path, "k.pem"))), SUBJECT)
    assert "PRIVATE" not in repr(auth) and repr(auth) == f"VapidAuth(subject={SUBJECT!r})"
    with pytest.raises(ValueError):
        VapidAuth(Vapid02.from_file(str(tmp_path / "k.pem")), "ops@shop.example.com")
