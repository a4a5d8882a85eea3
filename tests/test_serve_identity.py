"""The open browser endpoint of `pushlang serve` speaks only for the user a token was signed for.

The attack it stops: an anonymous page posts `subscribe` for "victim" with its own push endpoint and
then receives the victim's personalised pushes. In process against the loopback Web Push service,
and once as real subprocesses (`pushlang keys user-token`, `pushlang serve`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import TOKEN, USER_TOKEN_SECRET, user_token
from peers.webpush_service import Subscription, WebPushService
from serve_env import eventually, free_port, serve_in_process

from pushlang.service.app import LiveService
from pushlang.service.identity import TOKEN_HEADER, sign

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OLD_SECRET = "the-secret-before-the-rotation-0123456789"
CAMPAIGN = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome back, @{user.first_name | default: 'friend'}"
    body "Your order history is waiting"
    url "https://shop.example.com/account"
  }
}
'''
VAPID = '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'


def configure(folder: Path, server: str) -> None:
    (folder / "pushlang.toml").write_text(VAPID + "[server]\nallow_loopback_http = true\n" + server, encoding="utf-8")


def served(folder: Path, body: Callable[[TestClient[Any, Any], LiveService], Awaitable[None]]) -> None:
    (folder / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    serve_in_process([str(folder / "welcome.push")], folder / "state.db", body)


def subscribe(user: str, sub: Subscription, ts: str = "2026-12-01T08:00:00Z") -> dict[str, Any]:
    return {"type": "subscribe", "user": user, "ts": ts, "platform": sub.platform, "endpoint": sub.endpoint,
            "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}


def test_a_page_cannot_subscribe_for_another_user(push_project: tuple[Path, WebPushService]) -> None:
    folder, push = push_project
    victim, attacker = push.new_subscription("chrome"), push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        shop = [{"type": "profile", "user": "victim", "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "Vera"}},
                subscribe("victim", victim)]
        assert (await client.post("/v1/records", json=shop, headers=AUTH)).status == 200
        hijack = [subscribe("victim", attacker, "2026-12-01T08:01:00Z")]
        expired = {TOKEN_HEADER: sign(USER_TOKEN_SECRET, "victim", int(time.time()) - 1)}
        for headers, reason in [({}, "no user token"),
                                (user_token("attacker"), "the user token is not valid for user `victim`"),
                                (user_token("victim", secret="guessed-secret-0123456789abcdefghij"),
                                 "the user token is not valid for user `victim`"),
                                ({TOKEN_HEADER: "v1.99999999999.forged"}, "the user token is malformed"),
                                (expired, "the user token expired at ")]:
            r = await client.post("/v1/browser/records", json=hijack, headers=headers)
            answer = await r.json()
            assert r.status == 400 and answer["accepted"] == 0, answer
            assert answer["rejected"][0]["reason"].startswith(reason), answer
        # one body, one token: the records of the token's user go in, the one for the victim does not
        r = await client.post("/v1/browser/records", json=[subscribe("attacker", attacker), *hijack],
                              headers=user_token("attacker"))
        assert await r.json() == {"accepted": 1, "rejected": [
            {"index": 1, "reason": "the user token is not valid for user `victim`"}]}

        r = await client.post("/v1/records", json=[{"user": "victim", "ts": "2026-12-01T09:00:00Z",
                                                    "name": "Signed Up"}], headers=AUTH)
        assert r.status == 200
        (payload,) = await eventually(lambda: push.payloads(victim.id))
        assert json.loads(payload or b"{}")["title"] == "Welcome back, Vera"
        await eventually(lambda: not service.store.meta_items("outbox:"))
        assert push.payloads(attacker.id) == []  # the victim's push went to the victim only
        state = service.store.get("victim")
        assert state is not None and [s.endpoint for s in state.subscriptions.values()] == [victim.endpoint]

        # the attacker's own subscription, with the attacker's token, works as it should
        r = await client.post("/v1/records", json=[{"user": "attacker", "ts": "2026-12-01T09:01:00Z",
                                                    "name": "Signed Up"}], headers=AUTH)
        assert r.status == 200
        (payload,) = await eventually(lambda: push.payloads(attacker.id))
        assert json.loads(payload or b"{}")["title"] == "Welcome back, friend"

    served(folder, body)


def test_old_secret_tokens_work_during_a_rotation_only(push_project: tuple[Path, WebPushService]) -> None:
    folder, push = push_project
    configure(folder, f'user_token_secret = "{USER_TOKEN_SECRET}"\nprevious_user_token_secret = "{OLD_SECRET}"\n')
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        old = user_token("u1", secret=OLD_SECRET)
        r = await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=old)
        assert (r.status, await r.json()) == (200, {"accepted": 1, "rejected": []})
        r = await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=user_token("u1"))
        assert (r.status, await r.json()) == (200, {"accepted": 1, "rejected": []})

        # a bad secret in the new config: nothing reloads, the rotation goes on
        configure(folder, 'user_token_secret = "too-short"\n')
        r = await client.post("/v1/reload", headers=AUTH)
        assert r.status == 422 and "32 characters" in (await r.json())["error"]
        assert (await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=old)).status == 200

        configure(folder, f'user_token_secret = "{USER_TOKEN_SECRET}"\n')  # the rotation is over
        assert (await client.post("/v1/reload", headers=AUTH)).status == 200
        r = await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=old)
        assert (r.status, await r.json()) == (400, {"accepted": 0, "rejected": [
            {"index": 0, "reason": "the user token is not valid for user `u1`"}]})
        r = await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=user_token("u1"))
        assert r.status == 200

    served(folder, body)


def test_without_a_secret_the_browser_endpoint_refuses_and_says_how_to_configure_it(
        push_project: tuple[Path, WebPushService]) -> None:
    folder, push = push_project
    configure(folder, "")
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        r = await client.post("/v1/browser/records", json=[subscribe("u1", sub)], headers=user_token("u1"))
        assert r.status == 403 and r.headers["Access-Control-Allow-Origin"] == "*"
        message = (await r.json())["error"]
        assert "[server] user_token_secret" in message and "pushlang keys user-secret" in message
        assert service.store.get("u1") is None
        # the API with its token still takes everything
        assert (await client.post("/v1/records", json=[subscribe("u1", sub)], headers=AUTH)).status == 200

    served(folder, body)


def test_the_rate_limit_is_per_client_and_x_forwarded_for_counts_behind_a_trusted_proxy_only(
        push_project: tuple[Path, WebPushService]) -> None:
    folder, _ = push_project

    def forwarded(address: str) -> dict[str, str]:
        return {**user_token("u1"), "X-Forwarded-For": address}

    async def direct(client: TestClient[Any, Any], service: LiveService) -> None:
        assert [(await client.post("/v1/browser/records", json=[], headers=forwarded(f"203.0.113.{n}"))).status
                for n in range(3)] == [200, 200, 429]  # a forged X-Forwarded-For does not make a new client
        r = await client.post("/v1/browser/records", json=[], headers=forwarded("203.0.113.99"))
        assert r.status == 429 and r.headers["Retry-After"] == "2"  # 30 a minute: one every 2 s
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        error = (await r.json())["error"]
        assert error == "too many requests from 127.0.0.1: at most 30 a minute (bursts of 2)"

    configure(folder, f'user_token_secret = "{USER_TOKEN_SECRET}"\nbrowser_rate = 30\nbrowser_burst = 2\n')
    served(folder, direct)

    async def proxied(client: TestClient[Any, Any], service: LiveService) -> None:
        statuses = [(await client.post("/v1/browser/records", json=[], headers=forwarded(address))).status
                    for address in ["203.0.113.5", "203.0.113.5", "203.0.113.5", "203.0.113.6",
                                    "203.0.113.6, 203.0.113.5"]]  # the last one claims .6, the proxy saw .5
        assert statuses == [200, 200, 429, 200, 429]
        r = await client.post("/v1/browser/records", json=[], headers=forwarded("203.0.113.5"))
        assert "too many requests from 203.0.113.5" in (await r.json())["error"]

    configure(folder, f'user_token_secret = "{USER_TOKEN_SECRET}"\nbrowser_rate = 30\nbrowser_burst = 2\n'
                      'trusted_proxies = ["127.0.0.1"]\n')
    (folder / "state.db").unlink()
    served(folder, proxied)


def _post(url: str, records: list[dict[str, Any]], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(records).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _serve(folder: Path, port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", "welcome.push", "--port", str(port),
                               "--store", "state.db"], cwd=folder, text=True,
                              env={**os.environ, "PUSHLANG_API_TOKEN": TOKEN},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return server
        except OSError:
            assert server.poll() is None, server.communicate()[1]
            time.sleep(0.1)
    server.kill()
    raise AssertionError("pushlang serve did not start")


def _stop(server: subprocess.Popen[str]) -> str:
    server.terminate()
    return server.communicate(timeout=10)[1]


def test_keys_user_token_signs_what_serve_accepts(push_project: tuple[Path, WebPushService]) -> None:
    folder, push = push_project
    (folder / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pushlang", "keys", "user-token", "u-asha", "--ttl", "2h"],
                         cwd=folder, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert token.startswith("v1.") and "valid for user `u-asha` until " in run.stderr
    expires = int(token.split(".")[1])
    assert abs(expires - (time.time() + 7200)) < 60

    port = free_port()
    server = _serve(folder, port)
    try:
        url = f"http://127.0.0.1:{port}/v1/browser/records"
        sub = push.new_subscription("chrome")
        assert _post(url, [subscribe("u-asha", sub)], {TOKEN_HEADER: token}) == (200, {"accepted": 1, "rejected": []})
        status, answer = _post(url, [subscribe("u-bo", sub)], {TOKEN_HEADER: token})
        assert status == 400 and answer["rejected"][0]["reason"] == "the user token is not valid for user `u-bo`"
    finally:
        stderr = _stop(server)
    assert "user_token_secret" not in stderr

    configure(folder, "")  # no secret: serve warns at start, the endpoint refuses, keys says what is missing
    server = _serve(folder, port)
    try:
        status, answer = _post(f"http://127.0.0.1:{port}/v1/browser/records", [], {TOKEN_HEADER: token})
        assert status == 403 and "user_token_secret" in answer["error"]
    finally:
        stderr = _stop(server)
    assert "WARNING pushlang.service: no [server] user_token_secret in pushlang.toml" in stderr
    run = subprocess.run([sys.executable, "-m", "pushlang", "keys", "user-token", "u-asha"],
                         cwd=folder, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("pushlang: error: pushlang.toml has no [server] user_token_secret;"), run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("args", "error"), [
    (["u", "--ttl", "soon"], "--ttl 'soon' is not a duration"),
    (["u", "--config", "missing.toml"], "no file missing.toml"),
])
def test_keys_user_token_bad_input_is_a_usage_error(push_project: tuple[Path, WebPushService], args: list[str],
                                                    error: str) -> None:
    run = subprocess.run([sys.executable, "-m", "pushlang", "keys", "user-token", *args], cwd=push_project[0],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and error in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_keys_user_secret_prints_a_fresh_secret_serve_accepts(push_project: tuple[Path, WebPushService]) -> None:
    runs = [subprocess.run([sys.executable, "-m", "pushlang", "keys", "user-secret"], capture_output=True,
                           text=True, timeout=60, check=True) for _ in range(2)]
    first, second = (r.stdout.strip() for r in runs)
    assert first != second and len(first) == 43
    assert "previous_user_token_secret" in runs[0].stderr
    configure(push_project[0], f'user_token_secret = "{first}"\n')
    run = subprocess.run([sys.executable, "-m", "pushlang", "keys", "user-token", "u1"], cwd=push_project[0],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip().startswith("v1.")


def test_a_browser_gives_its_language_and_timezone_and_nothing_else_of_a_profile(
        push_project: tuple[Path, WebPushService]) -> None:
    """The SDK sends the browser's `language` and `timezone` with a subscription (SPEC §12.5, §5): the
    browser endpoint takes a profile with those two, valid, and refuses any other property."""
    folder, push = push_project
    sub = push.new_subscription("chrome")

    def profile(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "profile", "user": "u1", "ts": "2026-12-01T08:00:00Z", "props": props}

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        good = [subscribe("u1", sub), profile({"language": "pt-BR", "timezone": "America/Sao_Paulo"})]
        bad = [profile({"language": "pt-BR", "vip": True}), profile({"language": "not a tag!"}),
               profile({"timezone": "Mars/Olympus"}), profile({})]
        r = await client.post("/v1/browser/records", json=good + bad, headers=user_token("u1"))
        answer = await r.json()
        assert answer["accepted"] == 2, answer
        assert [x["reason"] for x in answer["rejected"]] == [
            "a browser's profile may only give `language` and `timezone`, not `vip`",
            "`language` 'not a tag!' is not a language tag",
            "`timezone` 'Mars/Olympus' is not an IANA time zone",
            "a browser's profile may only give `language` and `timezone`"]
        state = await eventually(lambda: service.store.get("u1"))
        assert state is not None
        assert {k: state.profile.get(k) for k in ("language", "timezone", "vip")} == {
            "language": "pt-BR", "timezone": "America/Sao_Paulo", "vip": None}

    served(folder, body)
