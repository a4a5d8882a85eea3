"""Partition workers (``pushlang worker``): the engine over the partition streams, each partition owned
by one worker at a time (the keys are in :mod:`pushlang.scaleout.keys`).

A lease (``lease:{p}``, ``SET NX PX``, renewed by compare-and-pexpire) says which worker owns a
partition; ``workers`` holds each worker's heartbeat (ms, Redis server time).

A worker holds at most ceil(P / live workers) partitions, taking free or expired leases and releasing
extras (only between batches, when everything is committed) so that leases move when workers join.
Per owned partition it reads the consumer group ``workers`` of ``ev:{p}``: first the entries pending
for other consumers (XAUTOCLAIM: a dead owner's unacknowledged batch) and its own, then new ones.
Each batch's state and timer changes, its outputs (XADD ``out:{p}``) and its XACK are ONE MULTI/EXEC,
WATCHing ``lease:{p}``: a worker that lost its lease (paused past the expiry, another took over) can
not commit, and a worker that dies before EXEC applied nothing, so the next owner reprocesses exactly
the unacknowledged entries: every record takes effect once.

A record whose processing raises is retried (the batch's records before it are committed, the state
is reloaded from Redis); once its delivery count (XPENDING) reaches ``MAX_DELIVERIES`` it is written to
``dl:{p}`` with the error and acknowledged.

Each partition has its own virtual clock, driven by its own records, so timers fire in the same order
relative to each user's records as in a single-process replay: live campaigns (single action, inaction,
on-date) decide the same. Scheduled campaigns are evaluated partition by partition; a user-timezone
schedule's first occurrence for a newly seen zone starts at the partition's clock, which may lag the
global one.

Every send also goes, in the same MULTI/EXEC, to the partition's outbox ``ob:{p}`` as a
:class:`~pushlang.runtime.pipeline.QueuedSend`, which the dispatch workers of
:mod:`pushlang.scaleout.dispatch` deliver (de-duplicated by send_id). Consumed entries of ``ev:{p}`` are
trimmed (:class:`~pushlang.scaleout.streams.Trimmer`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import plan
from pushlang.runtime.engine import Engine, Output, SendJob
from pushlang.runtime.pipeline import encode_queued
from pushlang.runtime.records import decode_record
from pushlang.scaleout.keys import (
    DEFAULT_PARTITIONS,
    WORKER_GROUP,
    WORKERS_KEY,
    consumer_id,
    dead_key,
    lease_key,
    out_key,
    outbox_key,
    partition_count,
    stream_key,
)
from pushlang.scaleout.store import LeaseLost, RedisStore
from pushlang.scaleout.streams import Trimmer, field_of, text_of

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline

MAX_DELIVERIES = 3

_encode = msgspec.json.Encoder().encode


# KEYS[1] workers, ARGV: id, lease ms. Server time, so machines with skewed clocks agree.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
# KEYS[1] lease, ARGV: id, ms. Take a free lease, or renew one that is ours.
_TAKE = """
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS[1] stream, ARGV: group, consumer. XAUTOCLAIM to the end of the pending list.
_CLAIM = """
local cursor = '0-0'
repeat
  cursor = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, cursor, 'COUNT', 1000, 'JUSTID')[1]
until cursor == '0-0'
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Partition:
    def __init__(self, worker: Worker, p: int) -> None:
        self.p = p
        self.stream = stream_key(p)
        self.lease = lease_key(p)
        self.backlog = True  # read pending entries (id 0) before new ones (>)
        self.retry = False  # the first pending entry failed: re-read it alone
        self.load(worker)

    def load(self, worker: Worker) -> None:
        """State from Redis: only what committed batches wrote."""
        self.outputs: list[Output] = []
        self.jobs: list[SendJob] = []  # sends for the dispatch workers (ob:{p})
        self.store = RedisStore(worker.client, self.p, fenced=True)
        self.engine = Engine(worker.plan, self.store, self.outputs.append, on_send=self.jobs.append)


class Worker:
    """Owns partitions through leases and runs the engine over their streams (module docstring)."""

    def __init__(self, client: redis.Redis, compiled: plan.Plan, worker_id: str | None = None,
                 partitions: int = DEFAULT_PARTITIONS, lease_ms: int = 3000, batch: int = 500,
                 log: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.plan = compiled
        self.id = consumer_id(worker_id)
        self.partitions = partition_count(partitions)
        self.lease_ms = lease_ms
        self.batch = batch
        self.log = log or (lambda _message: None)
        self.owned: dict[int, _Partition] = {}
        self.live = 1
        self.stats = {"records": 0, "batches": 0, "dead_letters": 0, "taken": 0, "released": 0}
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._claim = client.register_script(_CLAIM)
        self._next_beat = 0.0
        self._took = False
        self._trimmer = Trimmer(client, WORKER_GROUP)
        start = sum(self.id.encode()) % partitions
        self._ring = [(start + i) % partitions for i in range(partitions)]

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, idle_exit: float | None = None) -> None:
        """Work until ``stop`` is set, or until no owned partition had work for ``idle_exit`` s."""
        from redis.exceptions import RedisError

        last_work = time.monotonic()
        try:
            while stop is None or not stop.is_set():
                worked = False
                try:
                    self._beat_if_due()
                    for p in list(self.owned):
                        if stop is not None and stop.is_set():
                            break
                        part = self.owned.get(p)
                        if part is None:
                            continue
                        try:
                            worked = self._step(part) or worked
                        except LeaseLost:
                            self.log(f"{self.id}: lost the lease of partition {p}")
                            self.owned.pop(p, None)
                        self._beat_if_due()
                except RedisError as exc:
                    if idle_exit is not None and time.monotonic() - last_work >= idle_exit:
                        raise  # no Redis for longer than the worker waits for work: said, not retried forever
                    self.log(f"{self.id}: redis error ({exc!r}); retrying")
                    self.owned.clear()  # state is reloaded when the leases are taken again
                    self._next_beat = 0.0
                    time.sleep(0.5)
                    continue
                now = time.monotonic()
                if worked or self._took:
                    last_work = now
                    self._took = False
                elif idle_exit is not None and now - last_work >= idle_exit:
                    return
                else:
                    time.sleep(0.02)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        """Release every lease (everything is committed between batches) and leave the worker set."""
        try:
            for p in list(self.owned):
                self._release(keys=[lease_key(p)], args=[self.id])
            self.owned.clear()
            self.client.zrem(WORKERS_KEY, self.id)
        except Exception as exc:  # the leases expire anyway
            self.log(f"{self.id}: shutdown: {exc}")

    # ---- leases --------------------------------------------------------------------------------

    def _beat_if_due(self) -> None:
        if time.monotonic() >= self._next_beat:
            self._next_beat = time.monotonic() + self.lease_ms / 3000
            self.balance()

    def balance(self) -> None:
        """Heartbeat, renew the owned leases, then release extras or take free partitions."""
        self.live = max(1, int(self._heartbeat(keys=[WORKERS_KEY], args=[self.id, self.lease_ms])))  # type: ignore[arg-type]
        owned = list(self.owned)
        if owned:
            pipe = self.client.pipeline(transaction=False)
            for p in owned:
                self._renew(keys=[lease_key(p)], args=[self.id, self.lease_ms], client=pipe)
            for p, ok in zip(owned, pipe.execute(), strict=True):
                if not ok:
                    self.log(f"{self.id}: lease of partition {p} expired")
                    self.owned.pop(p, None)
        target = math.ceil(self.partitions / self.live)
        extra = len(self.owned) - target
        if extra > 0:
            for p in sorted(self.owned, key=self._ring.index, reverse=True)[:extra]:
                self._release(keys=[lease_key(p)], args=[self.id])
                del self.owned[p]
                self.stats["released"] += 1
            return
        if len(self.owned) >= target:
            return
        candidates = [p for p in self._ring if p not in self.owned]
        pipe = self.client.pipeline(transaction=False)
        for p in candidates:
            pipe.get(lease_key(p))
        holders = pipe.execute()
        started = time.monotonic()
        for p, holder in zip(candidates, holders, strict=True):
            if len(self.owned) >= target or time.monotonic() - started > self.lease_ms / 3000:
                break  # taking a partition builds its engine: renew what we hold before taking more
            if holder is not None and text_of(holder) != self.id:
                continue
            if self._take(keys=[lease_key(p)], args=[self.id, self.lease_ms]):
                self._acquire(p)

    def _acquire(self, p: int) -> None:
        from redis.exceptions import ResponseError

        stream = stream_key(p)
        try:
            self.client.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # the previous owner's unacknowledged entries become ours (JUSTID: not counted as a delivery)
        self._claim(keys=[stream], args=[WORKER_GROUP, self.id])
        self.owned[p] = _Partition(self, p)
        self.stats["taken"] += 1
        self._took = True

    # ---- batches -------------------------------------------------------------------------------

    def _read(self, part: _Partition) -> list[tuple[Any, Any]]:
        if part.backlog:
            reply: Any = self.client.xreadgroup(WORKER_GROUP, self.id, {part.stream: "0"},
                                                count=1 if part.retry else self.batch)
            entries = reply[0][1] if reply else []
            if entries:
                return list(entries)
            part.backlog = part.retry = False
        reply = self.client.xreadgroup(WORKER_GROUP, self.id, {part.stream: ">"}, count=self.batch)
        return list(reply[0][1]) if reply else []

    def _step(self, part: _Partition) -> bool:
        from redis.exceptions import RedisError

        entries = self._read(part)
        self._trimmer.maybe(idle=not entries)
        if not entries:
            return False
        failed: tuple[int, BaseException] | None = None
        for i, (_eid, fields) in enumerate(entries):
            try:
                self._apply(part, fields)
            except Exception as exc:  # any failure of one record: retry, then dead-letter
                if isinstance(exc, RedisError):
                    raise  # not the record's fault: the run loop reconnects
                failed = (i, exc)
                break
        if failed is None:
            self._commit(part, [eid for eid, _ in entries])
            part.retry = False
            return True
        index, error = failed
        self.log(f"{self.id}: partition {part.p}: entry {text_of(entries[index][0])} failed: {error!r}")
        part.load(self)  # forget the half-applied batch: state as committed
        for _eid, fields in entries[:index]:
            self._apply(part, fields)
        self._commit(part, [eid for eid, _ in entries[:index]])
        eid, fields = entries[index]
        pending: Any = self.client.xpending_range(part.stream, WORKER_GROUP, min=eid, max=eid, count=1)
        deliveries = int(pending[0]["times_delivered"]) if pending else MAX_DELIVERIES
        if deliveries >= MAX_DELIVERIES:
            letter = {k: v for k, v in (fields or {}).items()}
            letter.update({"id": eid, "error": repr(error)[:2000], "worker": self.id})

            def dead(pipe: Pipeline) -> None:
                pipe.xadd(dead_key(part.p), letter)
                pipe.xack(part.stream, WORKER_GROUP, eid)

            part.store.commit_fenced(part.lease, self.id, dead)
            self.stats["dead_letters"] += 1
            part.retry = False
        else:
            part.retry = True
        part.backlog = True  # the rest of the batch is pending: read it again
        return True

    def _apply(self, part: _Partition, fields: Any) -> None:
        engine = part.engine
        raw = field_of(fields, "r")
        if raw is not None:
            engine.feed(decode_record(raw))
            self.stats["records"] += 1
            return
        end = field_of(fields, "end")
        if end is not None:  # as Engine.finish(until), whose commit is the batch's
            engine.advance(max(int(end), engine.clock), inclusive=True)
            return
        if fields:  # an entry deleted since (XREADGROUP 0 gives no fields) is just acknowledged
            raise ValueError(f"not a record nor an end marker: {fields!r}")

    def _commit(self, part: _Partition, ids: list[Any]) -> None:
        outputs, jobs = list(part.outputs), list(part.jobs)
        target, outbox = out_key(part.p), outbox_key(part.p)

        def extra(pipe: Pipeline) -> None:
            for out in outputs:
                pipe.xadd(target, {"o": _encode(out)})
            for job in jobs:
                pipe.xadd(outbox, {"j": encode_queued(job.queued())})
            if ids:
                pipe.xack(part.stream, WORKER_GROUP, *ids)

        if not ids and not outputs and not jobs and not part.store.dirty:
            return
        part.store.commit_fenced(part.lease, self.id, extra)
        part.outputs.clear()
        part.jobs.clear()
        if ids:
            self._trimmer.consumed(part.stream)
        self.stats["batches"] += 1
