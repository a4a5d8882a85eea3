"""Who may post to the open browser endpoint: user ids the site signs, and a rate limit per client.

A browser proves which user it speaks for with a *user token* the site's backend signs:
``v1.<expiry, epoch seconds>.<base64url HMAC-SHA256(secret, "v1|<expiry>|<user>")>``, sent in the
``X-Pushlang-User-Token`` header. The secret is ``[server] user_token_secret`` in pushlang.toml;
during a rotation ``previous_user_token_secret`` is accepted too. Requests are limited per client
address (a token bucket, ``[server] browser_rate`` a minute, ``browser_burst`` at once); the
address is the socket peer, or — only when the peer is one of ``[server] trusted_proxies`` — the
right-most address of ``X-Forwarded-For`` that is not a trusted proxy. docs/security.md has the
threat model.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgspec
from aiohttp import web

from pushlang.builtins import LANG_TAG
from pushlang.config import is_timezone
from pushlang.runtime.engine import INTERACTIONS
from pushlang.runtime.instants import US, iso
from pushlang.runtime.records import Event, Profile, Record, Subscribe, Unsubscribe
from pushlang.service.http import error

TOKEN_HEADER = "X-Pushlang-User-Token"
MIN_SECRET = 32  # characters; `pushlang keys user-secret` prints 43 (32 random bytes)
DEFAULT_RATE, DEFAULT_BURST = 60, 20
MAX_CLIENTS = 100_000  # buckets kept at most; the least recently seen go first
MAX_RECORDS = 20  # records in one request from a browser (a subscribe, an unsubscribe, a few reports)
DEFAULT_MAX_SUBSCRIPTIONS = 10  # active subscriptions a browser may give one user (devices, browsers)
_TOKEN = re.compile(r"v1\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
# The browser endpoint takes no API token (a user token instead) and only subscriptions, views and
# clicks: any origin may post.
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": f"content-type, {TOKEN_HEADER.lower()}", "Access-Control-Max-Age": "86400",
        "Access-Control-Expose-Headers": "Retry-After"}

def add_browser_route(app: web.Application, handler: Callable[[web.Request], Any]) -> None:
    """``POST /v1/browser/records`` with ``handler`` and its CORS preflight: any origin may post (the
    one rule of both hosts, `serve` and `serve --redis`)."""

    async def post(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        response.headers.update(CORS)
        return response

    async def preflight(request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    app.router.add_post("/v1/browser/records", post)
    app.router.add_route("OPTIONS", "/v1/browser/records", preflight)


NOT_CONFIGURED = ("the browser endpoint is off: set [server] user_token_secret in pushlang.toml "
                  "(`pushlang keys user-secret` prints one) and have your site sign each user id with it "
                  "(see docs/security.md)")

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _signature(secret: str, expires: int, user: str) -> str:
    mac = hmac.new(secret.encode(), f"v1|{expires}|{user}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign(secret: str, user: str, expires: int) -> str:
    """The token for ``user`` valid until ``expires`` (epoch seconds)."""
    return f"v1.{expires}.{_signature(secret, expires, user)}"


@dataclass(frozen=True)
class UserTokens:
    """The secrets user tokens are checked against: the current one first, then the previous one
    while a rotation is under way. No secret: no token is valid."""

    secrets: tuple[str, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.secrets)

    @classmethod
    def from_server(cls, server: Mapping[str, Any]) -> UserTokens:
        """From pushlang.toml's ``[server]`` table; a ValueError says what is wrong."""
        current, previous = server.get("user_token_secret"), server.get("previous_user_token_secret")
        for key, value in (("user_token_secret", current), ("previous_user_token_secret", previous)):
            if value is not None and (not isinstance(value, str) or len(value) < MIN_SECRET):
                raise ValueError(f"[server] {key} must be a string of {MIN_SECRET} characters or more "
                                 "(`pushlang keys user-secret` prints one)")
        if previous is not None and current is None:
            raise ValueError("[server] previous_user_token_secret is set without user_token_secret: a rotation "
                             "accepts the previous secret beside the current one")
        return cls(tuple(s for s in (current, previous) if s is not None))

    def issue(self, user: str, ttl: int, now: float | None = None) -> tuple[str, int]:
        """A token for ``user`` signed with the current secret, valid for ``ttl`` seconds: (token, expiry)."""
        if not self.secrets:
            raise ValueError(NOT_CONFIGURED)
        expires = int(time.time() if now is None else now) + ttl
        return sign(self.secrets[0], user, expires), expires

    def problem(self, token: str | None, user: str, now: float | None = None) -> str | None:
        """Why ``token`` does not let a browser speak for ``user`` (None: it does)."""
        if not self.secrets:
            return NOT_CONFIGURED
        if not token:
            return f"no user token: send the user id signed by your site in the {TOKEN_HEADER} header"
        m = _TOKEN.fullmatch(token.strip())
        if m is None:
            return "the user token is malformed: expected v1.<expiry>.<signature>"
        expires, given = int(m.group(1)), m.group(2).encode()
        # every secret is tried (no early exit), each in constant time
        valid = [hmac.compare_digest(_signature(s, expires, user).encode(), given) for s in self.secrets]
        if not any(valid):
            return f"the user token is not valid for user `{user}`"
        if expires <= (time.time() if now is None else now):
            return f"the user token expired at {iso(expires * US)}"
        return None


