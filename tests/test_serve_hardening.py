"""`pushlang serve` against what an attacker or a bad day does: bad endpoints, clocks from the future,
slow or throttling push services, timeouts, rejected credentials, late records, hostile bodies.

Each test is one finding of the hardening review; each failed on the service as it was before."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from conftest import TOKEN, user_token
from peers.webpush_service import Reply, Subscription, WebPushService
from serve_env import eventually, serve_in_process

from pushlang.cli import main
from pushlang.dispatch.keys import load_public
from pushlang.dispatch.webpush import endpoint_problem, topic_for
from pushlang.runtime.instants import US, iso
from pushlang.runtime.records import Subscribe
from pushlang.service.app import LiveService

AUTH = {"Authorization": f"Bearer {TOKEN}"}
WELCOME = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome, @{user.first_name | default: 'friend'}"
    body "Thanks for joining"
  }
}
'''
CART = '''campaign cart {
  platforms chrome
  on "Added To Cart"
  unless "Charged" within 3s
  message {
    title "Your cart"
    body "It is waiting"
  }
}
'''
NOW = 1_796_000_000.0  # 2026-11-29T...: the service's wall clock in these tests


def served(folder: Path, body: Callable[[TestClient[Any, Any], LiveService], Awaitable[None]], *,
           paths: list[str] | None = None, clock: Callable[[], float] = time.time) -> None:
    serve_in_process(paths or [str(folder / "campaigns")], folder / "state.db", body, clock=clock)


@pytest.fixture
def project(push_project: tuple[Path, WebPushService]) -> tuple[Path, WebPushService]:
    folder = push_project[0]
    (folder / "campaigns").mkdir()
    (folder / "campaigns" / "welcome.push").write_text(WELCOME, encoding="utf-8")
    return push_project


def config(folder: Path, extra: str) -> None:
    path = folder / "pushlang.toml"
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")


def subscribe(user: str, sub: Subscription, ts: str | float | None = None) -> dict[str, Any]:
    return {"type": "subscribe", "user": user, "ts": ts if ts is not None else time.time(), "platform": "chrome",
            "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}


def signed_up(user: str, ts: float | None = None) -> dict[str, Any]:
    return {"user": user, "ts": ts if ts is not None else time.time(), "name": "Signed Up"}


def outcomes(service: LiveService, outcome: str) -> list[dict[str, object]]:
    return [r for r in service.activity.rows() if r["outcome"] == outcome]


# ---- 1. a bad endpoint never stops delivery ------------------------------------------------------

def test_endpoints_that_are_not_https_urls_are_refused_at_ingest() -> None:
    for endpoint in ("http://[::1", "ftp://x/y", "https://h:99999/x", "https://h:0/x", "http://push.example.com/x",
                     "https:///x", "https://user:pw@push.example.com/x", "https://a b/x", "x" * 3000,
                     "https://127.0.0.1:6379/x", "https://10.0.0.5/admin", "https://169.254.169.254/latest",
                     "https://[::ffff:10.0.0.1]/x", "https://localhost/x", "https://db.internal/x",
                     "https://2130706433/x", "https://0x7f.1/x", "https://127.1/x", "https://0.0.0.0/x",
                     "https://localhost./x", "https://\u24dbocalhost/x", "https://[::]/x"):
        assert endpoint_problem(endpoint) is not None, endpoint
    assert endpoint_problem("https://fcm.googleapis.com/fcm/send/abc:def") is None
    assert endpoint_problem("http://127.0.0.1:8000/push/1") is not None  # only with allow_http (a test service)
    assert endpoint_problem("http://127.0.0.1:8000/push/1", allow_http=True) is None


def test_a_bad_endpoint_fails_alone_and_delivery_goes_on(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    good = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        bad = [{**subscribe("mallory", good), "endpoint": e} for e in ("http://[::1", "ftp://x/y", "https://h:99999/x")]
        r = await client.post("/v1/records", json=bad, headers=AUTH)
        result = await r.json()
        assert r.status == 400 and [x["index"] for x in result["rejected"]] == [0, 1, 2]
        assert "https://" in result["rejected"][0]["reason"] or "valid URL" in result["rejected"][0]["reason"]
        # A subscription stored before the rule existed: its send fails alone, the next one goes out.
        async with service._lock:
            service.engine.feed(Subscribe("old", int(time.time() * US), "chrome", "https://h:99999/x",
                                          {"p256dh": good.p256dh, "auth": good.auth}))
        r = await client.post("/v1/records", json=[signed_up("old"), subscribe("u1", good), signed_up("u1")],
                              headers=AUTH)
        assert (await r.json())["accepted"] == 3
        await eventually(lambda: push.payloads(good.id))
        failed = await eventually(lambda: outcomes(service, "failed"))
        assert [(f["user"], f["reason"]) for f in failed] == [("old", "invalid_endpoint")]
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["deliveries"]["state"] == "running"

    served(folder, body)


# ---- 2. nobody moves the clock -------------------------------------------------------------------

def test_a_record_from_the_future_is_refused_and_the_clock_never_passes_the_wall_clock(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        r = await client.post("/v1/records", json=[signed_up("u1", NOW + 72 * 365 * 86400)], headers=AUTH)
        result = await r.json()
        assert r.status == 400 and "ahead of the service's clock" in result["rejected"][0]["reason"]
        r = await client.post("/v1/records", json=[subscribe("u1", sub, NOW), signed_up("u1", NOW + 120)], headers=AUTH)
        assert (await r.json())["accepted"] == 2  # two minutes ahead: a fast clock, taken as now
        await eventually(lambda: push.payloads(sub.id))
        assert service.engine.clock <= NOW * US
        (send,) = outcomes(service, "send")
        assert send["at"] == iso(int(NOW * US))  # decided at the wall clock, not two minutes ahead
        health = await (await client.get("/healthz")).json()
        assert health["clock"] == iso(int(NOW * US))

    served(folder, body, clock=lambda: NOW)


# ---- 5. one slow push service never stalls the others --------------------------------------------

def test_a_throttling_push_service_delays_nobody_else(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    public = load_public(folder / "vapid.pem")
    with WebPushService(application_server_key=public) as other:
        slow, same_origin, elsewhere = (push.new_subscription("chrome"), push.new_subscription("chrome"),
                                        other.new_subscription("chrome"))
        push.script(slow.id, [Reply(429, retry_after=15)])

        async def body(client: TestClient[Any, Any], service: LiveService) -> None:
            r = await client.post("/v1/records", json=[subscribe("slow", slow), signed_up("slow")], headers=AUTH)
            assert r.status == 200
            await eventually(lambda: push.requests_for(slow.id))  # answered 429, Retry-After: 15
            started = time.monotonic()
            records = [subscribe("same", same_origin), signed_up("same"), subscribe("else", elsewhere),
                       signed_up("else")]
            assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
            await eventually(lambda: push.payloads(same_origin.id) and other.payloads(elsewhere.id), timeout=5.0)
            assert time.monotonic() - started < 5.0  # not 15 s behind the Retry-After
            assert not push.payloads(slow.id)  # still waiting, as it was told to

        served(folder, body)


# ---- 6. a timeout is retried once, under a Topic ------------------------------------------------

def test_a_timed_out_request_is_retried_once_with_a_topic(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    config(folder, "[dispatch]\ntimeout = 0.3\n")
    sub = push.new_subscription("chrome")
    push.script(sub.id, [Reply(201, delay=1.0)] * 5)

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("u1", sub), signed_up("u1")], headers=AUTH)).status == 200
        (failed,) = await eventually(lambda: outcomes(service, "failed"), timeout=10)
        assert failed["reason"] == "timeout" and failed["attempts"] == 2
        await asyncio.sleep(1.2)  # the late answers arrive
        requests = push.requests_for(sub.id)
        assert len(requests) == 2
        assert {r.topic for r in requests} == {topic_for(str(failed["send_id"]))}
        assert len(topic_for(str(failed["send_id"]))) == 32

    served(folder, body)


# ---- 7. a 401/403 halts the channel at once; the sends are kept and go out on resume ---------------

def test_a_rejected_key_halts_the_channel_keeps_the_sends_and_resume_delivers_them(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    config(folder, "[dispatch]\nconcurrency = 4\n")
    first = push.new_subscription("chrome")
    subs = [push.new_subscription("chrome") for _ in range(30)]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        await client.post("/v1/records", json=[subscribe("first", first), signed_up("first")], headers=AUTH)
        await eventually(lambda: push.payloads(first.id))  # the push service has answered once
        push.set_default(Reply(403, delay=0.3))  # the key was revoked
        records = [subscribe(f"u{i}", s) for i, s in enumerate(subs)] + [signed_up(f"u{i}") for i in range(30)]
        assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
        await eventually(lambda: service.deliveries and service.deliveries.health()["halted"] and
                         service.deliveries.health()["parked"].get("webpush") == 30)
        rejected = [r for r in push.requests if r.status == 403]
        assert 1 <= len(rejected) <= 4  # only what was on the wire when the first 403 came back
        r = await client.get("/healthz")  # still taking records (200), but not ok: for monitoring
        health = await r.json()
        assert r.status == 200 and not health["ok"] and "VAPID" in health["halted"][0]
        assert not outcomes(service, "failed")  # kept, not failed
        push.set_default(201)  # the operator fixed the key
        r = await client.post("/v1/channels/webpush/resume", headers=AUTH)
        assert await r.json() == {"channel": "webpush", "resumed": True}
        await eventually(lambda: all(push.payloads(s.id) for s in subs))
        assert all(len(push.payloads(s.id)) == 1 for s in subs)
        await eventually(lambda: len(outcomes(service, "delivered")) == 31)
        assert (await (await client.get("/healthz")).json())["ok"]
        assert (await client.post("/v1/channels/webpush/resume")).status == 401
        assert (await client.post("/v1/channels/nope/resume", headers=AUTH)).status == 404

    served(folder, body)


# ---- 8. late records decide as replay does -------------------------------------------------------

def test_timers_due_before_a_late_record_fire_before_it_as_in_replay(
        project: tuple[Path, WebPushService], capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = project
    (folder / "campaigns" / "cart.push").write_text(CART, encoding="utf-8")
    records = [{"user": "u1", "ts": NOW - 60, "name": "Added To Cart"},
               {"user": "u1", "ts": NOW - 51, "name": "Added To Cart"}]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        await asyncio.sleep(0.2)  # the service has ticked: its clock is NOW
        assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
        await asyncio.sleep(0.2)
        served_decisions.extend((r["at"], r["outcome"], r["reason"]) for r in service.activity.rows()
                                if r["campaign"] == "cart")

    served_decisions: list[tuple[object, ...]] = []
    served(folder, body, clock=lambda: NOW)
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    assert main(["replay", str(folder / "campaigns" / "cart.push"), "--events", str(folder / "records.jsonl"),
                 "--until", iso(int(NOW * US))]) == 0
    replayed = [(d["at"], d["outcome"], d["reason"]) for d in map(json.loads, capsys.readouterr().out.splitlines())]
    assert len(replayed) == 2
    assert served_decisions == replayed


# ---- 10. hostile bodies, reloads and files ------------------------------------------------------

def test_hostile_bodies_get_4xx_and_lose_no_good_record(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        deep = "[" * 1000 + "]" * 1000
        text = f'[{json.dumps(subscribe("u1", sub))}, {deep}, {json.dumps(signed_up("u1"))}]'
        r = await client.post("/v1/records", data=text, headers=AUTH)
        result = await r.json()
        assert r.status == 200 and result["accepted"] == 2 and [x["index"] for x in result["rejected"]] == [1]
        lines = f'{json.dumps(signed_up("u2"))}\n{{"user": "u2", "ts": 1, "props": {{"a": {deep}}}}}'
        r = await client.post("/v1/records", data=lines, headers=AUTH)
        assert r.status == 200 and (await r.json())["rejected"][0]["reason"].startswith("nested too deeply")
        r = await client.post("/v1/records", json=[{"user": "u3", "ts": "0001-01-01T00:00:00Z", "name": "x"}],
                              headers=AUTH)
        assert r.status == 400 and "between 1970 and 9999" in (await r.json())["rejected"][0]["reason"]
        await eventually(lambda: push.payloads(sub.id))
        for name in ("sw.js", "subscribe.js"):
            r = await client.get(f"/sdk/{name}")
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-cache"

    served(folder, body)


def test_a_big_batch_never_blocks_the_service(project: tuple[Path, WebPushService]) -> None:
    folder, _ = project

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        records = "\n".join(json.dumps({"user": f"u{i}", "ts": int(NOW) - 1, "name": "V"}, separators=(",", ":"))
                            for i in range(70_000))
        posting = asyncio.create_task(client.post("/v1/records", data=records, headers=AUTH))
        answered_meanwhile = 0
        while not posting.done():
            r = await client.get("/healthz")
            if not posting.done():
                answered_meanwhile += r.status == 200
            await asyncio.sleep(0.01)
        assert (await (await posting).json())["accepted"] == 70_000
        # health checks went on while the batch was fed (a loop blocked for the whole batch answers
        # one before and one after it)
        assert answered_meanwhile >= 5, answered_meanwhile

    served(folder, body, clock=lambda: NOW)


def test_a_reload_that_finds_no_campaigns_keeps_the_running_ones(project: tuple[Path, WebPushService]) -> None:
    folder, _ = project

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        (folder / "campaigns" / "welcome.push").unlink()
        r = await client.post("/v1/reload", headers=AUTH)
        assert r.status == 422 and "no campaigns found" in (await r.json())["error"]
        assert [c["id"] for c in await (await client.get("/v1/campaigns", headers=AUTH)).json()] == ["welcome"]

    served(folder, body)


# ---- 4. interrupted means on the wire --------------------------------------------------------------

def test_a_send_waiting_to_retry_at_shutdown_stays_pending_not_interrupted(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    config(folder, 'shutdown_grace = "1s"\n')  # joins the [server] table, the config's last
    sub = push.new_subscription("chrome")
    push.script(sub.id, [Reply(429, retry_after=30)])

    async def first(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("u1", sub), signed_up("u1")], headers=AUTH)).status == 200
        await eventually(lambda: push.requests_for(sub.id))  # answered 429: it waits 30 s to try again

    served(folder, first)  # stopped meanwhile (SIGTERM does the same)
    db = sqlite3.connect(folder / "state.db")
    assert db.execute("SELECT count(*) FROM meta WHERE key LIKE 'sending:%'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM meta WHERE key LIKE 'outbox:%'").fetchone()[0] == 1
    db.close()

    async def again(client: TestClient[Any, Any], service: LiveService) -> None:
        assert len(await eventually(lambda: outcomes(service, "delivered"))) == 1
        assert not outcomes(service, "failed")  # not `interrupted`: nothing was on the wire at the stop
        assert len(push.payloads(sub.id)) == 1

    served(folder, again)


def test_the_delivery_loop_is_restarted_after_an_unexpected_error_and_healthz_says_so(
        project: tuple[Path, WebPushService], monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the loop (here: its first run raises) is logged and counted; the loop goes on."""
    from pushlang.service.delivery import Deliveries

    folder, push = project
    sub = push.new_subscription("chrome")
    original = Deliveries._run
    failures = iter([RuntimeError("a bug in the delivery loop")])

    async def failing_once(self: Deliveries) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        await original(self)

    monkeypatch.setattr(Deliveries, "_run", failing_once)

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("u1", sub), signed_up("u1")], headers=AUTH)).status == 200
        await eventually(lambda: push.payloads(sub.id))
        health = await (await client.get("/healthz")).json()
        assert health["ok"] and health["deliveries"]["state"] == "running"
        assert health["deliveries"]["restarts"] == 1
        assert health["deliveries"]["last_error"] == "RuntimeError"  # the type only: /healthz is public

    served(folder, body)


