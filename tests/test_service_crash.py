"""Crash: `kill -9` the service while timers are pending and a send is in flight, then restart it."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from peers.webpush_service import Reply, WebPushService

from pushlang.dispatch.keys import generate

TOKEN = "crash-test-token"
CAMPAIGN = '''campaign cart {
  platforms chrome
  on "Added To Cart"
  unless "Charged" within 3s
  message {
    title "Your cart"
    body "@event.product is waiting"
  }
}
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PUSHLANG_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "pushlang", "serve", "cart.push", "--port", str(port),
                             "--store", "state.db"], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the service did not start: {proc.stdout.read() if proc.stdout else b''!r}")


def post(port: int, records: list[dict[str, object]]) -> dict[str, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/records", method="POST",
                                     data="\n".join(json.dumps(r) for r in records).encode(),
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        result: dict[str, object] = json.loads(r.read())
        return result


def now_iso(offset: float = 0.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_9_loses_no_accepted_record_and_never_delivers_twice(tmp_path: Path) -> None:
    public = generate(tmp_path / "vapid.pem")
    (tmp_path / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n', encoding="utf-8")
    (tmp_path / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    with WebPushService(application_server_key=public) as push:
        subs = {u: push.new_subscription("chrome") for u in ("u1", "u2", "u3")}
        push.script(subs["u3"].id, [Reply(201, delay=10.0)])  # u3's push will be in flight at the kill
        port = free_port()
        proc = start(tmp_path, port)
        records: list[dict[str, object]] = [
            {"type": "subscribe", "user": u, "ts": now_iso(), "platform": "chrome", "endpoint": s.endpoint,
             "keys": {"p256dh": s.p256dh, "auth": s.auth}} for u, s in subs.items()]
        # u3's timer (armed 5 s ago, due 2 s ago) fires on the next tick; u1's and u2's are due in 3 s.
        records += [{"user": "u3", "ts": now_iso(-5), "name": "Added To Cart", "props": {"product": "Kettle"}}]
        records += [{"user": u, "ts": now_iso(), "name": "Added To Cart", "props": {"product": "Lamp"}}
                    for u in ("u1", "u2")]
        assert post(port, records)["accepted"] == 6
        time.sleep(2.0)  # the service ticks every second: u3's push has left and waits for its answer
        # u3's push is in flight (the push service holds its answer back), u1's and u2's timers pending.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        restarted = start(tmp_path, port)
        try:
            deadline = time.time() + 15
            while time.time() < deadline and not all(push.payloads(subs[u].id) for u in ("u1", "u2")):
                time.sleep(0.1)
            time.sleep(1.0)  # anything that would go out twice has had time to
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=10)

    # Pending timers fired after the restart; every push went out at most once.
    for user in ("u1", "u2"):
        (payload,) = push.payloads(subs[user].id)
        assert b'"body":"Lamp is waiting"' in (payload or b"")
    send_ids = [json.loads(p or b"{}")["send_id"] for r in push.requests if (p := r.payload) is not None]
    assert len(send_ids) == len(set(send_ids)), send_ids
    assert len(push.requests_for(subs["u3"].id)) <= 1  # the in-flight push was not sent again
    # Every accepted record is in the store.
    db = sqlite3.connect(tmp_path / "state.db")
    users = {row[0] for row in db.execute("SELECT user_id FROM users")}
    subs_rows = db.execute("SELECT count(*) FROM subscriptions").fetchone()[0]
    outcomes = [row[0] for row in db.execute("SELECT outcome || ':' || coalesce(reason, '') FROM activity "
                                             "WHERE campaign = 'cart' AND outcome IN ('delivered', 'failed')")]
    assert users == {"u1", "u2", "u3"} and subs_rows == 3
    assert sorted(outcomes) == ["delivered:", "delivered:", "failed:interrupted"]


def test_sighup_reloads_only_files_that_compile_and_stats_read_the_store(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    port = free_port()
    proc = start(tmp_path, port)

    def campaigns() -> list[str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/campaigns",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as r:
            return [c["id"] for c in json.loads(r.read())]

    def reload_and_wait(expected: list[str]) -> list[str]:
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while campaigns() != expected and time.time() < deadline:
            time.sleep(0.1)
        return campaigns()

    try:
        post(port, [{"user": "u1", "ts": now_iso(-10), "name": "Added To Cart", "props": {"product": "Lamp"}}])
        deadline = time.time() + 10  # the timer (due 7 s ago) fires on the next tick
        while time.time() < deadline and not sqlite3.connect(tmp_path / "state.db").execute(
                "SELECT count(*) FROM activity WHERE outcome = 'suppress'").fetchone()[0]:
            time.sleep(0.1)
        (tmp_path / "cart.push").write_text(CAMPAIGN.replace('on "Added To Cart"', 'on "Added To Cart"\n  who {\n'
                                            '    segment nobody\n  }'), encoding="utf-8")
        assert reload_and_wait(["cart"]) == ["cart"]  # broken files: the running campaign goes on
        (tmp_path / "cart.push").write_text(CAMPAIGN.replace("campaign cart", "campaign basket"), encoding="utf-8")
        assert reload_and_wait(["basket"]) == ["basket"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    from pushlang.cli import main

    assert main(["stats", "--store", str(tmp_path / "state.db"), "--format", "json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["cart"]["sends"] == 0 and stats["cart"]["suppressed"] == 1  # u1 has no subscription


WELCOME = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome"
    body "Hello @user.name"
  }
}
'''


def user_records(first: int, count: int) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for n in range(first, first + count):
        user = f"k{n:06d}"
        records += [
            {"type": "profile", "user": user, "ts": now_iso(), "props": {"name": f"User {n}"}},
            {"type": "subscribe", "user": user, "ts": now_iso(), "platform": "chrome",
             "endpoint": f"https://push.example.test/send/{user}", "keys": {"p256dh": "P", "auth": "A"}},
            {"user": user, "ts": now_iso(), "name": "Signed Up"},
        ]
    return records


def committed_sends(path: Path) -> tuple[set[str], set[str], int]:
    """The send decisions in the store, the `send` rows of the activity log, and the users stored."""
    db = sqlite3.connect(path)
    try:
        decided = {row[0] for row in db.execute("SELECT send_id FROM sends")}
        logged = {row[0] for row in db.execute("SELECT send_id FROM activity WHERE outcome = 'send'")}
        users = int(db.execute("SELECT count(*) FROM users").fetchone()[0])
        return decided, logged, users
    finally:
        db.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_9_under_load_never_splits_a_decision_from_its_activity_row(tmp_path: Path) -> None:
    """Decisions and their activity rows commit together: a kill at any moment leaves both or neither."""
    (tmp_path / "cart.push").write_text(WELCOME, encoding="utf-8")  # start() serves cart.push
    port = free_port()
    rng = random.Random(9)
    accepted = 0  # users whose records were all accepted, over every round
    for _ in range(6):  # each round: posts under way, kill -9 at a random moment, then compare
        proc = start(tmp_path, port)
        stop = threading.Event()
        cut: list[BaseException] = []

        def load(first: int, stop: threading.Event, cut: list[BaseException]) -> None:
            nonlocal accepted
            try:
                while not stop.is_set():
                    result = post(port, user_records(first, 300))
                    assert result["accepted"] == 900, result
                    first += 300
                    accepted = first
            except OSError as exc:  # the kill cuts the connection
                cut.append(exc)

        thread = threading.Thread(target=load, args=(accepted, stop, cut))
        thread.start()
        target, deadline = accepted + 900, time.time() + 30
        while time.time() < deadline and accepted < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        thread.join(timeout=30)
        assert cut, "the load did not see the kill"
        decided, logged, users = committed_sends(tmp_path / "state.db")
        assert users >= accepted  # every accepted record survived
        assert decided and decided == logged, (len(decided - logged), len(logged - decided))

    restarted = start(tmp_path, port)  # recovery writes the failed deliveries, again in one transaction
    try:
        post(port, user_records(10**5, 10))
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=10)
    decided_after, logged_after, _ = committed_sends(tmp_path / "state.db")
    assert decided_after == logged_after and len(decided_after) == len(decided) + 10
