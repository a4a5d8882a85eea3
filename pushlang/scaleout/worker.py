"""Partition workers (``pushlang worker``): the engine over the partition streams, each partition owned
by one worker at a time (the keys are in :mod:`pushlang.scaleout.keys`; docs/scale-out.md, "Workers").

Leases. ``lease:{p}`` (``SET NX PX``) names the worker that owns partition p; ``workers`` holds each
worker's heartbeat (ms, Redis server time). A heartbeat thread of its own renews the leases the worker
holds every lease/3, however long a batch takes, and reports a lease it could not renew; the main loop
drops that partition before its next step, and every commit is fenced anyway. The main loop takes free
or expired leases up to ceil(P / live workers) and releases extras, so leases move when workers join.

Reading. One XREADGROUP with BLOCK over the streams of every owned partition (group ``workers``), so an
idle worker sleeps in Redis; on a Redis Cluster, where one command can not span slots, one non-blocking
XREADGROUP per partition, pipelined (split per node by the client), backing off while idle. Before it
applies what it read, the owner claims (XCLAIM, counted as a delivery) every entry pending that it does
not hold — under another consumer name: a dead owner's batch, or what a stalled old owner read after its
lease had moved; under its own: what it read or claimed before it lost the partition and took it again —
so a partition's entries are applied in stream order whoever read them first. Consumer names that hold
nothing are then removed from the group.

Committing. A batch's state and timer changes, its outputs (XADD ``out:{p}``, trimmed to
``keep_outputs`` entries), its sends (XADD ``ob:{p}``) and its XACK are ONE MULTI/EXEC, WATCHing
``lease:{p}``: a worker that lost its lease commits nothing, and a worker that dies before EXEC applied
nothing, so the next owner reprocesses exactly the unacknowledged entries: every record takes effect
once. Long work is committed in parts: the engine advances with a budget (``CHUNK`` timers fired or
users visited by an occurrence per commit), leaving what is left as timers due at the same instant, so
a 40,000-user occurrence is many small transactions that decide what one would.

Clocks. On the ``records`` clock a partition's clock is its records' time (and the end markers'), as in
a replay: live campaigns decide exactly as a single-process replay does. On the ``wall`` clock the
worker also reads Redis server time every ``TICK`` (and right after a partition drained its input) and
advances every owned partition that has no unread input to it, as one-machine ``serve`` does; a record
more than the skew ahead of server time is dead-lettered (``clock_skew``) instead of moving the
partition's clock hours ahead.

Poison. A record or a timer whose processing raises is retried with the state reloaded, and isolated
at its ``MAX_ATTEMPTS``-th failure: written to ``dl:{p}`` (capped) with the reason and the error, and
acknowledged (a timer: removed; an occurrence arms the next one). An entry whose reader died or lost its
lease is claimed again (its delivery count grows); entries delivered more than once are applied one
per commit, and one delivered ``MAX_DELIVERIES`` times — it took that many workers down — is
dead-lettered before it is applied. An error of one partition (loading its state, committing) drops
that partition for ``RETAKE_AFTER`` seconds, not the worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import plan
from pushlang.runtime.engine import CompiledPlan, Engine, SendJob
from pushlang.runtime.instants import US, iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.pipeline import encode_queued
from pushlang.runtime.records import decode_record
from pushlang.scaleout.connection import is_cluster, server_time_us
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
    partition_of_key,
    stream_key,
)
from pushlang.scaleout.store import LeaseLost, RedisStore
from pushlang.scaleout.streams import DEAD_LETTERS_KEPT, KEEP_OUTPUTS, Trimmer, field_of, stream_id, text_of

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline

MAX_ATTEMPTS = 3  # a record or timer whose processing raises: isolated at its third failure
BARRIER_PAUSE = 0.2  # seconds a partition waits before it asks again whether a winner test's tally is complete
OUTBOX_GRACE = 86400  # s an outbox entry is kept beyond the longest ttl of the plan
MAX_DELIVERIES = 4  # an entry read by that many workers that never committed it: dead-lettered unapplied
CHUNK = 2000  # work per commit of a long advance: timers fired, users an occurrence visited
TICK = 0.5  # seconds between two reads of the wall clock
RETAKE_AFTER = 5.0  # seconds a partition dropped after an error is left alone
STALL_AFTER = 30.0  # seconds without a step after which the heartbeat stops renewing (a stuck loop)
DEFAULT_SKEW_US = 300 * US  # as [server] max_clock_skew

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
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] stream, ARGV: group, id. Remove the consumer names, other than ours, that hold no pending
# entry; atomic, so a name that reads again in between keeps what it read.
_FORGET = """
local gone = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    gone = gone + 1
  end
