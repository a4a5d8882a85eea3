"""Scale-out on Redis Streams, partitioned by user (DESIGN.md "Scale-out: Redis Streams, partitioned by user").

Keys (every per-partition key carries the hash tag ``{p}``, so a partition lives in one cluster slot):

- ``ev:{p}``    stream of input: field ``r`` = one raw JSON record line, or field ``end`` = an end marker
  (µs): "the input ends here; fire the timers due at or before it", as ``replay(..., until=)`` does;
- ``out:{p}``   stream of outputs: field ``o`` = one msgspec-JSON :class:`Output`;
- ``dl:{p}``    dead letters: ``r``/``end`` as read, ``id`` of the entry, ``error``;
- ``lease:{p}`` the id of the worker that owns the partition (``SET NX PX``, renewed by compare-and-pexpire);
- ``workers``   sorted set: worker id scored by its heartbeat's expiry (ms, Redis server time);
- plus the partition state of :class:`~pushlang.runtime.redis_store.RedisStore` (``u:{p}``, ``tm:{p}``, ...).

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

Every send also goes, in the same MULTI/EXEC, to the partition's outbox ``ob:{p}``, which the dispatch
workers of :mod:`pushlang.scaleout_dispatch` deliver (de-duplicated by send_id).

Consumed entries of ``ev:{p}`` (and, by the dispatch workers, of ``ob:{p}``) are trimmed once a
second while busy and when the stream goes idle (:func:`trim_consumed`). ``out:{p}`` is the output:
it is read by whatever the operator attaches (``collect_outputs``, a downstream consumer), so trimming
it is theirs to decide (``XTRIM out:{p} MINID …`` once read).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from pushlang import plan
from pushlang.runtime.engine import Engine, Output, SendJob
from pushlang.runtime.records import InvalidRecord, Reject, decode_record

if TYPE_CHECKING:
    import redis
    from redis.client import Pipeline

    from pushlang.runtime.redis_store import RedisStore

GROUP = "workers"
WORKERS_KEY = "workers"
MAX_DELIVERIES = 3
TRIM_EVERY = 1.0  # seconds: how often a busy partition's consumed entries are trimmed
DEFAULT_PARTITIONS = 256

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def stream_key(p: int) -> str:
    return f"ev:{{{p}}}"


def out_key(p: int) -> str:
    return f"out:{{{p}}}"


def dead_key(p: int) -> str:
    return f"dl:{{{p}}}"


def lease_key(p: int) -> str:
    return f"lease:{{{p}}}"


def text_of(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def field_of(fields: dict[Any, Any] | None, name: str) -> Any:
    if not fields:
        return None
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def trim_consumed(client: redis.Redis, stream: str, group: str) -> int:
    """Delete the entries of ``stream`` its consumer group is done with; how many went.

    Kept: the group's last-delivered entry and everything after it, and every entry from the oldest
    still pending (read, not acknowledged: a dead reader's batch that is yet to be claimed). Both are
    read in one MULTI/EXEC; after it, no entry below the cut can become pending again (new reads take
    later ids, claims move entries that are already pending), so nothing unfinished is lost."""
    from redis.exceptions import ResponseError

    pipe = client.pipeline(transaction=True)
    pipe.xinfo_groups(stream)
    pipe.xpending(stream, group)
    try:
        groups, pending = pipe.execute()
    except ResponseError as exc:
        if "NOGROUP" in str(exc):
            return 0  # no such stream or group (yet): nothing was consumed
        raise
    last = next((g["last-delivered-id"] for g in groups if text_of(g["name"]) == group), None)
    if last is None:
        return 0
    cut = _stream_id(text_of(last) or "0-0")
    if pending["pending"]:
        cut = min(cut, _stream_id(text_of(pending["min"]) or "0-0"))
    if cut <= (0, 0):
        return 0
    return int(client.xtrim(stream, minid=f"{cut[0]}-{cut[1]}", approximate=False))


class Trimmer:
    """Trims the streams whose entries a worker acknowledged: at most once every ``TRIM_EVERY``
    seconds while it is busy, and as soon as it finds no new work."""

    def __init__(self, client: redis.Redis, group: str) -> None:
        self.client, self.group = client, group
        self.streams: set[str] = set()  # acknowledged in since the last trim
        self._at = 0.0

    def consumed(self, stream: str) -> None:
        self.streams.add(stream)

    def maybe(self, idle: bool) -> None:
        if self.streams and (idle or time.monotonic() - self._at >= TRIM_EVERY):
            for stream in sorted(self.streams):
                trim_consumed(self.client, stream, self.group)
            self.streams.clear()
            self._at = time.monotonic()


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


# ---- ingest ------------------------------------------------------------------------------------


def ingest(client: redis.Redis, lines: Iterable[bytes | str], partitions: int = DEFAULT_PARTITIONS, *,
           end_at_last: bool = False, chunk: int = 1000) -> tuple[int, list[Reject]]:
    """Append each valid line (raw JSON, field ``r``) to ``ev:{partition_of(user)}``, in input order.

    Returns (records accepted, rejected lines with their 1-based line numbers). With ``end_at_last``,
    an end marker at the latest record instant follows (:func:`end_of_input`)."""
    from pushlang.runtime.redis_store import partition_of

    accepted = 0
    rejects: list[Reject] = []
    last: int | None = None
    pipe = client.pipeline(transaction=False)
    queued = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = decode_record(line)
        except InvalidRecord as exc:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            rejects.append(Reject(number, str(exc), text.rstrip("\r\n")))
            continue
        raw = line.rstrip(b"\r\n") if isinstance(line, bytes) else line.rstrip("\r\n")
        pipe.xadd(stream_key(partition_of(record.user, partitions)), {"r": raw})
        accepted += 1
        last = record.ts if last is None else max(last, record.ts)
        queued += 1
        if queued >= chunk:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()
    if end_at_last and last is not None:
        end_of_input(client, partitions, last)
    return accepted, rejects


def end_of_input(client: redis.Redis, partitions: int, until_us: int) -> None:
    """An end marker (field ``end`` = ``until_us``) on every partition stream: a worker reaching it
    fires the partition's timers due at or before ``until_us``, as ``replay`` does at its input's end."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.xadd(stream_key(p), {"end": str(until_us)})
    pipe.execute()


def collect_outputs(client: redis.Redis, partitions: int, chunk: int = 5000) -> list[dict[str, Any]]:
    """Every output written to ``out:{p}``, partition by partition, in stream order."""
    found: list[dict[str, Any]] = []
    for p in range(partitions):
        start = "-"
        while True:
            entries: Any = client.xrange(out_key(p), start, "+", count=chunk)
            for _eid, fields in entries:
                found.append(_decode(field_of(fields, "o")))
            if len(entries) < chunk:
                break
            start = "(" + text_of(entries[-1][0])  # type: ignore[operator]
    return found


# ---- the worker --------------------------------------------------------------------------------


class LeaseLost(Exception):
    """The partition's lease is someone else's (or nobody's): drop the partition, commit nothing."""


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


@functools.cache
def _fenced_store() -> type[RedisStore]:
    from redis.exceptions import WatchError

    from pushlang.runtime.redis_store import RedisStore

    class FencedStore(RedisStore):
        """A partition store that commits only together with the batch's XADD/XACK, and only while
        the lease is held (WATCH ``lease:{p}``). ``commit()`` without ``extra`` (the engine's own, at
        finish) is deferred to the batch's commit."""

        def commit(self, extra: Callable[[Pipeline], None] | None = None) -> None:
            if extra is not None:
                raise TypeError("use commit_fenced()")

        def close(self) -> None:
            if self._owns_client:
                self.client.close()

        def commit_fenced(self, lease: str, owner: str, extra: Callable[[Pipeline], None]) -> None:
            pipe = self.client.pipeline(transaction=True)
            try:
                pipe.watch(lease)  # type: ignore[no-untyped-call]
                if text_of(pipe.get(lease)) != owner:
                    raise LeaseLost(lease)
                pipe.multi()
                self._queue(pipe)
                extra(pipe)
                pipe.execute()
            except WatchError:
                raise LeaseLost(lease) from None
            finally:
                pipe.reset()
            self._dirty_users.clear()
            self._dirty_timers.clear()
            self._dirty_meta.clear()
            self._maybe_stored = self._maybe_stored or bool(self._users)

    return FencedStore


class _Partition:
    def __init__(self, worker: Worker, p: int) -> None:
        self.p = p
        self.stream = stream_key(p)
        self.lease = lease_key(p)
        self.outputs: list[Output] = []
        self.jobs: list[SendJob] = []  # sends for the dispatch workers (ob:{p})
        self.backlog = True  # read pending entries (id 0) before new ones (>)
        self.retry = False  # the first pending entry failed: re-read it alone
        self.store: Any = None
        self.engine: Engine | None = None
        self.load(worker)

    def load(self, worker: Worker) -> None:
        """State from Redis: only what committed batches wrote."""
        self.outputs = []
        self.jobs = []
        self.store = _fenced_store()(worker.client, self.p)
        self.engine = Engine(worker.plan, self.store, self.outputs.append, on_send=self.jobs.append)


class Worker:
    """Owns partitions through leases and runs the engine over their streams (module docstring)."""

    def __init__(self, client: redis.Redis, compiled: plan.Plan, worker_id: str | None = None,
                 partitions: int = DEFAULT_PARTITIONS, lease_ms: int = 3000, batch: int = 500,
                 log: Callable[[str], None] | None = None) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.client = client
        self.plan = compiled
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.partitions = partitions
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
        self._trimmer = Trimmer(client, GROUP)
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
            self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # the previous owner's unacknowledged entries become ours (JUSTID: not counted as a delivery)
        self._claim(keys=[stream], args=[GROUP, self.id])
        self.owned[p] = _Partition(self, p)
        self.stats["taken"] += 1
        self._took = True

    # ---- batches -------------------------------------------------------------------------------

    def _read(self, part: _Partition) -> list[tuple[Any, Any]]:
        if part.backlog:
            reply: Any = self.client.xreadgroup(GROUP, self.id, {part.stream: "0"},
                                                count=1 if part.retry else self.batch)
            entries = reply[0][1] if reply else []
            if entries:
                return list(entries)
            part.backlog = part.retry = False
        reply = self.client.xreadgroup(GROUP, self.id, {part.stream: ">"}, count=self.batch)
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
        pending: Any = self.client.xpending_range(part.stream, GROUP, min=eid, max=eid, count=1)
        deliveries = int(pending[0]["times_delivered"]) if pending else MAX_DELIVERIES
        if deliveries >= MAX_DELIVERIES:
            letter = {k: v for k, v in (fields or {}).items()}
            letter.update({"id": eid, "error": repr(error)[:2000], "worker": self.id})

            def dead(pipe: Pipeline) -> None:
                pipe.xadd(dead_key(part.p), letter)
                pipe.xack(part.stream, GROUP, eid)

            part.store.commit_fenced(part.lease, self.id, dead)
            self.stats["dead_letters"] += 1
            part.retry = False
        else:
            part.retry = True
        part.backlog = True  # the rest of the batch is pending: read it again
        return True

    def _apply(self, part: _Partition, fields: Any) -> None:
        engine = part.engine
        assert engine is not None
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
        from pushlang.scaleout_dispatch import outbox_entry, outbox_key

        outputs, jobs = list(part.outputs), list(part.jobs)
        target, outbox = out_key(part.p), outbox_key(part.p)

        def extra(pipe: Pipeline) -> None:
            for out in outputs:
                pipe.xadd(target, {"o": _encode(out)})
            for job in jobs:
                pipe.xadd(outbox, {"j": outbox_entry(job)})
            if ids:
                pipe.xack(part.stream, GROUP, *ids)

        if not ids and not outputs and not jobs and not part.store.dirty:
            return
        part.store.commit_fenced(part.lease, self.id, extra)
        part.outputs.clear()
        part.jobs.clear()
        if ids:
            self._trimmer.consumed(part.stream)
        self.stats["batches"] += 1


# ---- the CLI -----------------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = commands.add_parser(
        "worker", help="run campaigns on partitions of a Redis (scale-out)",
        description="Own partitions of the input streams on a Redis through expiring leases and run the "
                    "campaigns over them; outputs go to the streams out:{p}. Start as many as needed: "
                    "partitions are shared among the live workers and move when one joins or dies.",
    )
    w.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    w.add_argument("--redis", required=True, metavar="URL", help="redis://host:port/db (rediss:// for TLS)")
    w.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions: the same for ingest and every worker (default {DEFAULT_PARTITIONS})")
    w.add_argument("--id", metavar="NAME", help="worker id (default: host-pid-random); unique per process")
    w.add_argument("--lease-ms", type=int, default=3000, metavar="MS", help="lease time (default 3000)")
    w.add_argument("--batch", type=int, default=500, metavar="N", help="records per transaction (default 500)")
    w.add_argument("--idle-exit", type=float, metavar="SECONDS",
                   help="exit when no partition had work for this long (default: run until interrupted)")
    w.add_argument("--config", metavar="FILE", help="pushlang.toml to use")

    i = commands.add_parser(
        "ingest", help="append records to the partition streams of a Redis",
        description="Append JSON Lines records to the streams ev:{p} of a Redis (p = crc32(user) % N); "
                    "bad lines are reported with their line numbers and skipped. End markers — `the input "
                    "ends here: fire the timers due by then`, as `replay --until` does — are written only "
                    "with --until DATETIME (at that instant) or --end (at the last record's instant); "
                    "without them workers keep the timers pending for later input.",
    )
    i.add_argument("file", nargs="?", default="-", metavar="FILE", help="records as JSON Lines (.gz too), or - (default)")
    i.add_argument("--to", required=True, metavar="URL", help="redis://host:port/db")
    i.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, metavar="N",
                   help=f"number of partitions (default {DEFAULT_PARTITIONS})")
    group = i.add_mutually_exclusive_group()
    group.add_argument("--until", metavar="DATETIME", help="then write end markers at this instant")
    group.add_argument("--end", action="store_true", help="then write end markers at the last record's instant")


