"""Dispatch workers of the scale-out (issue 7) against a real redis-server and the loopback Web Push
service: outbox entries of real send decisions are delivered once per send_id and subscription by two
workers sharing the consumer group; duplicates are acknowledged without a push; a 410 is recorded;
a dead dispatcher's entries are taken over."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from peers.webpush_service import Subscription, WebPushService

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.dispatch.dispatcher import DeliverySettings
from pushlang.dispatch.keys import generate
from pushlang.runtime.engine import Engine, Output, SendJob
from pushlang.runtime.records import decode_record
from pushlang.runtime.store import MemoryStore

pytest.importorskip("redis", reason="the redis package is not installed (pip install 'redis>=5')")

from pushlang.runtime.pipeline import decode_queued, encode_queued
from pushlang.scaleout.dispatch import DispatchWorker
from pushlang.scaleout.keys import DISPATCH_GROUP as GROUP
from pushlang.scaleout.keys import outbox_key, partition_of, sent_key

PARTITIONS = 4
CAMPAIGN = '''campaign cart {
  platforms chrome, firefox
  on "Added To Cart"
  message {
    title "Still thinking?"
    body "Your @event.product_name is waiting"
    url "https://shop.example.com/cart"
    ttl 2d
    button "Buy now" -> "https://shop.example.com/checkout"
  }
}
'''


class Setup:
    def __init__(self, tmp: Path, svc: WebPushService) -> None:
        self.svc = svc
        key = tmp / "vapid_private.pem"
        self.settings = DeliverySettings(vapid_key_file=str(key), vapid_subject="mailto:ops@shop.example.com",
                                         max_attempts=2, timeout=5.0, allow_loopback=True)
        (tmp / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
        result = compile_paths([str(tmp / "cart.push")])
        assert result.plan is not None, result.diagnostics
        self.plan: plan.Plan = result.plan

    def jobs(self, users: dict[str, list[Subscription]], carts: int = 1) -> list[SendJob]:
        """Real send decisions: the engine over subscriptions and cart events."""
        jobs: list[SendJob] = []
        outputs: list[Output] = []
        engine = Engine(self.plan, MemoryStore(), outputs.append, on_send=jobs.append)
        for user, subs in users.items():
            for sub in subs:
                engine.feed(decode_record(json.dumps({
                    "type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": sub.platform,
                    "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})))
        for n in range(carts):
            for user in users:
                engine.feed(decode_record(json.dumps({
                    "user": user, "ts": f"2026-12-01T{9 + n:02d}:05:00Z", "name": "Added To Cart",
                    "props": {"product_name": f"Lamp {n}"}})))
        engine.finish()
        return jobs


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    public = generate(tmp_path / "vapid_private.pem")
    with WebPushService(application_server_key=public) as svc:
        yield Setup(tmp_path, svc)


def _put(client: Any, jobs: list[SendJob]) -> None:
    for job in jobs:
        client.xadd(outbox_key(partition_of(job.user, PARTITIONS)), {"j": encode_queued(job.queued())})


def _run(client: Any, setup: Setup, workers: int = 2, **options: Any) -> list[DispatchWorker]:
    made = [DispatchWorker(client, setup.plan, setup.settings, PARTITIONS, f"d{n}", **options)
            for n in range(workers)]
    errors: list[BaseException] = []

    def work(w: DispatchWorker) -> None:
        try:
            w.run(idle_exit=1.0)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert not errors, errors
    return made


def _records(client: Any) -> list[dict[str, Any]]:
    found = []
    for p in range(PARTITIONS):
        for _eid, fields in client.xrange(f"out:{{{p}}}"):
            found.append(msgspec.json.decode(fields[b"o"]))
    return found


def _pushed(svc: WebPushService) -> Counter[tuple[str, str]]:
    """(send_id, subscription id) of every accepted push, from the decrypted payloads."""
    return Counter((json.loads(r.payload or b"{}")["send_id"], r.subscription_id)
                   for r in svc.requests if r.accepted)


def _unacked(client: Any) -> int:
    return sum(int(client.xpending(outbox_key(p), GROUP)["pending"]) for p in range(PARTITIONS))


def test_two_workers_deliver_every_send_once_and_duplicates_not_again(client: Any, setup: Setup) -> None:
    svc = setup.svc
    users = {f"u{n}": [svc.new_subscription("chrome" if n % 2 else "firefox")] for n in range(30)}
    users["u0"].append(svc.new_subscription("chrome"))
    jobs = setup.jobs(users, carts=2)
    assert len(jobs) == 60
    _put(client, jobs)

    workers = _run(client, setup, batch=5)

    expected = Counter((job.send_id, sub.endpoint.rsplit("/", 1)[1]) for job in jobs for sub in job.targets
                       if sub.endpoint)
    assert len(expected) == 62
    assert _pushed(svc) == expected  # every push arrived, decrypted, exactly once
    for r in svc.requests:
        body = json.loads(r.payload or b"{}")
        assert body["title"] == "Still thinking?" and body["campaign"] == "cart"
        assert body["actions"] == [{"title": "Buy now", "url": "https://shop.example.com/checkout"}]
        assert r.ttl == 172800
    records = _records(client)
    assert sorted((o["send_id"], o["outcome"], o["status"]) for o in records) == \
        sorted((send_id, "delivered", 201) for send_id, _ in expected)
    for o in records:  # in its user's partition
        assert o["user"] and o["send_id"]
    assert _unacked(client) == 0
    assert sum(w.stats["sends"] for w in workers) == 60
    assert all(w.stats["sends"] > 0 for w in workers), [w.stats for w in workers]  # they shared the load
    assert all(client.get(sent_key(partition_of(j.user, PARTITIONS), j.send_id)) == b"done" for j in jobs)

    # the same sends again (a partition worker's batch replayed): acknowledged, nothing delivered
    _put(client, jobs[:10])
    again = _run(client, setup, workers=1)
    assert _pushed(svc) == expected
    assert len(_records(client)) == len(records)
    assert again[0].stats["duplicates"] == 10 and again[0].stats["sends"] == 0
    assert _unacked(client) == 0


def test_a_gone_subscription_is_recorded_failed(client: Any, setup: Setup) -> None:
    svc = setup.svc
    gone, fine = svc.new_subscription("firefox"), svc.new_subscription("chrome")
    svc.script(gone.id, [410])
    jobs = setup.jobs({"ann": [gone, fine]})
    _put(client, jobs)
    _run(client, setup)
    outcomes = sorted((o["outcome"], o["platforms"], o["status"], o["reason"]) for o in _records(client))
    assert outcomes == [("delivered", ["chrome"], 201, None), ("failed", ["firefox"], 410, "subscription_gone")]
    assert _unacked(client) == 0


def test_a_dead_dispatchers_entries_are_taken_over(client: Any, setup: Setup) -> None:
    svc = setup.svc
    users = {f"v{n}": [svc.new_subscription()] for n in range(6)}
    jobs = setup.jobs(users)
    _put(client, jobs)
    # a dispatcher read everything, took the marker of the first send (it was delivering it), and died
    DispatchWorker(client, setup.plan, setup.settings, PARTITIONS, "dead")._create_groups()
    for p in range(PARTITIONS):
        client.xreadgroup(GROUP, "dead", {outbox_key(p): ">"})
    first = jobs[0]
    client.set(sent_key(partition_of(first.user, PARTITIONS), first.send_id), "dead")

    _run(client, setup, workers=2, claim_idle_ms=200)

    records = _records(client)
    by_send = {o["send_id"]: (o["outcome"], o["reason"]) for o in records}
    assert len(records) == len(jobs)
    assert by_send[first.send_id] == ("failed", "interrupted")  # maybe sent: never sent twice
    assert all(by_send[j.send_id] == ("delivered", None) for j in jobs[1:])
    assert sorted(s for s, _ in _pushed(svc)) == sorted(j.send_id for j in jobs[1:])
    assert _unacked(client) == 0


def test_the_outbox_entry_round_trips(setup: Setup) -> None:
    svc = setup.svc
    jobs = setup.jobs({"ann": [svc.new_subscription("chrome"), svc.new_subscription("firefox")]})
    assert len(jobs) == 1
    queued = decode_queued(encode_queued(jobs[0].queued()))
    assert SendJob.from_queued(queued, jobs[0].campaign) == jobs[0]
    assert setup.plan.campaign(queued.campaign) is jobs[0].campaign


def test_end_to_end_ingest_partition_workers_and_dispatch_workers(client: Any, setup: Setup) -> None:
    """Records in through the streams, decided by a partition worker, delivered by dispatch workers."""
    from pushlang.scaleout.ingest import collect_outputs, end_of_input, ingest
    from pushlang.scaleout.worker import Worker

    subs = {f"u{n}": setup.svc.new_subscription("chrome") for n in range(12)}
    lines = [json.dumps({"type": "subscribe", "user": u, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                         "endpoint": s.endpoint, "keys": {"p256dh": s.p256dh, "auth": s.auth}}) for u, s in subs.items()]
    lines += [json.dumps({"user": u, "ts": "2026-12-01T09:00:00Z", "name": "Added To Cart",
                          "props": {"product_name": "Kettle"}}) for u in subs]
    accepted, rejects = ingest(client, lines, PARTITIONS)
    assert (accepted, rejects) == (24, [])
    end_of_input(client, PARTITIONS, 1796115600 * 1_000_000)  # 2026-12-01T09:00:00Z
    Worker(client, setup.plan, "w0", partitions=PARTITIONS, batch=5).run(idle_exit=0.5)
    _run(client, setup)
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

    def subscribe(user: str, sub: Subscription) -> str:
        return json.dumps({"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": sub.platform,
                           "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})

    def cart(user: str, hour: int) -> str:
        return json.dumps({"user": user, "ts": f"2026-12-01T{hour:02d}:00:00Z", "name": "Added To Cart",
                           "props": {"product_name": "Kettle"}})

    first = [subscribe("ann", gone), subscribe("ann", fine), subscribe("bob", only), cart("ann", 9), cart("bob", 9)]
    assert ingest(client, first, PARTITIONS) == (5, [])
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)
    _run(client, setup)
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)  # takes in the unsubscribes

    for user, key, active in (("ann", gone.endpoint, False), ("ann", fine.endpoint, True),
                              ("bob", only.endpoint, False)):
        store = RedisStore(client, partition_of(user, PARTITIONS))
        state = store.get(user)
        assert state is not None and state.subscriptions[key].active is active, (user, key)

    assert ingest(client, [cart("ann", 10), cart("bob", 10)], PARTITIONS) == (2, [])
    Worker(client, setup.plan, "w0", partitions=PARTITIONS).run(idle_exit=0.5)
    _run(client, setup)

    outcomes = sorted((o["user"], o["at"][11:16], o["outcome"], o["reason"], o["platforms"])
                      for o in collect_outputs(client, PARTITIONS) if o["outcome"] != "send" or o["at"] > "2026-12-01T09:30")
    assert outcomes == [
        ("ann", "09:00", "delivered", None, ["chrome"]),
        ("ann", "09:00", "failed", "subscription_gone", ["firefox"]),
        ("ann", "10:00", "delivered", None, ["chrome"]),
        ("ann", "10:00", "send", None, ["chrome"]),
        ("bob", "09:00", "failed", "subscription_gone", ["chrome"]),
        ("bob", "10:00", "suppress", "unreachable", None),
    ]
    assert [r.status for r in svc.requests_for(gone.id)] == [410]  # never used again
    assert [r.status for r in svc.requests_for(only.id)] == [404]