def test_browser_records_are_stamped_with_the_services_clock(project: tuple[Path, WebPushService]) -> None:
    """A browser's clock may be days off, or lie: what it reports happened when it arrived."""
    folder, push = project
    sub = push.new_subscription("chrome")

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        for ts in (NOW + 72 * 365 * 86400, 946_684_800):  # 2098, and 2000
            r = await client.post("/v1/browser/records", json=[subscribe("u1", sub, ts)], headers=user_token("u1"))
            assert (r.status, (await r.json())["accepted"]) == (200, 1)
            state = service.store.get("u1")
            assert state is not None and state.subscriptions[sub.endpoint].since == int(NOW * US)
        assert service.engine.clock == int(NOW * US)

    served(folder, body, clock=lambda: NOW)


# ---- review: no user stalls the others, an erasure stops mid-retry, one request per subscription ---

def test_a_stuck_push_service_with_a_thousand_requests_delays_nobody_else(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    config(folder, 'shutdown_grace = "1s"\n[dispatch]\ntimeout = 60\n')
    public = load_public(folder / "vapid.pem")
    with WebPushService(application_server_key=public) as stuck:
        stuck.set_default(Reply(201, delay=60))  # never answers while the test runs
        subs = [stuck.new_subscription("chrome") for _ in range(1100)]
        victim = push.new_subscription("chrome")

        async def body(client: TestClient[Any, Any], service: LiveService) -> None:
            records = [subscribe(f"m{i}", s) for i, s in enumerate(subs)] + [signed_up(f"m{i}") for i in range(1100)]
            assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
            await eventually(lambda: service.deliveries is not None and service.deliveries.health()["in_flight"] >= 1024)
            assert (await client.post("/v1/records", json=[subscribe("victim", victim), signed_up("victim")],
                                      headers=AUTH)).status == 200
            await eventually(lambda: push.payloads(victim.id), timeout=5.0)  # not behind the stuck one
            health = (await (await client.get("/healthz")).json())["deliveries"]
            assert health["in_flight"] <= 1024 + 1 and health["queued"] >= 1100 - 1024  # the stuck one's own room

        served(folder, body)


def test_a_browser_cannot_make_one_user_a_thousand_subscriptions(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    subs = [push.new_subscription("chrome") for _ in range(12)]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        many = [subscribe("mallory", subs[0])] * 21
        r = await client.post("/v1/browser/records", json=many, headers=user_token("mallory"))
        assert r.status == 413 and "at most 20" in (await r.json())["error"]
        r = await client.post("/v1/browser/records", json=[subscribe("mallory", s) for s in subs],
                              headers=user_token("mallory"))
        result = await r.json()
        assert result["accepted"] == 10 and [x["index"] for x in result["rejected"]] == [10, 11]
        assert "max_subscriptions_per_user" in result["rejected"][0]["reason"]
        r = await client.post("/v1/browser/records", json=[subscribe("mallory", subs[3])], headers=user_token("mallory"))
        assert (await r.json())["accepted"] == 1  # one it already has: renewed, not one more
        for endpoint in ("https://10.0.0.5/admin", "https://169.254.169.254/latest/meta-data", "https://[fd00::1]/x"):
            r = await client.post("/v1/browser/records", json=[{**subscribe("eve", subs[0]), "endpoint": endpoint}],
                                  headers=user_token("eve"))
            answer = await r.json()
            assert answer["rejected"] and "not a push service on the internet" in answer["rejected"][0]["reason"], (
                endpoint, answer)

    served(folder, body)


def test_an_erased_users_send_waiting_to_retry_never_goes_out(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")
    push.script(sub.id, [Reply(503, retry_after=1)])  # then 201

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("vera", sub), signed_up("vera")],
                                  headers=AUTH)).status == 200
        await eventually(lambda: push.requests_for(sub.id))  # answered 503: it tries again in a second
        r = await client.delete("/v1/users/vera", headers=AUTH)
        assert r.status == 200
        await asyncio.sleep(2.0)
        assert [q.status for q in push.requests_for(sub.id)] == [503]  # the retry never went out
        assert not [row for row in service.activity.rows() if row["user"] == "vera"]
        assert service.store.meta_items("sending:") == [] and service.store.meta_items("outbox:") == []

    served(folder, body)


