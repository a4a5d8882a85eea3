"""A loopback APNs provider API: real HTTP/2 over real TLS, for the delivery tests.

Not a mock: the service is an HTTP/2 server (the ``h2`` state machine) behind a TLS listener on
127.0.0.1 whose certificate is issued, at test time, by a throw-away certificate authority made
with ``cryptography``. A client reaches it through a genuine TLS handshake that verifies the chain
against that CA (``ca_file``) and through HTTP/2 framing (ALPN ``h2``; a client that offers no
ALPN, as aioapns's default context does, is served with HTTP/2 prior knowledge like Apple does).

What it checks, like ``api.push.apple.com`` (legacy Safari website push, SPEC §9.5):

* ``POST /3/device/<token>`` only (405 ``MethodNotAllowed``, 404 ``BadPath``);
* ``authorization: bearer <JWT>`` — the provider token: ES256, header ``kid`` = the trusted key id,
  claim ``iss`` = the team id, signature by the trusted .p8 key, ``iat`` no older than one hour
  (403 ``MissingProviderToken`` / ``InvalidProviderToken`` / ``ExpiredProviderToken``);
* ``apns-topic`` = the configured website push id ``web.…`` (400 ``MissingTopic`` /
  ``TopicDisallowed``), well-formed ``apns-priority`` / ``apns-expiration`` / ``apns-id``;
* the body: a JSON object of at most 4096 bytes (400 ``PayloadEmpty`` / ``BadPayload``,
  413 ``PayloadTooLarge``);
* the device token: 64 hexadecimal characters unless ``strict_tokens=False``
  (400 ``BadDeviceToken``).

A request that passes these checks takes the next scripted reply of its device token (default
200): ``svc.script(token, [503, 503, 200])``, ``[410]``, ``[400]``, ``[Reply(429)]``,
``[Reply(200, delay=2.0)]``. Answers are shaped like Apple's: every response carries ``apns-id``
(the request's, or a fresh UUID); errors carry ``{"reason": …}`` and a 410 also ``"timestamp"``
(milliseconds). Every request, accepted or not, is recorded as an :class:`ApnsRequest`
(``svc.requests``) *before* its response is written, so once the client has its answer the record
is there.

Design choice — a thread with its own asyncio loop: the server runs ``asyncio.start_server`` (TLS
streams) in a dedicated daemon thread. The service is therefore independent of the test's event
loop: it works from plain synchronous tests, from tests that call ``asyncio.run`` once or many
times, and from pytest-asyncio tests alike, and a blocked client cannot stall the server. The
scripting and recording API is thread-safe. Use it as ``with ApnsService(...) as svc:`` or
``async with ApnsService(...) as svc:`` (start/stop are quick and synchronous underneath).

How a client connects (reuse this in the dispatcher's tests)
------------------------------------------------------------
::

    key = make_provider_key()                        # fresh P-256 .p8, key id, team id
    with ApnsService(key, topic="web.com.example.shop") as svc:
        svc.script(token, [410])
        async def go() -> None:                      # aioapns must be built inside a running loop
            apns = APNs(key=key.private_key_pem, key_id=key.key_id, team_id=key.team_id,
                        topic="web.com.example.shop", use_sandbox=False)
            svc.point_aioapns(apns)                  # host/port + TLS trust, nothing else
            try:
                result = await apns.send_notification(NotificationRequest(...))
            finally:
                await close_aioapns(apns)
        asyncio.run(go())

aioapns 4.0 takes its destination from class attributes of the pool's protocol class
(``APNS_SERVER`` = host name, also sent as SNI, checked against the certificate and sent as the
``host`` header; ``APNS_PORT``), and its TLS trust from ``pool.ssl_context``
(``aioapns/connection.py``: ``loop.create_connection(host=protocol_class.APNS_SERVER,
port=protocol_class.APNS_PORT, ssl=self.ssl_context)``). So there are two honest ways in:

* on an instance — ``svc.point_aioapns(apns)`` replaces ``apns.pool.protocol_class`` with a
  subclass of ``APNsProductionClientProtocol`` whose ``APNS_SERVER``/``APNS_PORT`` are
  ``127.0.0.1``/``svc.port`` and ``apns.pool.ssl_context`` with :meth:`client_ssl_context` (a
  verifying context that trusts only the test CA, ALPN ``h2``); or pass
  ``ssl_context=svc.client_ssl_context()`` to ``APNs(...)`` and set only the protocol class;
* process-wide, when the code under test builds its own ``APNs`` with no hook —
  ``svc.redirect_aioapns(monkeypatch)`` patches ``APNS_SERVER``/``APNS_PORT`` on aioapns's
  production and development protocol classes and sets ``SSL_CERT_FILE`` to ``ca_file`` so that
  aioapns's default ``ssl.create_default_context()`` trusts the test CA (read when the context is
  created, i.e. when ``APNs(...)`` is constructed — construct it after the redirect).

Any other HTTP/2 client works too: TLS to ``127.0.0.1:svc.port`` verifying with ``svc.ca_file``
(server name ``127.0.0.1`` or ``localhost``), ALPN ``h2``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import string
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes

if TYPE_CHECKING:  # only for annotations; aioapns and pytest are imported lazily
    import pytest
    from aioapns import APNs

__all__ = [
    "DEFAULT_REASONS",
    "MAX_PAYLOAD_BYTES",
    "TOKEN_MAX_AGE_SECONDS",
    "ApnsRequest",
    "ApnsService",
    "ProviderKey",
    "Reply",
    "close_aioapns",
    "forge_unsigned_token",
    "make_device_token",
    "make_provider_key",
    "safari_payload_problems",
]

LOOPBACK = "127.0.0.1"
MAX_PAYLOAD_BYTES = 4096
TOKEN_MAX_AGE_SECONDS = 3600
#: Tolerated clock skew for an ``iat`` in the future.
TOKEN_FUTURE_SKEW_SECONDS = 60

#: The reason Apple gives with each status when a script entry names only the status.
DEFAULT_REASONS: dict[int, str] = {
    400: "BadDeviceToken",
    403: "InvalidProviderToken",
    404: "BadPath",
    405: "MethodNotAllowed",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}

_DEVICE_PATH = re.compile(r"^/3/device/([^/?#]*)$")
_HEX_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
_APNS_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ID_ALPHABET = string.ascii_uppercase + string.digits


# --------------------------------------------------------------------------------------------
# Provider keys (.p8) and device tokens
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderKey:
    """An APNs auth key as Apple issues it: a P-256 private key in a PKCS#8 ``.p8`` PEM."""

    key_id: str
    team_id: str
    private_key_pem: str
    public_key_pem: str

    def write_p8(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``AuthKey_<key id>.p8`` (mode 0600) into ``directory`` and return its path."""
        path = Path(directory) / f"AuthKey_{self.key_id}.p8"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(self.private_key_pem)
        return path

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """A provider JWT signed with this key (for hand-made tokens in tests)."""
        return jwt.encode(claims, self.private_key_pem, algorithm="ES256", headers={"kid": kid or self.key_id})


def _random_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def make_provider_key(key_id: str | None = None, team_id: str | None = None) -> ProviderKey:
    """A fresh P-256 provider key (.p8 PEM, PKCS#8) with a 10-character key id and team id."""
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return ProviderKey(
        key_id=key_id or _random_id(),
        team_id=team_id or _random_id(),
        private_key_pem=private_pem,
        public_key_pem=public_pem,
    )


def make_device_token() -> str:
    """A well-formed random device token: 64 lowercase hexadecimal characters."""
    return secrets.token_hex(32)


def safari_payload_problems(payload: Any) -> list[str]:
    """What keeps ``payload`` from being the legacy-Safari shape of SPEC §9.5 (empty list: none).

    ``{"aps": {"alert": {"title": str, "body": str, "action": str}, "url-args": [str, ...]}}``.
    APNs itself does not enforce this; the service records it on every request for the tests.
    """
    problems: list[str] = []
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]
    aps = payload.get("aps")
    if not isinstance(aps, dict):
        return ["missing object 'aps'"]
    alert = aps.get("alert")
    if not isinstance(alert, dict):
        problems.append("missing object 'aps.alert'")
    else:
        for name in ("title", "body", "action"):
            if not isinstance(alert.get(name), str):
                problems.append(f"'aps.alert.{name}' is not a string")
    url_args = aps.get("url-args")
    if not isinstance(url_args, list) or not all(isinstance(arg, str) for arg in url_args):
        problems.append("'aps.url-args' is not a list of strings")
    return problems


# --------------------------------------------------------------------------------------------
# Test certificate authority
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TlsMaterial:
    ca_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes


def _make_tls_material() -> _TlsMaterial:
    """A test CA and a server certificate for localhost / 127.0.0.1 it signed (P-256, one day)."""
    now = dt.datetime.now(dt.UTC)
    not_before, not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pushlang tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, "pushlang loopback APNs test CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


# --------------------------------------------------------------------------------------------
# Scripts and records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer: the status, Apple's reason (default per status), an optional 410
    ``timestamp`` in milliseconds (default: now) and a delay before answering, in seconds."""

    status: int
    reason: str | None = None
    timestamp_ms: int | None = None
    delay: float = 0.0


ScriptEntry = int | Reply


@dataclass
class ApnsRequest:
    """One request as the service saw it, and what it answered."""

    token: str | None
    method: str
    path: str
    status: int
    reason: str | None
    apns_id: str
    topic: str | None
    push_type: str | None
    expiration: str | None
    priority: str | None
    collapse_id: str | None
    headers: dict[str, str]
    """All request headers except ``authorization`` (pseudo-headers included)."""
    jwt_header: dict[str, Any] | None
    jwt_claims: dict[str, Any] | None
    """The verified claims; None when the provider token was missing or rejected."""
    jwt_error: str | None
    """Why the provider token was rejected (None when it was accepted)."""
    payload: Any
    """The decoded JSON body (None when absent or not JSON)."""
    body: bytes
    safari_problems: list[str]
    alpn: str | None
    """The protocol the TLS handshake negotiated: ``"h2"``, or None for prior knowledge."""
    connection: int
    stream_id: int
    time: float
    """When the request was complete (``time.time()``)."""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class _ConnectionGone(Exception):
    pass


# --------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------


class ApnsService:
    """A loopback APNs provider API (HTTP/2 + TLS) for legacy Safari website push.

    ``provider`` is the key the service trusts (a :class:`ProviderKey`, or any object with
    ``key_id``, ``team_id`` and ``public_key_pem``); more can be trusted with :meth:`trust`.
    ``topic`` is the website push id that ``apns-topic`` must equal.
    """

    def __init__(
        self,
        provider: ProviderKey,
        topic: str = "web.com.example.shop",
        *,
        default_status: int = 200,
        strict_tokens: bool = True,
        max_concurrent_streams: int = 1000,
    ) -> None:
        self.topic = topic
        self.default_status = default_status
        self.strict_tokens = strict_tokens
        self.max_concurrent_streams = max_concurrent_streams
        self._trusted: dict[str, tuple[str, Any]] = {}
        self.trust(provider.key_id, provider.team_id, provider.public_key_pem)

        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = {}
        self._requests: list[ApnsRequest] = []
        self._connections_accepted = 0

        self._tmpdir: Path | None = None
        self._ca_file: Path | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # ---- configuration -------------------------------------------------------------------

    def trust(self, key_id: str, team_id: str, public_key_pem: str) -> None:
        """Accept provider tokens signed by this key (``kid`` = key_id, ``iss`` = team_id)."""
        public_key = serialization.load_pem_public_key(public_key_pem.encode("ascii"))
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise ValueError("an APNs provider key is a P-256 key")
        self._trusted[key_id] = (team_id, public_key)

    def script(self, token: str, replies: Iterable[ScriptEntry]) -> None:
        """Append scripted answers for ``token``; each accepted request takes the next one, and
        once they are used up the token gets ``default_status`` again."""
        entries = [entry if isinstance(entry, Reply) else Reply(int(entry)) for entry in replies]
        with self._lock:
            self._scripts.setdefault(token, deque()).extend(entries)

    def pending_script(self, token: str) -> list[Reply]:
        with self._lock:
            return list(self._scripts.get(token, ()))

    def reset(self) -> None:
        """Forget scripts and recorded requests (the listener and keys stay)."""
        with self._lock:
            self._scripts.clear()
            self._requests.clear()

    # ---- observation ---------------------------------------------------------------------

    @property
    def requests(self) -> list[ApnsRequest]:
        """A snapshot of every request so far, in arrival order of completion."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, token: str) -> list[ApnsRequest]:
        return [request for request in self.requests if request.token == token]

    @property
    def connections_accepted(self) -> int:
        """How many TLS connections completed the handshake and were served."""
        with self._lock:
            return self._connections_accepted

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the APNs service is not running")
        return self._port

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def ca_file(self) -> str:
        """PEM file of the test CA that issued the server certificate (trust this, only this)."""
        if self._ca_file is None:
            raise RuntimeError("the APNs service is not running")
        return str(self._ca_file)

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    # ---- clients -------------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA and offers ALPN ``h2``."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.set_alpn_protocols(["h2"])
        return context

    def aioapns_protocol_class(self) -> type[Any]:
        """A subclass of aioapns's production protocol that dials this service instead."""
        from aioapns.connection import APNsProductionClientProtocol

        return type(
            "LoopbackAPNsClientProtocol",
            (APNsProductionClientProtocol,),
            {"APNS_SERVER": LOOPBACK, "APNS_PORT": self.port},
        )

    def point_aioapns(self, apns: APNs) -> None:
        """Send this ``aioapns.APNs`` client's traffic here: only the host, port and the TLS
        trust change; the handshake is verified and the protocol is aioapns's own HTTP/2."""
        apns.pool.protocol_class = self.aioapns_protocol_class()
        apns.pool.ssl_context = self.client_ssl_context()

    def redirect_aioapns(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Process-wide: every ``aioapns.APNs`` constructed afterwards (production or sandbox)
        dials this service and trusts the test CA through ``SSL_CERT_FILE``."""
        from aioapns.connection import APNsDevelopmentClientProtocol, APNsProductionClientProtocol

        for cls in (APNsProductionClientProtocol, APNsDevelopmentClientProtocol):
            monkeypatch.setattr(cls, "APNS_SERVER", LOOPBACK)
            monkeypatch.setattr(cls, "APNS_PORT", self.port)
        monkeypatch.setenv("SSL_CERT_FILE", self.ca_file)

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> ApnsService:
        if self._thread is not None:
            raise RuntimeError("the APNs service is already running")
        material = _make_tls_material()
        tmpdir = Path(tempfile.mkdtemp(prefix="pushlang-apns-"))
        self._tmpdir = tmpdir
        ca_file = tmpdir / "ca.pem"
        ca_file.write_bytes(material.ca_pem)
        cert_file = tmpdir / "server.pem"
        cert_file.write_bytes(material.server_cert_pem)
        key_file = tmpdir / "server.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(material.server_key_pem)
        self._ca_file = ca_file

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["h2"])

        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(context,), name="loopback-apns", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=10):
            self.stop()
            raise RuntimeError("the loopback APNs service did not start within 10 s")
        if self._startup_error is not None:
            error = self._startup_error
            self.stop()
            raise RuntimeError("the loopback APNs service could not start") from error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            # RuntimeError: the loop is already stopping; close what is left anyway
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        self._thread = None
        self._loop = None
        self._server = None
        self._port = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self._ca_file = None

    def __enter__(self) -> ApnsService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> ApnsService:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- server thread -------------------------------------------------------------------

    def _run(self, context: ssl.SSLContext) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, LOOPBACK, 0, ssl=context)
            )
            self._port = int(self._server.sockets[0].getsockname()[1])
        except BaseException as error:  # report to start(), which raises it in the test thread
            self._startup_error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn not in (None, "h2"):  # only h2 is offered, so this cannot happen; be strict anyway
            writer.close()
            return
        with self._lock:
            self._connections_accepted += 1
            connection_number = self._connections_accepted
        self._writers.add(writer)

        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams})
        streams: dict[int, _Stream] = {}
        tasks: set[asyncio.Task[None]] = set()

        def flush() -> None:
            data = conn.data_to_send()
            if data and not writer.is_closing():
                writer.write(data)

        async def respond(stream_id: int, stream: _Stream) -> None:
            record, reply = self._judge(stream, alpn, connection_number, stream_id)
            if reply.delay > 0:
                await asyncio.sleep(reply.delay)
            with self._lock:
                self._requests.append(record)
            if writer.is_closing():
                return
            # the client may have reset the stream or gone away while we waited
            with contextlib.suppress(ConnectionError, H2Error):
                headers = [(":status", str(record.status)), ("apns-id", record.apns_id)]
                if record.status == 200:
                    conn.send_headers(stream_id, headers, end_stream=True)
                else:
                    document: dict[str, Any] = {"reason": record.reason}
                    if record.status == 410:
                        document["timestamp"] = (
                            reply.timestamp_ms if reply.timestamp_ms is not None else int(time.time() * 1000)
                        )
                    body = json.dumps(document).encode()
                    headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
                    conn.send_headers(stream_id, headers)
                    conn.send_data(stream_id, body, end_stream=True)
                flush()
                await writer.drain()

        try:
            flush()
            await writer.drain()
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = conn.receive_data(data)
                except H2Error:
                    flush()  # h2 queued a GOAWAY
                    break
                for event in events:
                    if isinstance(event, RequestReceived):
                        # header_encoding="utf-8": h2 hands over str pairs
                        pairs = [(str(name), str(value)) for name, value in event.headers or []]
                        streams[event.stream_id] = _Stream(headers=pairs)
                    elif isinstance(event, DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                        if event.stream_id in streams:
                            streams[event.stream_id].body.extend(event.data or b"")
                    elif isinstance(event, StreamEnded):
                        # h2 reports END_STREAM as its own event after the HEADERS or DATA event
                        if event.stream_id in streams:
                            self._spawn(tasks, respond(event.stream_id, streams.pop(event.stream_id)))
                    elif isinstance(event, StreamReset):
                        streams.pop(event.stream_id, None)
                    elif isinstance(event, ConnectionTerminated):
                        raise _ConnectionGone
                flush()
                await writer.drain()
        except (_ConnectionGone, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # ---- the APNs rules ------------------------------------------------------------------

    def _verify_provider_token(
        self, authorization: str | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None, str | None]:
        """(jwt header, verified claims, error description, APNs reason) for the header."""
        if not authorization:
            return None, None, "no authorization header", "MissingProviderToken"
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None, "authorization is not 'bearer <JWT>'", "InvalidProviderToken"
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            return None, None, f"not a JWT: {error}", "InvalidProviderToken"
        if header.get("alg") != "ES256":
            return header, None, f"alg is {header.get('alg')!r}, not 'ES256'", "InvalidProviderToken"
        kid = header.get("kid")
        trusted = self._trusted.get(kid) if isinstance(kid, str) else None
        if trusted is None:
            return header, None, f"unknown key id {kid!r}", "InvalidProviderToken"
        team_id, public_key = trusted
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "require": ["iss", "iat"],
                },
            )
        except jwt.PyJWTError as error:
            return header, None, f"{type(error).__name__}: {error}", "InvalidProviderToken"
        if claims.get("iss") != team_id:
            return header, None, f"iss is {claims.get('iss')!r}, not the team id", "InvalidProviderToken"
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            return header, None, "iat is not a number", "InvalidProviderToken"
        now = time.time()
        if iat > now + TOKEN_FUTURE_SKEW_SECONDS:
            return header, None, f"iat is {iat - now:.0f} s in the future", "InvalidProviderToken"
        if now - iat > TOKEN_MAX_AGE_SECONDS:
            return header, None, f"iat is {now - iat:.0f} s old (more than one hour)", "ExpiredProviderToken"
        return header, claims, None, None

    def _next_reply(self, token: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(token)
            if queue:
                return queue.popleft()
        return Reply(self.default_status)

    def _judge(self, stream: _Stream, alpn: str | None, connection: int, stream_id: int) -> tuple[ApnsRequest, Reply]:
        raw_headers: dict[str, str] = {}
        duplicated: set[str] = set()
        for name, value in stream.headers:
            if name in raw_headers:
                duplicated.add(name)
            raw_headers[name] = value
        method = raw_headers.get(":method", "")
        path = raw_headers.get(":path", "")
        apns_id = raw_headers.get("apns-id") or str(uuid.uuid4()).upper()
        body = bytes(stream.body)
        match = _DEVICE_PATH.match(path)
        token = match.group(1) if match else None

        jwt_header, claims, jwt_error, auth_reason = self._verify_provider_token(raw_headers.get("authorization"))

        payload: Any = None
        payload_reason: str | None = None
        payload_status = 400
        if not body:
            payload_reason = "PayloadEmpty"
        elif len(body) > MAX_PAYLOAD_BYTES:
            payload_reason, payload_status = "PayloadTooLarge", 413
        else:
            try:
                payload = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                payload_reason = "BadPayload"  # not one of Apple's documented reasons; it never occurs
            else:
                if not isinstance(payload, dict):
                    payload_reason = "BadPayload"

        reply = Reply(200)
        status, reason = 200, None
        topic = raw_headers.get("apns-topic")
        priority = raw_headers.get("apns-priority")
        expiration = raw_headers.get("apns-expiration")
        if method != "POST":
            status, reason = 405, "MethodNotAllowed"
        elif token is None:
            status, reason = 404, "BadPath"
        elif duplicated:
            status, reason = 400, "DuplicateHeaders"
        elif auth_reason is not None:
            status, reason = 403, auth_reason
        elif not token:
            status, reason = 400, "MissingDeviceToken"
        elif "apns-id" in raw_headers and not _APNS_ID.match(raw_headers["apns-id"]):
            status, reason = 400, "BadMessageId"
        elif not topic:
            status, reason = 400, "MissingTopic"
        elif topic != self.topic:
            status, reason = 400, "TopicDisallowed"
        elif priority is not None and priority not in ("1", "5", "10"):
            status, reason = 400, "BadPriority"
        elif expiration is not None and not expiration.isdigit():
            status, reason = 400, "BadExpirationDate"
        elif payload_reason is not None:
            status, reason = payload_status, payload_reason
        elif self.strict_tokens and not _HEX_TOKEN.match(token):
            status, reason = 400, "BadDeviceToken"
        else:
            reply = self._next_reply(token)
            status = reply.status
            reason = None if status == 200 else (reply.reason or DEFAULT_REASONS.get(status, "InternalServerError"))

        record = ApnsRequest(
            token=token,
            method=method,
            path=path,
            status=status,
            reason=reason,
            apns_id=apns_id,
            topic=topic,
            push_type=raw_headers.get("apns-push-type"),
            expiration=expiration,
            priority=priority,
            collapse_id=raw_headers.get("apns-collapse-id"),
            headers={name: value for name, value in raw_headers.items() if name != "authorization"},
            jwt_header=jwt_header,
            jwt_claims=claims,
            jwt_error=jwt_error,
            payload=payload,
            body=body,
            safari_problems=safari_payload_problems(payload) if payload is not None else ["no JSON payload"],
            alpn=alpn,
            connection=connection,
            stream_id=stream_id,
            time=time.time(),
        )
        return record, reply


async def close_aioapns(apns: APNs, timeout: float = 5.0) -> None:
    """Close an ``aioapns.APNs`` client's connections and wait until their TLS transports are
    gone (aioapns 4.0 has no public close; its pool has, and a closed connection leaves
    ``pool.connections`` once its transport reports ``connection_lost``)."""
    apns.pool.close()
    deadline = asyncio.get_running_loop().time() + timeout
    while apns.pool.connections and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge_unsigned_token(claims: dict[str, Any], kid: str) -> str:
    """An ``alg: none`` provider token (for a test that the service refuses it)."""
    header = _b64url(json.dumps({"alg": "none", "kid": kid}).encode())
    return f"{header}.{_b64url(json.dumps(claims).encode())}."

