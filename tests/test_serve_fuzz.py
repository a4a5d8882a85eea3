"""Arbitrary JSON at every endpoint of a running `pushlang serve`: only 2xx and 4xx answers, never
a 500, never a traceback in the log, and a healthy subscriber keeps getting its pushes throughout."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from browser_env import free_port
from conftest import TOKEN
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peers.webpush_service import Subscription, WebPushService

from pushlang.service.app import LiveService, quiet_bad_requests

CAMPAIGN = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome, @{user.first_name | default: 'friend'}"
    body "Thanks for joining"
  }
}
'''
POSTS = ["/v1/records", "/v1/browser/records", "/v1/reload", "/v1/channels/webpush/resume",
         "/v1/channels/{text}/resume"]
GETS = ["/v1/stats", "/v1/stats/series", "/v1/campaigns", "/healthz", "/sdk/{text}", "/sdk/demo",
        "/dashboard", "/dashboard/static/{text}"]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
fields = {"type": st.sampled_from(["event", "profile", "subscribe", "unsubscribe", "x"]) | values,
          "user": st.sampled_from(["u1", "victim", ""]) | values,
          "ts": st.sampled_from([time.time(), "2026-12-01T08:00:00Z", 4e12, -5, "0001-01-01T00:00:00Z"]) | values,
          "name": st.sampled_from(["Signed Up", "Push Viewed", "Push Clicked"]) | values,
          "props": values, "platform": st.sampled_from(["chrome", "safari", "x"]) | values,
          "endpoint": st.sampled_from(["https://push.example.test/1", "http://[::1", "ftp://x"]) | values,
          "keys": st.fixed_dictionaries({"p256dh": values, "auth": values}) | values,
          "device_token": values}
# Valid records with some fields replaced: the fuzz reaches the engine and delivery, not only the decoder.
KEYS = {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg"}
TEMPLATES = [
    {"type": "subscribe", "user": "u1", "ts": time.time(), "platform": "chrome",
     "endpoint": "https://push.example.test/u1", "keys": KEYS},
    {"user": "u1", "ts": time.time(), "name": "Signed Up", "props": {"plan": "pro"}},
    {"type": "profile", "user": "u1", "ts": time.time(), "props": {"first_name": "Asha", "timezone": "Asia/Kolkata"}},
    {"type": "unsubscribe", "user": "u1", "ts": time.time(), "endpoint": "https://push.example.test/u1"},
    {"user": "u1", "ts": time.time(), "name": "Push Clicked", "props": {"send_id": "0" * 24}},
]
records = st.tuples(st.sampled_from(TEMPLATES), st.fixed_dictionaries({}, optional=fields)).map(
    lambda pair: {**pair[0], **pair[1]})
deep = st.integers(900, 1200).map(lambda n: "[" * n + "]" * n)
bodies = (st.lists(records, max_size=5).map(json.dumps) | values.map(json.dumps) | records.map(json.dumps)
          | st.tuples(records, deep).map(lambda pair: f"[{json.dumps(pair[0])}, {pair[1]}]")
          | st.lists(records, min_size=1, max_size=5).map(lambda rs: "\n".join(map(json.dumps, rs))))
texts = st.text(max_size=30)


class Running:
    """A LiveService on a real port in a thread of its own, with its log captured."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        self.log: list[logging.LogRecord] = []
        self._started = threading.Event()

    def __enter__(self) -> Running:
        handler = logging.Handler()
        handler.emit = self.log.append  # type: ignore[method-assign]
        handler.setLevel(logging.WARNING)
        self._handler = handler
        for name in ("pushlang", "aiohttp"):
            logging.getLogger(name).addHandler(handler)
        logging.getLogger("aiohttp.server").addFilter(quiet_bad_requests)
        threading.Thread(target=self._run, daemon=True).start()
        assert self._started.wait(20)
        self.session: aiohttp.ClientSession = self.call(self._session())
        return self

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(f"http://127.0.0.1:{self.port}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.service = LiveService([str(self.folder / "welcome.push")], store_path=str(self.folder / "state.db"),
                                   tick=0.05)
        self.runner = web.AppRunner(self.service.app())
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self._started.set()
        self.loop.run_forever()

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def __exit__(self, *exc: object) -> None:
        self.call(self.session.close())
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        for name in ("pushlang", "aiohttp"):
            logging.getLogger(name).removeHandler(self._handler)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, WebPushService, Subscription]]:
    from pushlang.dispatch.keys import generate

    folder = tmp_path_factory.mktemp("fuzz")
    public = generate(folder / "vapid.pem")
    (folder / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        f'[server]\ntoken = "{TOKEN}"\nallow_loopback_http = true  # the loopback push service\n', encoding="utf-8")
    (folder / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    with WebPushService(application_server_key=public) as push, Running(folder) as service:
        healthy = push.new_subscription("chrome")
        subscribe = {"type": "subscribe", "user": "healthy", "ts": time.time(), "platform": "chrome",
                     "endpoint": healthy.endpoint, "keys": {"p256dh": healthy.p256dh, "auth": healthy.auth}}
        assert service.call(_request(service, "POST", "/v1/records", json.dumps([subscribe]), True))[0] == 200
        yield service, push, healthy


async def _request(service: Running, method: str, path: str, body: str | None, token: bool,
                   params: dict[str, str] | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    async with service.session.request(method, path, data=body, headers=headers, params=params) as response:
        return response.status, await response.text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(body=bodies, text=texts, token=st.booleans(), query=st.dictionaries(st.text(max_size=8), texts, max_size=3))
def test_arbitrary_json_at_every_endpoint_gets_a_4xx_at_worst(
        running: tuple[Running, WebPushService, Subscription], body: str, text: str, token: bool,
        query: dict[str, str]) -> None:
    service, push, healthy = running
    expected = len(push.payloads(healthy.id)) + 1
    signed_up = json.dumps([{"user": "healthy", "ts": time.time(), "name": "Signed Up"}])
    assert service.call(_request(service, "POST", "/v1/records", signed_up, True))[0] == 200
    name = quote(text, safe="") or "x"
    for path in POSTS:
        status, answer = service.call(_request(service, "POST", path.format(text=name), body, token))
        assert status < 500, (path, status, answer)
    status, answer = service.call(_request(service, "DELETE", f"/v1/users/{name}", body, token))
    assert status < 500, ("DELETE", status, answer)
    for path in GETS:
        status, answer = service.call(_request(service, "GET", path.format(text=name), None, token, query))
        assert status < 500, (path, status, answer)
    problems = [r for r in service.log if r.exc_info or r.levelno >= logging.ERROR]
    assert not problems, [r.getMessage() for r in problems]
    deadline = time.time() + 5  # the healthy subscriber got this example's push meanwhile
    while len(push.payloads(healthy.id)) < expected:
        assert time.time() < deadline, "the healthy subscriber's push did not arrive"
        time.sleep(0.01)


def test_the_healthy_subscriber_was_served_throughout(
        running: tuple[Running, WebPushService, Subscription]) -> None:
    """Runs after the fuzzing (same service): delivery still works, and nothing was logged as broken."""
    service, push, healthy = running
    before = len(push.payloads(healthy.id))
    signed_up = json.dumps([{"user": "healthy", "ts": time.time(), "name": "Signed Up"}])
    assert service.call(_request(service, "POST", "/v1/records", signed_up, True))[0] == 200
    deadline = time.time() + 10
    while time.time() < deadline and len(push.payloads(healthy.id)) == before:
        time.sleep(0.05)
    assert len(push.payloads(healthy.id)) == before + 1
    status, health = service.call(_request(service, "GET", "/healthz", None, False))
    assert status == 200 and json.loads(health)["deliveries"]["restarts"] == 0