class RateLimiter:
    """A token bucket per client: ``per_minute`` requests a minute on average, up to ``burst`` at once.

    A bucket that has filled up again is the same as a new one, so it is forgotten; at most
    ``max_clients`` are kept (the least recently seen go first), so memory stays bounded whatever
    the number of addresses."""

    def __init__(self, per_minute: int, burst: int, *, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.burst, self.max_clients, self.clock = per_minute, burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, when), oldest first

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, client: str) -> float:
        """0 when ``client`` may make a request now (and it is counted), else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        now, per_second = self.clock(), self.per_minute / 60
        tokens, since = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - since) * per_second)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / per_second
        self._buckets[client] = (tokens - 1 if wait == 0 else tokens, now)
        full_after = self.burst / per_second
        while self._buckets:  # forget buckets that are full again, and the oldest beyond the bound
            oldest, (_, seen) = next(iter(self._buckets.items()))
            if now - seen < full_after and len(self._buckets) <= self.max_clients:
                break
            del self._buckets[oldest]
        return wait


def parse_networks(values: Any) -> tuple[Network, ...]:
    """``[server] trusted_proxies``: addresses or networks ("10.0.0.0/8"); a ValueError names a bad one."""
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ValueError('[server] trusted_proxies must be a list of addresses, e.g. ["127.0.0.1", "10.0.0.0/8"]')
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"[server] trusted_proxies: {value!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The address a request comes from: the socket peer, unless the peer is a trusted proxy; then the
    right-most ``X-Forwarded-For`` entry that is not a trusted proxy (each proxy appends the address it
    saw, so only the entries right of the first untrusted one are known to be true)."""
    address = _address(peer or "")
    if address is None:
        return peer or "unknown"

    def is_trusted(a: Address) -> bool:
        return any(a in network for network in trusted)

    if is_trusted(address):
        entries = [e for header in forwarded_for for e in header.split(",")]
        for entry in reversed(entries):
            hop = _address(entry)
            if hop is None:  # not written by a proxy we trust: keep the last trusted hop
                break
            address = hop
            if not is_trusted(hop):
                break
    return str(address)


