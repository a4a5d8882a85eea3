"""Dispatch workers (``pushlang dispatch``): the partitions' outboxes delivered, each send once, none lost.

Keys (the hash tag ``{p}`` keeps them in the partition's slot):

- ``ob:{p}``              outbox stream: field ``j`` = a :class:`~pushlang.runtime.outcomes.QueuedSend`, XADDed by
  the partition worker in the same MULTI/EXEC as the batch that decided the send;
- ``sent:{p}:<send_id>``  the send's marker, a hash: ``by`` names the outbox entry and the dispatcher that
  owns the send (``<entry id> <dispatcher id>``), then ``done`` once its records are written; a field
  ``<i>`` (the target's index in the entry) is set just before a request to that subscription leaves,
  and lifted while it waits to try again;
- ``out:{p}``             the ``delivered`` / ``failed`` records (field ``o``, msgspec-JSON :class:`Output`);
- ``dl:{p}``              an outbox entry that can not be decoded (``j``, ``id``, ``error``, ``worker``).

Every dispatcher reads the consumer group ``dispatch`` of every ``ob:{p}`` and works on at most ``chunk``
entries at once (64); reads block in Redis when there is nothing to do (on a Redis Cluster, where one
read can not span slots, the partitions are read one per command, pipelined per node, and an idle
dispatcher polls). Per entry:

1. *take* (one script per partition): a marker that is ``done`` or names another entry with the same
   send_id is a duplicate, acknowledged without a push; otherwise ``by`` becomes this entry and this
   dispatcher. A marker that named this same entry at another dispatcher (it died or stalled: the entry
   was claimed) keeps its target fields: those requests were on the wire, they are recorded ``failed``
   (``interrupted``), never sent again; the other targets are delivered. A send older than its ttl
   (the campaign's ``ttl``, else ``[message] default_ttl``; Redis server time) is not pushed: ``failed``
   (``expired``).
2. *deliver* through the :class:`Dispatcher` (retries, backoff, halts), the target's field set just
   before each request leaves — only while ``by`` is still ours, so a dispatcher whose entry was taken
   over sends nothing more.
3. *commit* (one script per partition): if ``by`` is still ours, the records XADDed to ``out:{p}``, the
   unsubscribes of gone subscriptions to ``ev:{p}``, the marker set to ``done`` and the XACK, atomically.
   A ConnectionError or timeout keeps the results in memory and retries with backoff (the script is
   idempotent: a commit that took effect before its answer was lost only acknowledges again).

Every ``claim_idle_ms / 3`` a dispatcher refreshes the idle time of the entries it holds (XCLAIM
JUSTID to itself, only while they are still its own), so however slow a push service is, a live
dispatcher's entries are never claimed; entries idle for ``claim_idle_ms`` at another consumer (a
dead dispatcher) are taken over with XAUTOCLAIM. So a kill -9 leaves at most ``chunk`` sends
``interrupted``, and only the requests that were really on the wire.

A marker lives until a day after its send expires: a duplicate outbox entry arriving later is expired
anyway, so it is never pushed. Consumed outbox entries are trimmed
(:class:`~pushlang.scaleout.streams.Trimmer`).

The dispatch worker needs no user state: the outbox entry carries the target subscriptions in full.
A ``subscription_gone`` answer (404/410, APNs Unregistered) is recorded, and an ``unsubscribe`` record
for that subscription goes into the partition's input stream ``ev:{p}`` in the same commit: the
partition worker, which owns the state, deactivates it like any unsubscribe, so later sends skip it.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import aio, plan
from pushlang.dispatch.base import Chains, Delivery, Withheld
from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher, delivery_record
from pushlang.runtime.engine import SendJob
from pushlang.runtime.instants import iso, to_datetime
from pushlang.runtime.outcomes import Output, QueuedSend
from pushlang.runtime.pipeline import decode_queued
from pushlang.runtime.store import Subscription
from pushlang.scaleout.connection import is_cluster
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

CHUNK = 64  # outbox entries a dispatcher works on at once: at most these are on the wire at a kill -9
KEEP = 86400  # seconds a marker outlives its send's expiry (and its last take)
DONE = "done"
RETRY_LATER = 1.0  # seconds before a request whose mark could not be written is tried again
STOP_GRACE = 10.0  # seconds a stopping dispatcher keeps trying to commit while Redis is unreachable
COMMIT_BACKOFF = (0.05, 2.0)  # first and longest wait between commit attempts while Redis is away
IDLE_POLL = 1.0  # seconds between reads of an idle dispatcher on a Redis Cluster (no blocking read there)
STALE_CONSUMER_MS = 3_600_000  # a consumer with nothing pending and idle this long is removed from the group
GONE_REMEMBERED = 10_000  # subscriptions a dispatcher remembers as gone (the partition deactivates them)

_encode = msgspec.json.Encoder().encode

# KEYS: markers of entries of one partition; ARGV per entry: owner, entry id, expiry (s), targets.
# Returns per entry {'done'} | {'other'} | {'mine'|'expired', <fields of targets on the wire>...}.
_TAKE = f"""
local now = tonumber(redis.call('TIME')[1])
local found = {{}}
for k, key in ipairs(KEYS) do
  local owner, eid = ARGV[4 * k - 3], ARGV[4 * k - 2]
  local expires, targets = tonumber(ARGV[4 * k - 1]), tonumber(ARGV[4 * k])
  local keep = math.max(expires, now) + {KEEP}
  if redis.call('TYPE', key).ok == 'string' then
    -- an earlier version's marker (the dispatcher's id while it delivers): the whole send was on the wire
    local was = redis.call('GET', key)
    redis.call('DEL', key)
    if was == '{DONE}' then
      redis.call('HSET', key, 'by', '{DONE}')
    else
      redis.call('HSET', key, 'by', eid .. ' ' .. was)
      for i = 0, targets - 1 do redis.call('HSET', key, tostring(i), '1') end
    end
    redis.call('EXPIREAT', key, keep)
  end
  local by = redis.call('HGET', key, 'by')
  if by == '{DONE}' then
    found[k] = {{'done'}}
  elseif by and string.sub(by, 1, #eid + 1) ~= eid .. ' ' then
    found[k] = {{'other'}}
  else
    local answer = {{now >= expires and 'expired' or 'mine'}}
    if by then
      for _, field in ipairs(redis.call('HKEYS', key)) do
        if field ~= 'by' then table.insert(answer, field) end
      end
    end
    redis.call('HSET', key, 'by', owner)
    redis.call('EXPIREAT', key, keep)
    found[k] = answer
  end
end
return found
"""
# KEYS[1] marker, ARGV: owner, target. Just before a request leaves: only while the send is ours.
_MARK = """
if redis.call('HGET', KEYS[1], 'by') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], '1')
return 1
"""
_LIFT = """
if redis.call('HGET', KEYS[1], 'by') ~= ARGV[1] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[2])
"""
# KEYS: ob, out, ev, then the markers of finished entries of one partition; ARGV[1] the group, then per
# entry: id, owner, n, n records, g, g unsubscribe lines. Returns per entry 1 if its records were written.
_COMMIT = f"""
local a = 2
local written = {{}}
for k = 4, #KEYS do
  local key, eid, owner = KEYS[k], ARGV[a], ARGV[a + 1]
  local by = redis.call('HGET', key, 'by')
  local mine = by == owner or not by
  local n = tonumber(ARGV[a + 2])
  a = a + 3
  if mine then
    for i = 0, n - 1 do redis.call('XADD', KEYS[2], '*', 'o', ARGV[a + i]) end
  end
  a = a + n
  local g = tonumber(ARGV[a])
  a = a + 1
  if mine then
    for i = 0, g - 1 do redis.call('XADD', KEYS[3], '*', 'r', ARGV[a + i]) end
    for _, field in ipairs(redis.call('HKEYS', key)) do
      if field ~= 'by' then redis.call('HDEL', key, field) end
    end
    redis.call('HSET', key, 'by', '{DONE}')
  end
  a = a + g
  -- acknowledged unless another dispatcher took this very entry over: then it is theirs to finish
  if mine or by == '{DONE}' or string.sub(by, 1, #eid + 1) ~= eid .. ' ' then
    redis.call('XACK', KEYS[1], ARGV[1], eid)
  end
  written[k - 3] = mine and 1 or 0
end
return written
"""
# KEYS[1] ob, ARGV: group, consumer, ids. The entries still pending at this consumer get idle 0; the ids kept.
_REFRESH = """
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then table.insert(kept, ARGV[i]) end
end
if #kept > 0 then
  local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
  for _, id in ipairs(kept) do table.insert(claim, id) end
  table.insert(claim, 'JUSTID')
  redis.call(unpack(claim))
end
return kept
"""


def unsubscribe_line(job: SendJob, sub: Subscription) -> bytes:
    """The input record that deactivates a subscription the push service said is gone, at the
    send's instant (SPEC §9.1 ``unsubscribe``)."""
    record: dict[str, Any] = {"type": "unsubscribe", "user": job.user, "ts": to_datetime(job.at).isoformat()}
    if sub.device_token:
        record["device_token"] = sub.device_token
    else:
        record["endpoint"] = sub.endpoint
    return _encode(record)


class _Entry:
    """One outbox entry this dispatcher holds, from its take to its commit."""

    __slots__ = ("eid", "gone", "job", "kind", "marker", "on_wire", "owner", "p", "queued", "records", "refused")

    def __init__(self, p: int, eid: str, queued: QueuedSend, job: SendJob | None, owner: str) -> None:
        self.p, self.eid, self.queued, self.job, self.owner = p, eid, queued, job, owner
        self.marker = sent_key(p, queued.send_id)
        self.kind = ""  # after the take: mine, expired, done or other
        self.on_wire: set[int] = set()  # targets whose request an earlier holder had on the wire
        self.records: list[Output] = []
        self.gone: list[bytes] = []
        self.refused = False  # taken over by another dispatcher while this one delivered

    def failed(self, i: int, reason: str) -> Output:
        q = self.queued
        return Output(iso(q.at), q.campaign, q.user, "failed", reason, q.send_id, platforms=[q.targets[i].platform])


class _Wire:
    """A request's target field in the send's marker: set just before each request leaves (refused
    once the entry is no longer this dispatcher's), lifted while it waits to try again, kept when a
    request timed out (a copy may be at the push service)."""

    __slots__ = ("doubtful", "entry", "error", "field", "marked", "worker")

    def __init__(self, worker: DispatchWorker, entry: _Entry, i: int) -> None:
        self.worker, self.entry, self.field = worker, entry, str(i)
        self.marked = self.doubtful = self.error = False

    def on(self) -> None:
        from redis.exceptions import RedisError

        if self.marked:
            return
        try:
            ours = self.worker._mark(keys=[self.entry.marker], args=[self.entry.owner, self.field])
        except RedisError as exc:  # not sent without its mark: tried again later
            self.worker.log(f"{self.worker.id}: cannot mark a request as on the wire ({exc!r}); tried again later")
            self.error = True
            raise Withheld from None
        if not ours:
            self.entry.refused = True
            raise Withheld
        self.marked = True

    def doubt(self) -> None:
        self.doubtful = True

    def off(self) -> None:
        from redis.exceptions import RedisError

        if self.marked and not self.doubtful:
            try:
                self.worker._lift(keys=[self.entry.marker], args=[self.entry.owner, self.field])
            except RedisError:  # it stays marked: after a crash it counts as on the wire
                return
            self.marked = False


class DispatchWorker:
    """Consumes every ``ob:{p}`` through the group ``dispatch`` and delivers (module docstring)."""

    def __init__(self, client: redis.Redis, compiled: plan.Plan, settings: DeliverySettings, partitions: int,
                 worker_id: str | None = None, *, chunk: int = CHUNK, claim_idle_ms: int = 30000,
                 block_ms: int = 1000, expire_by_server_time: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.plan = compiled
        self.settings = settings
        self.partitions = partition_count(partitions)
        self.id = consumer_id(worker_id)
        self.chunk = max(1, chunk)
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self.expire_by_server_time = expire_by_server_time
        self.log = log or (lambda _message: None)
        self.cluster = is_cluster(client)
        self.halts: list[str] = []
        self.stats = {"entries": 0, "sends": 0, "delivered": 0, "failed": 0, "duplicates": 0, "interrupted": 0,
                      "expired": 0, "claimed": 0, "dead_letters": 0, "taken_over": 0, "commit_retries": 0}
        self._take = client.register_script(_TAKE)
        self._mark = client.register_script(_MARK)
        self._lift = client.register_script(_LIFT)
        self._commit = client.register_script(_COMMIT)
        self._refresh = client.register_script(_REFRESH)
        self._trimmer = Trimmer(client, DISPATCH_GROUP)
        self._dispatcher: Dispatcher | None = None
        self._held: dict[tuple[int, str], _Entry] = {}  # (partition, entry id): from the read to the commit
        self._ready: collections.deque[_Entry] = collections.deque()  # taken, waiting for a place
        self._running: set[asyncio.Task[None]] = set()
        self._finished: list[_Entry] = []  # delivered (or nothing to deliver), waiting for the commit
        self._chains = Chains()
        self._gone: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._reread_own = True  # this id's pending entries (an earlier life, a lost read answer)
        self._next_claim = 0.0
        self._next_refresh = 0.0
        self._next_commit = 0.0
        self._commit_wait = 0.0
        self._failing_since: float | None = None  # the first of the commits that failed in a row
        self._next_sweep = 0.0
        self._stopping = False

    @property
    def _refresh_every(self) -> float:
        return max(0.05, self.claim_idle_ms / 3000)

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, idle_exit: float | None = None) -> None:
        """Deliver until ``stop`` is set, or until nothing came for ``idle_exit`` seconds; what is
        under way is finished and committed first."""
        loop = aio.new_event_loop()
        if threading.current_thread() is threading.main_thread():  # Ctrl-C, SIGTERM: finish, commit, stop
            stop = stop or threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        try:
            loop.run_until_complete(self._serve(stop, idle_exit))
        finally:
            loop.close()

    async def _serve(self, stop: threading.Event | None, idle_exit: float | None) -> None:
        async with Dispatcher(self.settings, self.plan.settings.default_ttl, on_halt=self._halt) as dispatcher:
            self._dispatcher = dispatcher
            try:
                await self._loop(stop, idle_exit)
            finally:  # an error on the way out: what is under way stops (pending, taken over by another)
                for task in self._running:
                    task.cancel()
                await asyncio.gather(*self._running, return_exceptions=True)

    async def _loop(self, stop: threading.Event | None, idle_exit: float | None) -> None:
        from redis.exceptions import RedisError

        groups = False
        last_work = last_redis = time.monotonic()
        while True:
            self._stopping = stop is not None and stop.is_set()
            if self._stopping and not self._running and self._gave_up():
                return
            worked = False
            try:
                if not groups:
                    self._create_groups()
                    groups = True
                self._housekeeping()
                if not self._stopping:
                    worked = self._fill()
                last_redis = time.monotonic()
            except RedisError as exc:
                now = time.monotonic()
                away = idle_exit is not None and now - last_redis >= max(idle_exit, 1.0)
                if away and not self._running and (not self._held or self._gave_up()):
                    raise  # no Redis for longer than the worker waits for work: said, not retried forever
                self.log(f"{self.id}: redis error ({exc!r}); retrying")
                self._reread_own = True
                await asyncio.sleep(0.2)
                continue
            self._start()
            now = time.monotonic()
            if worked or self._held:
                last_work = now
            if self._running:
                await asyncio.wait(self._running, timeout=min(0.2, self._refresh_every),
                                   return_when=asyncio.FIRST_COMPLETED)
            elif self._finished:
                await asyncio.sleep(max(0.0, min(self._next_commit - now, 0.2)))
            elif not worked:
                if idle_exit is not None and now - last_work >= idle_exit:
                    return
                if self.cluster:  # nothing blocked in Redis: wait here instead
                    await asyncio.sleep(min(IDLE_POLL, self.block_ms / 1000))

    def _gave_up(self) -> bool:
        """Stopping: True once nothing is held, or the commits kept failing for ``STOP_GRACE`` seconds
        (those entries stay pending: their requests on the wire are recorded ``interrupted`` by the
        dispatcher that takes them over, the others are delivered by it)."""
        if not self._held:
            return True
        since = self._failing_since
        if since is None or time.monotonic() - since < STOP_GRACE:
            return False
        self.log(f"{self.id}: stopping with {len(self._held)} entries not committed (Redis is unreachable)")
        return True

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

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._finished and now >= self._next_commit:
            self._commit_finished()  # first: it keeps its results through a Redis error, the others raise
        if self._held and now >= self._next_refresh:
            self._refresh_held()
            self._next_refresh = now + self._refresh_every
        self._trimmer.maybe(idle=not self._held)

    # ---- reading -------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read (own backlog, claims, new entries) while there is room; True if anything came. After
        a Redis error on the way, what was read is found again in this consumer's own backlog."""
        room = self.chunk - len(self._running) - len(self._ready)
        if room <= 0 or (self._ready and room < self.chunk // 2):
            return False
        read: list[tuple[int, str, Any]] = []
        if self._reread_own:
            read += self._own_backlog()
            self._reread_own = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self._refresh_every
            read += self._autoclaim(room)
            if now >= self._next_sweep:
                self._next_sweep = now + STALE_CONSUMER_MS / 1000 / 4
                self._remove_stale_consumers()
        if not read:
            read = self._read_new(room, block=not self._held and not self.cluster)
        self._take_entries({(p, eid): (p, eid, fields) for p, eid, fields in read if (p, eid) not in self._held}.values())
        return bool(read)

    def _streams(self) -> list[int]:
        return list(range(self.partitions))

    def _read_new(self, room: int, block: bool) -> list[tuple[int, str, Any]]:
        count = max(1, -(-room // self.partitions))
        if not self.cluster:  # one read over every outbox, blocking in Redis while there is nothing
            streams = {outbox_key(p): ">" for p in self._streams()}
            wait = max(1, min(self.block_ms, int((self._next_claim - time.monotonic()) * 1000)))  # 0: forever
            reply: Any = self.client.xreadgroup(DISPATCH_GROUP, self.id, streams, count=count,  # type: ignore[arg-type]
                                                block=wait if block else None)
            return [(partition_of_key(text_of(stream) or ""), text_of(eid) or "", fields)
                    for stream, found in reply or [] for eid, fields in found]
        pipe = self.client.pipeline(transaction=False)  # a cluster: one read per slot, sent per node
        for p in self._streams():
            pipe.xreadgroup(DISPATCH_GROUP, self.id, {outbox_key(p): ">"}, count=count)
        found: list[tuple[int, str, Any]] = []
        for p, reply in zip(self._streams(), pipe.execute(), strict=True):
            found += [(p, text_of(eid) or "", fields) for _stream, entries in reply or [] for eid, fields in entries]
        return found

    def _own_backlog(self) -> list[tuple[int, str, Any]]:
        found: list[tuple[int, str, Any]] = []
        for p in self._streams():
            after = "0"
            while True:
                reply: Any = self.client.xreadgroup(DISPATCH_GROUP, self.id, {outbox_key(p): after}, count=100)
                entries = reply[0][1] if reply else []
                if not entries:
                    break
                found += [(p, text_of(eid) or "", fields) for eid, fields in entries]
                after = text_of(entries[-1][0]) or "0"
        return found

    def _autoclaim(self, room: int) -> list[tuple[int, str, Any]]:
        found: list[tuple[int, str, Any]] = []
        for p in self._streams():
            reply: Any = self.client.xautoclaim(outbox_key(p), DISPATCH_GROUP, self.id, self.claim_idle_ms,
                                                start_id="0-0", count=room)
            claimed = [(p, text_of(eid) or "", fields) for eid, fields in reply[1]
                       if (p, text_of(eid)) not in self._held]
            found += claimed
            self.stats["claimed"] += len(claimed)
            if len(found) >= room:
                break
        return found

    def _remove_stale_consumers(self) -> None:
        """Consumers of earlier lives (each restart comes with a new id) that hold nothing."""
        for p in self._streams():
            for consumer in self.client.xinfo_consumers(outbox_key(p), DISPATCH_GROUP):
                name = text_of(field_of(consumer, "name"))
                inactive = field_of(consumer, "inactive")  # Redis 7.2: since its last successful read
                idle = int(field_of(consumer, "idle") if inactive is None else inactive)
                if name != self.id and int(field_of(consumer, "pending")) == 0 and idle > STALE_CONSUMER_MS:
                    self.client.xgroup_delconsumer(outbox_key(p), DISPATCH_GROUP, name)  # type: ignore[arg-type]

    def _take_entries(self, read: Iterable[tuple[int, str, Any]]) -> None:
        """Decode what was read and take each entry's marker (module docstring, step 1)."""
        entries = [entry for p, eid, fields in read if (entry := self._decoded(p, eid, fields)) is not None]
        by_partition: dict[int, list[_Entry]] = {}
        for entry in entries:
            by_partition.setdefault(entry.p, []).append(entry)
        calls = []
        for group in by_partition.values():
            args: list[Any] = []
            for entry in group:
                args += [entry.owner, entry.eid, self._expiry(entry), len(entry.queued.targets)]
            calls.append(([e.marker for e in group], args))
        answers = self._scripts(self._take, calls)
        for group, found in zip(by_partition.values(), answers, strict=True):
            for entry, answer in zip(group, found, strict=True):
                self._taken(entry, [text_of(a) or "" for a in answer])

    def _decoded(self, p: int, eid: str, fields: Any) -> _Entry | None:
        self.stats["entries"] += 1
        raw = field_of(fields, "j")
        if raw is None:  # deleted since it was delivered to a consumer: nothing to do
            self.client.xack(outbox_key(p), DISPATCH_GROUP, eid)
            return None
        try:
            queued = decode_queued(raw)
        except Exception as exc:  # a malformed entry: dead-lettered, never retried
            self.log(f"{self.id}: partition {p}: bad outbox entry {eid}: {exc!r}")
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(dead_key(p), {"j": raw, "id": eid, "error": repr(exc)[:2000], "worker": self.id})
            pipe.xack(outbox_key(p), DISPATCH_GROUP, eid)
            pipe.execute()
            self.stats["dead_letters"] += 1
            return None
        campaign = self.plan.campaign(queued.campaign)
        job = SendJob.from_queued(queued, campaign) if campaign is not None else None
        return _Entry(p, eid, queued, job, f"{eid} {self.id}")

    def _expiry(self, entry: _Entry) -> int:
        """When the send is no longer worth pushing: its decision time plus its ttl (s). On the records
        clock the decision time is the records' (loading history, tests), not the dispatcher's: the ttl
        runs from when the dispatcher takes the send, so nothing expires for being replayed late."""
        job = entry.job
        ttl = job.message.ttl if job is not None else None
        start = entry.queued.at // 1_000_000
        if not self.expire_by_server_time:
            start = max(start, int(time.time()))
        return start + (ttl if ttl is not None else self.plan.settings.default_ttl)

    def _taken(self, entry: _Entry, answer: list[str]) -> None:
        entry.kind = answer[0]
        self._held[entry.p, entry.eid] = entry
        if entry.kind in ("done", "other"):
            self.stats["duplicates"] += 1
            self._finished.append(entry)
            return
        entry.on_wire = {int(field) for field in answer[1:] if field.isdigit()}
        if entry.kind == "expired" or entry.job is None:
            reason = "expired" if entry.kind == "expired" else "unknown_campaign"
            entry.records = [entry.failed(i, "interrupted" if i in entry.on_wire else reason)
                             for i in range(len(entry.queued.targets))]
            self._finished.append(entry)
            return
        self._ready.append(entry)

    # ---- delivering ----------------------------------------------------------------------------

    def _start(self) -> None:
        while self._ready and len(self._running) < self.chunk:
            entry = self._ready.popleft()
            task = asyncio.ensure_future(self._deliver(entry))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _deliver(self, entry: _Entry) -> None:
        job = entry.job
        assert job is not None
        results = await asyncio.gather(*(self._pair(entry, job, i, sub) for i, sub in enumerate(job.targets)))
        for i, (sub, result) in enumerate(zip(job.targets, results, strict=True)):
            if i in entry.on_wire:
                entry.records.append(entry.failed(i, "interrupted"))
            elif result is not None:
                entry.records.append(delivery_record(job, sub, result))
                if result.deactivate:
                    entry.gone.append(unsubscribe_line(job, sub))
        if entry.refused:  # another dispatcher took it over: its outcome is theirs to record
            entry.records, entry.gone = [], []
        self._finished.append(entry)

    async def _pair(self, entry: _Entry, job: SendJob, i: int, sub: Subscription) -> Delivery | None:
        if i in entry.on_wire:
            return None
        async with self._chains.turn(sub.key):  # one request at a time to one subscription
            while not entry.refused:
                if sub.key in self._gone:
                    return Delivery(False, None, "subscription_inactive", 0)
                assert self._dispatcher is not None
                wire = _Wire(self, entry, i)
                try:
                    result = await self._dispatcher.deliver_one(job, sub, wire=wire)
                except Withheld:
                    if entry.refused:
                        break
                    await asyncio.sleep(RETRY_LATER)  # its mark could not be written: not sent yet
                    continue
                if result.deactivate:
                    self._gone[sub.key] = None
                    if len(self._gone) > GONE_REMEMBERED:
                        self._gone.popitem(last=False)
                return result
            return None

    # ---- committing ----------------------------------------------------------------------------

    def _commit_finished(self) -> None:
        """The records of the finished entries, their markers ``done`` and their XACK, one script per
        partition; on a connection error or timeout the results stay and the commit is retried."""
        from redis.exceptions import RedisError

        finished, self._finished = self._finished, []
        by_partition: dict[int, list[_Entry]] = {}
        for entry in finished:
            by_partition.setdefault(entry.p, []).append(entry)
        try:
            for p, group in list(by_partition.items()):
                args: list[Any] = [DISPATCH_GROUP]
                for entry in group:
                    args += [entry.eid, entry.owner, len(entry.records), *(_encode(o) for o in entry.records),
                             len(entry.gone), *entry.gone]
                written = self._commit(keys=[outbox_key(p), out_key(p), stream_key(p), *(e.marker for e in group)],
                                       args=args)
                for entry, mine in zip(group, written, strict=True):
                    self._committed(entry, bool(mine))
                del by_partition[p]
                self._trimmer.consumed(outbox_key(p))
        except RedisError as exc:  # a connection cut, a timeout, a failover: the results wait in memory
            self._finished = [e for group in by_partition.values() for e in group] + self._finished
            if self._failing_since is None:
                self._failing_since = time.monotonic()
            self._commit_wait = min(COMMIT_BACKOFF[1], max(COMMIT_BACKOFF[0], self._commit_wait * 2))
            self._next_commit = time.monotonic() + self._commit_wait
            self.stats["commit_retries"] += 1
            self.log(f"{self.id}: commit failed ({exc!r}); {len(self._finished)} results kept, "
                     f"retried in {self._commit_wait:.2f}s")
            return
        self._commit_wait = 0.0
        self._failing_since = None

    def _committed(self, entry: _Entry, written: bool) -> None:
        del self._held[entry.p, entry.eid]
        if not written:
            if entry.kind in ("mine", "expired"):
                self.stats["taken_over"] += 1
            return
        if entry.kind == "mine" and entry.job is not None:
            self.stats["sends"] += 1
        for record in entry.records:
            if record.outcome == "delivered":
                self.stats["delivered"] += 1
            elif record.reason == "interrupted":
                self.stats["interrupted"] += 1
            elif record.reason == "expired":
                self.stats["expired"] += 1
            else:
                self.stats["failed"] += 1

    # ---- keeping what is held ------------------------------------------------------------------

    def _refresh_held(self) -> None:
        """Every ``claim_idle_ms / 3``: the held entries' idle time back to 0 (only those still this
        dispatcher's); an entry another one claimed meanwhile is left to it."""
        by_partition: dict[int, list[str]] = {}
        for entry in self._held.values():
            by_partition.setdefault(entry.p, []).append(entry.eid)
        calls = [([outbox_key(p)], [DISPATCH_GROUP, self.id, *ids]) for p, ids in by_partition.items()]
        answers = self._scripts(self._refresh, calls)
        kept = {(p, text_of(eid)) for p, found in zip(by_partition, answers, strict=True) for eid in found}
        lost = set(self._held) - kept
        if lost:
            self.log(f"{self.id}: {len(lost)} entries were claimed by another dispatcher")
            for entry in [e for e in self._ready if (e.p, e.eid) in lost]:  # not started: simply theirs
                self._ready.remove(entry)
                del self._held[entry.p, entry.eid]
                self.stats["taken_over"] += 1

    def _scripts(self, script: Any, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """One script call per partition: pipelined on one node (a cluster pipeline takes no scripts)."""
        if self.cluster or len(calls) <= 1:
            return [script(keys=keys, args=args) for keys, args in calls]
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        return list(pipe.execute())
