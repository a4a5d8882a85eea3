"""Legacy Safari website push (device tokens) through APNs with aioapns, and SPEC §9.5's error taxonomy.

Token authentication with the .p8 key Apple issues (ES256 provider JWT: ``kid`` = key id, ``iss`` =
team id; aioapns signs and renews it), the website push id ``web.…`` as ``apns-topic``, priority 10,
push type ``alert``, ``apns-expiration`` = now + TTL, and the payload of SPEC §9.5 built by
:func:`safari_payload`. One ``aioapns.APNs`` client (one HTTP/2 connection pool) is built lazily
inside the running event loop and shared; concurrency is bounded.

Outcomes, as for Web Push: delivered on 200; 410 (``Unregistered``, "the device token is inactive
for the topic") deactivates the subscription; 429/500/503 (and network errors or timeouts) retry
with exponential backoff and jitter, then fail with ``retries_exhausted``; 400 ``BadDeviceToken``
fails at once with ``bad_device_token`` (not deactivated: it is also what a sandbox token sent to
production gets), other 400s with ``bad_request``, 413 with ``payload_too_large``; a 403 (invalid
authentication: ``InvalidProviderToken``, ``ExpiredProviderToken``, ``MissingProviderToken``…)
halts the channel with one operator-visible error. The first request is a probe and the others
wait for its first answer, so a rejected provider key costs one request, not one per user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from h2.exceptions import H2Error

from pushlang.dispatch.base import Delivery, Halt, Hold, Probe, Wire, after_timeout, backoff

log = logging.getLogger("pushlang.dispatch.apns")

PRIORITY = 10
MAX_PAYLOAD_BYTES = 4096  # Apple's limit for website push notifications
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError, OSError, ApnsConnectionError, ConnectionClosed, MaxAttemptsExceeded, H2Error)


class ApnsCredentials:
    """An APNs auth key (the ``AuthKey_<key id>.p8`` file), its key id, the team id and the
    website push id (``web.…``, the ``apns-topic``).

    The file is read once and checked to be a P-256 private key; its content stays inside:
    ``repr``, ``str`` and error messages never show it.
    """

    __slots__ = ("_key", "key_file", "key_id", "team_id", "website_push_id")

    def __init__(self, key_file: str | os.PathLike[str], key_id: str, team_id: str,
                 website_push_id: str) -> None:
        if not website_push_id.startswith("web."):
            raise ValueError(f"the website push id must start with 'web.', not {website_push_id!r}")
        if not key_id or not team_id:
            raise ValueError("an APNs key needs its key id and the team id")
        self.key_file = str(key_file)
        self.key_id = key_id
        self.team_id = team_id
        self.website_push_id = website_push_id
        self._key = Path(key_file).read_text(encoding="ascii", errors="replace")
        try:
            private = load_pem_private_key(self._key.encode("ascii", errors="replace"), password=None)
        except (ValueError, TypeError):
            private = None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(private.curve, ec.SECP256R1):
            # from None: the parser's message must not carry any of the file's content
            raise ValueError(
                f"{self.key_file} is not an APNs auth key (a P-256 private key in a .p8 PEM)") from None

    @property
    def key(self) -> str:
        """The .p8 PEM text (for building the client only; never log it)."""
        return self._key

    def __repr__(self) -> str:
        return (f"ApnsCredentials(key_file={self.key_file!r}, key_id={self.key_id!r}, "
                f"team_id={self.team_id!r}, website_push_id={self.website_push_id!r})")

    __str__ = __repr__


def safari_payload(title: str, body: str, url: str, action: str = "View") -> dict[str, Any]:
    """The legacy Safari payload of SPEC §9.5:
    ``{"aps": {"alert": {"title", "body", "action"}, "url-args": [ARG]}}``.

    Safari opens ``urlFormatString`` of the site's push package with ``%@`` replaced by the
    ``url-args`` in order. pushlang's push package uses ``https://<site>/%@``, so the single
    argument is the deep link's path without its leading slash, plus ``?query`` when it has one:
    ``https://shop.example.com/cart/42?utm_source=push`` → ``["cart/42?utm_source=push"]``, the
    site root → ``[""]``. The scheme and host come from the push package (the deep link must be
    on that site); a ``#fragment`` is not carried.
    """
    if not url:
        raise ValueError("a Safari notification needs a url (SPEC §7)")
    parts = urlsplit(url)
    arg = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.query:
        arg = f"{arg}?{parts.query}"
    return {"aps": {"alert": {"title": title, "body": body, "action": action}, "url-args": [arg]}}


async def _quiet(request: NotificationRequest, result: NotificationResult) -> None:
    """aioapns's ``err_func``: the channel reports failures itself (as Delivery records)."""


def make_client(credentials: ApnsCredentials, *, ssl_context: SSLContext | None = None,
                use_sandbox: bool = False) -> APNs:
    """The aioapns client the channel uses by default (call it inside the running event loop).

    aioapns's own reconnect attempts are limited to one, so that the channel's retry loop (with its
    injected sleep and bounded attempts) is the only one.
    """
    return APNs(key=credentials.key, key_id=credentials.key_id, team_id=credentials.team_id,
                topic=credentials.website_push_id, use_sandbox=use_sandbox, ssl_context=ssl_context,
                max_connection_attempts=1, err_func=_quiet)


