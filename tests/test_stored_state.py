"""State written before PendingSend and QueuedSend existed is read as it was meant: a delay timer and an
outbox entry in a SQLite store, and an entry of scale-out's `ob:{p}` (tests/fixtures/store_v1)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from peers.webpush_service import Subscription, WebPushService

from pushlang.compiler import compile_paths
from pushlang.dispatch.dispatcher import DeliverySettings
from pushlang.runtime.instants import parse_instant
from pushlang.runtime.outcomes import QueuedSend, Target
from pushlang.runtime.pipeline import decode_queued
from pushlang.runtime.sqlite_store import SCHEMA_VERSION, SqliteStore
from pushlang.service.app import LiveService

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "store_v1"


@pytest.fixture
def project(push_project: tuple[Path, WebPushService]) -> tuple[Path, WebPushService]:
    (push_project[0] / "night.push").write_text((FIXTURES / "night.push").read_text(encoding="utf-8"),
                                                encoding="utf-8")
    return push_project


def _store_of_before(path: Path, live: dict[str, Subscription]) -> None:
    """The store as that version left it (the store's tables made by today's code, taken back to
    schema version 1; the activity table as it was then, which the service migrates when it opens the file); the
    users' endpoints are pointed at the loopback push service (their subscription keys, which the
    outbox entry names, stay as they were)."""
    SqliteStore(str(path)).close()
    db = sqlite3.connect(path)
    # schema 1 had no windows.variant (2) nor windows.lang (3), its sends were keyed by send_id and
    # indexed by user, its timers indexed by due (4), its counters one row per key (5): the store as it
    # was, migrated on open
    db.executescript("ALTER TABLE windows DROP COLUMN variant; ALTER TABLE windows DROP COLUMN lang;"
                     "DROP TABLE sends; CREATE TABLE sends (send_id TEXT PRIMARY KEY, user_id TEXT NOT NULL)"
                     " WITHOUT ROWID; CREATE INDEX sends_user ON sends (user_id);"
                     "CREATE INDEX timers_due ON timers (due);"
                     "DROP TABLE counters; CREATE TABLE counters (user_id TEXT NOT NULL, key TEXT NOT NULL,"
                     " count INTEGER NOT NULL, PRIMARY KEY (user_id, key)) WITHOUT ROWID;"
                     "PRAGMA user_version = 1;")
    db.executescript((FIXTURES / "activity.sql").read_text(encoding="utf-8"))
    db.executescript((FIXTURES / "rows.sql").read_text(encoding="utf-8"))
    for user, sub in live.items():
        db.execute("UPDATE subscriptions SET endpoint = ?, keys = ? WHERE user_id = ?",
                   (sub.endpoint, json.dumps({"p256dh": sub.p256dh, "auth": sub.auth}), user))
    db.commit()
    db.close()


def test_a_store_written_before_delivers_its_outbox_entry_and_its_delayed_send(
        project: tuple[Path, WebPushService]) -> None:
    folder, push = project
    assert SCHEMA_VERSION == 5  # the rows were written with version 1: the store is migrated when opened
    live = {"u1": push.new_subscription("chrome"), "u2": push.new_subscription("chrome")}
    _store_of_before(folder / "state.db", live)
    now = [parse_instant("2026-12-01T22:30:00+00:00") / 1e6]  # u1's push waits for the end of DND at 09:00

    async def run() -> list[dict[str, Any]]:
        service = LiveService([str(folder / "night.push")], store_path=str(folder / "state.db"), tick=0.05,
                              clock=lambda: now[0])
        async with TestClient(TestServer(service.app(), host="127.0.0.1")):
            for _ in range(100):  # the recovered outbox entry goes out at start
                if push.payloads(live["u2"].id):
                    break
                await asyncio.sleep(0.05)
            now[0] = parse_instant("2026-12-02T09:00:00+00:00") / 1e6  # the delay ends
            for _ in range(100):
                if push.payloads(live["u1"].id):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            service.activity.commit()
            columns = [row[1] for row in service.activity.db.execute("PRAGMA table_info(activity)")]
            assert columns[-4:] == ["variant", "rates", "significant", "lang"]  # migrated on open
            windows = [row[1] for row in service.store.connection.execute("PRAGMA table_info(windows)")]
            assert windows[-2:] == ["variant", "lang"]  # the store too (schemas 2 and 3)
            db = service.store.connection  # and 4: the sends keyed by user, u2's of before and u1's of now
            assert db.execute("SELECT user_id, send_id FROM sends").fetchall() == [
                ("u1", "e3cb61ef377d318984375854"), ("u2", "0871c8351154cc67b1644a87")]
            assert not db.execute("SELECT name FROM sqlite_master WHERE name IN ('sends_user', 'timers_due')").fetchall()
            counters = dict(db.execute("SELECT user_id, counts FROM counters").fetchall())  # and 5: a row per user
            assert json.loads(counters["u2"]) == {"*|2026-12-01": 1, "night|all": 1}
            assert set(counters) == {"u1", "u2"}  # u1's of its send now
            return [r for r in service.activity.rows() if r["outcome"] in ("send", "delivered", "failed")]

    rows = asyncio.run(run())
    (u2,) = [json.loads(p or b"{}") for p in push.payloads(live["u2"].id)]
    assert (u2["title"], u2["body"], u2["send_id"]) == ("Still thinking, friend?", "Your Kettle is waiting",
                                                        "0871c8351154cc67b1644a87")
    (u1,) = [json.loads(p or b"{}") for p in push.payloads(live["u1"].id)]
    assert (u1["title"], u1["body"], u1["send_id"]) == ("Still thinking, Asha?", "Your Desk Lamp is waiting",
                                                        "e3cb61ef377d318984375854")
    assert u1["actions"] == [{"title": "Buy now", "url": "https://shop.example.com/checkout"}]
    assert [(r["user"], r["outcome"], r["at"]) for r in rows] == [
        ("u2", "send", "2026-12-01T12:00:00Z"),  # decided before the restart
        ("u2", "delivered", "2026-12-01T12:00:00Z"),
        ("u1", "send", "2026-12-02T09:00:00Z"),
        ("u1", "delivered", "2026-12-02T09:00:00Z")]


def test_an_outbox_entry_of_scaleout_written_before_decodes_and_is_delivered(
        project: tuple[Path, WebPushService]) -> None:
    raw = (FIXTURES / "outbox_entry.json").read_bytes().strip()
    queued = decode_queued(raw)
    assert queued == QueuedSend(
        send_id="0871c8351154cc67b1644a87", title="Still thinking, friend?", body="Your Kettle is waiting",
        url="https://shop.example.com/cart", buttons=(("Buy now", "https://shop.example.com/checkout"),),
        at=1796126400000000, campaign="night", user="u2",
        targets=(Target(key="https://push.example/u2", platform="chrome", since=1796112000000000,
                        endpoint="https://push.example/u2", keys={"p256dh": "BOLD-u2", "auth": "AUTH-u2"}),))
    from redis_server import redis_server

    from pushlang.scaleout.dispatch import DispatchWorker
    from pushlang.scaleout.keys import outbox_key, partition_of

    folder, push = project
    sub = push.new_subscription("chrome")
    entry = raw.replace(b"https://push.example/u2", sub.endpoint.encode()).replace(
        b"BOLD-u2", sub.p256dh.encode()).replace(b"AUTH-u2", sub.auth.encode()).replace(
        b"1796126400000000", str(int(time.time() - 3600) * 1_000_000).encode())  # decided an hour ago: within its ttl
    compiled = compile_paths([str(folder / "night.push")]).plan
    assert compiled is not None
    settings = DeliverySettings(vapid_key_file=str(folder / "vapid.pem"), vapid_subject="mailto:ops@shop.example.com",
                                allow_loopback=True)  # the loopback push service
    with redis_server(folder / "redis") as client:  # skips, saying why, when redis-server is missing
        client.xadd(outbox_key(partition_of("u2", 4)), {"j": entry})
        worker = DispatchWorker(client, compiled, settings, 4, "d0")
        worker.run(idle_exit=0.5)
    (payload,) = [json.loads(p or b"{}") for p in push.payloads(sub.id)]
    assert (payload["title"], payload["send_id"]) == ("Still thinking, friend?", "0871c8351154cc67b1644a87")
    assert worker.stats["delivered"] == 1
