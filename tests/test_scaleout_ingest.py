"""Records into scale-out: `pushlang ingest` and `pushlang serve --redis` against real Redis servers.

Exactly once across a connection cut (a TCP proxy between the ingester and Redis that cuts the
connection midway, then lets the retry through), the clock-skew rule on Redis server time, the
browser endpoint with the one-machine service's identity rules, health with Redis down, socket
timeouts against a listener that never answers, the layout check, and a real 3-master Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import USER_TOKEN_SECRET, user_token
from redis_cluster import redis_cluster
from redis_server import redis_server

from pushlang.cli import main
from pushlang.runtime.store import Subscription, UserState
from pushlang.scaleout.connection import connect, is_cluster
from pushlang.scaleout.ingest import StreamIngest
from pushlang.scaleout.keys import partition_of, stream_key, users_key
from pushlang.service.identity import BrowserGuard

TOKEN = "stream-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARTITIONS = 16


class CuttingProxy:
    """A TCP proxy to a Redis that can cut the connection in the middle of a request: once
    ``cut_after(n)`` more bytes went from the clients to Redis, the connection is closed mid-command,
    and every new connection is closed at once until :meth:`heal`."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0  # bytes clients sent to Redis, all connections
        self.cut_at: int | None = None
        self.broken = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cut_after(self, more: int) -> None:
        with self.lock:
            self.cut_at = self.sent + more

    def heal(self) -> None:
        with self.lock:
            self.cut_at, self.broken = None, False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.broken:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if counted:
                    with self.lock:
                        if self.cut_at is not None and self.sent + len(data) >= self.cut_at:
                            data, self.broken = data[:max(0, self.cut_at - self.sent)], True
                        self.sent += len(data)
                    if self.broken:
                        sink.sendall(data)
                        break
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxied(client: Any) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(client.connection_pool.connection_kwargs["port"])
    yield proxy
    proxy.close()


def entries(client: Any, partitions: int = PARTITIONS) -> list[dict[str, Any]]:
    """Every record in the partition streams, each checked to be in its user's partition."""
    found = []
    for p in range(partitions):
        for _, fields in client.xrange(stream_key(p)):
            if b"r" in fields:
                record = json.loads(fields[b"r"])
                assert partition_of(record["user"], partitions) == p
                found.append(record)
    return found


def records(n: int, users: int = 500, start: float | None = None) -> list[dict[str, Any]]:
    start = time.time() - 3600 if start is None else start
    return [{"user": f"user-{i % users}", "ts": start + i / 1000, "name": "Viewed Product",
             "props": {"n": i, "note": "x" * 60}} for i in range(n)]