def test_requests_to_one_subscription_go_one_after_another(project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    sub = push.new_subscription("chrome")
    push.set_default(Reply(201, delay=0.3))

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        now = time.time()
        assert (await client.post("/v1/records", json=[subscribe("u1", sub, now - 3), signed_up("u1", now - 2),
                                                       signed_up("u1", now - 1)], headers=AUTH)).status == 200
        await asyncio.sleep(0.45)  # the first answered, the second on the wire
        assert (await client.post("/v1/records", json=[signed_up("u1")], headers=AUTH)).status == 200
        await eventually(lambda: len(push.requests_for(sub.id)) == 3)
        arrivals = sorted(r.at for r in push.requests_for(sub.id))
        assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(arrivals)), arrivals

    served(folder, body)


def test_resume_reads_the_fixed_key_and_probes_again(project: tuple[Path, WebPushService]) -> None:
    from pushlang.dispatch.keys import generate

    folder, push = project
    (folder / "right.pem").write_bytes((folder / "vapid.pem").read_bytes())
    generate(folder / "wrong.pem")
    (folder / "vapid.pem").write_bytes((folder / "wrong.pem").read_bytes())  # the wrong key installed
    subs = [push.new_subscription("chrome") for _ in range(5)]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        records = [subscribe(f"u{i}", s) for i, s in enumerate(subs)] + [signed_up(f"u{i}") for i in range(5)]
        assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
        await eventually(lambda: service.deliveries and service.deliveries.health()["parked"].get("webpush") == 5)
        assert [r.status for r in push.requests] == [403]  # one probe, the others kept
        (folder / "vapid.pem").write_bytes((folder / "right.pem").read_bytes())  # fixed
        r = await client.post("/v1/channels/webpush/resume", headers=AUTH)
        assert await r.json() == {"channel": "webpush", "resumed": True}
        await eventually(lambda: all(push.payloads(s.id) for s in subs))
        assert [r.status for r in push.requests].count(403) == 1

    served(folder, body)


