"""Dispatch workers (``pushlang dispatch``): the partitions' outboxes delivered, each send_id once.

Keys (the hash tag ``{p}`` keeps them in the partition's slot):

- ``ob:{p}``              outbox stream: field ``j`` = a :class:`~pushlang.runtime.pipeline.QueuedSend`, XADDed by
  the partition worker in the same MULTI/EXEC as the batch that decided the send;
- ``sent:{p}:<send_id>``  the de-duplication marker: the dispatch worker's id while it delivers, ``done``
  once the delivery records are written (7 days);
- ``out:{p}``             the ``delivered`` / ``failed`` records (field ``o``, msgspec-JSON :class:`Output`);
- ``dl:{p}``              an outbox entry that can not be decoded (``j``, ``id``, ``error``, ``worker``).

Every dispatch worker reads the consumer group ``dispatch`` of every ``ob:{p}``, so several share the
load. Per entry: ``SET sent:{p}:<send_id> <worker> NX EX 604800`` BEFORE delivering — an entry whose
marker exists is acknowledged without sending (a duplicate: at most once) —, then delivery through the
:class:`Dispatcher`, then the records XADDed to ``out:{p}``, the marker set to ``done`` and the XACK in
one MULTI/EXEC that WATCHes the markers.

Entries pending for more than ``claim_idle_ms`` (30 s) at another consumer — a dead dispatcher — are
taken over with XAUTOCLAIM. If such an entry's marker is ``done`` it is only acknowledged; if it still
names a dispatcher, that one died (or stalled) between the marker and the records: the push may or may
not have gone out, so it is recorded ``failed`` / ``interrupted`` (as the service does after a crash),
never sent again. A stalled dispatcher that finishes later finds the marker no longer its own and
writes nothing, so each send_id ends with one outcome.

The dispatch worker needs no user state: the outbox entry carries the target subscriptions in full.
A ``subscription_gone`` answer (404/410, APNs Unregistered) is recorded, and an ``unsubscribe`` record
for that subscription goes into the partition's input stream ``ev:{p}`` in the same MULTI/EXEC: the
partition worker, which owns the state, deactivates it like any unsubscribe, so later sends skip it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import aio, plan
from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher, delivery_record
from pushlang.runtime.engine import Output, SendJob
from pushlang.runtime.instants import iso, to_datetime
from pushlang.runtime.pipeline import QueuedSend, decode_queued
from pushlang.runtime.store import Subscription
from pushlang.scaleout.keys import (
    DISPATCH_GROUP,
    consumer_id,
    dead_key,
    out_key,
    outbox_key,
    partition_count,
    partition_of_key,
    sent_key,
    stream_key,
)
from pushlang.scaleout.streams import Trimmer, field_of, text_of

if TYPE_CHECKING:
    import redis

SENT_TTL = 604800  # seconds a send_id is remembered: 7 days
DONE = "done"

_encode = msgspec.json.Encoder().encode


def unsubscribe_line(job: SendJob, sub: Subscription) -> bytes:
    """The input record that deactivates a subscription the push service said is gone, at the
    send's instant (SPEC §9.1 ``unsubscribe``)."""
    record: dict[str, Any] = {"type": "unsubscribe", "user": job.user, "ts": to_datetime(job.at).isoformat()}
    if sub.device_token:
        record["device_token"] = sub.device_token
    else:
        record["endpoint"] = sub.endpoint
    return _encode(record)


class _Item:
    """One outbox entry being handled."""

    __slots__ = ("eid", "job", "marker", "p", "queued", "reclaimed")

    def __init__(self, p: int, eid: Any, queued: QueuedSend, job: SendJob | None, reclaimed: bool) -> None:
        self.p, self.eid, self.queued, self.job, self.reclaimed = p, eid, queued, job, reclaimed
        self.marker = sent_key(p, queued.send_id)


