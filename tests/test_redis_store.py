"""The Redis store (one partition) against a real redis-server: committed state is exactly what a new
store on the partition sees, as MemoryStore would; one MULTI/EXEC per commit; and the scenario suite."""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Any

import pytest
from scenario_runner import Scenario, expected, mismatch, run, scenarios
from test_sqlite_store import assert_same, feed, feed_more, random_call

from pushlang.runtime.store import MemoryStore, Timer

redis = pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from pushlang.scaleout.keys import meta_key, partition_of, timer_data_key, timers_key, users_key  # noqa: E402
from pushlang.scaleout.store import RedisStore, open_redis_store  # noqa: E402 (needs the redis package)

SCENARIOS = scenarios()
IDS = [s.name for s in SCENARIOS]


def test_partition_of() -> None:
    assert partition_of("u1") == zlib.crc32(b"u1") % 256
    assert partition_of("u1", 16) == zlib.crc32(b"u1") % 16
    assert {partition_of(f"user-{i}") for i in range(5000)} == set(range(256))
    assert partition_of("x", 1) == 0
    with pytest.raises(ValueError):
        partition_of("x", 0)


def test_committed_state_survives_reopen(client: Any) -> None:
    want = MemoryStore()
    feed(want)
    store = RedisStore(client, 3)
    feed(store)
    assert_same(store, want)
    store.commit()
    store.close()

    reopened = RedisStore(client, 3)
    assert reopened._users == {}  # loaded lazily
    assert_same(reopened, want)
    u1 = reopened.get("u1")
    assert u1 is not None and u1.first_seen == 100
    assert u1.subscriptions["https://push.example/e1"].active is False
    assert u1.profile["address"] == {"city": "Berlin"}
    assert [ts for ts, _ in u1.history["Viewed"]] == [125, 126, 127, 128, 129]
    assert reopened.get("nobody") is None
    assert RedisStore(client, 4).user_ids() == []  # another partition is another key space
    reopened.close()


def test_changes_after_a_reopen_are_kept_too(client: Any) -> None:
    want = MemoryStore()
    feed(want)
    with RedisStore(client, 0) as store:
        feed(store)

    feed_more(want)
    with RedisStore(client, 0) as store:
        feed_more(store)
    with RedisStore(client, 0) as store:
        assert_same(store, want)
    # a client that decodes responses to str reads the same state
    kwargs = client.connection_pool.connection_kwargs
    text_client = redis.Redis(host=kwargs["host"], port=kwargs["port"], decode_responses=True)
    assert_same(RedisStore(text_client, 0), want)
    text_client.close()


def test_uncommitted_changes_are_not_visible(client: Any) -> None:
    writer = RedisStore(client, 0)
    u1 = writer.user("u1", 1)
    writer.add_event(u1, "Viewed", 1, {})
    writer.add_timer(Timer(5, "c", "u1", "c|u1", "at"))
    writer.set_meta("clock", 1)
    writer.commit()

    writer.add_event(u1, "Viewed", 2, {})
    writer.merge_profile(u1, {"country": "IN"})
    writer.user("u2", 2)
    writer.cancel_timer("c|u1")
    writer.add_timer(Timer(9, "c", "u2", "c|u2", "at"))
    writer.set_meta("clock", 2)

    reader = RedisStore(client, 0)  # a second store on the partition while the writer has not committed
    assert reader.user_ids() == ["u1"]
    state = reader.get("u1")
    assert state is not None
    assert state.history == {"Viewed": [(1, {})]} and state.profile == {}
    assert reader.get("u2") is None
    assert [t.key for t in reader.pending_timers()] == ["c|u1"]
    assert reader.meta("clock") == 1
    assert writer.user_ids() == ["u1", "u2"]  # the writer's own view includes what it has not committed
    writer.close()  # close commits

    after = RedisStore(client, 0)
    assert after.user_ids() == ["u1", "u2"]
    assert [t.key for t in after.pending_timers()] == ["c|u2"]
    assert after.meta("clock") == 2
    assert client.zrange("tm:{0}", 0, -1, withscores=True) == [(b"c|u2", 9.0)]


def test_every_key_carries_the_partition_tag(client: Any) -> None:
    from redis.crc import key_slot

    with RedisStore(client, 7) as store:
        feed(store)
    keys = sorted(k.decode() for k in client.keys("*"))
    assert keys == ["meta:{7}", "tm:{7}", "tmd:{7}", "u:{7}"]
    assert sorted([meta_key(7), timers_key(7), timer_data_key(7), users_key(7)]) == keys
    assert len({key_slot(k.encode()) for k in keys}) == 1  # one cluster slot


