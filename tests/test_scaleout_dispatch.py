"""Dispatch workers of the scale-out (issue 7) against a real redis-server and the loopback Web Push
service: outbox entries of real send decisions are delivered once per send_id and subscription by two
workers sharing the consumer group; duplicates are acknowledged without a push; a 410 is recorded;
a dead dispatcher's entries are taken over."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from peers.webpush_service import Subscription, WebPushService

from pushlang.dispatch.keys import generate
from pushlang.runtime.engine import SendJob

pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from dispatch_env import PARTITIONS, Setup, ago, cart_line, pushed, put, records, run, subscribe_line, unacked

from pushlang.runtime.pipeline import decode_queued, encode_queued
from pushlang.scaleout.dispatch import DispatchWorker
from pushlang.scaleout.keys import DISPATCH_GROUP as GROUP
from pushlang.scaleout.keys import outbox_key, partition_of, sent_key


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    public = generate(tmp_path / "vapid_private.pem")
    with WebPushService(application_server_key=public) as svc:
        yield Setup(tmp_path, svc)


def test_two_workers_deliver_every_send_once_and_duplicates_not_again(client: Any, setup: Setup) -> None:
    svc = setup.svc
    users = {f"u{n}": [svc.new_subscription("chrome" if n % 2 else "firefox")] for n in range(30)}
    users["u0"].append(svc.new_subscription("chrome"))
    jobs = setup.jobs(users, carts=2)
    assert len(jobs) == 60
    put(client, jobs)

    workers = run(client, setup, chunk=5)

    expected = Counter((job.send_id, sub.endpoint.rsplit("/", 1)[1]) for job in jobs for sub in job.targets
                       if sub.endpoint)
    assert len(expected) == 62
    assert pushed(svc) == expected  # every push arrived, decrypted, exactly once
    for r in svc.requests:
        body = json.loads(r.payload or b"{}")
        assert body["title"] == "Still thinking?" and body["campaign"] == "cart"
        assert body["actions"] == [{"title": "Buy now", "url": "https://shop.example.com/checkout"}]
        assert r.ttl == 172800
    found = records(client)
    assert sorted((o["send_id"], o["outcome"], o["status"]) for o in found) == \
        sorted((send_id, "delivered", 201) for send_id, _ in expected)
    for o in found:  # in its user's partition
        assert o["user"] and o["send_id"]
    assert unacked(client) == 0
    assert sum(w.stats["sends"] for w in workers) == 60
    assert all(w.stats["sends"] > 0 for w in workers), [w.stats for w in workers]  # they shared the load
    assert all(client.hgetall(sent_key(partition_of(j.user, PARTITIONS), j.send_id)) == {b"by": b"done"} for j in jobs)

    # the same sends again (a partition worker's batch replayed): acknowledged, nothing delivered
    put(client, jobs[:10])
    again = run(client, setup, workers=1)
    assert pushed(svc) == expected
    assert len(records(client)) == len(found)
    assert again[0].stats["duplicates"] == 10 and again[0].stats["sends"] == 0
    assert unacked(client) == 0


def test_a_gone_subscription_is_recorded_failed(client: Any, setup: Setup) -> None:
    svc = setup.svc
    gone, fine = svc.new_subscription("firefox"), svc.new_subscription("chrome")
    svc.script(gone.id, [410])
    jobs = setup.jobs({"ann": [gone, fine]})
    put(client, jobs)
    run(client, setup)
    outcomes = sorted((o["outcome"], o["platforms"], o["status"], o["reason"]) for o in records(client))
    assert outcomes == [("delivered", ["chrome"], 201, None), ("failed", ["firefox"], 410, "subscription_gone")]
    assert unacked(client) == 0


def test_a_dead_dispatchers_entries_are_taken_over(client: Any, setup: Setup) -> None:
    """Only the requests a dead dispatcher had on the wire are `interrupted`; what it had read but not
    sent yet is delivered by the others."""
    svc = setup.svc
    users = {f"v{n}": [svc.new_subscription()] for n in range(6)}
    jobs = setup.jobs(users)
    put(client, jobs)
    # a dispatcher read everything, took the first two sends, had the first one's request on the wire, and died
    DispatchWorker(client, setup.plan, setup.settings, PARTITIONS, "dead")._create_groups()
    ids = {}
    for p in range(PARTITIONS):
        for _stream, entries in client.xreadgroup(GROUP, "dead", {outbox_key(p): ">"}):
            ids.update({decode_queued(fields[b"j"]).send_id: eid.decode() for eid, fields in entries})
    on_the_wire, taken = jobs[0], jobs[1]
    client.hset(sent_key(partition_of(on_the_wire.user, PARTITIONS), on_the_wire.send_id),
                mapping={"by": f"{ids[on_the_wire.send_id]} dead", "0": "1"})
    client.hset(sent_key(partition_of(taken.user, PARTITIONS), taken.send_id),
                mapping={"by": f"{ids[taken.send_id]} dead"})
    # and a dispatcher of an earlier version had marked the third one (its id while delivering) and died
    old = jobs[2]
    client.set(sent_key(partition_of(old.user, PARTITIONS), old.send_id), "old-dispatcher")

    workers = run(client, setup, workers=2, claim_idle_ms=200)

    found = records(client)
    by_send = {o["send_id"]: (o["outcome"], o["reason"]) for o in found}
    assert len(found) == len(jobs)
    assert by_send[on_the_wire.send_id] == by_send[old.send_id] == ("failed", "interrupted")  # never sent twice
    assert all(by_send[j.send_id] == ("delivered", None) for j in jobs if j not in (on_the_wire, old))
    assert sorted(s for s, _ in pushed(svc)) == sorted(j.send_id for j in jobs if j not in (on_the_wire, old))
    assert sum(w.stats["claimed"] for w in workers) == len(jobs)
    assert sum(w.stats["interrupted"] for w in workers) == 2
    assert unacked(client) == 0


def test_the_outbox_entry_round_trips(setup: Setup) -> None:
    svc = setup.svc
    jobs = setup.jobs({"ann": [svc.new_subscription("chrome"), svc.new_subscription("firefox")]})
    assert len(jobs) == 1
    queued = decode_queued(encode_queued(jobs[0].queued()))
    assert SendJob.from_queued(queued, jobs[0].campaign) == jobs[0]
    assert setup.plan.campaign(queued.campaign) is jobs[0].campaign


def test_end_to_end_ingest_partition_workers_and_dispatch_workers(client: Any, setup: Setup) -> None:
    """Records in through the streams, decided by a partition worker, delivered by dispatch workers."""
    from pushlang.runtime.instants import parse_instant
    from pushlang.scaleout.ingest import collect_outputs, end_of_input, ingest
    from pushlang.scaleout.worker import Worker

    subs = {f"u{n}": setup.svc.new_subscription("chrome") for n in range(12)}
    at = ago(3)
    lines = [subscribe_line(u, s, ago(4)) for u, s in subs.items()] + [cart_line(u, at) for u in subs]
    accepted, rejects = ingest(client, lines, PARTITIONS)
    assert (accepted, rejects) == (24, [])
    end_of_input(client, PARTITIONS, parse_instant(at))
    Worker(client, setup.plan, "w0", partitions=PARTITIONS, batch=5).run(idle_exit=0.5)
    run(client, setup)
    outputs = collect_outputs(client, PARTITIONS)
    sends = [o for o in outputs if o["outcome"] == "send"]
    delivered = [o for o in outputs if o["outcome"] == "delivered"]
    assert len(sends) == 12 and sorted(o["send_id"] for o in delivered) == sorted(o["send_id"] for o in sends)
    pushed = Counter(json.loads(p or b"{}")["send_id"] for r in setup.svc.requests if (p := r.payload))
    assert sorted(pushed) == sorted(o["send_id"] for o in sends) and set(pushed.values()) == {1}
    # the consumed input and outbox entries are trimmed (each stream keeps its last delivered entry);
    # the output streams are the operator's to read and keep every record
    for p in range(PARTITIONS):
        assert client.xlen(f"ev:{{{p}}}") <= 1 and client.xlen(outbox_key(p)) <= 1, p
    assert sum(client.xlen(f"out:{{{p}}}") for p in range(PARTITIONS)) == len(outputs) == 24


def test_a_gone_subscription_is_deactivated_in_the_partition_state(client: Any, setup: Setup) -> None:
    """A 410 goes back to the partition as an unsubscribe record: the next send skips that subscription,
    and a user with no other one is `unreachable` instead of being pushed to a dead endpoint again."""
    from pushlang.scaleout.ingest import collect_outputs, ingest
    from pushlang.scaleout.store import RedisStore
    from pushlang.scaleout.worker import Worker

    svc = setup.svc
    gone, fine = svc.new_subscription("firefox"), svc.new_subscription("chrome")
    only = svc.new_subscription("chrome")
    svc.script(gone.id, [410])
    svc.script(only.id, [404])

    t0, t1, t2 = ago(4), ago(3), ago(2)

    def subscribe(user: str, sub: Subscription) -> str:
        return subscribe_line(user, sub, t0)

    first = [subscribe("ann", gone), subscribe("ann", fine), subscribe("bob", only), cart_line("ann", t1),
             cart_line("bob", t1)]
    assert ingest(client, first, PARTITIONS) == (5, [])
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)
    run(client, setup)
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)  # takes in the unsubscribes

    for user, key, active in (("ann", gone.endpoint, False), ("ann", fine.endpoint, True),
                              ("bob", only.endpoint, False)):
        store = RedisStore(client, partition_of(user, PARTITIONS))
        state = store.get(user)
        assert state is not None and state.subscriptions[key].active is active, (user, key)

    assert ingest(client, [cart_line("ann", t2), cart_line("bob", t2)], PARTITIONS) == (2, [])
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)
    run(client, setup)

    outcomes = sorted((o["user"], o["at"], o["outcome"], o["reason"], o["platforms"])
                      for o in collect_outputs(client, PARTITIONS) if o["outcome"] != "send" or o["at"] == t2)
    assert outcomes == [
        ("ann", t1, "delivered", None, ["chrome"]),
        ("ann", t1, "failed", "subscription_gone", ["firefox"]),
        ("ann", t2, "delivered", None, ["chrome"]),
        ("ann", t2, "send", None, ["chrome"]),
        ("bob", t1, "failed", "subscription_gone", ["chrome"]),
        ("bob", t2, "suppress", "unreachable", None),
    ]
    assert [r.status for r in svc.requests_for(gone.id)] == [410]  # never used again
    assert [r.status for r in svc.requests_for(only.id)] == [404]
