"""Partition workers against a real redis-server (issue 14): the wall clock, leases held through long
occurrences, claims of what another consumer name holds, poison records and timers, the bounds of
what the worker writes, blocking reads and one compiled plan per worker."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.runtime.engine import Engine
from pushlang.runtime.instants import US, iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import decode_record
from pushlang.runtime.replay import replay
from pushlang.runtime.store import MemoryStore

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from pushlang.scaleout import keys, worker  # noqa: E402 (after the skip)
from pushlang.scaleout.ingest import collect_outputs, end_of_input, ingest  # noqa: E402
from pushlang.scaleout.keys import partition_of  # noqa: E402

DAY = 86400 * US
T0 = 1_796_112_000 * US  # 2026-12-01T08:00:00Z

CART = """campaign cart {
  platforms chrome
  on "Added To Cart"
  unless "Charged" within %s
  message {
    title "Your cart"
    body "is waiting"
  }
}
"""
DAILY = """campaign daily_tip {
  platforms chrome
  send every day at 09:00
  when {
    start 2026-12-01 00:00
    timezone "UTC"
  }
  message {
    title "Tip of the day"
    body "Save 10% today"
  }
}
"""


def _plan(tmp: Path, text: str) -> plan.Plan:
    (tmp / "c.push").write_text(text, encoding="utf-8")
    result = compile_paths([str(tmp / "c.push")])
    assert result.plan is not None, result.diagnostics
    return result.plan


def _line(user: str, ts: int, name: str | None = None, **extra: Any) -> bytes:
    record: dict[str, Any] = {"user": user, "ts": iso(ts)}
    if name is not None:
        record["name"] = name
    record.update(extra)
    return msgspec.json.encode(record)


def _subscribe(user: str, ts: int) -> bytes:
    return _line(user, ts, type="subscribe", platform="chrome", endpoint=f"https://push.example/{user}",
                 keys={"p256dh": "k", "auth": "a"})


def _server_now(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * US + int(micros)


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"not within {timeout:g}s: {what}")


def _canonical(out: Any) -> str:
    return json.dumps(msgspec.json.decode(msgspec.json.encode(out)), sort_keys=True)


def _replayed(compiled: plan.Plan, lines: list[bytes], until: int | None = None) -> Counter[str]:
    outputs: list[Output] = []
    replay(compiled, lines, MemoryStore(), outputs.append, until=until)
    return Counter(_canonical(o) for o in outputs)


class Running:
    """A Worker in a thread of this process, stopped (and its leases released) at the end."""

    def __init__(self, w: worker.Worker) -> None:
        self.worker, self.stop, self.logs = w, threading.Event(), []
        self.error: BaseException | None = None
        w.log = self.logs.append
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except BaseException as exc:  # shown by the test
            self.error = exc
            raise

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def running() -> Iterator[Callable[[worker.Worker], Running]]:
    started: list[Running] = []

    def start(w: worker.Worker) -> Running:
        started.append(Running(w))
        return started[-1]

    yield start
    for r in started:
        r.close()


def _pending(client: Any, p: int) -> int | None:
    """Entries read and not acknowledged; None before a worker made the group."""
    try:
        return int(client.xpending(keys.stream_key(p), keys.WORKER_GROUP)["pending"])
    except redis.ResponseError:
        return None


# ---- 1. the wall clock ---------------------------------------------------------------------------


def test_wall_clock_an_inaction_timer_fires_on_time_without_another_record(client: Any, tmp_path: Path,
                                                                           running: Any) -> None:
    compiled = _plan(tmp_path, CART % "3s")
    now = _server_now(client)
    ingest(client, [_subscribe("ann", now), _line("ann", now, "Added To Cart")], partitions=1)
    running(worker.Worker(client, compiled, "w", partitions=1, lease_ms=1000, clock="wall"))
    decided = _eventually(lambda: collect_outputs(client, 1), 10, "the cart timer's decision")
    elapsed = (_server_now(client) - now) / US
    assert [(o["campaign"], o["user"], o["outcome"]) for o in decided] == [("cart", "ann", "send")]
    assert decided[0]["at"] == iso(now + 3 * US)  # decided at its due time, on the server's clock
    print(f"\ndue 3 s after the record; decided {elapsed:.2f} s after it")
    assert elapsed < 3 + 2


# ---- 2. leases held through a long occurrence, committed in parts --------------------------------


def test_an_advance_with_a_budget_decides_what_one_without_does(tmp_path: Path) -> None:
    """Engine.advance in parts (continuation timers) gives the outputs and state of one call."""
    compiled = _plan(tmp_path, DAILY + CART % "30m")
    lines = [_subscribe(f"u{n:03d}", T0 + n * US) for n in range(300)]
    lines += [_line(f"u{n:03d}", T0 + 1000 * US + n * US, "Added To Cart") for n in range(0, 300, 7)]
    whole, parts = [], []
    for outputs, budget in ((whole, None), (parts, 13)):
        store = MemoryStore()
        engine = Engine(compiled, store, outputs.append)
        for line in lines:
            engine.feed(decode_record(line))
        calls = 0
        while not engine.advance(T0 + 3 * DAY, inclusive=True, budget=budget):
            calls += 1
        if budget is not None:
            assert calls > 40  # 3 occurrences × 300 users, 13 at a time
        assert not [t for t in store.pending_timers() if "@" in t.key]  # no continuation left
    assert len(whole) == 3 * 300 + 43
    assert parts == whole


def test_a_40k_user_occurrence_commits_in_parts_without_losing_the_lease(client: Any, tmp_path: Path,
                                                                         running: Any) -> None:
    compiled = _plan(tmp_path, DAILY)
    users = 40_000
    lines = [_subscribe(f"u{n:05d}", T0 + n) for n in range(users)]  # 08:00, an hour before the occurrence
    ingest(client, lines, partitions=1)
    end_of_input(client, 1, T0 + 3600 * US + 1)  # just after 09:00
    w = worker.Worker(client, compiled, "w", partitions=1, lease_ms=1000, batch=500, clock="records",
                      keep_outputs=2 * users)
    started = time.monotonic()
    r = running(w)
    _eventually(lambda: client.xlen(keys.out_key(0)) >= users and _pending(client, 0) == 0, 120,
                "the occurrence's 40k decisions")
    elapsed = time.monotonic() - started
    lost = [line for line in r.logs if "lost" in line or "expired" in line]
    print(f"\n40k users: subscribed and the occurrence decided in {elapsed:.1f}s, {w.stats['batches']} commits, "
          f"leases taken {w.stats['taken']}, lost {len(lost)}")
    assert not lost and w.stats["taken"] == 1
    sends = [o for o in collect_outputs(client, 1) if o["campaign"] == "daily_tip" and o["outcome"] == "send"]
    assert len(sends) == users and len({o["user"] for o in sends}) == users
    assert w.stats["batches"] >= users // worker.CHUNK  # the occurrence in parts, each its own commit


# ---- 3. what a stalled old owner read is claimed and applied in order ----------------------------


def test_entries_a_stalled_old_owner_read_after_the_takeover_are_claimed_in_order(client: Any,
                                                                                  tmp_path: Path) -> None:
    compiled = _plan(tmp_path, CART % "10m")
    first = [_subscribe("ann", T0), _line("ann", T0 + 60 * US, "Added To Cart"),
             _subscribe("bob", T0 + 61 * US), _line("bob", T0 + 62 * US, "Added To Cart")]
    later = [_line("ann", T0 + 120 * US, "Charged"), _line("bob", T0 + 20 * 60 * US, "Charged")]
    ingest(client, first, partitions=1)
    owner = worker.Worker(client, compiled, "new-owner", partitions=1, lease_ms=5000, clock="records")
    owner.balance()  # takes the partition (its group, claims: nothing pending yet)
    assert list(owner.owned) == [0]
    # the old owner, stalled past its lease, wakes up and reads what came since before it notices
    stale: Any = client.xreadgroup(keys.WORKER_GROUP, "old-owner", {keys.stream_key(0): ">"})
    assert len(stale[0][1]) == 4
    ingest(client, later, partitions=1)
    end_of_input(client, 1, T0 + DAY)
    owner.run(idle_exit=0.5)
    assert _pending(client, 0) == 0
    got = Counter(_canonical(o) for o in collect_outputs(client, 1))
    assert got == _replayed(compiled, first + later, T0 + DAY)
    assert sum(1 for o in got if '"send"' in o) == 1  # bob's cart; ann's cancelled by her later purchase
    consumers = [c["name"] for c in client.xinfo_consumers(keys.stream_key(0), keys.WORKER_GROUP)]
    assert consumers == [b"new-owner"]  # the old name, holding nothing any more, is gone (item 7)


# ---- 7. bounds ---------------------------------------------------------------------------------


def test_out_is_trimmed_to_its_bound_and_dead_consumer_names_are_removed(client: Any, tmp_path: Path) -> None:
    compiled = _plan(tmp_path, CART % "10m")
    stream = keys.stream_key(0)
    client.xgroup_create(stream, keys.WORKER_GROUP, id="0", mkstream=True)
    for name in ("restarted-1", "restarted-2", "restarted-3"):  # names of workers long gone, holding nothing
        client.xgroup_createconsumer(stream, keys.WORKER_GROUP, name)
    lines = [_subscribe(f"u{n:04d}", T0 + n * US) for n in range(600)]
    lines += [_line(f"u{n:04d}", T0 + 1000 * US + n * US, "Added To Cart") for n in range(600)]
    ingest(client, lines, partitions=1)
    end_of_input(client, 1, T0 + DAY)
    w = worker.Worker(client, compiled, "w", partitions=1, batch=100, clock="records", keep_outputs=100)
    w.run(idle_exit=0.5)
    assert w.stats["records"] == 1200
    kept = client.xlen(keys.out_key(0))
    print(f"\n600 decisions, --keep-outputs 100: out:{{0}} holds {kept}")
    assert 100 <= kept < 300  # MAXLEN ~ trims whole nodes (100 entries each)
    latest = msgspec.json.decode(client.xrevrange(keys.out_key(0), count=1)[0][1][b"o"])
    assert latest["user"] == "u0599"  # the newest kept, the oldest gone
    assert [c["name"] for c in client.xinfo_consumers(stream, keys.WORKER_GROUP)] == [b"w"]


# ---- 8. a record far ahead of the server's clock ------------------------------------------------


def test_a_record_12h_ahead_is_dead_lettered_and_fires_no_other_users_timer(client: Any, tmp_path: Path,
                                                                            running: Any,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = _plan(tmp_path, CART % "1h")
    now = _server_now(client)
    monkeypatch.setattr(worker, "DEAD_LETTERS_KEPT", 10)
    ahead = [_line(f"liar{n}", now + 12 * 3600 * US, "Viewed Product") for n in range(300)]
    ingest(client, [_subscribe("ann", now), _line("ann", now, "Added To Cart"), *ahead], partitions=1)
    w = worker.Worker(client, compiled, "w", partitions=1, clock="wall")
    running(w)
    _eventually(lambda: _pending(client, 0) == 0 and w.stats["records"] == 2, 15, "every entry handled")
    assert collect_outputs(client, 1) == []  # ann's cart timer (due in an hour) has not fired
    timers = client.zrange(keys.timers_key(0), 0, -1, withscores=True)
    cart = decode_record(_line("ann", now, "Added To Cart")).ts
    assert [(k, int(s)) for k, s in timers] == [(b"inaction:cart:ann", cart + 3600 * US)]
    letters = client.xrange(keys.dead_key(0))
    assert w.stats["dead_letters"] == 300
    assert 10 <= len(letters) < 150  # dl:{p} capped (MAXLEN ~)
    assert {e[b"reason"] for _, e in letters} == {b"clock_skew"}
    assert letters[-1][1][b"r"] == ahead[-1]


# ---- 9. poison ---------------------------------------------------------------------------------


def test_a_timer_that_raises_is_isolated_and_later_records_are_applied(client: Any, tmp_path: Path) -> None:
    compiled = _plan(tmp_path, CART % "10m")
    # a timer the engine can not fire (its trigger is missing from the payload): stored state gone bad
    bad = msgspec.json.encode({"due": T0 + 30 * US, "campaign": "cart", "user": "zed", "key": "inaction:cart:zed",
                               "kind": "inaction", "payload": {}})
    client.zadd(keys.timers_key(0), {"inaction:cart:zed": T0 + 30 * US})
    client.hset(keys.timer_data_key(0), "inaction:cart:zed", bad)
    lines = [_subscribe("ann", T0), _line("ann", T0 + 60 * US, "Added To Cart"),
             _subscribe("bob", T0 + 61 * US), _line("bob", T0 + 62 * US, "Added To Cart"),
             _line("bob", T0 + 63 * US, "Charged")]
    ingest(client, lines, partitions=1)
    end_of_input(client, 1, T0 + DAY)
    w = worker.Worker(client, compiled, "w", partitions=1, clock="records")
    w.run(idle_exit=0.5)
    letters = client.xrange(keys.dead_key(0))
    assert [(e[b"reason"], e[b"timer"]) for _, e in letters] == [(b"timer", b"inaction:cart:zed")]
    assert b"KeyError" in letters[0][1][b"error"]
    assert w.stats["records"] == len(lines) and _pending(client, 0) == 0
    assert Counter(_canonical(o) for o in collect_outputs(client, 1)) == _replayed(compiled, lines, T0 + DAY)


def test_an_entry_its_readers_never_committed_is_dead_lettered_unapplied(client: Any, tmp_path: Path) -> None:
    """What workers that died while applying an entry leave: its delivery count. Three readers took the
    batch in turn and stopped; the third read only the entry it died on. The fourth reading is refused."""
    compiled = _plan(tmp_path, CART % "10m")
    lines = [_subscribe(f"u{n}", T0 + n * US) for n in range(10)]
    ingest(client, lines, partitions=1)
    stream = keys.stream_key(0)
    client.xgroup_create(stream, keys.WORKER_GROUP, id="0")
    ids = [eid for eid, _ in client.xreadgroup(keys.WORKER_GROUP, "dead-1", {stream: ">"})[0][1]]
    client.xclaim(stream, keys.WORKER_GROUP, "dead-2", 0, ids)  # took the batch, committed 4, died on the 5th
    client.xack(stream, keys.WORKER_GROUP, *ids[:4])
    client.xclaim(stream, keys.WORKER_GROUP, "dead-3", 0, ids[4:5])  # the 5th alone: died again
    w = worker.Worker(client, compiled, "w", partitions=1, clock="records")
    w.run(idle_exit=0.5)
    letters = client.xrange(keys.dead_key(0))
    assert [(e[b"id"], e[b"reason"]) for _, e in letters] == [(ids[4], b"delivered")]
    assert letters[0][1][b"r"] == lines[4]
    assert w.stats["records"] == 5  # the five after it, each delivered twice: applied one per commit
    assert _pending(client, 0) == 0
    state = client.hgetall(keys.users_key(0))
    assert sorted(state) == [f"u{n}".encode() for n in range(5, 10)]  # the first 4 were 'committed' by dead-2


def test_an_error_loading_one_partition_drops_it_not_the_worker(client: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                running: Any) -> None:
    compiled = _plan(tmp_path, CART % "10m")
    monkeypatch.setattr(worker, "RETAKE_AFTER", 0.5)
    users = {p: next(f"u{n}" for n in range(1000) if partition_of(f"u{n}", 2) == p) for p in (0, 1)}
    client.hset(keys.timer_data_key(0), "broken", b"{not json")  # partition 0's state can not be read
    ingest(client, [_subscribe(users[p], T0) for p in (0, 1)], partitions=2)
    w = worker.Worker(client, compiled, "w", partitions=2, clock="records")
    r = running(w)
    _eventually(lambda: client.hexists(keys.users_key(1), users[1]), 10, "partition 1 processed")
    assert r.thread.is_alive() and r.error is None
    assert any("partition 0: loading failed" in line for line in r.logs), r.logs
    client.hdel(keys.timer_data_key(0), "broken")  # repaired: taken again, processed
    _eventually(lambda: client.hexists(keys.users_key(0), users[0]), 10, "partition 0 processed after the repair")
    assert r.thread.is_alive() and r.error is None


# ---- 10. cost ----------------------------------------------------------------------------------


def test_idle_workers_wait_in_redis(client: Any, tmp_path: Path, running: Any) -> None:
    compiled = _plan(tmp_path, CART % "10m")
    workers = [worker.Worker(client, compiled, f"w{i}", partitions=16, lease_ms=1000, clock="wall") for i in range(3)]
    for w in workers:
        running(w)
    _eventually(lambda: all(client.get(keys.lease_key(p)) for p in range(16)), 10, "every partition owned")
    time.sleep(1.5)  # the shares settle

    def reads() -> int:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))

    before, started = reads(), time.monotonic()
    time.sleep(3)
    rate = (reads() - before) / (time.monotonic() - started)
    print(f"\n3 idle workers over 16 partitions: {rate:.1f} XREADGROUP/s")
    assert rate < 3 * 6  # a blocking read and a tick read per TICK, at most, each
    ann = _server_now(client)
    ingest(client, [_subscribe("ann", ann), _line("ann", ann, "Added To Cart")], partitions=16)
    _eventually(lambda: client.hexists(keys.users_key(partition_of("ann", 16)), "ann"), 5,
                "a record reaches its worker while it waits")


def test_256_partitions_of_100_campaigns_are_taken_in_well_under_2s(client: Any, tmp_path: Path,
                                                                    running: Any) -> None:
    from test_scaleout import _bench

    compiled = _plan(tmp_path, _bench().campaigns_text())
    assert len(compiled.campaigns) == 100
    started = time.monotonic()
    w = worker.Worker(client, compiled, "w", partitions=256, clock="wall")
    running(w)
    _eventually(lambda: len(w.owned) == 256, 30, "256 partitions taken")
    elapsed = time.monotonic() - started
    print(f"\n256 partitions × 100 campaigns: all taken in {elapsed:.2f}s")
    assert elapsed < 2


def test_an_outbox_nobody_reads_keeps_only_what_can_still_be_delivered(client: Any, tmp_path: Path) -> None:
    """ob:{p} before any dispatcher exists: an entry written longer ago than the plan's longest ttl (and
    a day) can only be expired, so each XADD drops it (MINID); what is younger stays."""
    compiled = _plan(tmp_path, CART % "10m")
    outbox = keys.outbox_key(0)
    now_ms = int(time.time() * 1000)
    horizon_ms = (compiled.settings.default_ttl + worker.OUTBOX_GRACE) * 1000
    for n in range(150, 0, -1):
        client.xadd(outbox, {"j": b"stale"}, id=f"{now_ms - horizon_ms - 3_600_000 - n}-0")
    fresh = client.xadd(outbox, {"j": b"fresh"}, id=f"{now_ms - horizon_ms + 3_600_000}-0")
    lines = [_subscribe("ann", T0), _line("ann", T0 + US, "Added To Cart")]
    ingest(client, lines, partitions=1)
    end_of_input(client, 1, T0 + DAY)
    worker.Worker(client, compiled, "w", partitions=1, clock="records").run(idle_exit=0.5)
    left = [eid for eid, _ in client.xrange(outbox)]
    print(f"\n150 stale + 1 fresh outbox entries, then one send: {len(left)} left")
    assert len(left) == 2 and left[0] == fresh  # the fresh one and the new send