def rate_key(address: str) -> str:
    """The bucket of an address: an IPv6 address by its /64 (one host usually owns a whole /64)."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return address


def _whole(server: Mapping[str, Any], key: str, default: int, least: int) -> int:
    value = server.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"[server] {key} must be a whole number of {least} or more")
    return value


def browser_profile_problem(props: dict[str, Any]) -> str | None:
    """Why a browser's profile record is refused, if it is: the SDK sends the browser's `language` (a
    language tag) and `timezone` (an IANA zone), and a browser may set nothing else of a profile."""
    others = sorted(set(props) - {"language", "timezone"})
    if others or not props:
        return ("a browser's profile may only give `language` and `timezone`"
                + (f", not {', '.join(f'`{k}`' for k in others)}" if others else ""))
    language, zone = props.get("language"), props.get("timezone")
    if language is not None and not (isinstance(language, str) and len(language) <= 35
                                     and LANG_TAG.fullmatch(language)):
        return f"`language` {language!r} is not a language tag"
    if zone is not None and not (isinstance(zone, str) and len(zone) <= 64 and is_timezone(zone)):
        return f"`timezone` {zone!r} is not an IANA time zone"
    return None


@dataclass
class BrowserGuard:
    """What the open browser endpoint of every host checks: the rate limit per client address,
    then whether user tokens are configured at all; each record's token is :meth:`UserTokens.problem`."""

    tokens: UserTokens
    limiter: RateLimiter
    trusted: tuple[Network, ...] = ()
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS

    @classmethod
    def from_server(cls, server: Mapping[str, Any], limiter: RateLimiter | None = None) -> BrowserGuard:
        """From pushlang.toml's ``[server]`` table (a ValueError says what is wrong); ``limiter``: keep
        the buckets of a running service when its config is reloaded."""
        rate = _whole(server, "browser_rate", DEFAULT_RATE, 0)
        burst = _whole(server, "browser_burst", DEFAULT_BURST, 1)
        if limiter is None:
            limiter = RateLimiter(rate, burst)
        else:
            limiter.per_minute, limiter.burst = rate, burst
        return cls(UserTokens.from_server(server), limiter, parse_networks(server.get("trusted_proxies")),
                   _whole(server, "max_subscriptions_per_user", DEFAULT_MAX_SUBSCRIPTIONS, 1))

    def client(self, request: web.Request) -> str:
        return client_address(request.remote, request.headers.getall("X-Forwarded-For", []), self.trusted)

    def refusal(self, request: web.Request) -> web.Response | None:
        """A 429 (with Retry-After) or a 403 for the whole request, or None to look at its records."""
        client = self.client(request)
        wait = self.limiter.wait(rate_key(client))
        if wait > 0:
            return error(429, f"too many requests from {client}: at most {self.limiter.per_minute} a minute "
                              f"(bursts of {self.limiter.burst})", headers={"Retry-After": str(math.ceil(wait))})
        if not self.tokens.configured:
            return error(403, NOT_CONFIGURED)
        return None

    def too_many(self, records: int) -> web.Response | None:
        """A 413 for a body with more records than a browser ever sends at once (a rate limit counts
        requests: without this, one request could carry thousands of subscriptions)."""
        if records > MAX_RECORDS:
            return error(413, f"{records} records in one request: a browser sends at most {MAX_RECORDS}")
        return None

    def screen(self, indexed: list[tuple[int, Record]], rejected: list[dict[str, Any]], token: str | None,
               send_to: Callable[[str, str], bool | None], now: int) -> list[tuple[int, Record]]:
        """The records of a browser request it may send: each for the user ``token`` was signed for,
        and only a subscription, an unsubscription, a `Push Viewed` / `Push Clicked` of a send to that
        user (``send_to(send_id, user)``: True, False for a send to another user, None for no such
        send), or a profile that gives only the browser's `language` and `timezone` (the SDK's). A browser's clock is often wrong (minutes, or days): what it reports happened when it
        reached the service, so the records are stamped ``now``. The others join ``rejected``."""
        allowed: list[tuple[int, Record]] = []
        for index, record in indexed:
            problem = self.tokens.problem(token, record.user)
            if problem is None and isinstance(record, Event) and record.name in INTERACTIONS:
                send_id = record.props.get("send_id")
                to_user = send_to(send_id, record.user) if isinstance(send_id, str) else None
                if to_user is None:
                    problem = f"`{record.name}` for an unknown send_id"
                elif not to_user:
                    problem = f"`{record.name}` for a send to another user"
            elif problem is None and isinstance(record, Profile):
                problem = browser_profile_problem(record.props)
            elif problem is None and not isinstance(record, (Subscribe, Unsubscribe)):
                problem = ("browsers may only send subscriptions, Push Viewed / Push Clicked events and their "
                           "language and timezone")
            if problem is None:
                allowed.append((index, msgspec.structs.replace(record, ts=now)))
            else:
                rejected.append({"index": index, "reason": problem})
        return allowed

    def within_cap(self, indexed: list[tuple[int, Record]], rejected: list[dict[str, Any]],
                   active_of: Callable[[str], set[str]]) -> list[tuple[int, Record]]:
        """The records, but no subscription that would give its user more active ones than ``[server]
        max_subscriptions_per_user`` (each is a request per send: a page must not make one user a
        thousand); ``active_of(user)``: the keys (endpoint or device token) of the user's active
        subscriptions in the store. The others join ``rejected``."""
        taken: list[tuple[int, Record]] = []
        added: dict[str, set[str]] = {}
        for index, record in indexed:
            if isinstance(record, Subscribe):
                key = record.endpoint or record.device_token or ""
                active = active_of(record.user) | added.get(record.user, set())
                if key not in active and len(active) >= self.max_subscriptions:
                    rejected.append({"index": index, "reason": (
                        f"user `{record.user}` has {len(active)} active subscriptions, as many as a browser may "
                        "give one user ([server] max_subscriptions_per_user): unsubscribe one first")})
                    continue
                added.setdefault(record.user, set()).add(key)
            taken.append((index, record))
        return taken
