"""What the scale-out dispatch tests share: a campaign compiled beside a VAPID key the loopback Web Push
service pins, real send decisions made by the engine, outbox entries put into ``ob:{p}``, dispatch
workers run in threads, and what came out (records in ``out:{p}``, pushes in the push service's log).

Send instants are relative to now: a dispatcher does not push a send older than its ttl."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from peers.webpush_service import Subscription, WebPushService

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.dispatch.dispatcher import DeliverySettings
from pushlang.runtime.engine import Engine, SendJob
from pushlang.runtime.outcomes import Output
from pushlang.runtime.pipeline import encode_queued
from pushlang.runtime.records import decode_record
from pushlang.runtime.store import MemoryStore
from pushlang.scaleout.dispatch import DispatchWorker
from pushlang.scaleout.keys import DISPATCH_GROUP, outbox_key, partition_of

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


def ago(hours: float) -> str:
    """An instant ``hours`` before now, as a record's ``ts`` (whole seconds, UTC)."""
    return (datetime.now(UTC) - timedelta(hours=hours)).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def subscribe_line(user: str, sub: Subscription, ts: str) -> str:
    return json.dumps({"type": "subscribe", "user": user, "ts": ts, "platform": sub.platform,
                       "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})


def cart_line(user: str, ts: str, product: str = "Kettle") -> str:
    return json.dumps({"user": user, "ts": ts, "name": "Added To Cart", "props": {"product_name": product}})


class Setup:
    def __init__(self, tmp: Path, svc: WebPushService, campaign: str = CAMPAIGN, key: Path | None = None,
                 **settings: Any) -> None:
        self.svc = svc
        key = key or tmp / "vapid_private.pem"
        self.settings = DeliverySettings(vapid_key_file=str(key), vapid_subject="mailto:ops@shop.example.com",
                                         **{"max_attempts": 2, "timeout": 5.0, "allow_loopback": True, **settings})
        (tmp / "cart.push").write_text(campaign, encoding="utf-8")
        result = compile_paths([str(tmp / "cart.push")])
        assert result.plan is not None, result.diagnostics
        self.plan: plan.Plan = result.plan

    def jobs(self, users: dict[str, list[Subscription]], carts: int = 1, hours_ago: float = 3.0) -> list[SendJob]:
        """Real send decisions: the engine over subscriptions and cart events, the first cart ``hours_ago``
        hours before now and each next one a minute later."""
        jobs: list[SendJob] = []
        outputs: list[Output] = []
        engine = Engine(self.plan, MemoryStore(), outputs.append, on_send=jobs.append)
        for user, subs in users.items():
            for sub in subs:
                engine.feed(decode_record(subscribe_line(user, sub, ago(hours_ago + 1))))
        for n in range(carts):
            for user in users:
                engine.feed(decode_record(cart_line(user, ago(hours_ago - n / 60), f"Lamp {n}")))
        engine.finish()
        return jobs


def put(client: Any, jobs: list[SendJob]) -> None:
    pipe = client.pipeline(transaction=False)
    for job in jobs:
        pipe.xadd(outbox_key(partition_of(job.user, PARTITIONS)), {"j": encode_queued(job.queued())})
    pipe.execute()


def run(client: Any, setup: Setup, workers: int = 2, idle_exit: float = 1.0, **options: Any) -> list[DispatchWorker]:
    """``workers`` dispatch workers in threads until each found nothing for ``idle_exit`` seconds."""
    made = [DispatchWorker(client, setup.plan, setup.settings, PARTITIONS, f"d{n}", **options)
            for n in range(workers)]
    errors: list[BaseException] = []

    def work(w: DispatchWorker) -> None:
        try:
            w.run(idle_exit=idle_exit)
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


def records(client: Any) -> list[dict[str, Any]]:
    found = []
    for p in range(PARTITIONS):
        for _eid, fields in client.xrange(f"out:{{{p}}}"):
            found.append(msgspec.json.decode(fields[b"o"]))
    return found


def pushed(svc: WebPushService) -> Counter[tuple[str, str]]:
    """(send_id, subscription id) of every accepted push, from the decrypted payloads."""
    return Counter((json.loads(r.payload or b"{}")["send_id"], r.subscription_id)
                   for r in svc.requests if r.accepted)


def arrived(svc: WebPushService) -> Counter[str]:
    """send_id of every request that reached the push service (answered or not yet)."""
    return Counter(json.loads(r.payload or b"{}")["send_id"] for r in svc.requests if r.payload)


def unacked(client: Any) -> int:
    return sum(int(client.xpending(outbox_key(p), DISPATCH_GROUP)["pending"]) for p in range(PARTITIONS))


def eventually(check: Any, timeout: float = 20.0) -> Any:
    """Poll ``check()`` until it is truthy (returned), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result
