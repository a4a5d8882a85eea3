"""Web Push delivery (Chrome, Firefox, Edge, Safari 16+) with pywebpush, and SPEC §9.5's error taxonomy.

The message encryption of RFC 8291 by pywebpush (aes128gcm), VAPID by py_vapid. One shared aiohttp
session; a queue per push-service origin (its own concurrency bound and first-request probe, so one
slow or throttling service never delays another); a VAPID JWT cached per origin until shortly before
it expires; a request's turn encrypts its body and the next few waiting (:data:`ENCRYPT_AHEAD`); TTL
always set, Urgency when the message has one, Topic always (the message's ``tag``, else a digest of
the send_id: :func:`topic_for`). Outcomes: delivered on any 2xx; 404/410 deactivate the
subscription; 429/500/503 (and network errors) retry with exponential backoff and jitter, honouring
Retry-After, then fail; a timeout is retried once at most (the service may have taken the first:
Topic makes it replace it); 400 and 413 fail at once; 401/403 halt the channel — the first request
to a push service is a probe, so a rejected VAPID key costs one attempt, not one per user, and a
request still waiting for its turn when the channel halts never goes out. An endpoint that cannot be
signed for or sent to fails that subscription alone (``invalid_endpoint``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import random
import re
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException
from yarl import URL

from pushlang.dispatch.base import Delivery, Halt, Hold, Probe, Wire, after_timeout, backoff

log = logging.getLogger("pushlang.dispatch.webpush")

JWT_LIFETIME = 12 * 3600  # RFC 8292 allows up to 24 h
JWT_RENEW_BEFORE = 10 * 60
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ENDPOINT = 2048
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ENCRYPT_AHEAD = 32  # bodies encrypted in one run when a request gets its turn (its own and the next ones)
_UNUSABLE = b""  # the body of a push whose subscription keys cannot be used
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # what isspace() or a control means in ASCII


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
        origin = endpoint_origin(endpoint)
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
    ``concurrency`` of them to each push service and 16 times that in all (file descriptors are
    finite; a few slow services cannot fill it), and no cookie jar (push services set none that
    matter)."""
    connector = aiohttp.TCPConnector(limit=max(1024, 16 * concurrency), limit_per_host=concurrency)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class WebPushChannel:
    def __init__(self, auth: VapidAuth, session: aiohttp.ClientSession, *, concurrency: int = 64,
                 timeout: float = 10.0, max_attempts: int = 5, base_delay: float = 0.5, max_delay: float = 60.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random,
                 on_halt: Callable[[str], None] | None = None, allow_loopback: bool = False) -> None:
        """``allow_loopback``: also deliver to ``http``/``https`` endpoints on a loopback address (a
        local test push service); other endpoints must be a push service's (:func:`endpoint_problem`)."""
        self.allow_loopback = allow_loopback
        self.auth = auth
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_attempts = max_attempts
        self.base_delay, self.max_delay = base_delay, max_delay
        self._sleep, self._jitter = sleep, jitter
        self._concurrency = concurrency
        self._origins: dict[str, _Origin] = {}
        self._halt = Halt("Web Push", on_halt)

    @property
    def halted(self) -> str | None:
        """Why the channel is halted, or None."""
        return self._halt.why

    async def deliver(self, target: WebPushTarget, payload: bytes, *, ttl: int, urgency: str | None = None,
                      topic: str | None = None, wire: Wire | None = None) -> Delivery:
        """Deliver one push; ``wire`` is told when its requests are out."""
        endpoint = target.endpoint
        origin = endpoint_origin(endpoint) if isinstance(endpoint, str) else ""
        queue = self._origins.get(origin)
        if queue is not None and endpoint.startswith(origin):
            # The origin passed every check of endpoint_problem before (they depend on the scheme
            # and the host alone): what is left is the endpoint's length and characters.
            problem = _text_problem(endpoint)
        else:
            problem = endpoint_problem(endpoint, allow_http=self.allow_loopback)
        if problem is not None:
            log.warning("Web Push: not delivering to an invalid endpoint: %s", problem)
            return Delivery(False, None, "invalid_endpoint", 0)
        if queue is None:
            queue = self._origins[origin] = _Origin(self._concurrency)
        hold = None if queue.probe.answered else await queue.probe.turn()
        try:
            return await self._deliver(target, origin, queue, payload, ttl=ttl, urgency=urgency, topic=topic,
                                       hold=hold, wire=wire)
        finally:
            if hold is not None:  # it ended without an answer: the next one probes
                hold.release(answered=False)

    async def _deliver(self, target: WebPushTarget, origin: str, queue: _Origin, payload: bytes, *, ttl: int,
                       urgency: str | None, topic: str | None, hold: Hold | None,
                       wire: Wire | None) -> Delivery:
        if self.halted is not None:
            return Delivery(False, None, "channel_halted", 0)
        try:
            headers = {"Authorization": self.auth.authorization(target.endpoint), "TTL": str(ttl),
                       "Content-Encoding": "aes128gcm"}
            url = URL(target.endpoint, encoded=True)
        except Exception as error:  # whatever signing for this endpoint raised, it fails alone
            log.warning("Web Push: cannot prepare a request for an endpoint: %s", type(error).__name__)
            return Delivery(False, None, "invalid_endpoint", 0)
        if urgency:
            headers["Urgency"] = urgency
        if topic:
            headers["Topic"] = topic
        push = _Push(target, payload)
        queue.waiting.append(push)
        try:
            status: int | None = None
            timeouts = 0
            for attempt in range(1, self.max_attempts + 1):
                retry_after: float | None = None
                timed_out = False
                async with queue.limit:
                    if self.halted is not None:  # halted while this request waited for its turn: it never goes out
                        return Delivery(False, None, "channel_halted", attempt - 1)
                    body = push.body
                    if body is None:
                        body = queue.encrypt(push)
                    if not body:  # the subscription's keys cannot be used
                        return Delivery(False, None, "invalid_subscription_keys", 0)
                    if wire is not None:
                        wire.on()
                    try:
                        async with self.session.post(url, data=body, headers=headers, timeout=self.timeout) as response:
                            status = response.status
                            retry_after = _retry_after(response.headers.get("Retry-After"))
                    except aiohttp.ConnectionTimeoutError:
                        status = None  # it never reached the push service: a network error
                    except TimeoutError:
                        status, timed_out = None, True
                    except (aiohttp.ClientError, OSError, ValueError):
                        status = None  # the network failed: like a 503, worth another try
                if hold is not None:  # the push service has answered (or is unreachable): nobody waits any more
                    hold.release(answered=True)
                    hold = None
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
                if timed_out:
                    timeouts, gave_up = after_timeout(wire, timeouts, attempt)
                    if gave_up is not None:
                        return gave_up
                if attempt < self.max_attempts:
                    if wire is not None:
                        wire.off()
                    await self._sleep(self._backoff(attempt, retry_after))
            return Delivery(False, status, "retries_exhausted", self.max_attempts)
        finally:
            push.done = True

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return backoff(attempt, retry_after, base=self.base_delay, ceiling=self.max_delay, jitter=self._jitter())


