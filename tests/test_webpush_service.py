"""The loopback Web Push service (tests/peers/webpush_service.py) is a real peer.

pywebpush, the client the dispatcher uses, talks to it over real HTTP: the VAPID JWT it signs
verifies, the aes128gcm body it encrypts decrypts to exactly the bytes sent, and the service
answers bad requests and scripted failures the way Chrome's, Firefox's and Edge's push services do.

Asyncio without a pytest plugin: most tests run the service in its background thread
(``with WebPushService() as service``) and call the synchronous ``pywebpush.webpush``; one test
runs the service on the test's own loop with ``asyncio.run`` (``async with``) and sends with
``pywebpush.webpush_async`` over one shared aiohttp session, as the dispatcher will.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import pytest
import pywebpush
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from peers.webpush_service import (
    MAX_BODY,
    PushRequest,
    Reply,
    Subscription,
    WebPushService,
    b64url_decode,
    b64url_encode,
)
from py_vapid import Vapid, Vapid01
from py_vapid.jwt import sign as jwt_sign

SUB = "mailto:ops@shop.example.com"


# -- helpers --------------------------------------------------------------------------------------


@pytest.fixture
def service() -> Iterator[WebPushService]:
    with WebPushService() as svc:
        yield svc


@pytest.fixture
def vapid() -> Vapid:
    key = Vapid()
    key.generate_keys()
    return key


def public_key(key: Vapid) -> str:
    """The applicationServerKey a site gives ``pushManager.subscribe``."""
    return b64url_encode(key.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def raw_private_key(key: Vapid) -> str:
    """The private key as a config file holds it: URL-safe base64 of the 32-byte scalar."""
    return b64url_encode(key.private_key.private_numbers().private_value.to_bytes(32, "big"))


def send(
    subscription: Subscription,
    data: str | None,
    key: Vapid | str | None,
    *,
    claims: dict[str, Any] | None = None,
    ttl: int = 60,
    headers: dict[str, str | int | float] | None = None,
    content_encoding: str = "aes128gcm",
) -> tuple[int, Mapping[str, str], str]:
    """One ``pywebpush.webpush`` call; (status, response headers, response text), errors included."""
    try:
        response = pywebpush.webpush(
            subscription.info,
            data,
            vapid_private_key=key,
            vapid_claims=claims if claims is not None else ({"sub": SUB} if key is not None else None),
            ttl=ttl,
            headers=headers,
            content_encoding=content_encoding,
            timeout=10,
        )
    except pywebpush.WebPushException as exc:
        assert exc.response is not None, exc
        return exc.response.status_code, exc.response.headers, exc.response.text
    assert not isinstance(response, str)
    return response.status_code, response.headers, response.text


def signed_header(
    key: Vapid, claims: dict[str, Any], *, k: str | None = None
) -> dict[str, str | int | float]:
    """An RFC 8292 Authorization header over arbitrary claims (py_vapid's ``sign`` refuses bad ones)."""
    return {"Authorization": f"vapid t={jwt_sign(claims, key.private_key)}, k={k or public_key(key)}"}


def post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
    """A raw POST, for requests pywebpush cannot be made to send (e.g. without TTL)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_body(text: str | bytes) -> dict[str, Any]:
    body = json.loads(text)
    assert isinstance(body, dict)
    assert set(body) == {"code", "errno", "error", "message", "more_info"}
    return body


def only_request(service: WebPushService, subscription: Subscription) -> PushRequest:
    records = service.requests_for(subscription.id)
    assert len(records) == 1, records
    return records[0]


# -- delivery ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["chrome", "firefox", "edge", "safari"])
def test_pywebpush_message_arrives_verified_and_decrypted(
    service: WebPushService, vapid: Vapid, platform: str
) -> None:
    subscription = service.new_subscription(platform)
    assert subscription.endpoint == f"{service.url}/push/{subscription.id}"
    assert len(b64url_decode(subscription.p256dh)) == 65
    assert b64url_decode(subscription.p256dh)[0] == 4
    assert len(b64url_decode(subscription.auth)) == 16
    data = json.dumps({"title": "Still thinking it over? ☕", "send_id": "s-1", "campaign": "cart"})

    before = time.time()
    status, headers, text = send(subscription, data, vapid, headers={"Urgency": "high", "Topic": "cart"})

    assert status == 201, text
    assert headers["Location"].startswith(f"{service.url}/m/")
    record = only_request(service, subscription)
    assert record.payload == data.encode()
    assert record.status == 201 and record.accepted and record.error is None
    assert (record.ttl, record.urgency, record.topic) == (60, "high", "cart")
    assert record.platform == platform
    assert record.auth_scheme == "vapid"
    assert record.vapid_key == public_key(vapid)
    assert record.claims is not None
    assert record.claims["aud"] == service.origin == service.url
    assert record.claims["sub"] == SUB
    assert before < record.claims["exp"] <= before + 24 * 3600 + 1
    assert record.headers["content-encoding"] == "aes128gcm"
    assert record.body_size > len(data.encode())
    assert before <= record.wall <= time.time()
    assert service.payloads(subscription.id) == [data.encode()]


def test_raw_key_string_and_the_older_webpush_crypto_key_form(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription("firefox")

    # The key as a config file holds it (a string), RFC 8292 header form.
    assert send(subscription, "one", raw_private_key(vapid))[0] == 201
    # py_vapid's Vapid01 signs the older draft form: "Authorization: WebPush <JWT>" plus
    # "Crypto-Key: p256ecdsa=<key>".
    legacy = Vapid01.from_raw(raw_private_key(vapid).encode())
    assert send(subscription, "two", legacy)[0] == 201

    first, second = service.requests_for(subscription.id)
    assert (first.auth_scheme, first.payload) == ("vapid", b"one")
    assert (second.auth_scheme, second.payload) == ("webpush", b"two")
    assert second.headers["authorization"].startswith("WebPush ")
    assert "p256ecdsa=" in second.headers["crypto-key"]
    assert first.vapid_key == second.vapid_key == public_key(vapid)
    assert second.claims is not None and second.claims["aud"] == service.origin


def test_message_without_payload(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    assert send(subscription, None, vapid, ttl=0)[0] == 201
    record = only_request(service, subscription)
    assert (record.payload, record.body_size, record.ttl) == (None, 0, 0)


def test_body_limit_is_4096_bytes_about_3993_of_plaintext(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    largest = "x" * 3993  # 4096 - 86 (salt, rs, keyid) - 16 (AES-GCM tag) - 1 (padding delimiter)

    assert send(subscription, largest, vapid)[0] == 201
    status, _, text = send(subscription, largest + "x", vapid)

    assert status == 413
    assert error_body(text) | {"message": ""} == {
        "code": 413,
        "errno": 104,
        "error": "Request Entity Too Large",
        "message": "",
        "more_info": error_body(text)["more_info"],
    }
    fits, too_large = service.requests_for(subscription.id)
    assert (fits.body_size, fits.payload) == (MAX_BODY, largest.encode())
    assert (too_large.body_size, too_large.status, too_large.payload) == (MAX_BODY + 1, 413, None)


def test_async_client_with_one_shared_session_on_the_tests_loop(vapid: Vapid) -> None:
    async def scenario() -> list[PushRequest]:
        async with WebPushService() as service, aiohttp.ClientSession() as session:
            subscriptions = [service.new_subscription(p) for p in ("chrome", "firefox", "edge")]
            responses = await asyncio.gather(
                *(
                    pywebpush.webpush_async(
                        s.info,
                        f"hello {s.platform}",
                        vapid_private_key=vapid,
                        vapid_claims={"sub": SUB},
                        ttl=30,
                        headers={"Urgency": "normal"},
                        aiohttp_session=session,
                    )
                    for s in subscriptions
                )
            )
            assert [getattr(r, "status", None) for r in responses] == [201, 201, 201]
            return service.requests

    records = asyncio.run(scenario())
    assert sorted(r.payload or b"" for r in records) == [b"hello chrome", b"hello edge", b"hello firefox"]
    assert all(r.payload == f"hello {r.platform}".encode() for r in records)



def test_verify_every_n_checks_a_sample_and_answers_the_rest_at_once(vapid: Vapid) -> None:
    """The benchmark's mode: the first request and every Nth after it get every check; the others
    are answered at once, without decryption, and say so in their record."""
    with pytest.raises(ValueError):
        WebPushService(verify_every=0)
    with WebPushService(verify_every=3) as service:
        subscription = service.new_subscription()
        unknown = post(f"{service.url}/push/no-such-subscription", b"", {"TTL": "0"})[0]
        statuses = [send(subscription, f"push {i}", vapid)[0] for i in range(6)]
        # outside the sample a bad request is answered like a good one; in the sample it is refused
        no_vapid = [send(subscription, "no key", None)[0] for _ in range(3)]
        assert send(subscription, "checked", vapid)[0] == 201
        service.script(subscription.id, [503])
        scripted = send(subscription, "scripted", vapid)[0]  # unchecked, it still takes its scripted reply

    assert unknown == 404  # the subscription is looked up on every request
    assert statuses == [201] * 6 and no_vapid == [401, 201, 201] and scripted == 503
    records = service.requests_for(subscription.id)
    assert [r.verified for r in records] == [True, False, False] * 3 + [True, False]
    assert [r.payload for r in records] == [b"push 0", None, None, b"push 3", None, None,
                                            None, None, None, b"checked", None]
    assert all(r.claims is None and r.ttl is None for r in records if not r.verified)
    assert all(r.claims is not None for r in records if r.verified and r.status == 201)
    assert records[-1].status == 503


# -- VAPID ------------------------------------------------------------------------------------------


def test_key_other_than_the_pinned_application_server_key_is_403(vapid: Vapid) -> None:
    other = Vapid()
    other.generate_keys()
    with WebPushService(application_server_key=public_key(vapid)) as service:
        subscription = service.new_subscription()
        assert subscription.application_server_key == public_key(vapid)

        status, _, text = send(subscription, "hi", other)
        assert status == 403
        assert error_body(text)["errno"] == 109
        assert send(subscription, "hi", vapid)[0] == 201

        rejected, accepted = service.requests_for(subscription.id)
        assert (rejected.status, rejected.vapid_key, rejected.claims, rejected.payload) == (
            403,
            public_key(other),
            None,
            None,
        )
        assert (accepted.status, accepted.payload) == (201, b"hi")


def test_pin_per_subscription(service: WebPushService, vapid: Vapid) -> None:
    other = Vapid()
    other.generate_keys()
    pinned = service.new_subscription(application_server_key=public_key(vapid))
    unpinned = service.new_subscription()
    assert send(pinned, "hi", other)[0] == 403
    assert send(unpinned, "hi", other)[0] == 201


def _claims(service: WebPushService, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"aud": service.origin, "exp": int(time.time()) + 3600, "sub": SUB}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "expired"),
        ("exp more than 24 h ahead", "24 hours"),
        ("exp not a number", "exp must be an integer"),
        ("aud another origin", "origin"),
        ("aud with a path", "origin"),
        ("aud missing", "origin"),
        ("sub a bare address", "sub"),
        ("sub an http URL", "sub"),
        ("sub missing", "sub"),
        ("signed by another key", "signature"),
        ("alg none", "ES256"),
        ("k not a point", "public key"),
        ("missing Authorization", "Authorization"),
        ("Bearer scheme", "scheme"),
        ("WebPush without Crypto-Key", "Crypto-Key"),
    ],
)
def test_bad_or_missing_jwt_is_401(service: WebPushService, vapid: Vapid, case: str, reason: str) -> None:
    subscription = service.new_subscription()
    other = Vapid()
    other.generate_keys()
    now = int(time.time())
    headers: dict[str, str | int | float]
    match case:
        case "expired":
            headers = signed_header(vapid, _claims(service, exp=now - 5))
        case "exp more than 24 h ahead":
            headers = signed_header(vapid, _claims(service, exp=now + 24 * 3600 + 120))
        case "exp not a number":
            headers = signed_header(vapid, _claims(service, exp=str(now + 60)))
        case "aud another origin":
            headers = signed_header(vapid, _claims(service, aud="https://fcm.googleapis.com"))
        case "aud with a path":
            headers = signed_header(vapid, _claims(service, aud=subscription.endpoint))
        case "aud missing":
            headers = signed_header(vapid, _claims(service, aud=None))
        case "sub a bare address":
            headers = signed_header(vapid, _claims(service, sub="ops@shop.example.com"))
        case "sub an http URL":
            headers = signed_header(vapid, _claims(service, sub="http://shop.example.com"))
        case "sub missing":
            headers = signed_header(vapid, _claims(service, sub=None))
        case "signed by another key":
            headers = signed_header(other, _claims(service), k=public_key(vapid))
        case "alg none":
            token = ".".join(
                [
                    b64url_encode(b'{"typ":"JWT","alg":"none"}'),
                    b64url_encode(json.dumps(_claims(service)).encode()),
                    "",
                ]
            )
            headers = {"Authorization": f"vapid t={token}, k={public_key(vapid)}"}
        case "k not a point":
            headers = signed_header(vapid, _claims(service), k=b64url_encode(b"\x04" + b"\x01" * 64))
        case "missing Authorization":
            headers = {}
        case "Bearer scheme":
            headers = {"Authorization": f"Bearer {jwt_sign(_claims(service), vapid.private_key)}"}
        case "WebPush without Crypto-Key":
            headers = {"Authorization": f"WebPush {jwt_sign(_claims(service), vapid.private_key)}"}
        case _:
            raise AssertionError(case)

    # No vapid_claims: pywebpush then sends our Authorization header as it is.
    status, _, text = send(subscription, "hi", None, headers=headers)

    assert status == 401, text
    body = error_body(text)
    assert (body["code"], body["errno"], body["error"]) == (401, 109, "Unauthorized")
    record = only_request(service, subscription)
    assert (record.status, record.claims, record.payload) == (401, None, None)
    assert record.error is not None and reason in record.error


def test_a_remembered_jwt_still_has_its_claims_and_key_checked(service: WebPushService, vapid: Vapid) -> None:
    """The service verifies a JWT's signature once and remembers it (as real push services do), but
    the remembered token still expires, and the same token beside another key is verified afresh."""
    subscription = service.new_subscription()
    token = signed_header(vapid, _claims(service, exp=int(time.time()) + 2))["Authorization"]
    assert send(subscription, "first", None, headers={"Authorization": token})[0] == 201
    assert send(subscription, "again", None, headers={"Authorization": token})[0] == 201

    other = Vapid()
    other.generate_keys()
    swapped = str(token).replace(public_key(vapid), public_key(other))
    assert send(subscription, "swapped", None, headers={"Authorization": swapped})[0] == 401

    time.sleep(max(0.0, int(time.time()) + 2.2 - time.time()))
    status, _, text = send(subscription, "late", None, headers={"Authorization": token})
    assert status == 401 and "expired" in error_body(text)["message"]
    assert [r.status for r in service.requests_for(subscription.id)] == [201, 201, 401, 401]


def test_vapid_can_be_optional_when_not_pinned(vapid: Vapid) -> None:
    with WebPushService(require_vapid=False) as service:
        subscription = service.new_subscription()
        assert send(subscription, "no vapid", None)[0] == 201
        record = only_request(service, subscription)
        assert (record.auth_scheme, record.claims, record.payload) == (None, None, b"no vapid")


# -- headers and body ---------------------------------------------------------------------------------


def _signed_request(
    service: WebPushService, subscription: Subscription, vapid: Vapid
) -> tuple[bytes, dict[str, str]]:
    body = pywebpush.WebPusher(subscription.info).encode(b"raw", "aes128gcm")["body"]
    headers = {
        "Content-Encoding": "aes128gcm",
        **{k: str(v) for k, v in signed_header(vapid, _claims(service)).items()},
    }
    return bytes(body), headers


def test_missing_ttl_is_400(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    body, headers = _signed_request(service, subscription, vapid)

    status, _, text = post(subscription.endpoint, body, headers)
    assert status == 400
    assert error_body(text)["errno"] == 111
    assert "TTL" in error_body(text)["message"]

    for bad in ("-1", "sixty", "1.5", ""):
        status, _, text = post(subscription.endpoint, body, {**headers, "TTL": bad})
        assert (status, error_body(text)["errno"]) == (400, 112), bad

    assert post(subscription.endpoint, body, {**headers, "TTL": "2419200"})[0] == 201
    assert [r.status for r in service.requests_for(subscription.id)] == [400, 400, 400, 400, 400, 201]
    assert service.requests_for(subscription.id)[-1].payload == b"raw"


@pytest.mark.parametrize("topic", ["a" * 33, "cart!", "cart abandoned", "caf\u00e9", ""])
def test_invalid_topic_is_400(service: WebPushService, vapid: Vapid, topic: str) -> None:
    subscription = service.new_subscription()
    body, headers = _signed_request(service, subscription, vapid)
    status, _, text = post(subscription.endpoint, body, {**headers, "TTL": "60", "Topic": topic})
    assert (status, error_body(text)["errno"]) == (400, 113)


def test_valid_topics_and_urgencies(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    for topic, urgency in [("a" * 32, "very-low"), ("cart_abandoned-10m", "low"), ("X", "normal")]:
        assert send(subscription, "t", vapid, headers={"Topic": topic, "Urgency": urgency})[0] == 201
    assert [(r.topic, r.urgency) for r in service.requests_for(subscription.id)] == [
        ("a" * 32, "very-low"),
        ("cart_abandoned-10m", "low"),
        ("X", "normal"),
    ]
    status, _, text = send(subscription, "t", vapid, headers={"Urgency": "urgent"})
    assert status == 400 and "Urgency" in error_body(text)["message"]


def test_body_that_does_not_decrypt_is_400(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    stranger = service.new_subscription()
    body, headers = _signed_request(service, stranger, vapid)  # encrypted for another browser
    headers["TTL"] = "60"

    for payload in [body, b"\x00" * 200, body[:-1] + bytes([body[-1] ^ 1])]:
        status, _, text = post(subscription.endpoint, payload, headers)
        assert (status, error_body(text)["errno"]) == (400, 110)
    # The older "aesgcm" encoding is refused; so is an encrypted body without Content-Encoding.
    assert send(subscription, "old", vapid, content_encoding="aesgcm")[0] == 400
    no_encoding = {k: v for k, v in headers.items() if k != "Content-Encoding"}
    status, _, text = post(subscription.endpoint, body, no_encoding)
    assert (status, error_body(text)["errno"]) == (400, 111)

    records = service.requests_for(subscription.id)
    assert [r.status for r in records] == [400] * 5
    assert all(r.payload is None for r in records)
    assert service.decrypt(stranger.id, body) == b"raw"


def test_unknown_and_expired_endpoints(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    status, _, text = post(f"{service.url}/push/no-such-subscription", b"", {"TTL": "0"})
    assert status == 404
    assert error_body(text) | {"message": ""} == {
        "code": 404,
        "errno": 102,
        "error": "Not Found",
        "message": "",
        "more_info": "http://autopush.readthedocs.io/en/latest/http.html#error-codes",
    }
    service.expire(subscription.id)
    for _ in range(2):
        status, _, gone = send(subscription, "hi", vapid)
        assert (status, error_body(gone)["errno"], error_body(gone)["error"]) == (410, 106, "Gone")
    assert [r.status for r in service.requests] == [404, 410, 410]


# -- scripted behaviour --------------------------------------------------------------------------------


def test_scripted_429_carries_retry_after(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    service.script(subscription.id, [429], retry_after=2)

    with pytest.raises(pywebpush.WebPushException) as caught:
        pywebpush.webpush(
            subscription.info, "later", vapid_private_key=vapid, vapid_claims={"sub": SUB}, ttl=60
        )
    assert caught.value.status_code == 429
    assert caught.value.retry_after == "2"
    assert caught.value.response is not None
    body = error_body(caught.value.response.text)
    assert (body["code"], body["errno"], body["error"]) == (429, 201, "Too Many Requests")

    assert send(subscription, "later", vapid)[0] == 201  # the script is used up
    first, second = service.requests_for(subscription.id)
    assert (first.status, first.payload) == (429, b"later")  # scripted answers still decrypt
    assert (second.status, second.payload) == (201, b"later")
    assert first.at <= second.at


def test_scripted_sequence_then_default(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    service.script(subscription.id, [503, 503, 201], retry_after=1)
    assert service.pending(subscription.id) == 3

    answers = [send(subscription, f"try {n}", vapid) for n in range(4)]

    assert [status for status, _, _ in answers] == [503, 503, 201, 201]
    assert [headers.get("Retry-After") for _, headers, _ in answers[:2]] == ["1", "1"]
    assert error_body(answers[0][2])["errno"] == 201
    assert service.pending(subscription.id) == 0
    assert [r.payload for r in service.requests_for(subscription.id)] == [
        b"try 0",
        b"try 1",
        b"try 2",
        b"try 3",
    ]
    assert service.payloads(subscription.id) == [b"try 2", b"try 3"]


@pytest.mark.parametrize(
    ("status", "errno", "error"),
    [
        (400, 110, "Bad Request"),
        (401, 109, "Unauthorized"),
        (403, 109, "Forbidden"),
        (404, 102, "Not Found"),
        (410, 106, "Gone"),
        (413, 104, "Request Entity Too Large"),
        (429, 201, "Too Many Requests"),
        (500, 999, "Internal Server Error"),
        (503, 201, "Service Unavailable"),
    ],
)
def test_scripted_error_bodies_are_autopush_json(
    service: WebPushService, vapid: Vapid, status: int, errno: int, error: str
) -> None:
    subscription = service.new_subscription()
    service.script(subscription.id, [status])
    answered, headers, text = send(subscription, "hi", vapid)
    assert answered == status
    assert headers["Content-Type"].startswith("application/json")
    body = error_body(text)
    assert (body["code"], body["errno"], body["error"]) == (status, errno, error)
    assert isinstance(body["message"], str) and body["message"]
    assert "Retry-After" not in headers
    assert only_request(service, subscription).errno == errno


def test_default_queue_and_standing_default(service: WebPushService, vapid: Vapid) -> None:
    a, b = service.new_subscription(), service.new_subscription()
    service.script(None, [500])
    service.script(b.id, [410])
    assert send(b, "b", vapid)[0] == 410  # its own queue first
    assert send(a, "a", vapid)[0] == 500  # then the default queue, shared
    assert send(b, "b", vapid)[0] == 201

    service.set_default(503, retry_after=7)
    assert [send(s, "x", vapid)[:1] for s in (a, b)] == [(503,), (503,)]
    assert send(a, "x", vapid)[1]["Retry-After"] == "7"
    service.set_default()
    assert send(a, "x", vapid)[0] == 201

    with pytest.raises(KeyError):
        service.script("not-a-subscription", [201])


def test_reply_objects_custom_body_headers_and_delay(service: WebPushService, vapid: Vapid) -> None:
    subscription = service.new_subscription()
    service.script(
        subscription.id,
        [
            Reply(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT", body=b"upstream down"),
            Reply(202, headers={"X-Test": "yes"}),
            Reply(201, delay=0.3),
        ],
    )
    status, headers, text = send(subscription, "1", vapid)
    assert (status, headers["Retry-After"], text) == (503, "Wed, 21 Oct 2015 07:28:00 GMT", "upstream down")
    status, headers, _ = send(subscription, "2", vapid)
    assert (status, headers["X-Test"]) == (202, "yes")
    started = time.monotonic()
    assert send(subscription, "3", vapid)[0] == 201
    assert time.monotonic() - started >= 0.3


def test_subscription_validation_and_lifecycle(vapid: Vapid) -> None:
    service = WebPushService()
    with pytest.raises(RuntimeError):
        service.new_subscription()  # not started: no endpoint yet
    with pytest.raises(ValueError):
        WebPushService(application_server_key="not a key")
    with service:
        with pytest.raises(ValueError):
            service.new_subscription("netscape")
        first = service.new_subscription()
        assert first.info == {
            "endpoint": first.endpoint,
            "keys": {"p256dh": first.p256dh, "auth": first.auth},
        }
        assert len({service.new_subscription().id for _ in range(50)} | {first.id}) == 51
        port = service.port
    with pytest.raises(RuntimeError):
        _ = service.url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/push/{first.id}", data=b"", timeout=2)
