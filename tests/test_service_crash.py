"""Crash: `kill -9` the service while timers are pending and a send is in flight, then restart it."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from peers.webpush_service import Reply, WebPushService
from serve_env import free_port, start_serve

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


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    return start_serve(folder, port, "cart.push", TOKEN)


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
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n', encoding="utf-8")
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


HELLO = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome"
    body "Hello @user.name"
  }
}
'''
WELCOME = '''campaign welcome {
  platforms chrome
  on "Signed Up"
  message {
    title "Welcome"
    body "Thanks for joining, @{user.first_name | default: 'friend'}"
  }
}
'''


def _project(folder: Path, extra: str = "") -> str:
    public = generate(folder / "vapid.pem")
    (folder / "pushlang.toml").write_text(
        '[vapid]\nprivate_key_file = "vapid.pem"\nsubject = "mailto:ops@shop.example.com"\n'
        '[server]\nallow_loopback_http = true  # the loopback push service\n' + extra, encoding="utf-8")
    (folder / "cart.push").write_text(WELCOME, encoding="utf-8")  # `start` serves cart.push
    return public


def _signups(subs: dict[str, object]) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for user, sub in subs.items():
        records.append({"type": "subscribe", "user": user, "ts": now_iso(), "platform": "chrome",
                        "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})  # type: ignore[attr-defined]
        records.append({"user": user, "ts": now_iso(), "name": "Signed Up"})
    return records


def _delivery_rows(folder: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(folder / "state.db")
    try:
        return [(r[0], r[1], r[2] or "") for r in db.execute(
            "SELECT send_id, outcome, reason FROM activity WHERE outcome IN ('delivered', 'failed')")]
    finally:
        db.close()


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


def test_sigterm_finishes_what_is_on_the_wire_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    public = _project(tmp_path, "[dispatch]\nconcurrency = 2\n")
    with WebPushService(application_server_key=public) as push:
        push.set_default(Reply(201, delay=0.5))  # a slow push service: 200 sends take 50 s at 2 at a time
        subs = {f"u{i}": push.new_subscription("chrome") for i in range(200)}
        port = free_port()
        proc = start(tmp_path, port)
        assert post(port, _signups(subs))["accepted"] == 400
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        first_run = _delivery_rows(tmp_path)
        on_the_wire = len(push.requests)
        push.set_default(201)
        restarted = start(tmp_path, port)
        try:
            deadline = time.time() + 30
            while time.time() < deadline and len(_delivery_rows(tmp_path)) < 200:
                time.sleep(0.2)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=20)
    rows = _delivery_rows(tmp_path)
    # The requests on the wire at SIGTERM finished within the grace period and were recorded; none
    # was interrupted; the others stayed pending and went out after the restart, each once.
    assert 0 < len(first_run) == on_the_wire < 200
    assert all(outcome == "delivered" for _, outcome, _ in first_run)
    assert len(rows) == 200 and {outcome for _, outcome, _ in rows} == {"delivered"}
    assert len({send_id for send_id, _, _ in rows}) == 200
    assert all(len(push.payloads(s.id)) == 1 for s in subs.values())


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_9_under_load_fails_only_what_was_on_the_wire(tmp_path: Path) -> None:
    """Three cycles of kill -9 while sends are in flight: no accepted record lost, no send_id twice
    at the push service, and `failed: interrupted` only for requests the push service really got."""
    public = _project(tmp_path, "[dispatch]\nconcurrency = 8\n")
    with WebPushService(application_server_key=public) as push:
        push.set_default(Reply(201, delay=0.3))
        port = free_port()
        accepted = 0
        all_subs: dict[str, object] = {}
        for cycle in range(3):
            subs = {f"c{cycle}-u{i}": push.new_subscription("chrome") for i in range(150)}
            all_subs.update(subs)
            proc = start(tmp_path, port)
            accepted += int(post(port, _signups(subs))["accepted"])  # type: ignore[call-overload]
            time.sleep(1.0)  # some delivered, some on the wire, most queued
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            time.sleep(0.5)  # the answers to the killed requests arrive (and are lost)
        push.set_default(201)
        final = start(tmp_path, port)
        try:
            deadline = time.time() + 40
            while time.time() < deadline and len(_delivery_rows(tmp_path)) < len(all_subs):
                time.sleep(0.2)
        finally:
            final.send_signal(signal.SIGTERM)
            final.wait(timeout=20)
    assert accepted == 2 * len(all_subs) == 900
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == len(all_subs)  # nothing accepted was lost
    rows = _delivery_rows(tmp_path)
    assert len(rows) == len(all_subs) and len({r[0] for r in rows}) == len(rows)  # one record per send
    seen = [json.loads(r.payload)["send_id"] for r in push.requests if r.payload]
    assert len(seen) == len(set(seen))  # no send_id twice at the push service
    interrupted = {send_id for send_id, outcome, reason in rows if outcome == "failed"}
    assert {reason for _, outcome, reason in rows if outcome == "failed"} <= {"interrupted"}
    assert interrupted <= set(seen)  # interrupted only if the push service got it
    assert interrupted  # the kills did hit requests on the wire
    never_interrupted = {send_id for send_id, outcome, _ in rows if outcome == "delivered"}
    assert len(never_interrupted) + len(interrupted) == len(all_subs)
    print(f"kill -9 ×3: {len(all_subs)} sends, {len(interrupted)} interrupted (all seen by the push service), "
          f"{len(seen)} requests, 0 duplicates")


def test_the_log_says_what_happens_without_tracebacks_or_secrets(tmp_path: Path) -> None:
    _project(tmp_path)
    port = free_port()
    proc = start(tmp_path, port)
    try:
        secret = "s3cr3t" * 11_000  # a 64 KB header
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/records", method="POST", data=b"[]",
                                         headers={"Authorization": f"Bearer {secret}"})
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as error:
            assert error.code in (400, 431)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in log and "s3cr3t" not in log
    assert "refused a malformed HTTP request" in log
    assert "reloaded 1 campaigns: welcome" in log


def test_a_key_file_that_is_not_a_key_is_an_error_in_words(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "vapid.pem").write_text("not a key\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pushlang", "serve", "cart.push", "--port", str(free_port())],
                         cwd=tmp_path, env={**os.environ, "PUSHLANG_API_TOKEN": TOKEN}, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 2
    assert "is not a VAPID private key" in run.stderr and "pushlang keys generate" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_9_under_load_never_splits_a_decision_from_its_activity_row(tmp_path: Path) -> None:
    """Decisions and their activity rows commit together: a kill at any moment leaves both or neither."""
    (tmp_path / "cart.push").write_text(HELLO, encoding="utf-8")  # start() serves cart.push
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