class _Push:
    """One push on its way: its body once encrypted; ``done`` once it has ended, however."""

    __slots__ = ("body", "done", "payload", "target")

    def __init__(self, target: WebPushTarget, payload: bytes) -> None:
        self.target = target
        self.payload = payload
        self.body: bytes | None = None
        self.done = False


class _Origin:
    """One push service's queue: its own concurrency bound and first-request probe, so that one
    slow or throttling service never holds the requests to another; the pushes waiting for their
    turn, in order, so that one request's turn encrypts the next few bodies too."""

    __slots__ = ("limit", "probe", "waiting")

    def __init__(self, concurrency: int) -> None:
        self.limit = asyncio.Semaphore(concurrency)
        self.probe = Probe()
        self.waiting: deque[_Push] = deque()

    def encrypt(self, push: _Push) -> bytes:
        """``push``'s body, and those of up to ENCRYPT_AHEAD - 1 pushes waiting for their turn after
        it (a run of encryptions costs less CPU a push than one between every two requests)."""
        body = push.body = _encrypt(push.target, push.payload) or _UNUSABLE
        waiting, left = self.waiting, ENCRYPT_AHEAD - 1
        while waiting and left > 0:
            other = waiting.popleft()
            if other.done or other.body is not None:
                continue
            try:
                other.body = _encrypt(other.target, other.payload) or _UNUSABLE
            except Exception:  # it fails on its own turn, as its own delivery
                continue
            left -= 1
        return body