def served(service: StreamIngest, body: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def run() -> None:
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as http:
            await body(http)

    asyncio.run(run())


# ---- 5. exactly once ---------------------------------------------------------------------------


def test_a_request_cut_midway_and_retried_with_its_key_appends_each_record_once(
        client: Any, proxied: CuttingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    service = StreamIngest(proxied.url, PARTITIONS)
    body = "\n".join(json.dumps(r) for r in records(5000))
    key = {"Idempotency-Key": "batch-2026-12-02-0001", **AUTH}

    async def cut_then_retry(http: TestClient[Any, Any]) -> None:
        proxied.cut_after(len(body) // 2)  # half the request reaches Redis, then the connection is cut
        cut = await http.post("/v1/records", data=body, headers=key)
        assert cut.status == 503 and cut.content_type == "application/json"
        assert "retry with the same Idempotency-Key" in (await cut.json())["error"]
        partial = len(entries(client))
        assert 0 < partial < 5000, partial  # whole partitions went in before the cut
        proxied.heal()
        for _ in range(2):  # the retry, and a retry of the retry
            r = await http.post("/v1/records", data=body, headers=key)
            assert r.status == 200 and (await r.json()) == {"accepted": 5000, "rejected": []}
            got = entries(client)
            assert len(got) == 5000 and sorted(e["props"]["n"] for e in got) == list(range(5000))
        other = await http.post("/v1/records", data=json.dumps(records(1)[0]), headers=key)
        assert other.status == 422 and "use a new key" in (await other.json())["error"]
        assert len(entries(client)) == 5000

    served(service, cut_then_retry)


def test_a_file_ingest_cut_midway_run_again_appends_only_what_is_missing(
        client: Any, proxied: CuttingProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "records.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records(5000)), encoding="utf-8")
    proxied.cut_after(file.stat().st_size // 2)
    assert main(["ingest", str(file), "--to", proxied.url, "--partitions", str(PARTITIONS)]) == 2
    assert "run the same command again" in capsys.readouterr().err
    assert 0 < len(entries(client)) < 5000
    proxied.heal()
    for _ in range(2):
        assert main(["ingest", str(file), "--to", proxied.url, "--partitions", str(PARTITIONS)]) == 0
        got = entries(client)
        assert len(got) == 5000 and sorted(e["props"]["n"] for e in got) == list(range(5000))
    by_user = [e["props"]["n"] for e in got if e["user"] == "user-7"]
    assert by_user == sorted(by_user)  # each user's records in input order


def test_errors_are_json_even_when_a_handler_fails_unexpectedly(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    port = client.connection_pool.connection_kwargs["port"]
    service = StreamIngest(f"redis://127.0.0.1:{port}/0", PARTITIONS)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("pushlang.scaleout.ingest.append", broken)

    async def check(http: TestClient[Any, Any]) -> None:
        r = await http.post("/v1/records", data=json.dumps(records(1)[0]), headers=AUTH)
        assert r.status == 500 and "internal error" in (await r.json())["error"]

    served(service, check)


# ---- 8. clock skew ---------------------------------------------------------------------------


def test_records_far_ahead_of_redis_server_time_are_refused_with_their_line(
        client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    port = client.connection_pool.connection_kwargs["port"]
    url = f"redis://127.0.0.1:{port}/0"
    now = time.time()
    lines = [{"user": "u1", "ts": now - 60, "name": "Added To Cart"},
             {"user": "u2", "ts": now + 12 * 3600, "name": "Added To Cart"},  # a client clock 12 h fast
             {"user": "u3", "ts": now + 120, "name": "Added To Cart"}]  # 2 min fast: counts as now
    file = tmp_path / "records.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    assert main(["ingest", str(file), "--to", url, "--partitions", "4"]) == 1
    err = capsys.readouterr().err
    assert "line 2: `ts` " in err and "is more than 5m ahead of the service's clock" in err
    got = {e["user"]: e["ts"] for e in entries(client, 4)}
    assert set(got) == {"u1", "u3"} and now <= got["u3"] <= time.time() + 1

    # The ingesting machine's clock does not matter: Redis server time does.
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 13 * 3600)
    service = StreamIngest(url, 4)

    async def check(http: TestClient[Any, Any]) -> None:
        r = await http.post("/v1/records", json=lines[1:2], headers=AUTH)
        assert r.status == 400 and "ahead of the service's clock" in (await r.json())["rejected"][0]["reason"]

    served(service, check)

    client.flushall()  # on the records clock, records define time: nothing is ahead of it
    assert main(["ingest", str(file), "--to", url, "--partitions", "4", "--clock", "records"]) == 0
    assert {e["user"]: e["ts"] for e in entries(client, 4)}["u2"] == lines[1]["ts"]


# ---- 11. the browser endpoint, health, timeouts, the layout ------------------------------------


def test_serve_redis_takes_browser_records_under_the_one_machine_rules(
        client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    port = client.connection_pool.connection_kwargs["port"]
    guard = BrowserGuard.from_server({"user_token_secret": USER_TOKEN_SECRET, "browser_burst": 3,
                                      "max_subscriptions_per_user": 2})
    service = StreamIngest(f"redis://127.0.0.1:{port}/0", PARTITIONS, browser=guard)
    # What the workers stored: ann got send s-1 and has two active subscriptions already.
    endpoints = [f"https://push.example.com/ann-{i}" for i in range(2)]
    ann = UserState("ann", 0, sends={"s-1"}, subscriptions={e: Subscription(e, "chrome", 0, e) for e in endpoints})
    client.hset(users_key(partition_of("ann", PARTITIONS)), "ann", msgspec.json.encode(ann))

    def sub(user: str, n: int) -> dict[str, Any]:
        return {"type": "subscribe", "user": user, "ts": "2020-01-01T00:00:00Z", "platform": "chrome",
                "endpoint": f"https://push.example.com/{user}-{n}", "keys": {"p256dh": "BPk", "auth": "a1"}}

    def click(user: str, send_id: str) -> dict[str, Any]:
        return {"user": user, "ts": "2020-01-01T00:00:00Z", "name": "Push Clicked",
                "props": {"send_id": send_id, "campaign": "welcome"}}

    async def check(http: TestClient[Any, Any]) -> None:
        r = await http.post("/v1/browser/records", json=[sub("bob", 1), sub("eve", 1), click("bob", "s-1")],
                            headers=user_token("bob"))
        result = await r.json()
        assert r.status == 200 and result["accepted"] == 1 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert [(x["index"], x["reason"]) for x in result["rejected"]] == [
            (1, "the user token is not valid for user `eve`"), (2, "`Push Clicked` for an unknown send_id")]
        r = await http.post("/v1/browser/records", json=[click("ann", "s-1"), sub("ann", 9)],
                            headers=user_token("ann"))
        result = await r.json()
        assert result["accepted"] == 1 and "as many as a browser may give one user" in result["rejected"][0]["reason"]
        for _ in range(3):
            r = await http.post("/v1/browser/records", json=[sub("bob", 1)], headers=user_token("bob"))
        assert r.status == 429 and "Retry-After" in r.headers
        sdk = await http.get("/sdk/sw.js")
        assert sdk.status == 200 and "javascript" in sdk.headers["Content-Type"]

    before = time.time()
    served(service, check)
    got = entries(client)
    assert sorted((e["user"], e.get("name", e.get("type"))) for e in got) == [
        ("ann", "Push Clicked"), ("bob", "subscribe"), ("bob", "subscribe")]
    assert all(before - 1 <= e["ts"] <= time.time() + 1 for e in got)  # stamped when they arrived


def test_healthz_with_redis_down_is_a_json_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    with redis_server(tmp_path / "redis") as client:
        port = client.connection_pool.connection_kwargs["port"]
        service = StreamIngest(f"redis://127.0.0.1:{port}/0", PARTITIONS)

        async def check(http: TestClient[Any, Any]) -> None:
            assert (await (await http.get("/healthz")).json())["ok"] is True
            client.shutdown(nosave=True)
            r = await http.get("/healthz")
            assert r.status == 503 and r.content_type == "application/json"
            result = await r.json()
            assert result["ok"] is False and result["error"].startswith("Redis: ")
            r = await http.post("/v1/records", data=json.dumps(records(1)[0]), headers=AUTH)
            assert r.status == 503 and "Idempotency-Key" in (await r.json())["error"]

        served(service, check)


def test_a_redis_that_never_answers_fails_ingest_within_the_socket_timeout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    file = tmp_path / "records.jsonl"
    file.write_text(json.dumps(records(1)[0]) + "\n", encoding="utf-8")
    done: list[int] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: done.append(
        main(["ingest", str(file), "--to", f"redis://127.0.0.1:{silent.getsockname()[1]}/0"])), daemon=True)
    thread.start()
    thread.join(timeout=40)
    silent.close()
    assert done == [2], "ingest hung on a half-open connection"
    assert time.monotonic() - started < 30
    assert "no answer from redis://127.0.0.1:" in capsys.readouterr().err


def test_ingest_and_serve_refuse_another_layout(client: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    port = client.connection_pool.connection_kwargs["port"]
    url = f"redis://127.0.0.1:{port}/0"
    file = tmp_path / "records.jsonl"
    file.write_text(json.dumps(records(1)[0]) + "\n", encoding="utf-8")
    assert main(["ingest", str(file), "--to", url, "--partitions", "16"]) == 0
    capsys.readouterr()
    assert main(["ingest", str(file), "--to", url, "--partitions", "8"]) == 2
    assert "pushlang: error: this Redis is laid out with 16 partitions (this process: --partitions 8)" \
        in capsys.readouterr().err
    assert main(["ingest", str(file), "--to", url, "--partitions", "16", "--clock", "records"]) == 2
    assert "laid out with the wall clock" in capsys.readouterr().err
    (tmp_path / "c.push").write_text('campaign c {\n  on "A"\n  message { title "t" body "b" }\n}\n', encoding="utf-8")
    serve = subprocess.run([sys.executable, "-m", "pushlang", "serve", str(tmp_path / "c.push"), "--redis", url,
                            "--partitions", "8", "--port", "0"], capture_output=True, text=True, timeout=60,
                           env={"PUSHLANG_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin",
                                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}, cwd=tmp_path)
    assert serve.returncode == 2, serve.stderr
    assert "pushlang: error: this Redis is laid out with 16 partitions" in serve.stderr


# ---- 6. Redis Cluster ---------------------------------------------------------------------------


def test_ingest_and_serve_redis_work_against_a_redis_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "records.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records(3000)), encoding="utf-8")
    monkeypatch.setenv("PUSHLANG_API_TOKEN", TOKEN)
    with redis_cluster(tmp_path / "cluster") as cluster:
        for _ in range(2):  # the second run finds every chunk done
            assert main(["ingest", str(file), "--to", cluster.url, "--partitions", str(PARTITIONS), "--end"]) == 0
        assert "ingested 3000 records" in capsys.readouterr().err
        client = connect(cluster.url)
        assert is_cluster(client)
        got = entries(client)
        assert len(got) == 3000 and sorted(e["props"]["n"] for e in got) == list(range(3000))
        assert all(client.xlen(stream_key(p)) for p in range(PARTITIONS))
        service = StreamIngest(cluster.url, PARTITIONS, browser=BrowserGuard.from_server(
            {"user_token_secret": USER_TOKEN_SECRET}))
        more = records(400, start=time.time() - 60)
        body = "\n".join(json.dumps({**r, "props": {"n": 10_000 + i}}) for i, r in enumerate(more))

        async def post(http: TestClient[Any, Any]) -> None:
            for _ in range(2):
                r = await http.post("/v1/records", data=body, headers={"Idempotency-Key": "k1", **AUTH})
                assert r.status == 200 and (await r.json())["accepted"] == 400
            sub = {"type": "subscribe", "user": "bob", "ts": 0, "platform": "chrome",
                   "endpoint": "https://push.example.com/bob", "keys": {"p256dh": "BPk", "auth": "a1"}}
            r = await http.post("/v1/browser/records", json=[sub], headers=user_token("bob"))
            assert r.status == 200 and (await r.json())["accepted"] == 1
            assert (await (await http.get("/healthz")).json())["ok"] is True

        served(service, post)
        assert len(entries(client)) == 3401
        client.close()