# ---- second review ---------------------------------------------------------------------------------

def test_a_resume_while_the_key_file_is_missing_is_refused_and_keeps_the_sends(
        project: tuple[Path, WebPushService]) -> None:
    from pushlang.dispatch.keys import generate

    folder, push = project
    (folder / "right.pem").write_bytes((folder / "vapid.pem").read_bytes())
    generate(folder / "wrong.pem")
    (folder / "vapid.pem").write_bytes((folder / "wrong.pem").read_bytes())
    subs = [push.new_subscription("chrome") for _ in range(3)]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        records = [subscribe(f"u{i}", s) for i, s in enumerate(subs)] + [signed_up(f"u{i}") for i in range(3)]
        assert (await client.post("/v1/records", json=records, headers=AUTH)).status == 200
        await eventually(lambda: service.deliveries and service.deliveries.health()["parked"].get("webpush") == 3)
        (folder / "vapid.pem").unlink()  # the operator is swapping the key file
        r = await client.post("/v1/channels/webpush/resume", headers=AUTH)
        answer = await r.json()
        assert r.status == 422 and not answer["resumed"] and "private_key_file" in answer["error"]
        assert service.dispatcher is not None and not outcomes(service, "failed")  # nothing lost
        (folder / "vapid.pem").write_bytes((folder / "right.pem").read_bytes())
        r = await client.post("/v1/channels/webpush/resume", headers=AUTH)
        assert (await r.json())["resumed"]
        await eventually(lambda: all(push.payloads(s.id) for s in subs))

    served(folder, body)