def endpoint_problem(endpoint: str, *, allow_http: bool = False) -> str | None:
    """Why a Web Push endpoint cannot be used, in words; None when it can.

    A push service's endpoint is an ``https`` URL with a host name and a valid port (RFC 8030).
    ``allow_http`` also takes ``http`` on a loopback address: a local test push service."""
    if not isinstance(endpoint, str) or not endpoint:
        return "no endpoint"
    problem = _text_problem(endpoint)
    if problem is not None:
        return problem
    try:
        parts = urlsplit(endpoint)
        port = parts.port
        host = parts.hostname
    except ValueError as error:
        return f"the endpoint is not a valid URL ({error})"
    if parts.scheme == "http" and allow_http and host in LOOPBACK_HOSTS:
        pass
    elif parts.scheme != "https":
        return f"the endpoint must be an https:// URL of a push service, not {parts.scheme or 'one without a scheme'}"
    if not host:
        return "the endpoint has no host"
    if parts.username is not None or parts.password is not None:
        return "the endpoint must not carry a user name or password"
    if port == 0:
        return "the endpoint's port must be between 1 and 65535"
    if not (allow_http and host in LOOPBACK_HOSTS) and (internal := _internal(host)) is not None:
        return f"the endpoint's host is {internal}, not a push service on the internet"
    try:
        URL(endpoint, encoded=True)
        host.encode("idna")
    except (ValueError, UnicodeError) as error:
        return f"the endpoint's host is not valid ({type(error).__name__})"
    return None


def _text_problem(endpoint: str) -> str | None:
    """The checks of :func:`endpoint_problem` that look at the whole text, not at its origin."""
    if len(endpoint) > MAX_ENDPOINT:
        return f"the endpoint is longer than {MAX_ENDPOINT} characters"
    if (_ASCII_SPACE_OR_CONTROL.search(endpoint) is not None if endpoint.isascii()
            else any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in endpoint)):
        return "the endpoint contains spaces or control characters"
    return None


def _internal(host: str) -> str | None:
    """What a host is when it is no place for a push service (an address of this machine or its
    network: the service must not be made to post there), else None. Every spelling a resolver
    takes for an IPv4 address counts (``2130706433``, ``0x7f.1``, ``127.1``), and a name is compared
    as a resolver sees it (IDNA, lower case, no trailing dot). Names are not resolved here: an
    egress firewall is the defence against a name that points inside (docs/security.md)."""
    try:
        name = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        return "not a valid host name"
    if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
        return "a local name"
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(name))  # the forms inet_aton takes
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    return None if address.is_global else "a private, loopback or reserved address"


_LOW32 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("::ffff:0:0/96"),
          ipaddress.ip_network("::ffff:0:0:0/96"), ipaddress.ip_network("64:ff9b::/96"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, SIIT, NAT64, 6to4), if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _LOW32):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def topic_for(send_id: str) -> str:
    """The Topic header of a send whose message has no ``tag``: at most 32 URL-safe base64
    characters (RFC 8030 §5.4), the same for the same send, so that a push service replaces an
    undelivered copy of it instead of keeping two."""
    return base64.urlsafe_b64encode(hashlib.sha256(send_id.encode()).digest()[:24]).decode()


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


def endpoint_origin(endpoint: str) -> str:
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
