"""Erasing a user: `DELETE /v1/users/{id}` on a running `pushlang serve`, and `pushlang forget` on a store
file. Afterwards no table of the file (nor a byte of it) holds the user id, the other users are
untouched, and every figure of the stats is what it was."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from peers.webpush_service import Reply, WebPushService
from serve_env import free_port, start_serve

from pushlang.dispatch.keys import generate
from pushlang.runtime import stats
from pushlang.runtime.pipeline import in_control_group
from pushlang.runtime.records import decode_body
from pushlang.service.app import LiveService

TOKEN = "forget-test-token"
CAMPAIGNS = '''segment members {
  did "Signed Up" in last 30d
}

campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome"
    body "Thanks for joining"
    url "https://shop.example.com/welcome"
  }
  control group 0%
  conversion "Charged" within 1d revenue event.amount
}

campaign cart {
  platforms chrome
  on "Added To Cart"
  unless "Charged" within 1h
  who {
    segment members
  }
  message {
    title "Your cart"
    body "@event.product is waiting"
  }
}
'''
HOLDOUT = '''
campaign holdout {
  platforms chrome
  on "Signed Up"
  message {
    title "Hello"
    body "Something for you"
    url "https://shop.example.com/hello"
  }
  control group 50%
  conversion "Charged" within 1d revenue event.amount
}
'''
ALICE = "alice.erasable@example.org"  # distinctive: a match anywhere is her
BOB = "bob.kept@example.org"
REPO = Path(__file__).resolve().parent.parent


# ---- what a file holds -----------------------------------------------------------------------------


def holding(path: Path, needle: str) -> list[str]:
    """Every `table.column` of the SQLite file with a value whose text contains ``needle``."""
    db = sqlite3.connect(path)
    try:
        found = []
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]:
                query = f'SELECT count(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0'
                if db.execute(query, (needle,)).fetchone()[0]:
                    found.append(f"{table}.{column}")
        return found
    finally:
        db.close()


def bytes_holding(folder: Path, needle: str) -> list[str]:
    """The files of the store (the database, its WAL and shared memory) whose bytes contain ``needle``."""
    return [p.name for p in sorted(folder.glob("state.db*")) if needle.encode() in p.read_bytes()]


def rows_of(path: Path, user: str) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the store keeps of a user, table by table."""
    db = sqlite3.connect(path)
    try:
        out = {}
        for table in ("users", "profiles", "subscriptions", "events", "counters", "sends", "windows"):
            out[table] = sorted(db.execute(f"SELECT * FROM {table} WHERE user_id = ?", (user,)).fetchall(), key=repr)
        out["timers"] = sorted(db.execute("SELECT * FROM timers WHERE user = ?", (user,)).fetchall())
        out["activity"] = db.execute("SELECT * FROM activity WHERE user_id = ? ORDER BY id", (user,)).fetchall()
        return out
    finally:
        db.close()


def figures(path: Path) -> tuple[Any, ...]:
    """Every figure the stats compute over the file, and the number of distinct users in the log."""
    db = sqlite3.connect(path)
    try:
        users = db.execute("SELECT count(DISTINCT user_id) FROM activity").fetchone()[0]
        return stats.campaign_stats(db, {}), stats.series(db, {}, bucket="hour"), users
    finally:
        db.close()


# ---- the live service ------------------------------------------------------------------------------


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    return start_serve(folder, port, "campaigns.push", TOKEN)