class DispatchWorker:
    """Consumes every ``ob:{p}`` through the group ``dispatch`` and delivers (module docstring)."""

    def __init__(self, client: redis.Redis, compiled: plan.Plan, settings: DeliverySettings, partitions: int,
                 worker_id: str | None = None, *, batch: int = 200, claim_idle_ms: int = 30000,
                 block_ms: int = 100, log: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.plan = compiled
        self.settings = settings
        self.partitions = partition_count(partitions)
        self.id = consumer_id(worker_id)
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.log = log or (lambda _message: None)
        self.halts: list[str] = []
        self.stats = {"entries": 0, "sends": 0, "delivered": 0, "failed": 0, "duplicates": 0,
                      "interrupted": 0, "claimed": 0, "dead_letters": 0}
        self._next_claim = 0.0
        self._own_backlog = True
        self._trimmer = Trimmer(client, DISPATCH_GROUP)

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, idle_exit: float | None = None) -> None:
        """Deliver until ``stop`` is set, or until nothing came for ``idle_exit`` seconds."""
        from redis.exceptions import RedisError

        loop = aio.new_event_loop()
        dispatcher = Dispatcher(self.settings, self.plan.settings.default_ttl, on_halt=self._halt)
        loop.run_until_complete(dispatcher.__aenter__())
        try:
            self._create_groups()
            last_work = time.monotonic()
            while stop is None or not stop.is_set():
                try:
                    worked = self.step(loop, dispatcher)
                except RedisError as exc:
                    if idle_exit is not None and time.monotonic() - last_work >= idle_exit:
                        raise  # no Redis for longer than the worker waits for work: said, not retried forever
                    self.log(f"{self.id}: redis error ({exc!r}); retrying")
                    time.sleep(0.5)
                    continue
                now = time.monotonic()
                if worked:
                    last_work = now
                elif idle_exit is not None and now - last_work >= idle_exit:
                    return
        finally:
            loop.run_until_complete(dispatcher.__aexit__(None, None, None))
            loop.close()

    def _halt(self, message: str) -> None:
        self.halts.append(message)
        self.log(f"{self.id}: delivery halted: {message}")

    def _create_groups(self) -> None:
        from redis.exceptions import ResponseError

        for p in range(self.partitions):
            try:
                self.client.xgroup_create(outbox_key(p), DISPATCH_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def step(self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher) -> bool:
        """One round: reclaimed and own pending entries first, then new ones. True if any came."""
        entries: list[tuple[int, Any, Any, bool]] = []  # (p, id, fields, reclaimed)
        if self._own_backlog:  # this id's entries from an earlier life
            for p in range(self.partitions):
                reply: Any = self.client.xreadgroup(DISPATCH_GROUP, self.id, {outbox_key(p): "0"}, count=self.batch)
                entries += [(p, eid, fields, True) for eid, fields in (reply[0][1] if reply else [])]
            self._own_backlog = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + max(0.05, self.claim_idle_ms / 3000)
            entries += self._autoclaim()
        if not entries:
            streams = {outbox_key(p): ">" for p in range(self.partitions)}
            reply = self.client.xreadgroup(DISPATCH_GROUP, self.id, streams, count=self.batch, block=self.block_ms)  # type: ignore[arg-type]
            for stream, found in reply or []:
                p = partition_of_key(text_of(stream) or "")
                entries += [(p, eid, fields, False) for eid, fields in found]
        self._trimmer.maybe(idle=not entries)
        if not entries:
            return False
        self._handle(loop, dispatcher, entries)  # every entry is acknowledged by now
        for p in {p for p, _, _, _ in entries}:
            self._trimmer.consumed(outbox_key(p))
        return True

    def _autoclaim(self) -> list[tuple[int, Any, Any, bool]]:
        found: list[tuple[int, Any, Any, bool]] = []
        for p in range(self.partitions):
            cursor: Any = "0-0"
            while True:
                reply: Any = self.client.xautoclaim(outbox_key(p), DISPATCH_GROUP, self.id, self.claim_idle_ms,
                                                    start_id=cursor, count=self.batch)
                cursor, claimed = reply[0], reply[1]
                found += [(p, eid, fields, True) for eid, fields in claimed]
                if text_of(cursor) == "0-0" or len(found) >= self.batch:
                    break
        self.stats["claimed"] += len(found)
        return found

    # ---- entries -------------------------------------------------------------------------------

    def _handle(self, loop: asyncio.AbstractEventLoop, dispatcher: Dispatcher,
                entries: Sequence[tuple[int, Any, Any, bool]]) -> None:
        items: list[_Item] = []
        for p, eid, fields, reclaimed in entries:
            self.stats["entries"] += 1
            raw = field_of(fields, "j")
            if raw is None:  # deleted since it was delivered to a consumer: nothing to do
                self.client.xack(outbox_key(p), DISPATCH_GROUP, eid)
                continue
            try:
                queued = decode_queued(raw)
            except Exception as exc:  # a malformed entry: dead-lettered, never retried
                self.log(f"{self.id}: partition {p}: bad outbox entry {text_of(eid)}: {exc!r}")
                pipe = self.client.pipeline(transaction=True)
                pipe.xadd(dead_key(p), {"j": raw, "id": eid, "error": repr(exc)[:2000], "worker": self.id})
                pipe.xack(outbox_key(p), DISPATCH_GROUP, eid)
                pipe.execute()
                self.stats["dead_letters"] += 1
                continue
            campaign = self.plan.campaign(queued.campaign)
            job = SendJob.from_queued(queued, campaign) if campaign is not None else None
            items.append(_Item(p, eid, queued, job, reclaimed))

        # the de-duplication markers, before anything goes out
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.set(item.marker, self.id, nx=True, ex=SENT_TTL)
            pipe.get(item.marker)
        answers = pipe.execute()
        fresh: list[_Item] = []
        interrupted: list[_Item] = []
        duplicates: list[_Item] = []
        for i, item in enumerate(items):
            took, holder = answers[2 * i], text_of(answers[2 * i + 1])
            if took:
                fresh.append(item)
            elif item.reclaimed and holder not in (None, DONE):
                interrupted.append(item)  # its dispatcher died between the marker and the records
            else:
                duplicates.append(item)
        self.stats["duplicates"] += len(duplicates)

        jobs = [item.job for item in fresh if item.job is not None]
        results = loop.run_until_complete(dispatcher.deliver(jobs)) if jobs else []
        records: dict[str, list[Output]] = {}
        gone: dict[str, list[bytes]] = {}  # send_id → unsubscribe records for the partition's input
        for job, sub, result in results:
            records.setdefault(job.send_id, []).append(delivery_record(job, sub, result))
            self.stats["delivered" if result.delivered else "failed"] += 1
            if result.deactivate:
                gone.setdefault(job.send_id, []).append(unsubscribe_line(job, sub))
        self.stats["sends"] += len(jobs)
        for item in fresh:
            if item.job is None:  # the plan no longer has the campaign
                records[item.queued.send_id] = [self._failed(item, "unknown_campaign")]
        for item in interrupted:
            records[item.queued.send_id] = [self._failed(item, "interrupted")]
            self.stats["interrupted"] += 1

        by_partition: dict[int, list[_Item]] = {}
        for item in items:
            by_partition.setdefault(item.p, []).append(item)
        for p, group in by_partition.items():
            self._commit(p, group, set(fresh), set(interrupted), records, gone)

    def _failed(self, item: _Item, reason: str) -> Output:
        q = item.queued
        return Output(iso(q.at), q.campaign, q.user, "failed", reason, q.send_id)

    def _commit(self, p: int, group: list[_Item], fresh: set[_Item], interrupted: set[_Item],
                records: dict[str, list[Output]], gone: dict[str, list[bytes]]) -> None:
        """The records of the sends whose marker is still ours (or, for an interrupted one, still
        not done), the unsubscribes of gone subscriptions, the markers set to done and the XACK: one
        MULTI/EXEC watching the markers."""
        from redis.exceptions import WatchError

        writers = [item for item in group if item in fresh or item in interrupted]
        ids = [item.eid for item in group]
        for _attempt in range(10):
            pipe = self.client.pipeline(transaction=True)
            try:
                if writers:
                    pipe.watch(*[item.marker for item in writers])  # type: ignore[no-untyped-call]
                    holders = [text_of(pipe.get(item.marker)) for item in writers]
                    pipe.multi()
                    for item, holder in zip(writers, holders, strict=True):
                        mine = holder == self.id if item in fresh else holder not in (None, DONE)
                        if not mine:  # another dispatcher recorded it meanwhile
                            continue
                        for out in records.get(item.queued.send_id, []):
                            pipe.xadd(out_key(p), {"o": _encode(out)})
                        for line in gone.get(item.queued.send_id, []):
                            pipe.xadd(stream_key(p), {"r": line})
                        pipe.set(item.marker, DONE, xx=True, keepttl=True)
                pipe.xack(outbox_key(p), DISPATCH_GROUP, *ids)
                pipe.execute()
                return
            except WatchError:
                continue
            finally:
                pipe.reset()
        raise RuntimeError(f"partition {p}: the send markers kept changing")