end
return gone
"""


class _TimerFailed(Exception):
    def __init__(self, keys: list[str], error: Exception) -> None:
        super().__init__(keys, error)
        self.keys, self.error = keys, error


class _Refused(Exception):
    """A record the worker does not apply (the reason goes to the dead letter)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


Entry = tuple[Any, Any]  # (stream id, fields)


class _Partition:
    def __init__(self, worker: Worker, p: int) -> None:
        self.p = p
        self.stream = stream_key(p)
        self.lease = lease_key(p)
        self.held: list[Entry] = []  # read (pending under this worker), not yet applied, in id order
        self.check = False  # claim what is pending and not held before applying what was read
        self.wait_from: Any = None  # an entry pending and not yet claimed: apply nothing from it on
        self.deliveries: dict[Any, int] = {}  # entry id → times delivered, for the entries claimed
        self.attempts: dict[Any, int] = {}  # entry id or timer key → failed attempts
        self.target: int | None = None  # wall clock: advance to this instant when no input is waiting
        self.pause_until = 0.0  # a winner test waits for the other partitions: try again then (monotonic)
        self.load(worker)

    def load(self, worker: Worker) -> None:
        """State from Redis: only what committed batches wrote."""
        self.outputs: list[Output] = []
        self.jobs: list[SendJob] = []  # sends for the dispatch workers (ob:{p})
        self.applied = 0  # records applied since the last commit
        self.store = RedisStore(worker.client, self.p, fenced=True, partitions=worker.partitions)
        self.engine = Engine(worker.compiled, self.store, self.outputs.append, on_send=self.jobs.append)


