"""`pushlang serve` in process: ingest, delivery to the loopback push service, clicks, reload, bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import TOKEN, user_token
from peers.webpush_service import Subscription, WebPushService
from serve_env import eventually, serve_in_process

from pushlang.runtime.instants import US, parse_instant
from pushlang.service.app import MAX_BODY, LiveService

CAMPAIGN = '''campaign welcome {
  labels "onboarding"
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome, @{user.first_name | default: 'friend'}"
    body "Thanks for joining"
    url "https://shop.example.com/welcome"
  }
  control group 0%
  conversion "Charged" within 1d revenue event.amount
}
'''
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def project(push_project: tuple[Path, WebPushService]) -> tuple[Path, WebPushService]:
    (push_project[0] / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    return push_project


def served(folder: Path, body: Callable[[TestClient[Any, Any], LiveService], Awaitable[None]],
           clock: Callable[[], float] = time.time) -> None:
    serve_in_process([str(folder / "welcome.push")], folder / "state.db", body, clock=clock)


def subscribe(user: str, sub: Subscription) -> dict[str, Any]:
    return {"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": sub.platform,
            "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}


def test_records_in_push_out_clicks_and_conversions_back(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        records = [{"type": "profile", "user": "u1", "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "Asha"}},
                   subscribe("u1", sub),
                   {"user": "u1", "ts": "2026-12-01T08:01:00Z", "name": "Signed Up"}]
        r = await client.post("/v1/records", data="\n".join(json.dumps(x) for x in records), headers=AUTH)
        assert (r.status, await r.json()) == (200, {"accepted": 3, "rejected": []})
        (payload,) = await eventually(lambda: push.payloads(sub.id))
        pushed = json.loads(payload or b"{}")
        assert pushed["title"] == "Welcome, Asha" and pushed["campaign"] == "welcome"
        send_id = pushed["send_id"]
        clicked = [{"user": "u1", "ts": "2026-12-01T08:02:00Z", "name": "Push Viewed", "props": {"send_id": send_id}},
                   {"user": "u1", "ts": "2026-12-01T08:03:00Z", "name": "Push Clicked", "props": {"send_id": send_id}}]
        await eventually(lambda: service.activity.campaign_of(send_id))
        someone_else = {"user": "u2", "ts": "2026-12-01T08:03:00Z", "name": "Push Clicked", "props": {"send_id": send_id}}
        r = await client.post("/v1/browser/records", json=[*clicked, someone_else], headers=user_token("u1"))
        assert await r.json() == {"accepted": 2, "rejected": [
            {"index": 2, "reason": "the user token is not valid for user `u2`"}]}
        r = await client.post("/v1/browser/records", json=[someone_else], headers=user_token("u2"))
        assert await r.json() == {"accepted": 0, "rejected": [
            {"index": 0, "reason": "`Push Clicked` for a send to another user"}]}
        r = await client.post("/v1/records", json=[{"user": "u1", "ts": "2026-12-01T09:00:00Z", "name": "Charged",
                                                   "props": {"amount": 42.5}}], headers=AUTH)
        assert r.status == 200
        await eventually(lambda: service.activity.rows() and not service.activity._pending)
        stats = await (await client.get("/v1/stats", headers=AUTH)).json()
        (welcome,) = [c for c in stats["campaigns"] if c["id"] == "welcome"]
        assert (welcome["sends"], welcome["delivered"], welcome["viewed"], welcome["clicked"]) == (1, 1, 1, 1)
        assert (welcome["conversions"], welcome["revenue"]) == (1, 42.5)
        campaigns = await (await client.get("/v1/campaigns", headers=AUTH)).json()
        assert [c["id"] for c in campaigns] == ["welcome"] and len(campaigns[0]["plan_hash"]) == 16
        health = await (await client.get("/healthz")).json()
        assert health["ok"] and health["delivery"] == "live"

    served(folder, body, clock=lambda: parse_instant("2026-12-01T09:30:00Z") / US)  # the records are past


def test_bad_input_gets_clear_4xx_and_loses_nothing_valid(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        lines = [json.dumps(subscribe("u1", sub)), "{not json", json.dumps({"user": "u1"}),
                 json.dumps({"type": "nonsense", "user": "u1", "ts": "2026-12-01T08:00:00Z"}),
                 json.dumps({"user": "u1", "ts": "2026-12-01T08:01:00Z", "name": "Signed Up"})]
        r = await client.post("/v1/records", data="\n".join(lines), headers=AUTH)
        result = await r.json()
        assert r.status == 200 and result["accepted"] == 2
        assert [(x["index"], x["reason"][:20]) for x in result["rejected"]] == [
            (1, "not valid JSON (JSON"), (2, "no `ts`"), (3, "unknown type 'nonsen")]
        assert len(await eventually(lambda: push.payloads(sub.id))) == 1  # the valid neighbours went through
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = await client.post("/v1/records", data=lines[0], headers=headers)
            assert r.status == 401 and "Bearer" in (await r.json())["error"]
            for path in ("/v1/stats", "/v1/stats/series", "/v1/campaigns"):  # what is running is private too
                r = await client.get(path, headers=headers)
                assert r.status == 401 and "Bearer" in (await r.json())["error"], path
                assert r.headers["WWW-Authenticate"] == 'Bearer realm="pushlang"'
        r = await client.get("/dashboard")  # the page is static; it sends the token it was opened with
        assert r.status == 200 and "text/html" in r.headers["Content-Type"]
        assert (await client.get("/v1/stats", headers=AUTH)).status == 200
        r = await client.post("/v1/records", data=b"x" * (MAX_BODY + 1), headers=AUTH)
        assert r.status == 413 and "smaller batches" in (await r.json())["error"]
        r = await client.post("/v1/records", data="{bad", headers=AUTH)
        assert r.status == 400
        r = await client.post("/v1/browser/records", json=[
            {"user": "u1", "ts": "2026-12-01T08:02:00Z", "name": "Push Clicked", "props": {"send_id": "unknown"}}],
            headers=user_token("u1"))
        assert r.status == 400 and "unknown send_id" in (await r.json())["rejected"][0]["reason"]
        for record, reason in (
                ({"user": "u1", "ts": "2026-12-01T08:02:00Z", "name": "Charged"}, "may only send subscriptions"),
                ({"type": "profile", "user": "u1", "ts": "2026-12-01T08:02:00Z", "props": {"vip": True}},
                 "may only give `language` and `timezone`, not `vip`")):
            r = await client.post("/v1/browser/records", json=[record], headers=user_token("u1"))
            assert r.status == 400  # a web page may not report purchases, nor write the profile but those two
            assert reason in (await r.json())["rejected"][0]["reason"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        r = await client.options("/v1/browser/records", headers={"Origin": "https://shop.example.com",
                                                                 "Access-Control-Request-Method": "POST"})
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-pushlang-user-token"

    served(folder, body)


def test_reload_keeps_running_campaigns_when_the_new_files_are_broken(project: tuple[Path, WebPushService]) -> None:
    folder, _ = project

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        (folder / "welcome.push").write_text(CAMPAIGN.replace("segment", "").replace('on "Signed Up"',
                                             'on "Signed Up"\n  who {\n    segment nobody\n  }'), encoding="utf-8")
        r = await client.post("/v1/reload", headers=AUTH)
        result = await r.json()
        assert r.status == 422 and not result["reloaded"]
        assert result["diagnostics"][0]["code"] == "PL200"
        assert [c["id"] for c in await (await client.get("/v1/campaigns", headers=AUTH)).json()] == ["welcome"]
        (folder / "welcome.push").write_text(CAMPAIGN.replace("campaign welcome", "campaign hello"), encoding="utf-8")
        r = await client.post("/v1/reload", headers=AUTH)
        assert r.status == 200 and (await r.json())["campaigns"] == ["hello"]
        assert (await client.post("/v1/reload")).status == 401

    served(folder, body)


def test_a_bounded_cache_and_an_outbox_that_leaves_no_rows(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    with (folder / "pushlang.toml").open("a", encoding="utf-8") as f:
        f.write("\n[store]\ncache_users = 3\n")
    subs = {f"u{i}": push.new_subscription("chrome") for i in range(8)}

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        assert service.store.cache_size == 3
        for user, sub in subs.items():
            response = await client.post("/v1/records", headers=AUTH, data=json.dumps(
                [subscribe(user, sub), {"user": user, "ts": "2026-12-01T08:01:00Z", "name": "Signed Up"}]))
            assert (await response.json())["accepted"] == 2
            assert len(service.store._users) <= 3
        await eventually(lambda: all(push.payloads(s.id) for s in subs.values()))
        await eventually(lambda: not service.store.meta_items("outbox:"))
        rows = service.store.connection.execute("SELECT count(*) FROM meta WHERE key LIKE 'outbox:%'").fetchone()
        assert rows == (0,)  # delivered sends leave nothing in the table to reload at the next start
        delivered = service.store.connection.execute(
            "SELECT count(*) FROM activity WHERE outcome = 'delivered'").fetchone()
        assert delivered == (8,)
        u0 = service.store.get("u0")  # dropped from memory long ago, reloaded whole
        assert u0 is not None and list(u0.subscriptions) == [subs["u0"].endpoint] and len(u0.sends) == 1

    served(folder, body)


@pytest.mark.parametrize(("setting", "expected"), [("", 50_000), ("cache_users = 0", None),
                                                    ("cache_users = 1200", 1200)])
def test_store_cache_users_setting(project: tuple[Path, WebPushService], setting: str, expected: int | None) -> None:
    folder, _ = project
    with (folder / "pushlang.toml").open("a", encoding="utf-8") as f:
        f.write(f"\n[store]\n{setting}\n")
    (folder / "welcome.push").write_text(CAMPAIGN, encoding="utf-8")
    service = LiveService([str(folder / "welcome.push")], store_path=str(folder / "state.db"))
    assert service.store.cache_size == expected
    service.store.close()


@pytest.mark.parametrize("setting", ['cache_users = "lots"', "cache_users = -1", "cache_users = true",
                                     "cache_users = 1.5"])
def test_a_bad_cache_users_is_a_clear_error(project: tuple[Path, WebPushService], setting: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = project
    with (folder / "pushlang.toml").open("a", encoding="utf-8") as f:
        f.write(f"\n[store]\n{setting}\n")
    from pushlang.cli import main

    assert main(["serve", "welcome.push", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "[store] cache_users" in err and "whole number of users" in err and "Traceback" not in err
