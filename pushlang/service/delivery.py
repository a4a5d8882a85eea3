"""The live service's delivery: every (send, subscription) pair of the outbox is one request that
goes out as soon as its decision is committed, on its own, so nothing waits for a batch.

The outbox lives in the store, so a crash loses nothing and sends nothing twice:

- ``outbox:<send_id>`` is written with the decision (same transaction): the queued send and the
  keys of the subscriptions it is ``done`` with. It is removed when every pair has its record.
- ``sending:<send_id>|<key>`` is written (committed, on its own) just before that pair's first
  request goes out — after it has its turn in its push service's queue — and removed with the
  pair's ``delivered`` / ``failed`` record (same transaction).

At start, a pair with a ``sending`` mark was on the wire when the process died: it is recorded
``failed`` (``interrupted``), never sent again. Every other pair not ``done`` is delivered.

Requests to one subscription go one after another (a push service that says it is gone is not
asked again); different subscriptions and push services do not wait for each other. A halted
channel (its credentials were rejected) keeps its sends pending, parked, until an operator resumes
it (``POST /v1/channels/NAME/resume``, or a reload); then they go out. On SIGTERM nothing new
starts, the requests on the wire get a grace period, and the rest stay pending for the next start.
The loop is supervised: an unexpected error is logged, counted in ``/healthz`` and the loop
restarted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from pushlang import plan
from pushlang.dispatch.base import Chains, Delivery, Withheld
from pushlang.dispatch.dispatcher import Dispatcher, channel_of, delivery_record
from pushlang.dispatch.webpush import endpoint_origin
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.engine import SendJob
from pushlang.runtime.instants import iso
from pushlang.runtime.outcomes import Output
from pushlang.runtime.pipeline import queued_from
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import Subscription

log = logging.getLogger("pushlang.service")

OUTBOX = "outbox:"
SENDING = "sending:"
# What a halted channel answers: the send is kept, not failed.
HALTED = frozenset({"channel_halted", "vapid_rejected", "apns_auth_rejected"})
ORIGIN_IN_FLIGHT = 1024  # pairs worked on at once per push service; the rest wait in its queue (cheaply)
MAX_IN_FLIGHT = 16_384  # and in all (memory); the push services take turns for the free places
RETRY_LATER = 5.0  # seconds before a pair whose mark could not be written is tried again
WITHDRAWN_FOR = 3600.0  # seconds an erased user's send_ids are remembered (far longer than any retry)

Pair = tuple[SendJob, Subscription]


def origin_of(sub: Subscription) -> str:
    """The push service a subscription's requests go to: its queue (APNs is one)."""
    return "apns" if sub.device_token else endpoint_origin(sub.endpoint or "")


class _Mark:
    """A pair's ``sending`` mark: written (committed) just before each request goes out, removed
    while it waits to try again, and removed with its record once it has an answer."""

    __slots__ = ("deliveries", "doubtful", "key", "marked", "send_id", "user")

    def __init__(self, deliveries: Deliveries, job: SendJob, sub: Subscription) -> None:
        self.deliveries, self.send_id, self.user = deliveries, job.send_id, job.user
        self.key = f"{SENDING}{job.send_id}|{sub.key}"
        self.marked = False
        self.doubtful = False  # a request timed out: a copy may be at the push service

    def on(self) -> None:
        deliveries = self.deliveries
        if deliveries.stopping or self.send_id in deliveries.withdrawn:
            raise Withheld  # SIGTERM, or the user was erased: this request never goes out
        if not self.marked:
            try:
                deliveries.store.put_meta_now(self.key, {"at": round(time.time()), "user": self.user})
            except sqlite3.Error as error:  # the disk is full…: not sent without its mark, tried later
                log.error("cannot mark a request as sending (%s): it is tried again later", error)
                raise Withheld from None
            self.marked = True

    def doubt(self) -> None:
        self.doubtful = True

    def off(self) -> None:
        """Lifted, unless a request timed out: a copy may be at the push service, so after a crash
        or a stop the pair counts as on the wire (interrupted), never sent again."""
        if self.marked and not self.doubtful:
            try:
                self.deliveries.store.put_meta_now(self.key, None)
            except sqlite3.Error as error:  # it stays marked: after a crash it counts as on the wire
                log.error("cannot lift a request's sending mark (%s)", error)
                return
            self.marked = False