class Worker:
    """Owns partitions through leases and runs the engine over their streams (module docstring)."""

    def __init__(self, client: redis.Redis, compiled: plan.Plan, worker_id: str | None = None,
                 partitions: int = DEFAULT_PARTITIONS, lease_ms: int = 3000, batch: int = 500,
                 log: Callable[[str], None] | None = None, *, clock: str = "wall",
                 max_skew_us: int = DEFAULT_SKEW_US, keep_outputs: int = KEEP_OUTPUTS) -> None:
        if clock not in ("wall", "records"):
            raise ValueError(f"clock must be wall or records, got {clock!r}")
        self.client = client
        self.plan = compiled
        self.compiled = CompiledPlan(compiled)  # once: every partition's engine shares it
        self.id = consumer_id(worker_id)
        self.partitions = partition_count(partitions)
        self.lease_ms = lease_ms
        self.batch = batch
        self.wall = clock == "wall"
        self.max_skew_us = max_skew_us
        self.keep_outputs = keep_outputs
        # an outbox entry nobody took within the longest ttl (and a day) can only be expired: dropped
        ttls = [m.ttl for c in compiled.campaigns for m in c.messages if m.ttl is not None]
        self.outbox_horizon_ms = (max([compiled.settings.default_ttl, *ttls]) + OUTBOX_GRACE) * 1000
        self.log = log or (lambda _message: None)
        self.owned: dict[int, _Partition] = {}
        self.live = 1
        self.stats = {"records": 0, "batches": 0, "dead_letters": 0, "taken": 0, "released": 0}
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._forget = client.register_script(_FORGET)
        self._cluster = is_cluster(client)
        self._next_balance = 0.0
        self._next_tick = 0.0
        self._drained = False  # a partition emptied its input: tick now
        self._now: tuple[int, float] | None = None  # (server time µs, monotonic) at the last tick
        self._took = False
        self._avoid: dict[int, float] = {}  # partition → monotonic time before which it is not taken
        self._poll = 0.0  # a cluster's idle polling interval, grows while nothing comes
        self._trimmer = Trimmer(client, WORKER_GROUP)
        # shared with the heartbeat thread
        self._lock = threading.Lock()
        self._leased: set[int] = set()  # leases held (taken, not released or lost)
        self._lost: set[int] = set()  # leases the heartbeat could not renew
        self._alive = time.monotonic()
        start = sum(self.id.encode()) % partitions
        self._ring = [(start + i) % partitions for i in range(partitions)]

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, idle_exit: float | None = None) -> None:
        """Work until ``stop`` is set, or until no owned partition had work for ``idle_exit`` s."""
        from redis.exceptions import RedisError

        max_wait = 1.0 if idle_exit is None else max(0.01, min(1.0, idle_exit / 3))
        stopping = threading.Event()
        beats = threading.Thread(target=self._heartbeats, args=(stopping,), name=f"{self.id} heartbeat",
                                 daemon=True)
        last_work = time.monotonic()
        try:
            self._beat()
            beats.start()
            while stop is None or not stop.is_set():
                self._alive = time.monotonic()
                try:
                    worked = self._cycle(stop, max_wait)
                except RedisError as exc:
                    if idle_exit is not None and time.monotonic() - last_work >= idle_exit:
                        raise  # no Redis for longer than the worker waits for work: said, not retried forever
                    self.log(f"{self.id}: redis error ({exc!r}); retrying")
                    for p in list(self.owned):  # state is reloaded when the leases are taken again
                        self._drop(p)
                    self._next_balance = 0.0
                    time.sleep(0.5)
                    continue
                now = time.monotonic()
                if worked or self._took:
                    last_work = now
                    self._took = False
                elif idle_exit is not None and now - last_work >= idle_exit:
                    return
        finally:
            stopping.set()
            if beats.is_alive():
                beats.join(5)
            self.shutdown()

    def _cycle(self, stop: threading.Event | None, max_wait: float = 1.0) -> bool:
        """One turn: leases, input, steps, the wall clock. Whether anything was done."""
        mono = time.monotonic()
        if mono >= self._next_balance:
            self._next_balance = mono + self.lease_ms / 1000
            self.balance()
        self._drop_lost()
        worked = False
        paused = time.monotonic()
        busy = [part for part in self.owned.values()
                if part.pause_until <= paused and (part.held or part.check or self._behind(part))]
        waiting = [part for part in self.owned.values() if not part.held]
        if self.wall and (self._drained or time.monotonic() >= self._next_tick):
            self._tick(waiting)
        elif not busy:
            limit = min(self._next_balance, self._next_tick if self.wall else math.inf) - time.monotonic()
            self._read(waiting, max(0.0, min(max_wait, limit)))
        elif waiting:
            self._read(waiting, None)
        for part in list(self.owned.values()):
            if stop is not None and stop.is_set():
                break
            if self.owned.get(part.p) is not part:
                continue
            self._alive = time.monotonic()
            try:
                worked = self._step(part) or worked
            except LeaseLost:
                self.log(f"{self.id}: lost the lease of partition {part.p}")
                self._drop(part.p)
            except Exception as exc:
                if _connection_trouble(exc):
                    raise
                self._fail(part.p, "a step", exc)
            self._drop_lost()
        self._trimmer.maybe(idle=not worked)
        return worked

    def shutdown(self) -> None:
        """Release every lease (everything is committed between batches) and leave the worker set."""
        try:
            for p in list(self.owned):
                self._release(keys=[lease_key(p)], args=[self.id])
            self.owned.clear()
            with self._lock:
                self._leased.clear()
            self.client.zrem(WORKERS_KEY, self.id)
        except Exception as exc:  # the leases expire anyway
            self.log(f"{self.id}: shutdown: {exc}")

    # ---- leases --------------------------------------------------------------------------------

    def _heartbeats(self, stopping: threading.Event) -> None:
        """The heartbeat thread: renew every lease held each lease/3, whatever the main loop is doing."""
        while not stopping.wait(self.lease_ms / 3000):
            if time.monotonic() - self._alive > max(STALL_AFTER, 10 * self.lease_ms / 1000):
                continue  # the main loop is stuck: let the leases expire so that others take over
            try:
                self._beat()
            except Exception as exc:
                self.log(f"{self.id}: heartbeat: {exc!r}")

    def _beat(self) -> None:
        self.live = max(1, int(self._heartbeat(keys=[WORKERS_KEY], args=[self.id, self.lease_ms])))  # type: ignore[arg-type]
        with self._lock:
            held = sorted(self._leased)
        if not held:
            return
        renewed = self._each(self._renew, [lease_key(p) for p in held])
        lost = [p for p, ok in zip(held, renewed, strict=True) if not ok]
        if lost:
            with self._lock:
                self._lost.update(p for p in lost if p in self._leased)

    def _each(self, script: Any, leases: list[str]) -> list[Any]:
        """A lease script on each lease: pipelined, or one by one on a cluster (whose client runs no
        script in a pipeline)."""
        args = [self.id, self.lease_ms]
        if self._cluster:
            return [script(keys=[lease], args=args) for lease in leases]
        pipe = self.client.pipeline(transaction=False)
        for lease in leases:
            script(keys=[lease], args=args, client=pipe)
        return list(pipe.execute())

    def _drop_lost(self) -> None:
        if not self._lost:
            return
        with self._lock:
            lost, self._lost = self._lost, set()
        for p in sorted(lost):
            if p in self.owned:
                self.log(f"{self.id}: lease of partition {p} expired")
                self._drop(p)

    def _drop(self, p: int) -> None:
        self.owned.pop(p, None)
        with self._lock:
            self._leased.discard(p)

    def _fail(self, p: int, what: str, exc: BaseException) -> None:
        """An error of one partition: log it, let the partition go, take it again later."""
        self.log(f"{self.id}: partition {p}: {what} failed ({exc!r}); partition dropped for {RETAKE_AFTER:g}s")
        self._drop(p)
        self._avoid[p] = time.monotonic() + RETAKE_AFTER
        try:
            self._release(keys=[lease_key(p)], args=[self.id])
        except Exception as again:
            if _connection_trouble(again):
                raise
            self.log(f"{self.id}: partition {p}: release failed ({again!r})")

    def balance(self) -> None:
        """Release extras or take free partitions (the heartbeat thread renews what is held)."""
        target = math.ceil(self.partitions / self.live)
        extra = len(self.owned) - target
        if extra > 0:
            # the partitions with nothing read and not applied go first (no claim needed after us)
            order = sorted(self.owned, key=lambda p: (not self.owned[p].held, self._ring.index(p)), reverse=True)
            for p in order[:extra]:
                self._drop(p)
                self._release(keys=[lease_key(p)], args=[self.id])
                self.stats["released"] += 1
            return
        if len(self.owned) >= target:
            return
        now = time.monotonic()
        candidates = [p for p in self._ring if p not in self.owned and self._avoid.get(p, 0.0) <= now]
        pipe = self.client.pipeline(transaction=False)
        for p in candidates:
            pipe.get(lease_key(p))
        holders = pipe.execute()
        free = [p for p, holder in zip(candidates, holders, strict=True)
                if holder is None or text_of(holder) == self.id][:target - len(self.owned)]
        if not free:
            return
        taken = [p for p, ok in zip(free, self._each(self._take, [lease_key(p) for p in free]), strict=True) if ok]
        with self._lock:
            self._leased.update(taken)
        for p in taken:
            try:
                self._acquire(p)
            except Exception as exc:
                if _connection_trouble(exc):
                    raise
                self._fail(p, "loading", exc)

    def _acquire(self, p: int) -> None:
        from redis.exceptions import ResponseError

        stream = stream_key(p)
        try:
            self.client.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        part = _Partition(self, p)
        self._claim(part)  # before its first read: what is pending under any name (nothing is held yet)
        self._forget(keys=[stream], args=[WORKER_GROUP, self.id])
        self.owned[p] = part
        self.stats["taken"] += 1
        self._took = True

    # ---- input ---------------------------------------------------------------------------------

    def _read(self, parts: list[_Partition], wait: float | None) -> None:
        """New entries of ``parts`` into their ``held``; ``wait``: block up to that many seconds."""
        from redis.exceptions import ResponseError

        if not parts:
            if wait:
                time.sleep(wait)
            return
        try:
            if self._cluster:
                found = self._read_each(parts)
                if not found and wait:
                    self._poll = min(max(self._poll * 2, 0.01), 0.2, wait)
                    time.sleep(self._poll)
                    found = self._read_each(parts)
                self._poll = 0.0 if found else self._poll
                replies = found
            else:
                block = None if not wait else max(1, int(wait * 1000))
                reply: Any = self.client.xreadgroup(WORKER_GROUP, self.id, {part.stream: ">" for part in parts},
                                                    count=self.batch, block=block)
                replies = [(partition_of_key(text_of(stream) or ""), entries) for stream, entries in reply or []]
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for part in parts:  # a stream deleted under us: its group again
                self._acquire_group(part.p)
            return
        for p, entries in replies:
            reader = self.owned.get(p)
            if reader is not None and entries:
                reader.held.extend(entries)
                reader.check = True

    def _read_each(self, parts: list[_Partition]) -> list[tuple[int, Any]]:
        pipe = self.client.pipeline(transaction=False)
        for part in parts:
            pipe.xreadgroup(WORKER_GROUP, self.id, {part.stream: ">"}, count=self.batch)
        found = []
        for part, reply in zip(parts, pipe.execute(), strict=True):
            if reply:
                found.append((part.p, reply[0][1]))
        return found

    def _acquire_group(self, p: int) -> None:
        from redis.exceptions import ResponseError

        try:
            self.client.xgroup_create(stream_key(p), WORKER_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _claim(self, part: _Partition) -> None:
        """Make ours, in stream order, the entries pending and not held: those of other consumer names,
        and those pending under this worker's own name that it does not hold (a past life's: read or
        claimed before it lost the partition), so that nothing is applied before an older entry.

        A prefix of them is claimed: those delivered once (their reader stopped, or lost the lease) all
        together; one delivered more often alone, and nothing after it until it is done."""
        summary: Any = self.client.xpending(part.stream, WORKER_GROUP)
        counts = {text_of(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}
        held = {eid for eid, _ in part.held}
        if all(name == self.id for name in counts) and counts.get(self.id, 0) <= len(held):
            part.wait_from = None  # all that is pending is held
            return
        total = int(summary["pending"])
        pending: Any = self.client.xpending_range(part.stream, WORKER_GROUP, min="-", max="+", count=total)
        take: list[tuple[Any, int]] = []
        wait_from = None
        for e in pending:
            if e["message_id"] in held and text_of(e["consumer"]) == self.id:
                continue  # read or claimed by this life, waiting in memory
            times = int(e["times_delivered"])
            if (times >= 2 and take) or (take and take[-1][1] >= 2):
                wait_from = e["message_id"]
                break
            take.append((e["message_id"], times))
        part.wait_from = wait_from
        if not take:
            return
        claimed: Any = self.client.xclaim(part.stream, WORKER_GROUP, self.id, 0, [eid for eid, _ in take])
        times_of = dict(take)
        for eid, _fields in claimed:
            part.deliveries[eid] = times_of.get(eid, 0) + 1
        got = {eid for eid, _ in claimed}
        for eid, _times in take:  # an entry deleted since: Redis dropped it from the pending list
            if eid not in got:
                part.deliveries.pop(eid, None)
        part.held = sorted([*part.held, *(e for e in claimed if e[0] not in held)], key=lambda e: stream_id(e[0]))
        self._forget(keys=[part.stream], args=[WORKER_GROUP, self.id])

    # ---- the wall clock ------------------------------------------------------------------------

    def _tick(self, waiting: list[_Partition]) -> None:
        """Read the server time, then what arrived until then for the partitions with nothing held: those
        that still have nothing are advanced to that time (their timers due by then fire)."""
        now = server_time_us(self.client)
        self._now = (now, time.monotonic())
        self._next_tick = time.monotonic() + TICK
        self._drained = False
        self._read(waiting, None)
        for part in self.owned.values():
            if not part.held:
                part.target = max(part.target or now, now)

    def _server_now(self) -> int:
        if self._now is None:
            now = server_time_us(self.client)
            self._now = (now, time.monotonic())
        at, mono = self._now
        return at + int((time.monotonic() - mono) * US)

    def _behind(self, part: _Partition) -> bool:
        if part.target is None:
            return False
        due = part.store.next_due()
        return due is not None and due <= part.target

    # ---- steps ---------------------------------------------------------------------------------

    def _step(self, part: _Partition) -> bool:
        """Apply and commit one batch of ``part`` (or a part of a long advance); whether it did anything."""
        if part.check:
            part.check = False
            self._claim(part)
        batch: list[Entry] = []
        for eid, fields in part.held:
            if part.wait_from is not None and stream_id(eid) >= stream_id(part.wait_from):
                break
            alone = part.deliveries.get(eid, 1) >= 2  # its reader never committed it: one per commit
            if alone and batch:
                break
            batch.append((eid, fields))
            if alone or len(batch) >= self.batch:
                break
        if not batch:
            if part.wait_from is not None:
                part.check = True  # what others hold comes first: claim it
                return True
            return self._catch_up(part)
        budget_end = part.engine.work + CHUNK
        done = 0
        try:
            for eid, fields in batch:
                if part.deliveries.get(eid, 1) >= MAX_DELIVERIES:
                    raise _Refused("delivered", f"read {part.deliveries[eid]} times by workers that stopped "
                                                "before committing it")
                if not self._apply(part, fields, budget_end):
                    break
                done += 1
        except _Refused as refused:
            self._commit(part, batch[:done])
            eid, fields = batch[done]
            self._dead(part, eid, fields, refused.reason, refused.detail)
            return True
        except _TimerFailed as failed:
            self._timer_failed(part, failed)
            return True
        except Exception as exc:
            if _connection_trouble(exc) or isinstance(exc, LeaseLost):
                raise
            self._record_failed(part, batch[done], exc)
            return True
        self._commit(part, batch[:done])
        return done > 0 if self._waited(part) else True

    def _waited(self, part: _Partition) -> bool:
        """Whether the advance stopped at a winner test waiting for the other partitions (SPEC §12.4):
        then the partition pauses a moment, so that waiting is no busy loop."""
        if not part.engine.waiting:
            return False
        part.engine.waiting = False
        part.pause_until = time.monotonic() + BARRIER_PAUSE
        return True

    def _catch_up(self, part: _Partition) -> bool:
        """Wall clock: advance toward the last tick's time (a part of it, if it is long)."""
        if not self._behind(part) or part.target is None:
            return False
        try:
            self._advance(part, part.target, True, part.engine.work + CHUNK)
        except _TimerFailed as failed:
            self._timer_failed(part, failed)
            return True
        self._commit(part, [])
        return not self._waited(part)

    def _advance(self, part: _Partition, until: int, inclusive: bool, budget_end: int) -> bool:
        engine = part.engine
        due = part.store.next_due()
        if due is None or due > until or (due == until and not inclusive):
            if inclusive:
                engine.advance(until, inclusive=True)  # nothing due: the clock moves
            return True
        if engine.work >= budget_end:
            return False
        try:
            return engine.advance(until, inclusive=inclusive, budget=budget_end - engine.work)
        except Exception as exc:
            if _connection_trouble(exc):
                raise
            raise _TimerFailed(list(engine.firing), exc) from exc

    def _apply(self, part: _Partition, fields: Any, budget_end: int) -> bool:
        """One entry; False when the budget ran out while firing the timers due before it (it stays held)."""
        engine = part.engine
        raw = field_of(fields, "r")
        if raw is not None:
            record = decode_record(raw)
            if self.wall and record.ts > (now := self._server_now()) + self.max_skew_us:
                raise _Refused("clock_skew", f"`ts` {iso(record.ts)} is more than {self.max_skew_us // US}s "
                                             f"ahead of the server's clock ({iso(now)})")
            if not self._advance(part, record.ts, False, budget_end):
                return False
            engine.feed(record)
            part.applied += 1
            return True
        end = field_of(fields, "end")
        if end is not None:  # as Engine.finish(until), whose commit is the batch's
            return self._advance(part, max(int(end), engine.clock), True, budget_end)
        if fields:  # an entry deleted since (XREADGROUP 0 gives no fields) is just acknowledged
            raise ValueError(f"not a record nor an end marker: {fields!r}")
        return True

    # ---- failures ------------------------------------------------------------------------------

    def _record_failed(self, part: _Partition, entry: Entry, error: Exception) -> None:
        eid, fields = entry
        self.log(f"{self.id}: partition {part.p}: entry {text_of(eid)} failed: {error!r}")
        part.load(self)  # forget the half-applied batch: state as committed (the held entries stay)
        tries = part.attempts[eid] = part.attempts.get(eid, 0) + 1
        if tries >= MAX_ATTEMPTS:
            self._dead(part, eid, fields, "failed", f"failed {tries} times: {error!r}")

    def _timer_failed(self, part: _Partition, failed: _TimerFailed) -> None:
        key = failed.keys[0] if failed.keys else "?"
        self.log(f"{self.id}: partition {part.p}: timer {key} failed: {failed.error!r}")
        part.load(self)
        tries = part.attempts[key] = part.attempts.get(key, 0) + 1
        if tries < MAX_ATTEMPTS:
            return
        letters = []
        for timer_key in failed.keys:
            timer = part.engine.drop_timer(timer_key)
            if timer is not None:
                letters.append({"timer": timer.key, "due": str(timer.due), "campaign": timer.campaign,
                                "user": timer.user, "kind": timer.kind, "reason": "timer",
                                "error": f"failed {tries} times: {failed.error!r}"[:2000], "worker": self.id})

        def dead(pipe: Pipeline) -> None:
            for letter in letters:
                pipe.xadd(dead_key(part.p), letter, maxlen=DEAD_LETTERS_KEPT, approximate=True)  # type: ignore[arg-type]

        part.store.commit_fenced(part.lease, self.id, dead)
        self.stats["dead_letters"] += len(letters)
        part.attempts.pop(key, None)

    def _dead(self, part: _Partition, eid: Any, fields: Any, reason: str, error: str) -> None:
        """Write an entry to ``dl:{p}`` with why, and acknowledge it (one fenced MULTI/EXEC)."""
        letter = {k: v for k, v in (fields or {}).items()}
        letter.update({"id": eid, "reason": reason, "error": error[:2000], "worker": self.id})

        def dead(pipe: Pipeline) -> None:
            pipe.xadd(dead_key(part.p), letter, maxlen=DEAD_LETTERS_KEPT, approximate=True)
            pipe.xack(part.stream, WORKER_GROUP, eid)

        part.store.commit_fenced(part.lease, self.id, dead)
        self.log(f"{self.id}: partition {part.p}: entry {text_of(eid)} dead-lettered ({reason}: {error})")
        self.stats["dead_letters"] += 1
        self._done(part, [eid])

    def _done(self, part: _Partition, ids: list[Any]) -> None:
        gone = set(ids)
        part.held = [entry for entry in part.held if entry[0] not in gone]
        for eid in ids:
            part.deliveries.pop(eid, None)
            part.attempts.pop(eid, None)
        if not part.held:
            self._drained = True

    def _commit(self, part: _Partition, entries: list[Entry]) -> None:
        ids = [eid for eid, _ in entries]
        outputs, jobs = list(part.outputs), list(part.jobs)
        target, outbox = out_key(part.p), outbox_key(part.p)
        keep = self.keep_outputs
        oldest = f"{max(0, int(time.time() * 1000) - self.outbox_horizon_ms)}-0"

        def extra(pipe: Pipeline) -> None:
            for out in outputs:
                pipe.xadd(target, {"o": _encode(out)}, maxlen=keep, approximate=True)
            for job in jobs:
                pipe.xadd(outbox, {"j": encode_queued(job.queued())}, minid=oldest, approximate=False)
            if ids:
                pipe.xack(part.stream, WORKER_GROUP, *ids)

        if ids or outputs or jobs or part.store.dirty:
            part.store.commit_fenced(part.lease, self.id, extra)
            part.outputs.clear()
            part.jobs.clear()
            self.stats["batches"] += 1
            self.stats["records"] += part.applied
            part.applied = 0
        if ids:
            self._trimmer.consumed(part.stream)
            self._done(part, ids)


def _connection_trouble(exc: BaseException) -> bool:
    """Redis unreachable (every partition is concerned), as opposed to an error of one partition."""
    from redis.exceptions import ConnectionError, TimeoutError

    return isinstance(exc, (ConnectionError, TimeoutError))
