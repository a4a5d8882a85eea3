"""Web Push delivery (Chrome, Firefox, Edge, Safari 16+) with pywebpush, and SPEC §9.5's error taxonomy.

One shared aiohttp session, bounded concurrency, a VAPID JWT cached per push-service origin until
shortly before it expires, TTL always set, Urgency and Topic when the message has them.
Outcomes: delivered on any 2xx; 404/410 deactivate the subscription; 429/500/503 (and network
errors) retry with exponential backoff and jitter, honouring Retry-After, then fail; 400 and 413
fail at once; 401/403 halt the channel — the first request to a push service is a probe, so a
rejected VAPID key costs one attempt, not one per user.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException
from yarl import URL

from pushlang.dispatch.base import Delivery, Halt, Probe, backoff

JWT_LIFETIME = 12 * 3600  # RFC 8292 allows up to 24 h
JWT_RENEW_BEFORE = 10 * 60
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class WebPushTarget:
    endpoint: str
    p256dh: str
    auth: str


class VapidAuth:
    """Signs the VAPID JWT (RFC 8292) once per push-service origin and reuses it until near expiry.

    The private key stays inside: ``repr`` and logs never show it.
    """

    def __init__(self, key: Vapid02, subject: str, clock: Callable[[], float] = time.time) -> None:
        if not subject.startswith(("mailto:", "https:")):
            raise ValueError("the VAPID subject must be a mailto: or https: URL")
        self._key = key
        self.subject = subject
        self._clock = clock
        self._cache: dict[str, tuple[int, str]] = {}

    @classmethod
    def from_file(cls, path: str, subject: str) -> VapidAuth:
        return cls(Vapid02.from_file(path), subject)

    def __repr__(self) -> str:
        return f"VapidAuth(subject={self.subject!r})"

    def authorization(self, endpoint: str) -> str:
        origin = _origin(endpoint)
        now = int(self._clock())
        cached = self._cache.get(origin)
        if cached is not None and cached[0] - JWT_RENEW_BEFORE > now:
            return cached[1]
        expires = now + JWT_LIFETIME
        header: str = self._key.sign({"aud": origin, "exp": expires, "sub": self.subject})["Authorization"]
        self._cache[origin] = (expires, header)
        return header


def webpush_session(concurrency: int = 64) -> aiohttp.ClientSession:
    """The one aiohttp session every Web Push request shares: keep-alive connections, room for
    ``concurrency`` of them, and no cookie jar (push services set none that matter)."""
    connector = aiohttp.TCPConnector(limit=max(100, concurrency), limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class WebPushChannel:
    def __init__(self, auth: VapidAuth, session: aiohttp.ClientSession, *, concurrency: int = 64,
                 timeout: float = 10.0, max_attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random,
                 on_halt: Callable[[str], None] | None = None) -> None:
        self.auth = auth
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self._sleep, self._jitter = sleep, jitter
        self._limit = asyncio.Semaphore(concurrency)
        self._origins: dict[str, Probe] = {}
        self._halt = Halt("Web Push", on_halt)

    @property
    def halted(self) -> str | None:
        """Why the channel is halted, or None."""
        return self._halt.why

    async def deliver(self, target: WebPushTarget, payload: bytes, *, ttl: int, urgency: str | None = None,
                      topic: str | None = None) -> Delivery:
        origin = _origin(target.endpoint)
        probe = self._origins.get(origin)
        if probe is None:
            probe = self._origins[origin] = Probe()
        if probe.answered:  # the usual case once a push service has answered: no gate to pass
            return await self._deliver(target, origin, payload, ttl=ttl, urgency=urgency, topic=topic)
        async with probe.gate():
            return await self._deliver(target, origin, payload, ttl=ttl, urgency=urgency, topic=topic)

    async def _deliver(self, target: WebPushTarget, origin: str, payload: bytes, *, ttl: int,
                       urgency: str | None, topic: str | None) -> Delivery:
        if self.halted is not None:
            return Delivery(False, None, "channel_halted", 0)
        headers = {"Authorization": self.auth.authorization(target.endpoint), "TTL": str(ttl),
                   "Content-Encoding": "aes128gcm"}
        if urgency:
            headers["Urgency"] = urgency
        if topic:
            headers["Topic"] = topic
        url = URL(target.endpoint, encoded=True)
        body: bytes | None = None
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with self._limit:
                    if body is None:
                        body = _encrypt(target, payload)
                        if body is None:
                            return Delivery(False, None, "invalid_subscription_keys", 0)
                    async with self.session.post(url, data=body, headers=headers, timeout=self.timeout) as response:
                        status = response.status
                        retry_after = _retry_after(response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError):
                status = None  # the network failed: like a 503, worth another try
            if status is not None and 200 <= status < 300:
                return Delivery(True, status, None, attempt)
            if status in (404, 410):
                return Delivery(False, status, "subscription_gone", attempt, deactivate=True)
            if status in (401, 403):
                self._halt(f"the push service at {urlsplit(origin).netloc} answered {status}: "
                           "the VAPID key or subject was rejected")
                return Delivery(False, status, "vapid_rejected", attempt)
            if status is not None and status not in RETRY_STATUSES:
                reason = {400: "bad_request", 413: "payload_too_large"}.get(status, f"http_{status}")
                return Delivery(False, status, reason, attempt)
            if attempt < self.max_attempts:
                await self._sleep(self._backoff(attempt, retry_after))
        return Delivery(False, status, "retries_exhausted", self.max_attempts)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff(attempt, retry_after, base=self.base_delay, ceiling=self.max_delay, jitter=self._jitter())


def _encrypt(target: WebPushTarget, payload: bytes) -> bytes | None:
    """The aes128gcm body (RFC 8291) by pywebpush, through http_ece, with a fresh ephemeral key and
    salt; None when the subscription's keys are not a P-256 point and a 16-byte secret.

    It runs inside the concurrency bound, so encryption overlaps the requests in flight; a retry
    resends the same body."""
    info = {"endpoint": target.endpoint, "keys": {"p256dh": target.p256dh, "auth": target.auth}}
    try:
        body: bytes = WebPusher(info).encode(payload, "aes128gcm")["body"]
    except (ValueError, TypeError, IndexError, WebPushException):  # pywebpush on bad keys; binascii.Error is a ValueError
        return None
    return body


def _origin(endpoint: str) -> str:
    """``scheme://host[:port]`` of an endpoint URL: the VAPID ``aud`` and the key of the probe."""
    scheme, _, rest = endpoint.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0]}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, float(parsedate_to_datetime(value).timestamp() - time.time()))
        except (TypeError, ValueError):
            return None