def outbox_entry(job: SendJob) -> dict[str, Any]:
    """What the outbox keeps of a send when it is decided."""
    return {**msgspec.to_builtins(job.queued()), "state": "pending", "done": []}


class Deliveries:
    """The outbox's delivery loop for one `pushlang serve` (see the module's docstring)."""

    def __init__(self, store: SqliteStore, activity: ActivityLog, commit: Callable[[], Awaitable[None]],
                 dispatcher: Dispatcher | None, *, grace: float = 10.0) -> None:
        self.store = store
        self.activity = activity
        self.dispatcher = dispatcher
        self.grace = grace
        self._commit = commit
        self._queues: dict[str, collections.deque[Pair]] = {}  # per push service (origin)
        self._busy: collections.Counter[str] = collections.Counter()  # pairs under way per origin
        self._wake = asyncio.Event()
        self._turn = 0  # which push service is served first in the next round
        self._in_flight: set[asyncio.Task[None]] = set()
        self._chains = Chains()
        self._working: dict[tuple[str, str], str] = {}  # (send_id, key) of the pairs under way → user
        self.withdrawn: dict[str, float] = {}  # send_ids of erased users (→ when): never sent, never recorded
        self._uses: collections.Counter[Dispatcher] = collections.Counter()  # requests under way per dispatcher
        self._retired: set[Dispatcher] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self.parked: dict[str, list[Pair]] = {}
        self.stopping = False
        self.restarts = 0
        self.last_error: str | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None

    # ---- what comes in --------------------------------------------------------------------------

    def submit(self, job: SendJob) -> None:
        """A committed send: each of its subscriptions is a request to make."""
        for sub in job.targets:
            self._enqueue((job, sub))
        self._wake.set()

    def _enqueue(self, pair: Pair) -> None:
        origin = origin_of(pair[1])
        queue = self._queues.get(origin)
        if queue is None:
            queue = self._queues[origin] = collections.deque()
        queue.append(pair)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def recover(self, campaigns: Callable[[str], plan.Campaign | None]) -> None:
        """What a crash left in the outbox: pairs that were on the wire are failed (``interrupted``),
        the others are submitted again. The caller commits."""
        store = self.store
        marks = {key[len(SENDING):] for key, _ in store.meta_items(SENDING)}
        for key, entry in store.meta_items(OUTBOX):
            queued = queued_from(entry, key[len(OUTBOX):])  # also as an earlier version wrote it
            campaign = campaigns(queued.campaign)
            state = store.get(queued.user)
            done = list(entry.get("done") or ())
            all_on_the_wire = entry.get("state") == "sending"  # an earlier version marked a whole batch
            remaining: list[Subscription] = []
            for target in queued.targets:
                if target.key in done:
                    continue
                on_the_wire = all_on_the_wire or f"{queued.send_id}|{target.key}" in marks
                if on_the_wire or campaign is None or state is None:
                    reason = "interrupted" if on_the_wire else "campaign_removed" if campaign is None else "user_removed"
                    self.activity.record(Output(iso(queued.at), queued.campaign, queued.user, "failed", reason,
                                                queued.send_id, platforms=[target.platform]))
                    done.append(target.key)
                else:
                    remaining.append(state.subscriptions.get(target.key) or target.subscription())
            if remaining and campaign is not None:
                store.set_meta(key, {**entry, "state": "pending", "done": done})
                self.submit(SendJob.from_queued(queued, campaign, tuple(remaining)))
            else:
                store.set_meta(key, None)
        for mark in marks:
            store.set_meta(SENDING + mark, None)

    # ---- the loop -------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        """Run the loop; an unexpected error is logged and counted, and the loop goes on."""
        while not self.stopping:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.restarts += 1
                self.last_error = type(error).__name__  # /healthz is public: the type, not the message
                log.exception("the delivery loop failed (restart %d)", self.restarts)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(self.restarts, 6)))

    async def _run(self) -> None:
        while not self.stopping:
            await self._wake.wait()
            self._wake.clear()
            origins = list(self._queues)
            self._turn = (self._turn + 1) % max(1, len(origins))
            for origin in origins[self._turn:] + origins[:self._turn]:  # each push service has its own room
                queue = self._queues[origin]
                while (queue and self._busy[origin] < ORIGIN_IN_FLIGHT and len(self._in_flight) < MAX_IN_FLIGHT
                       and not self.stopping):
                    job, sub = queue.popleft()
                    self._busy[origin] += 1
                    task = asyncio.create_task(self._pair(job, sub, origin))
                    self._in_flight.add(task)
                    task.add_done_callback(self._finished)
                if not queue:
                    del self._queues[origin]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.last_error = type(error).__name__
            log.error("a delivery failed unexpectedly", exc_info=error)
        if self._queues:
            self._wake.set()

    async def _pair(self, job: SendJob, sub: Subscription, origin: str) -> None:
        try:
            async with self._chains.turn(sub.key):  # one request at a time to one subscription
                if not self.stopping and job.send_id not in self.withdrawn:
                    self._working[(job.send_id, sub.key)] = job.user
                    try:
                        await self._deliver(job, sub)
                    finally:
                        self._working.pop((job.send_id, sub.key), None)
        finally:
            self._busy[origin] -= 1
            if self._busy[origin] <= 0:
                del self._busy[origin]

    async def _deliver(self, job: SendJob, sub: Subscription) -> None:
        state = self.store.get(job.user)
        if state is None:  # the user was erased meanwhile: nothing of them is sent or written
            return
        current = state.subscriptions.get(sub.key)
        if current is None or not current.active:  # gone since the decision (or by an earlier send)
            self._done(job, sub, Delivery(False, None, "subscription_inactive", 0))
            return
        dispatcher = self.dispatcher
        if dispatcher is None:
            self._done(job, sub, Delivery(False, None, "delivery_not_configured", 0))
            return
        channel = channel_of(sub)
        if channel in dispatcher.halted:
            self.parked.setdefault(channel, []).append((job, sub))
            return
        mark = _Mark(self, job, sub)
        self._uses[dispatcher] += 1
        try:
            result = await dispatcher.deliver_one(job, current, wire=mark)
        except Withheld:  # SIGTERM (pending for the next start), an erasure, or no mark: not sent
            mark.off()  # kept if a request timed out: then it counts as interrupted
            if not self.stopping and job.send_id not in self.withdrawn and not mark.doubtful:
                asyncio.get_running_loop().call_later(RETRY_LATER, self._again, job, sub)
            return
        finally:
            self._release(dispatcher)
        if result.reason in HALTED and not mark.doubtful:  # kept: it goes out when the channel is resumed
            mark.off()
            if dispatcher is self.dispatcher and channel in dispatcher.halted:
                self.parked.setdefault(channel, []).append((job, sub))
            else:  # resumed (or new channels) while it was out: it goes again now
                self._again(job, sub)
            return
        if result.reason in HALTED:  # a copy of an earlier attempt may have arrived: not sent again
            result = Delivery(False, result.status, "timeout", result.attempts)
        if mark.marked:
            self.store.set_meta(mark.key, None)  # removed with the record, in one transaction
        self._done(job, sub, result)

    def retire(self, dispatcher: Dispatcher) -> None:  # see use()
        """Channels replaced by new ones: closed once the requests still using them are done."""
        self._retired.add(dispatcher)
        self._release(dispatcher, 0)

    def _release(self, dispatcher: Dispatcher, uses: int = 1) -> None:
        self._uses[dispatcher] -= uses
        if self._uses[dispatcher] <= 0:
            del self._uses[dispatcher]
            if dispatcher in self._retired:
                self._retired.discard(dispatcher)
                task = asyncio.ensure_future(dispatcher.__aexit__(None, None, None))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def _again(self, job: SendJob, sub: Subscription) -> None:
        if not self.stopping:
            self._enqueue((job, sub))
            self._wake.set()

    def _done(self, job: SendJob, sub: Subscription, result: Delivery) -> None:
        """The pair's record, its subscription deactivated if the push service said it is gone, and
        its outbox entry updated: all committed together, soon."""
        store = self.store
        if result.deactivate and (state := store.get(job.user)) is not None:
            store.set_active(state, sub.key, False)
        self.activity.record(delivery_record(job, sub, result))
        key = OUTBOX + job.send_id
        entry = store.meta(key)
        if entry is not None:
            done = [*entry.get("done", ()), sub.key]
            finished = {t.key for t in job.targets} <= set(done)
            store.set_meta(key, None if finished else {**entry, "done": done})
        self._soon_commit()

    def _soon_commit(self) -> None:
        if self._commit_task is None or self._commit_task.done():
            self._commit_task = asyncio.create_task(self._commit_later())

    async def _commit_later(self) -> None:
        await asyncio.sleep(0.01)  # the records of the requests finishing together: one transaction
        await self._commit()

    # ---- operators ------------------------------------------------------------------------------

    def use(self, dispatcher: Dispatcher | None) -> None:
        """New channels (a reload or a resume read the keys again): the old ones close once the
        requests still on them are done, and what a halt kept goes out on the new ones."""
        old, self.dispatcher = self.dispatcher, dispatcher
        if old is not None:
            self.retire(old)
        for pairs in self.parked.values():
            for pair in pairs:
                self._enqueue(pair)
        self.parked.clear()
        self._wake.set()

    def forget(self, user: str, send_ids: Iterable[str]) -> set[str]:
        """An erased user: their sends (``send_ids``, and any queued or parked) are withdrawn — no
        request of them starts any more, not even a retry; the send_ids of those on the wire now
        (their records, when they come back, are written under the erasure's anonymous ids)."""
        withdrawn = set(send_ids)
        for queue in self._queues.values():
            withdrawn.update(job.send_id for job, _ in queue if job.user == user)
        for name, pairs in self.parked.items():
            withdrawn.update(job.send_id for job, _ in pairs if job.user == user)
            self.parked[name] = [pair for pair in pairs if pair[0].user != user]
        on_the_wire = {send_id for (send_id, _), who in self._working.items() if who == user}
        now = time.monotonic()
        for send_id in [s for s, at in self.withdrawn.items() if at < now - WITHDRAWN_FOR]:
            del self.withdrawn[send_id]  # long done: no pair of it can still be around
        self.withdrawn.update(dict.fromkeys(withdrawn | on_the_wire, now))
        for origin, queue in self._queues.items():
            self._queues[origin] = collections.deque(pair for pair in queue if pair[0].user != user)
        return on_the_wire

    def health(self) -> dict[str, Any]:
        task = self._loop_task
        running = task is not None and not task.done() and not self.stopping
        return {"state": "running" if running else "stopped", "restarts": self.restarts,
                "last_error": self.last_error, "queued": self.queued, "in_flight": len(self._in_flight),
                "parked": {name: len(pairs) for name, pairs in self.parked.items() if pairs},
                "halted": self.dispatcher.halted if self.dispatcher is not None else {}}

    async def stop(self) -> None:
        """Take no more work; give the requests on the wire ``grace`` seconds, then cancel them (their
        ``sending`` marks stay: recorded as interrupted at the next start). Queued pairs stay pending."""
        self.stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight), timeout=self.grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("%d requests were still on the wire after %.0f s: recorded as interrupted at the "
                            "next start", len(late), self.grace)
        if self._commit_task is not None:
            await asyncio.gather(self._commit_task, return_exceptions=True)
        for dispatcher in [*self._retired, self.dispatcher]:  # the retired: used by a request cancelled
            if dispatcher is not None:
                await dispatcher.__aexit__(None, None, None)
        self._retired.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