def test_a_send_out_on_the_old_channels_when_they_are_replaced_goes_again_on_the_new(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    a, b = push.new_subscription("chrome"), push.new_subscription("chrome")
    push.script(a.id, [Reply(503, retry_after=2)])
    push.script(b.id, [Reply(403)])

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("ua", a), signed_up("ua")], headers=AUTH)).status == 200
        await eventually(lambda: push.requests_for(a.id))  # a waits 2 s to try again
        assert (await client.post("/v1/records", json=[subscribe("ub", b), signed_up("ub")], headers=AUTH)).status == 200
        await eventually(lambda: service.deliveries and service.deliveries.health()["parked"].get("webpush") == 1)
        assert (await (await client.post("/v1/channels/webpush/resume", headers=AUTH)).json())["resumed"]
        await eventually(lambda: push.payloads(b.id))
        await eventually(lambda: push.payloads(a.id), timeout=8)  # its retry met the halt of the old channels
        await eventually(lambda: not service.store.meta_items("outbox:"))
        assert service.deliveries is not None and not service.deliveries.health()["parked"]

    served(folder, body)


def test_a_request_that_timed_out_stays_marked_through_a_stop_and_is_not_sent_again(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    config(folder, 'shutdown_grace = "1s"\n[dispatch]\ntimeout = 0.3\n')
    sub = push.new_subscription("chrome")
    push.script(sub.id, [Reply(201, delay=1.0)])  # taken, but answered after the client gave up

    async def first(client: TestClient[Any, Any], service: LiveService) -> None:
        assert (await client.post("/v1/records", json=[subscribe("u1", sub), signed_up("u1")], headers=AUTH)).status == 200
        await eventually(lambda: push.requests_for(sub.id))
        await asyncio.sleep(0.4)  # timed out: waiting to try once more; then the service stops

    served(folder, first)
    time.sleep(1.0)  # the late answer

    async def again(client: TestClient[Any, Any], service: LiveService) -> None:
        (failed,) = await eventually(lambda: outcomes(service, "failed"))
        assert failed["reason"] == "interrupted"  # a copy may be out: not sent a second time
        await asyncio.sleep(0.5)
        assert len(push.requests_for(sub.id)) == 1

    served(folder, again)


def test_parallel_browser_requests_cannot_pass_the_subscription_cap_together(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    subs = [push.new_subscription("chrome") for _ in range(30)]

    async def body(client: TestClient[Any, Any], service: LiveService) -> None:
        await service._lock.acquire()  # a big batch or a tick holds the engine for a moment
        posts = [asyncio.ensure_future(client.post("/v1/browser/records", json=[subscribe("mallory", s)
                                                                                for s in subs[i * 10:(i + 1) * 10]],
                                                   headers=user_token("mallory"))) for i in range(3)]
        await asyncio.sleep(0.3)
        service._lock.release()
        accepted = [(await (await post).json())["accepted"] for post in posts]
        assert sum(accepted) == 10
        state = service.store.get("mallory")
        assert state is not None and sum(1 for s in state.subscriptions.values() if s.active) == 10

    served(folder, body)