def run(args: argparse.Namespace) -> int:
    import redis

    if args.command == "ingest":
        from pushlang.runtime.hosts import open_records, parse_until

        until = parse_until(args.until, "UTC")
        client = redis.Redis.from_url(args.to)
        try:
            with open_records(args.file) as lines:
                accepted, rejects = ingest(client, lines, args.partitions, end_at_last=args.end)
            if until is not None:
                end_of_input(client, args.partitions, until)
        finally:
            client.close()
        for r in rejects:
            print(f"line {r.line}: {r.reason}", file=sys.stderr)
        print(f"ingested {accepted} records into {args.partitions} partitions, {len(rejects)} rejected",
              file=sys.stderr)
        return 1 if rejects else 0

    from pushlang.compiler import compile_paths

    result = compile_paths(args.paths, config_path=args.config)
    result.report()
    if result.plan is None:
        return 1
    client = redis.Redis.from_url(args.redis)
    worker = Worker(client, result.plan, args.id, args.partitions, args.lease_ms, args.batch,
                    log=lambda message: print(message, file=sys.stderr, flush=True))
    started = time.perf_counter()
    try:
        worker.run(idle_exit=args.idle_exit)
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
    s = worker.stats
    print(f"{worker.id}: {s['records']} records, {s['batches']} batches, {s['dead_letters']} dead letters, "
          f"{s['taken']} partitions taken, {s['released']} released, {time.perf_counter() - started:.1f}s",
          file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pushlang.scaleout worker|ingest ...`` (the same as ``pushlang worker|ingest``)."""
    parser = argparse.ArgumentParser(prog="pushlang")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