class ApnsChannel:
    """Delivers website push notifications to legacy Safari device tokens through APNs."""

    def __init__(self, credentials: ApnsCredentials, *, concurrency: int = 64, timeout: float = 10.0,
                 max_attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random,
                 on_halt: Callable[[str], None] | None = None,
                 client_factory: Callable[[ApnsCredentials], APNs] | None = None) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self._sleep, self._jitter = sleep, jitter
        self._limit = asyncio.Semaphore(concurrency)
        self._client_factory = client_factory or make_client
        self._client: APNs | None = None
        self._probe = Probe()
        self._halt = Halt("APNs", on_halt)

    def __repr__(self) -> str:
        return f"ApnsChannel({self.credentials!r})"

    @property
    def halted(self) -> str | None:
        """Why the channel is halted, or None."""
        return self._halt.why

    async def deliver(self, device_token: str, payload: dict[str, Any], *, ttl: int,
                      wire: Wire | None = None, collapse_id: str | None = None) -> Delivery:
        """Send ``payload`` (see :func:`safari_payload`) to one device token; ``ttl`` in seconds
        becomes ``apns-expiration`` = now + ttl; ``wire`` is told when its requests are out;
        ``collapse_id`` (the send_id) makes a device show a duplicate in place of the first."""
        hold = await self._probe.turn()
        try:
            return await self._deliver(device_token, payload, ttl=ttl, hold=hold, wire=wire,
                                       collapse_id=collapse_id)
        finally:
            if hold is not None:  # it ended without an answer: the next one probes
                hold.release(answered=False)

    async def close(self) -> None:
        """Close the client's connections and wait until their transports are gone."""
        client, self._client = self._client, None
        if client is None:
            return
        client.pool.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while client.pool.connections and loop.time() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0)

    async def __aenter__(self) -> ApnsChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client_in_loop(self) -> APNs:
        if self._client is None:  # built here, inside the running loop, as aioapns requires
            self._client = self._client_factory(self.credentials)
        return self._client

    async def _deliver(self, device_token: str, payload: dict[str, Any], *, ttl: int, hold: Hold | None,
                       wire: Wire | None, collapse_id: str | None = None) -> Delivery:
        if self.halted is not None:
            return Delivery(False, None, "channel_halted", 0)
        if len(json.dumps(payload, ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
            return Delivery(False, None, "payload_too_large", 0)
        status: int | None = None
        timeouts = 0
        for attempt in range(1, self.max_attempts + 1):
            reason: str | None = None
            timed_out = False
            try:
                async with self._limit:
                    if self.halted is not None:  # halted while this request waited: it never goes out
                        return Delivery(False, None, "channel_halted", attempt - 1)
                    if wire is not None:
                        wire.on()
                    result = await self._send(device_token, payload, ttl, collapse_id)
                status, reason = _status(result.status), result.description
            except TimeoutError:
                status, timed_out = None, True
            except NETWORK_ERRORS as error:
                status = None  # the network failed: like a 503, worth another try
                log.debug("APNs request failed (attempt %d): %s", attempt, type(error).__name__)
            if hold is not None:  # APNs has answered (or is unreachable): nobody waits for the retries
                hold.release(answered=True)
                hold = None
            if status == 200:
                return Delivery(True, status, None, attempt)
            if status == 410:
                return Delivery(False, status, "subscription_gone", attempt, deactivate=True)
            if status in (401, 403):
                self._halt(f"APNs answered {status} {reason or ''}".rstrip() + ": the provider token for "
                           f"key id {self.credentials.key_id}, team id {self.credentials.team_id} was "
                           "rejected (check the .p8 key, key id and team id)")
                return Delivery(False, status, "apns_auth_rejected", attempt)
            if status is not None and status not in RETRY_STATUSES:
                if status == 400:
                    failure = "bad_device_token" if reason == "BadDeviceToken" else "bad_request"
                else:
                    failure = {413: "payload_too_large"}.get(status, f"http_{status}")
                return Delivery(False, status, failure, attempt)
            if timed_out:
                timeouts, gave_up = after_timeout(wire, timeouts, attempt)
                if gave_up is not None:
                    return gave_up
            if attempt < self.max_attempts:
                if wire is not None:
                    wire.off()
                await self._sleep(self._backoff(attempt))
        return Delivery(False, status, "retries_exhausted", self.max_attempts)

    async def _send(self, device_token: str, payload: dict[str, Any], ttl: int,
                    collapse_id: str | None = None) -> NotificationResult:
        request = NotificationRequest(device_token=device_token, message=payload, time_to_live=ttl,
                                      priority=PRIORITY, push_type=PushType.ALERT, collapse_key=collapse_id,
                                      apns_topic=self.credentials.website_push_id)
        # Shielded: cancelling aioapns's wait would leave a cancelled future that the answer, when
        # it comes, cannot resolve (and that breaks the connection for every other stream).
        sending = asyncio.ensure_future(self._client_in_loop().send_notification(request))
        sending.add_done_callback(_consume)
        return await asyncio.wait_for(asyncio.shield(sending), self.timeout)

    def _backoff(self, attempt: int) -> float:
        # APNs sends no Retry-After; aioapns would not expose it anyway
        return backoff(attempt, None, base=self.base_delay, ceiling=self.max_delay, jitter=self._jitter())


def _status(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _consume(task: asyncio.Future[NotificationResult]) -> None:
    """Retrieve the outcome of an abandoned (timed-out) send so that asyncio does not report it."""
    if not task.cancelled():
        task.exception()