def call(port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def now_iso(offset: float = 0.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.time() + timeout
    while not (result := check()):
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)
    return result


def read(path: Path, query: str, *params: object) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(query, params).fetchall()
    finally:
        db.close()


def test_delete_over_http_leaves_nothing_of_the_user_and_the_same_stats(tmp_path: Path) -> None:
    public = generate(tmp_path / "vapid.pem")
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n', encoding="utf-8")
    (tmp_path / "campaigns.push").write_text(CAMPAIGNS, encoding="utf-8")
    db = tmp_path / "state.db"
    with WebPushService(application_server_key=public) as push:
        subs = {user: push.new_subscription("chrome") for user in (ALICE, BOB)}
        push.script(subs[ALICE].id, [Reply(201, delay=5.0)])  # her push is on its way when she is erased
        port = free_port()
        proc = start(tmp_path, port)
        try:
            def records(user: str, name: str) -> list[dict[str, Any]]:
                s = subs[user]
                return [
                    {"type": "profile", "user": user, "ts": now_iso(-3),
                     "props": {"first_name": name, "email": user, "timezone": "Europe/Paris"}},
                    {"type": "subscribe", "user": user, "ts": now_iso(-3), "platform": "chrome",
                     "endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}},
                    {"user": user, "ts": now_iso(-3), "name": "Signed Up", "props": {"referrer": user}},
                    {"user": user, "ts": now_iso(-2), "name": "Charged", "props": {"amount": 30.0}},
                    # after the Charged: a cart timer, due in an hour, is pending
                    {"user": user, "ts": now_iso(-1), "name": "Added To Cart", "props": {"product": "Kettle"}},
                ]

            # Bob's push is delivered; then Alicia's goes out and waits for its answer (`sending`).
            assert call(port, "POST", "/v1/records", records(BOB, "Bob")) == (200, {"accepted": 5, "rejected": []})
            bob_send = json.loads(wait_for(lambda: push.payloads(subs[BOB].id))[0] or b"{}")["send_id"]
            wait_for(lambda: read(db, "SELECT 1 FROM activity WHERE outcome = 'delivered' AND user_id = ?", BOB))
            assert call(port, "POST", "/v1/records", records(ALICE, "Alicia"))[1]["accepted"] == 5
            alice_send = json.loads(wait_for(lambda: push.payloads(subs[ALICE].id))[0] or b"{}")["send_id"]
            status, answer = call(port, "POST", "/v1/records", [  # as a site relays it
                {"user": ALICE, "ts": now_iso(), "name": "Push Clicked", "props": {"send_id": alice_send}}])
            assert answer["accepted"] == 1
            wait_for(lambda: read(db, "SELECT 1 FROM meta WHERE key LIKE ?", f"sending:{alice_send}|%"))
            wait_for(lambda: read(db, "SELECT 1 FROM activity WHERE outcome = 'clicked'"))

            assert set(holding(db, ALICE)) >= {"users.user_id", "profiles.props", "subscriptions.user_id",
                                               "events.user_id", "events.props", "timers.user", "timers.key",
                                               "meta.value", "activity.user_id"}  # the scan finds her
            bob_before = rows_of(db, BOB)
            assert bob_before["timers"] and bob_before["activity"] and bob_before["subscriptions"]
            _, stats_before = call(port, "GET", "/v1/stats")
            (welcome,) = [c for c in stats_before["campaigns"] if c["id"] == "welcome"]
            assert (welcome["sends"], welcome["delivered"], welcome["clicked"], welcome["conversions"],
                    welcome["revenue"]) == (2, 1, 1, 2, 60.0)

            for token in (None, "wrong"):
                status, answer = call(port, "DELETE", f"/v1/users/{ALICE}", token=token)
                assert status == 401 and "Bearer" in answer["error"]
            assert holding(db, ALICE)  # nothing erased without the token

            status, answer = call(port, "DELETE", f"/v1/users/{ALICE}")
            assert status == 200, answer
            assert answer == {"user": ALICE, "erased": {
                "users": 1, "profiles": 1, "subscriptions": 1, "events": 1, "counters": 2, "sends": 1,
                "windows": 0, "timers": 1, "outbox": 2, "activity": 3}}  # outbox: the send and its on-the-wire mark
            _, stats_after = call(port, "GET", "/v1/stats")
            assert stats_after == stats_before
            status, answer = call(port, "DELETE", "/v1/users/nobody%20known")
            assert (status, answer["user"], set(answer["erased"].values())) == (200, "nobody known", {0})

            # Her push's answer comes back after the erasure: recorded, but not under her ids.
            wait_for(lambda: read(db, "SELECT 1 FROM activity WHERE outcome = 'delivered' AND user_id <> ?", BOB))
            _, stats_later = call(port, "GET", "/v1/stats")
            (welcome,) = [c for c in stats_later["campaigns"] if c["id"] == "welcome"]
            assert (welcome["sends"], welcome["delivered"], welcome["clicked"]) == (2, 2, 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=15)[0].decode()

    assert proc.returncode == 0, output
    assert holding(db, ALICE) == [] and holding(db, alice_send) == []
    assert bytes_holding(tmp_path, ALICE) == [] and bytes_holding(tmp_path, alice_send) == []
    assert rows_of(db, BOB) == bob_before and holding(db, bob_send)
    # Her three rows and the late delivery are one anonymous user's, their send one (random) send_id.
    (anonymous,) = read(db, "SELECT DISTINCT user_id FROM activity WHERE user_id <> ?", BOB)
    assert anonymous[0].startswith("erased-")
    outcomes = read(db, "SELECT outcome, send_id FROM activity WHERE user_id = ? ORDER BY id", anonymous[0])
    assert sorted(o for o, _ in outcomes) == ["clicked", "convert", "delivered", "send"]
    assert len({s for _, s in outcomes}) == 1
    # One line per erasure, without the profile.
    erased = [line for line in output.splitlines() if "erased user" in line]
    assert len(erased) == 2 and "INFO pushlang.service" in erased[0] and "timers 1" in erased[0], output
    assert "Alicia" not in output and "Europe/Paris" not in output


# ---- the command -----------------------------------------------------------------------------------


def candidates(in_control: bool) -> str:
    """A user id the holdout campaign puts in (or out of) its control group."""
    return next(f"carol-{n}@example.org" for n in range(100)
                if in_control_group("holdout", f"carol-{n}@example.org", 50.0) == in_control)


def write_store(folder: Path, users: list[str]) -> Path:
    """A store as `pushlang serve` leaves it (no push delivered: sends wait in the outbox)."""
    (folder / "campaigns.push").write_text(CAMPAIGNS + HOLDOUT, encoding="utf-8")
    path = folder / "state.db"
    service = LiveService([str(folder / "campaigns.push")], store_path=str(path), token=TOKEN)
    lines = []
    for n, user in enumerate(users):
        lines += [{"type": "profile", "user": user, "ts": "2026-12-01T08:00:00Z", "props": {"first_name": "X"}},
                  {"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                   "endpoint": f"https://push.example.net/{n}", "keys": {"p256dh": "BPk", "auth": "k3"}},
                  {"user": user, "ts": f"2026-12-01T08:{n:02d}:01Z", "name": "Signed Up"},
                  {"user": user, "ts": f"2026-12-01T09:{n:02d}:00Z", "name": "Charged", "props": {"amount": 10 + n}},
                  {"user": user, "ts": f"2026-12-01T10:{n:02d}:00Z", "name": "Added To Cart",
                   "props": {"product": "Lamp"}}]
    records, rejected = decode_body("\n".join(json.dumps(line) for line in lines).encode())
    assert not rejected
    for _, record in sorted(records, key=lambda r: r[1].ts):
        service.engine.feed(record)
    service._commit()
    for send_id, user in read(path, "SELECT send_id, user_id FROM activity WHERE outcome = 'send'"):
        view = {"user": user, "ts": "2026-12-01T11:00:00Z", "name": "Push Viewed", "props": {"send_id": send_id}}
        ((_, record),), _ = decode_body(json.dumps(view).encode())
        service.engine.feed(service._with_campaign(record))
    service.store.close()
    service.activity.close()
    return path


def pushlang(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushlang", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)


def test_forget_command_erases_users_and_keeps_every_figure(tmp_path: Path) -> None:
    held, treated = candidates(True), candidates(False)
    db = write_store(tmp_path, [held, treated, BOB])
    before = figures(db)
    (holdout,) = [c for c in before[0]["campaigns"] if c["id"] == "holdout"]
    assert holdout["control"] >= 1 and holdout["control_conversions"] >= 1 and holdout["viewed"] >= 1
    assert before[2] == 3
    text_before = pushlang("stats", "--store", "state.db", cwd=tmp_path).stdout
    json_before = pushlang("stats", "--store", "state.db", "--format", "json", cwd=tmp_path).stdout
    bob_before = rows_of(db, BOB)
    assert holding(db, held) and read(db, "SELECT count(*) FROM meta WHERE key LIKE 'outbox:%'")[0][0] > 0

    done = pushlang("forget", held, "nobody", treated, "--store", "sqlite:///state.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "nobody: not in the store, nothing erased"
    assert lines[0].startswith(f"{held}: erased users 1, profiles 1, ") and "timers 1, outbox 1;" in lines[0]
    assert lines[0].endswith("activity rows unlinked") and lines[2].startswith(f"{treated}: erased users 1")
    assert "sends 2" in lines[2] and "outbox 2" in lines[2]  # both sends wait for delivery

    assert figures(db) == before
    assert pushlang("stats", "--store", "state.db", cwd=tmp_path).stdout == text_before
    assert pushlang("stats", "--store", "state.db", "--format", "json", cwd=tmp_path).stdout == json_before
    for user in (held, treated):
        assert holding(db, user) == [] and bytes_holding(tmp_path, user) == []
    assert rows_of(db, BOB) == bob_before
    assert read(db, "SELECT count(*) FROM meta WHERE value LIKE '%\"user\"%'")[0][0] == 1  # Bob's outbox entry


@pytest.mark.parametrize("content", [None, b"not a database at all, just some text" * 100])
def test_forget_refuses_a_store_that_is_not_there(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / "state.db").write_bytes(content)
    done = pushlang("forget", "u1", "--store", "state.db", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = "no database state.db" if content is None else "state.db: file is not a database"
    assert done.stderr.strip() == f"pushlang: error: {expected}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["state.db"])
