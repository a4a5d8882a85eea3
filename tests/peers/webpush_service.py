"""A loopback Web Push service: the real peer the delivery tests send to.

It behaves like the push services behind Chrome (FCM), Firefox (Mozilla autopush), Edge (WNS) and
Safari 16+ endpoints, as far as an application server can tell (RFC 8030, RFC 8291, RFC 8292):

* every subscription has a real P-256 key pair and a 16-byte auth secret; the service keeps the
  private key and decrypts each message body with ``http_ece`` (``aes128gcm``);
* the VAPID ``Authorization`` header is verified: ``vapid t=<JWT>, k=<key>`` (RFC 8292) or the
  older ``WebPush <JWT>`` + ``Crypto-Key: p256ecdsa=<key>``; ES256 signature valid for ``k``, ``aud``
  equal to the endpoint's origin, ``exp`` in the future and at most 24 h ahead, ``sub`` a
  ``mailto:`` or ``https:`` URL, optionally ``k`` pinned to an applicationServerKey; like a real
  service, it verifies a JWT's signature once and remembers it, and checks the claims every time;
* ``TTL`` is required, ``Topic`` and ``Urgency`` are checked, bodies over 4096 bytes get 413;
* answers look like the real ones: 201 + ``Location`` on success, autopush-style JSON error bodies
  (``{"code", "errno", "error", "message", "more_info"}``), 429/503 with ``Retry-After``.

Tests program it per subscription (``script``), and every request is recorded (``requests``).

A benchmark can make it verify a sample (``verify_every=N``): the first request and every Nth
after it go through every check below; the others are answered at once, as if they had passed
(``PushRequest.verified`` is false on them), so that the service's own CPU — the ECDH and
decryption of a push cost about as much as the sender's encryption — does not cap the sender's
throughput. The default, 1, verifies every request, and the delivery tests rely on it.

Order of checks for ``POST /push/<id>`` (a failed check answers at once, and does not consume a
scripted response): unknown id → 404 (errno 102); expired subscription (``expire``) → 410 (106); (a
request outside the sample is checked no further) VAPID missing/invalid → 401 (109); key not the
pinned one → 403 (109); ``TTL`` missing → 400 (111) or not an integer ≥ 0 → 400 (112); ``Topic`` not
1–32 URL-safe base64 characters → 400 (113); ``Urgency`` not very-low/low/normal/high → 400 (999);
body over ``max_body`` → 413 (104); a body without ``Content-Encoding`` → 400 (111), another
encoding than ``aes128gcm`` → 400 (110); a body that does not decrypt → 400 (110). A request that
passes all checks gets the next scripted response of its subscription, else of the default queue,
else the standing default (201 unless ``set_default``).

Asyncio, with no pytest plugin: the same object runs in either of two ways.

* ``async with WebPushService() as service:`` (or ``await start()``/``await stop()``) serves on the
  running event loop — for async code under test driven by ``asyncio.run(...)`` inside a test. The
  client must not block that loop (use ``pywebpush.webpush_async`` or ``asyncio.to_thread``).
* ``with WebPushService() as service:`` starts a background thread with its own event loop and
  serves there — for synchronous clients (``pywebpush.webpush``, a benchmark loop) and for async
  clients running their own ``asyncio.run``.

All public methods are synchronous and thread-safe (one lock guards the subscriptions, scripts and
records), so tests call ``new_subscription``, ``script`` and ``requests`` from any thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import http_ece  # type: ignore[import-untyped]
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "MAX_BODY",
    "MAX_JWT_LIFETIME",
    "PLATFORMS",
    "PushRequest",
    "Reply",
    "Subscription",
    "WebPushService",
    "b64url_decode",
    "b64url_encode",
]

Platform = Literal["chrome", "firefox", "edge", "safari"]
PLATFORMS: Final[tuple[str, ...]] = ("chrome", "firefox", "edge", "safari")
MAX_BODY: Final = 4096  # RFC 8291 §4: push services must accept at least 4096 bytes
MAX_JWT_LIFETIME: Final = 24 * 60 * 60  # RFC 8292 §2: exp no more than 24 hours from the request
URGENCIES: Final = frozenset({"very-low", "low", "normal", "high"})
MORE_INFO: Final = "http://autopush.readthedocs.io/en/latest/http.html#error-codes"
_TOPIC: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TTL: Final = re.compile(r"[0-9]+")

# The autopush errno that goes with each status when the service (not a check) picks the answer.
_ERRNO: Final[Mapping[int, int]] = {
    400: 110,
    401: 109,
    403: 109,
    404: 102,
    410: 106,
    413: 104,
    429: 201,
    500: 999,
    502: 902,
    503: 201,
}
_MESSAGES: Final[Mapping[int, str]] = {
    400: "Bad request",
    401: "Request did not validate: invalid authentication",
    403: "Request did not validate: the VAPID key does not match this subscription",
    404: "Request did not validate: invalid token",
    410: "Request did not validate: no such subscription",
    413: "This message is intended for a constrained device and is limited in size. "
    "Converted buffer is too long by 0 bytes",
    429: "Too many requests: use exponential back-off for retries",
    500: "An unexpected server error occurred",
    502: "An error occurred while establishing a connection",
    503: "The service is temporarily unavailable: use exponential back-off for retries",
}


def b64url_encode(data: bytes) -> str:
    """URL-safe base64 without padding, as browsers and VAPID use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode URL-safe base64 with or without padding; raises ``ValueError`` on bad input."""
    stripped = text.strip().rstrip("=")
    if not re.fullmatch(r"[A-Za-z0-9_-]*", stripped):
        raise ValueError("not URL-safe base64")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


@dataclass(frozen=True)
class Subscription:
    """What the browser hands to the site: ``PushSubscription.toJSON()``."""

    id: str
    platform: str
    endpoint: str
    p256dh: str  # URL-safe base64 of the uncompressed P-256 point (65 bytes)
    auth: str  # URL-safe base64 of the 16-byte auth secret
    application_server_key: str | None = None  # the VAPID key this subscription is pinned to

    @property
    def info(self) -> dict[str, Any]:
        """The ``subscription_info`` mapping pywebpush takes."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``delay`` (seconds) holds the answer back, e.g. to provoke timeouts."""

    status: int
    retry_after: int | str | None = None
    body: bytes | None = None  # None: the autopush-style JSON body (or empty for 2xx)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class PushRequest:
    """One request as the service saw it, and what it answered."""

    subscription_id: str
    status: int
    errno: int | None  # the autopush errno of an error answer
    error: str | None  # why a check rejected the request (None when it passed every check)
    ttl: int | None
    urgency: str | None
    topic: str | None
    auth_scheme: str | None  # "vapid" (RFC 8292) or "webpush" (older drafts)
    vapid_key: str | None  # ``k`` of a JWT whose signature verified, URL-safe base64
    claims: Mapping[str, Any] | None  # the claims of a JWT that passed every VAPID check
    payload: bytes | None  # the decrypted plaintext, None if there was no body or it did not decrypt
    body_size: int  # bytes of the encrypted body as received
    headers: Mapping[str, str]  # every request header, names lower-cased
    at: float  # arrival, time.monotonic()
    wall: float  # arrival, time.time()
    platform: str | None = None  # None for an unknown subscription
    verified: bool = True  # False: outside the sample (``verify_every``), answered without the checks

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class _Rejected(Exception):
    def __init__(self, status: int, errno: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.errno = errno
        self.message = message


@dataclass
class _Key:
    subscription: Subscription
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    expired: bool = False


@dataclass
class _Vapid:
    scheme: str
    key: bytes
    claims: dict[str, Any]


class WebPushService:
    """A Web Push service on 127.0.0.1 and a free port (see the module docstring)."""

    def __init__(
        self,
        *,
        application_server_key: str | None = None,
        require_vapid: bool = True,
        max_body: int = MAX_BODY,
        verify_every: int = 1,
    ) -> None:
        """``application_server_key``: pin every new subscription to this VAPID public key (URL-safe
        base64 of the uncompressed point), as ``pushManager.subscribe({applicationServerKey})`` does.
        ``require_vapid=False`` accepts requests without an Authorization header. ``verify_every``:
        check the first request and every Nth after it (VAPID, headers, size, decryption) and answer
        the others at once (1, the default: every request)."""
        if application_server_key is not None:
            _public_key(application_server_key)  # fail early on a malformed key
        if verify_every < 1:
            raise ValueError("verify_every must be at least 1")
        self.verify_every = verify_every
        self._arrivals = 0  # requests to a known, unexpired subscription: the sample is every Nth
        self.application_server_key = application_server_key
        self.require_vapid = require_vapid
        self.max_body = max_body
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._scripts: dict[str | None, deque[Reply]] = {}
        self._default = Reply(201)
        self._records: list[PushRequest] = []
        # A sender reuses one JWT for many requests (RFC 8292 §2): its signature is verified once and
        # remembered here; the claims (aud, exp, sub) and the key pin are still checked every request.
        self._verified: dict[tuple[str, str | None], _Vapid] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on the running event loop."""
        if self._runner is not None:
            raise RuntimeError("WebPushService already started")
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/push/{sub_id}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> WebPushService:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def start_in_thread(self) -> None:
        """Serve from a background thread with its own event loop."""
        if self._thread is not None or self._runner is not None:
            raise RuntimeError("WebPushService already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="webpush-service", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=30)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            raise
        self._thread, self._thread_loop = thread, loop

    def stop_thread(self) -> None:
        thread, loop = self._thread, self._thread_loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
            asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            loop.close()
            self._thread = self._thread_loop = None

    def __enter__(self) -> WebPushService:
        self.start_in_thread()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_thread()

    @property
    def port(self) -> int:
        if self._port is None or self._runner is None:
            raise RuntimeError("WebPushService is not running: start it first")
        return self._port

    @property
    def url(self) -> str:
        """The base URL, which is also the origin every VAPID ``aud`` must name."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.url

    # -- subscriptions ------------------------------------------------------------------------

    def new_subscription(
        self, platform: Platform | str = "chrome", *, application_server_key: str | None = None
    ) -> Subscription:
        """A browser subscribing: a fresh P-256 key pair and auth secret, kept here to decrypt.

        ``application_server_key`` pins this subscription to a VAPID key (default: the service's)."""
        if platform not in PLATFORMS:
            raise ValueError(f"unknown platform {platform!r}: expected one of {', '.join(PLATFORMS)}")
        pinned = application_server_key or self.application_server_key
        if pinned is not None:
            _public_key(pinned)
        private_key = ec.generate_private_key(ec.SECP256R1())
        auth_secret = secrets.token_bytes(16)
        sub_id = secrets.token_urlsafe(18)
        subscription = Subscription(
            id=sub_id,
            platform=platform,
            endpoint=f"{self.url}/push/{sub_id}",
            p256dh=b64url_encode(
                private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
            ),
            auth=b64url_encode(auth_secret),
            application_server_key=pinned,
        )
        with self._lock:
            self._keys[sub_id] = _Key(subscription, private_key, auth_secret)
        return subscription

    def expire(self, sub_id: str) -> None:
        """The user unsubscribed: every later request to this endpoint gets 410 Gone."""
        with self._lock:
            self._key(sub_id).expired = True

    def decrypt(self, sub_id: str, body: bytes) -> bytes:
        """Decrypt an ``aes128gcm`` body for a subscription, as its browser would."""
        with self._lock:
            key = self._key(sub_id)
        return bytes(
            http_ece.decrypt(
                body, private_key=key.private_key, auth_secret=key.auth_secret, version="aes128gcm"
            )
        )

    # -- behaviour ----------------------------------------------------------------------------

    def script(
        self,
        sub_id: str | None,
        replies: Iterable[int | Reply],
        *,
        retry_after: int | str | None = None,
    ) -> None:
        """Queue answers for a subscription (``None``: the default queue any subscription falls back
        to when its own queue is empty). Each accepted request consumes one. ``retry_after`` is put on
        every plain 429 and 5xx status in ``replies``; pass ``Reply`` objects for finer control."""
        queue = [_reply(item, retry_after) for item in replies]
        with self._lock:
            if sub_id is not None:
                self._key(sub_id)
            self._scripts.setdefault(sub_id, deque()).extend(queue)

    def set_default(self, reply: int | Reply = 201, *, retry_after: int | str | None = None) -> None:
        """The standing answer once the scripts are used up (201 unless changed)."""
        with self._lock:
            self._default = _reply(reply, retry_after)

    def pending(self, sub_id: str | None) -> int:
        """Scripted answers not yet used."""
        with self._lock:
            return len(self._scripts.get(sub_id, ()))

    # -- records ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[PushRequest]:
        """Every request so far, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._records)

    def requests_for(self, sub_id: str) -> list[PushRequest]:
        with self._lock:
            return [r for r in self._records if r.subscription_id == sub_id]

    def payloads(self, sub_id: str) -> list[bytes | None]:
        """The decrypted payloads the service accepted (2xx) for a subscription."""
        return [r.payload for r in self.requests_for(sub_id) if r.accepted]

    def clear(self) -> None:
        """Forget the records (subscriptions and scripts stay)."""
        with self._lock:
            self._records.clear()

    # -- the push endpoint --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        at, wall = time.monotonic(), time.time()
        sub_id = request.match_info["sub_id"]
        headers = {name.lower(): value for name, value in request.headers.items()}
        body = await request.read()
        seen: dict[str, Any] = {
            "ttl": None,
            "urgency": headers.get("urgency"),
            "topic": headers.get("topic"),
            "auth_scheme": None,
            "vapid_key": None,
            "claims": None,
            "payload": None,
        }
        platform: str | None = None
        try:
            with self._lock:
                key = self._keys.get(sub_id)
                expired = key is not None and key.expired
                arrival = self._arrivals
                if key is not None and not expired:
                    self._arrivals += 1
            if key is None:
                raise _Rejected(404, 102, "Request did not validate: invalid token")
            platform = key.subscription.platform
            if expired:
                raise _Rejected(410, 106, "Request did not validate: no such subscription")
            verified = arrival % self.verify_every == 0  # else outside the sample: not checked
            if verified:
                vapid = self._check_vapid(headers, key.subscription)
                if vapid is not None:
                    seen.update(auth_scheme=vapid.scheme, vapid_key=b64url_encode(vapid.key))
                    self._check_pin_and_claims(vapid, key.subscription)
                    seen["claims"] = vapid.claims
                seen["ttl"] = _check_ttl(headers.get("ttl"))
                _check_topic(headers.get("topic"))
                _check_urgency(headers.get("urgency"))
                if len(body) > self.max_body:
                    raise _Rejected(
                        413,
                        104,
                        f"This message is intended for a constrained device and is limited in size. "
                        f"Converted buffer is too long by {len(body) - self.max_body} bytes",
                    )
                if body:
                    seen["payload"] = _decrypt(headers, body, key)
        except _Rejected as rejected:
            record = PushRequest(
                subscription_id=sub_id,
                status=rejected.status,
                errno=rejected.errno,
                error=rejected.message,
                body_size=len(body),
                headers=headers,
                at=at,
                wall=wall,
                platform=platform,
                **seen,
            )
            with self._lock:
                self._records.append(record)
            return _error(rejected.status, rejected.errno, rejected.message)

        with self._lock:
            queue = self._scripts.get(sub_id)
            if not queue:
                queue = self._scripts.get(None)
            reply = queue.popleft() if queue else self._default
            errno = None if 200 <= reply.status < 300 else _ERRNO.get(reply.status, 999)
            self._records.append(
                PushRequest(
                    subscription_id=sub_id,
                    status=reply.status,
                    errno=errno,
                    error=None,
                    body_size=len(body),
                    headers=headers,
                    at=at,
                    wall=wall,
                    platform=platform,
                    verified=verified,
                    **seen,
                )
            )
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        return self._answer(reply, errno, seen["ttl"])

    def _answer(self, reply: Reply, errno: int | None, ttl: int | None) -> web.Response:
        extra = dict(reply.headers)
        if reply.retry_after is not None:
            extra["Retry-After"] = str(reply.retry_after)
        if 200 <= reply.status < 300:
            extra.setdefault("Location", f"{self.url}/m/{secrets.token_urlsafe(24)}")
            if ttl is not None:
                extra.setdefault("TTL", str(ttl))
            return web.Response(status=reply.status, body=reply.body or b"", headers=extra)
        if reply.body is not None:
            return web.Response(status=reply.status, body=reply.body, headers=extra)
        message = _MESSAGES.get(reply.status, "Scripted error")
        return _error(reply.status, errno if errno is not None else 999, message, extra)

    def _check_vapid(self, headers: Mapping[str, str], subscription: Subscription) -> _Vapid | None:
        authorization = headers.get("authorization")
        if authorization is None:
            if self.require_vapid or subscription.application_server_key is not None:
                raise _Rejected(401, 109, "Missing Authorization header: VAPID is required")
            return None
        token = (authorization, headers.get("crypto-key"))
        verified = self._verified.get(token)
        if verified is None:
            verified = _verify_vapid(*token)
            with self._lock:
                self._verified[token] = verified
        return verified

    def _check_pin_and_claims(self, vapid: _Vapid, subscription: Subscription) -> None:
        pinned = subscription.application_server_key
        if pinned is not None and vapid.key != b64url_decode(pinned):
            raise _Rejected(
                403, 109, "VAPID public key does not match the applicationServerKey of this subscription"
            )
        _check_claims(vapid.claims, self.origin)

    def _key(self, sub_id: str) -> _Key:
        key = self._keys.get(sub_id)
        if key is None:
            raise KeyError(f"no subscription {sub_id!r} on this service")
        return key


# -- checks -------------------------------------------------------------------------------------


def _reply(item: int | Reply, retry_after: int | str | None) -> Reply:
    if isinstance(item, Reply):
        return item
    if retry_after is not None and (item == 429 or item >= 500):
        return Reply(item, retry_after=retry_after)
    return Reply(item)


def _error(status: int, errno: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    body = {"code": status, "errno": errno, "error": phrase, "message": message, "more_info": MORE_INFO}
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def _unauthorized(message: str) -> _Rejected:
    return _Rejected(401, 109, f"Request did not validate: {message}")


def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    raw = b64url_decode(text)
    if len(raw) != 65 or raw[0] != 4:
        raise ValueError("not an uncompressed P-256 point (65 bytes, 0x04 first)")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def _auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in re.split(r"[,;]", text):
        name, sep, value = part.strip().partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return params


def _verify_vapid(authorization: str, crypto_key: str | None) -> _Vapid:
    scheme, _, rest = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "vapid":
        params = _auth_params(rest)
        token, key_text = params.get("t"), params.get("k")
        if not token or not key_text:
            raise _unauthorized("vapid Authorization needs t=<JWT> and k=<public key>")
    elif scheme == "webpush":
        token = rest.strip()
        key_text = _auth_params(crypto_key or "").get("p256ecdsa")
        if not token or not key_text:
            raise _unauthorized("WebPush Authorization needs a JWT and Crypto-Key: p256ecdsa=<public key>")
    else:
        raise _unauthorized(f"unsupported Authorization scheme {scheme!r}")
    try:
        public_key = _public_key(key_text)
    except ValueError as exc:
        raise _unauthorized(f"invalid VAPID public key: {exc}") from exc
    parts = token.split(".")
    if len(parts) != 3:
        raise _unauthorized("the JWT does not have three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _unauthorized(f"the JWT does not decode: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise _unauthorized("the JWT alg must be ES256")
    if header.get("typ", "JWT").upper() != "JWT":
        raise _unauthorized("the JWT typ must be JWT")
    if not isinstance(claims, dict):
        raise _unauthorized("the JWT claims are not an object")
    if len(signature) != 64:
        raise _unauthorized("the ES256 signature must be 64 bytes (r || s)")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, UnicodeEncodeError):
        raise _unauthorized("the JWT signature does not verify with the VAPID public key") from None
    return _Vapid(scheme, public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint), claims)


def _check_claims(claims: Mapping[str, Any], origin: str) -> None:
    aud = claims.get("aud")
    if aud != origin:
        raise _unauthorized(f"aud {aud!r} is not this push service's origin {origin!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise _unauthorized("exp must be an integer (seconds since the epoch)")
    now = time.time()
    if exp <= now:
        raise _unauthorized("the JWT has expired")
    if exp > now + MAX_JWT_LIFETIME:
        raise _unauthorized("exp is more than 24 hours in the future")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _valid_sub(sub):
        raise _unauthorized(f"sub {sub!r} must be a mailto: or https: URL")


def _valid_sub(sub: str) -> bool:
    if sub.startswith("mailto:"):
        local, at, domain = sub[len("mailto:") :].partition("@")
        return bool(local and at and domain) and not re.search(r"\s", sub)
    if sub.startswith("https://"):
        return bool(urlsplit(sub).hostname)
    return False


def _check_ttl(value: str | None) -> int:
    if value is None:
        raise _Rejected(400, 111, "Missing TTL header")
    if not _TTL.fullmatch(value.strip()):
        raise _Rejected(400, 112, f"Invalid TTL header value {value!r}: an integer >= 0 is required")
    return int(value.strip())


def _check_topic(value: str | None) -> None:
    if value is not None and not _TOPIC.fullmatch(value):
        raise _Rejected(400, 113, "Topic must be at most 32 characters of the URL-safe base64 alphabet")


def _check_urgency(value: str | None) -> None:
    if value is not None and value.strip().lower() not in URGENCIES:
        raise _Rejected(400, 999, f"Invalid Urgency header {value!r}: very-low, low, normal or high")


def _decrypt(headers: Mapping[str, str], body: bytes, key: _Key) -> bytes:
    encoding = headers.get("content-encoding")
    if encoding is None:
        raise _Rejected(400, 111, "Missing Content-Encoding header for an encrypted body")
    if encoding.strip().lower() != "aes128gcm":
        raise _Rejected(400, 110, f"Content-Encoding {encoding!r} is not supported: use aes128gcm")
    try:
        plaintext = http_ece.decrypt(
            body, private_key=key.private_key, auth_secret=key.auth_secret, version="aes128gcm"
        )
    except Exception as exc:  # http_ece raises ECEException, cryptography InvalidTag, ValueError…
        raise _Rejected(400, 110, f"The message does not decrypt: {type(exc).__name__}") from None
    return bytes(plaintext)


async def _cancel_the_rest() -> None:
    """The handlers still running once the server stopped (an answer held back longer than the shutdown
    waits): cancelled and awaited, so that closing the loop destroys no pending task."""
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