def test_extra_commands_join_the_transaction(client: Any) -> None:
    """The caller's XACK goes in the same MULTI/EXEC as the state: before commit neither is there."""
    client.xgroup_create("ev:{0}", "workers", id="0", mkstream=True)
    entry = client.xadd("ev:{0}", {"r": b'{"type":"track"}'})
    client.xreadgroup("workers", "w1", {"ev:{0}": ">"})
    assert client.xpending("ev:{0}", "workers")["pending"] == 1

    store = RedisStore(client, 0)
    state = store.user("u1", 1)
    store.add_event(state, "Viewed", 1, {"p": 1})
    store.add_timer(Timer(5, "c", "u1", "c|u1", "at"))
    store.set_meta("clock", 1)
    assert client.keys("*") == [b"ev:{0}"]  # nothing written before commit

    replies: list[Any] = []

    def extra(pipe: Any) -> None:
        pipe.xack("ev:{0}", "workers", entry)
        pipe.set("outbox-mark:{0}", "1")
        replies.append(len(pipe.command_stack))

    store.commit(extra=extra)
    assert replies == [6]  # queued between MULTI and EXEC: users, zadd, timer data, meta, xack, set
    assert client.xpending("ev:{0}", "workers")["pending"] == 0
    assert client.get("outbox-mark:{0}") == b"1"
    assert client.hexists("u:{0}", "u1") and client.zscore("tm:{0}", "c|u1") == 5
    assert not store.dirty

    # extra alone (nothing changed) still runs; no change and no extra sends nothing
    store.commit(extra=lambda pipe: pipe.set("only:{0}", "1"))
    assert client.get("only:{0}") == b"1"
    store.commit()
    store.close()


def test_a_rejected_transaction_applies_nothing_and_is_retried(client: Any) -> None:
    """A command refused when queued (wrong arity) makes EXEC abort: none of the batch is applied,
    the store keeps its pending changes, and the next commit writes them."""
    store = RedisStore(client, 0)
    state = store.user("u1", 1)
    store.add_event(state, "Viewed", 1, {})
    store.add_timer(Timer(5, "c", "u1", "c|u1", "at"))
    store.set_meta("clock", 1)
    with pytest.raises(redis.ResponseError):
        store.commit(extra=lambda pipe: pipe.execute_command("SET", "bad:{0}"))
    assert client.keys("*") == []
    assert store.dirty
    store.commit()
    reader = RedisStore(client, 0)
    assert reader.user_ids() == ["u1"] and reader.meta("clock") == 1
    assert [t.key for t in reader.pending_timers()] == ["c|u1"]


def test_one_round_trip_per_commit(client: Any) -> None:
    """A commit is one MULTI ... EXEC, whatever the number of users changed."""
    store = RedisStore(client, 0)
    for i in range(200):
        state = store.user(f"u{i}", i)
        store.add_event(state, "Viewed", i, {"i": i})
        store.add_timer(Timer(1000 + i, "c", f"u{i}", f"c|u{i}", "at"))
    before = client.info("stats")["total_commands_processed"]
    store.commit()
    after = client.info("stats")["total_commands_processed"]
    # MULTI, HSET users, ZADD, HSET timer data, EXEC, and the second INFO
    assert after - before <= 7
    assert client.hlen("u:{0}") == 200 and client.zcard("tm:{0}") == 200


def test_random_calls_match_memory_store(client: Any) -> None:
    for seed in range(6):
        client.flushall()
        rng = random.Random(seed)
        want = MemoryStore()
        store = RedisStore(client, 1)
        users = [f"u{i}" for i in range(8)]
        clock = 0
        for _ in range(400):
            clock += rng.randint(-3, 10)
            user = rng.choice(users)
            op = rng.randrange(14)
            saved = rng.getstate()
            for target in (want, store):
                rng.setstate(saved)
                random_call(target, rng, op, user, clock)
            roll = rng.random()
            if roll < 0.05:
                store.commit()
            elif roll < 0.08:
                store.close()
                store = RedisStore(client, 1)
        store.close()
        assert_same(RedisStore(client, 1), want)


def test_open_redis_store(server: Any) -> None:
    kwargs = server.connection_pool.connection_kwargs
    store = open_redis_store(f"redis://{kwargs['host']}:{kwargs['port']}/2", 5)
    store.set_meta("clock", 3)
    store.close()
    assert store.client.connection_pool.connection_kwargs["db"] == 2
    other = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=2)
    assert other.hget("meta:{5}", "clock") == b"3"
    other.flushdb()
    other.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_scenario_on_redis(scenario: Scenario, tmp_path: Path, client: Any) -> None:
    """The scenario suite with the Redis store, dropped and recreated halfway through the records."""
    problem = mismatch(run(scenario, tmp_path, lambda: RedisStore(client, 0), split=-1), expected(scenario))
    assert problem is None, f"{scenario.name} (Redis): {scenario.description}\n{problem}"
