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
from pywebpush import WebPusher

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
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        now = int(self._clock())
        cached = self._cache.get(origin)
        if cached is not None and cached[0] - JWT_RENEW_BEFORE > now:
            return cached[1]
        expires = now + JWT_LIFETIME
        header: str = self._key.sign({"aud": origin, "exp": expires, "sub": self.subject})["Authorization"]
        self._cache[origin] = (expires, header)
        return header


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
        async with self._probe(target.endpoint).gate():
            return await self._deliver(target, payload, ttl=ttl, urgency=urgency, topic=topic)

    def _probe(self, endpoint: str) -> Probe:
        """One probe per push-service origin."""
        parts = urlsplit(endpoint)
        key = f"{parts.scheme}://{parts.netloc}"
        found = self._origins.get(key)
        if found is None:
            found = self._origins[key] = Probe()
        return found

    async def _deliver(self, target: WebPushTarget, payload: bytes, *, ttl: int, urgency: str | None,
                       topic: str | None) -> Delivery:
        if self.halted is not None:
            return Delivery(False, None, "channel_halted", 0)
        headers = {"Authorization": self.auth.authorization(target.endpoint)}
        if urgency:
            headers["Urgency"] = urgency
        if topic:
            headers["Topic"] = topic
        info = {"endpoint": target.endpoint, "keys": {"p256dh": target.p256dh, "auth": target.auth}}
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                async with self._limit:
                    pusher = WebPusher(info, aiohttp_session=self.session)
                    response = await pusher.send_async(data=payload, headers=dict(headers), ttl=ttl,
                                                       content_encoding="aes128gcm", timeout=self.timeout)
                    assert not isinstance(response, str)
                    status = response.status
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    response.release()
            except (TimeoutError, aiohttp.ClientError, OSError):
                status = None  # the network failed: like a 503, worth another try
            if status is not None and 200 <= status < 300:
                return Delivery(True, status, None, attempt)
            if status in (404, 410):
                return Delivery(False, status, "subscription_gone", attempt, deactivate=True)
            if status in (401, 403):
                self._halt(f"the push service at {urlsplit(target.endpoint).netloc} answered {status}: "
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
