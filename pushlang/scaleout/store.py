"""The scale-out store (DESIGN.md "Scale-out: Redis Streams, partitioned by user"): one partition.

A :class:`RedisStore` holds the state of ONE partition ``p`` (users map to partitions with
:func:`~pushlang.scaleout.keys.partition_of`), and every key it writes carries the hash tag ``{p}``, so
the whole partition lives in one Redis Cluster slot and one MULTI/EXEC can span all of it:

- ``u:{p}``    hash: user id → the msgspec-JSON encoded :class:`UserState` (profile, subscriptions,
  history, counters, windows, sends, first_seen);
- ``tm:{p}``   sorted set: timer key, scored by due;
- ``tmd:{p}``  hash: timer key → the encoded :class:`Timer`;
- ``meta:{p}`` hash: bookkeeping key → JSON value.

As in :class:`~pushlang.runtime.sqlite_store.SqliteStore`, the inherited dictionaries are a cache:
a user is loaded (one HGET) the first time it is touched, timers and meta are loaded at
construction, every mutation changes memory and records what changed, and ``commit()`` writes the
net effect in one MULTI/EXEC. A changed user is rewritten whole (one HSET field): simple and
idempotent, at the cost of re-encoding that user's retained history once per batch.

Every write is "set this key to its current value", so retrying a failed ``commit()`` is safe.
Values must be JSON-shaped: tuples come back as lists, non-string keys as strings.

A partition is meant to have one writer at a time: the worker holding its lease. A *fenced* store
(``fenced=True``, the workers') commits only through :meth:`RedisStore.commit_fenced`, in the batch's
transaction and only while the lease is the worker's, so a worker that lost its lease writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from pushlang.runtime.store import MemoryStore, PersistentStore, Subscription, Timer, UserState, Window
from pushlang.scaleout.keys import meta_key, throttle_key, timer_data_key, timers_key, users_key, winner_key
from pushlang.scaleout.streams import text_of

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode
_decode_timer = msgspec.json.Decoder(Timer).decode  # its fields hold no classes


def decode_user(raw: bytes | str) -> UserState:
    """A user's state from the JSON ``u:{p}`` keeps, built field by field: msgspec is not given the
    class because the compiled build (DEVELOPERS.md) keeps no element types in a dataclass's
    annotations, so it would leave subscriptions, windows and events as plain JSON. A field an
    earlier version did not write takes its default."""
    d = _decode_any(raw)
    return UserState(
        d["user"],
        d["first_seen"],
        d.get("profile") or {},
        {key: Subscription(**sub) for key, sub in (d.get("subscriptions") or {}).items()},
        {name: [(ts, props) for ts, props in events] for name, events in (d.get("history") or {}).items()},
        d.get("counters") or {},
        [Window(**window) for window in d.get("windows") or ()],
        set(d.get("sends") or ()),
    )


# A throttle period's counter is shared by every partition and taken at once, outside the batch's
# transaction: a slot is never given twice, and a worker that crashes (or loses its lease) before its
# batch commits leaves the slots it took taken, with nothing sent in them (SPEC §12.1: a period may
# hold fewer than N sends, never more). KEYS[1]: the first period's key (its hash tag names the slot
# of every period of the campaign); ARGV: the key's prefix, the first period, the period's length, N.
_THROTTLE_ROOM = """
local prefix, period, length, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for _ = 1, 100000 do
  local taken = tonumber(redis.call('GET', prefix .. string.format('%d', period)) or '0')
  if taken < cap then return string.format('%d', period) end
  period = period + length
end
return string.format('%d', period)
"""
_THROTTLE_TAKE = """
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], 604800000)
return 1
"""

FENCE_ATTEMPTS = 5  # fenced commits aborted by a change of the lease before it is called lost


class LeaseLost(Exception):
    """The partition's lease is someone else's (or nobody's): drop the partition, commit nothing."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStore(PersistentStore):
    """A :class:`MemoryStore` whose state lives in Redis, for one partition.

    Not thread-safe: one writer, its caller serialises calls. Callers must not keep a
    :class:`UserState` across stores. The client may use ``decode_responses`` or not.
    """

    def __init__(self, client: redis.Redis, partition: int, *, owns_client: bool = False,
                 fenced: bool = False, partitions: int | None = None) -> None:
        super().__init__()
        if partition < 0:
            raise ValueError(f"partition must be non-negative, got {partition}")
        self.client = client
        self.partition = partition
        self.users_key = users_key(partition)
        self.timers_key = timers_key(partition)
        self.timer_data_key = timer_data_key(partition)
        self.meta_key = meta_key(partition)
        self.fenced = fenced
        self.partitions = partitions  # how many partitions share the users (None: this one holds them all)
        self._owns_client = owns_client
        self._closed = False
        self._dirty_users: dict[str, UserState] = {}
        # False while Redis is known to hold no user that memory lacks: new users skip the HGET.
        self._maybe_stored = bool(client.hlen(self.users_key))

        timers: dict[Any, Any] = client.hgetall(self.timer_data_key)  # type: ignore[assignment]
        for value in timers.values():
            MemoryStore.add_timer(self, _decode_timer(value))
        meta: dict[Any, Any] = client.hgetall(self.meta_key)  # type: ignore[assignment]
        for key, value in meta.items():
            self._meta[_text(key)] = _decode_any(value)
        self._room = client.register_script(_THROTTLE_ROOM)
        self._take = client.register_script(_THROTTLE_TAKE)

    # ---- throttle periods: shared by every partition (keys.throttle_key) -------------------------

    def throttle_count(self, campaign: str, period: int) -> int:
        return int(text_of(self.client.get(throttle_key(campaign, period))) or 0)

    def _first_room(self, campaign: str, period: int, length: int, cap: int) -> int:
        prefix = throttle_key(campaign, 0)[:-1]
        return int(text_of(self._room(keys=[throttle_key(campaign, period)], args=[prefix, period, length, cap])) or 0)

    def throttle_take(self, campaign: str, period: int, cap: int) -> bool:
        return bool(self._take(keys=[throttle_key(campaign, period)], args=[cap]))

    def throttle_forget(self, before: int) -> None:
        """Nothing to do: the shared periods expire by themselves."""
        self._full.clear()

    # ---- winner tests: a barrier on every partition's part of the tally ---------------------------

    def test_tally(self, campaign: str, s: int, local: dict[str, list[int]]) -> dict[str, list[int]] | None:
        """This partition's part goes into ``wt:{c:…}:<s>`` (set, not added: a batch done again writes the
        same); the sum once every partition's clock has reached s + D and written its part, else None."""
        if self.partitions is None:
            return local
        key = winner_key(campaign, s)
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, str(self.partition), _encode(local))
        pipe.pexpire(key, 604800000)
        pipe.hgetall(key)
        parts: dict[Any, Any] = pipe.execute()[-1]
        if len(parts) < self.partitions:
            return None
        total = {variant: [0, 0] for variant in local}
        for value in parts.values():
            for variant, (hits, sends) in _decode_any(value).items():
                if variant in total:
                    total[variant][0] += hits
                    total[variant][1] += sends
        return total

    @property
    def writes_campaign_records(self) -> bool:
        return self.partition == 0

    # ---- users ---------------------------------------------------------------------------------

    def user_ids(self) -> list[str]:
        stored: list[Any] = self.client.hkeys(self.users_key)  # type: ignore[assignment]
        return sorted({_text(k) for k in stored}.union(self._users))

    def _load(self, user: str) -> UserState | None:
        raw: Any = self.client.hget(self.users_key, user)
        if raw is None:
            return None
        state = decode_user(raw)
        self._users[user] = state
        return state

    def _dirt(self, state: UserState) -> None:
        self._dirty_users[state.user] = state

    def _created(self, state: UserState) -> None:
        self._dirt(state)

    def merge_profile(self, state: UserState, props: dict[str, Any]) -> None:
        super().merge_profile(state, props)
        if props:
            self._dirt(state)

    def put_subscription(self, state: UserState, sub: Subscription) -> None:
        super().put_subscription(state, sub)
        self._dirt(state)

    def set_active(self, state: UserState, key: str, active: bool) -> None:
        super().set_active(state, key, active)
        if key in state.subscriptions:
            self._dirt(state)

    def add_event(self, state: UserState, name: str, ts: int, props: dict[str, Any]) -> None:
        super().add_event(state, name, ts, props)
        self._dirt(state)

    def prune_history(self, state: UserState, name: str, before: int) -> int:
        removed = super().prune_history(state, name, before)
        if removed:
            self._dirt(state)
        return removed

    def bump_counter(self, state: UserState, key: str) -> None:
        super().bump_counter(state, key)
        self._dirt(state)

    def set_counter(self, state: UserState, key: str, value: int) -> None:
        super().set_counter(state, key, value)
        self._dirt(state)

    def drop_counter(self, state: UserState, key: str) -> None:
        if key in state.counters:
            super().drop_counter(state, key)
            self._dirt(state)

    def add_send(self, state: UserState, send_id: str) -> None:
        if send_id not in state.sends:
            super().add_send(state, send_id)
            self._dirt(state)

    def open_window(self, state: UserState, window: Window) -> None:
        super().open_window(state, window)
        self._dirt(state)

    def close_window(self, state: UserState, window: Window) -> None:
        super().close_window(state, window)
        self._dirt(state)

    # ---- bookkeeping ---------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Whether there are changes not yet committed."""
        return bool(self._dirty_users or self._dirty_timers or self._dirty_meta)

    def commit(self, extra: Callable[[Pipeline], None] | None = None) -> None:
        """Write everything changed since the last commit in ONE MULTI/EXEC on the partition's slot.

        ``extra`` is called with the transaction's pipeline after the state writes are queued, to
        add the caller's commands (a worker's XACK, outbox XADDs) to the same transaction; its
        keys must carry the same hash tag on a cluster. Without changes and without ``extra``
        nothing is sent. If EXEC fails, the pending changes are kept and a later commit retries.
        A fenced store commits only through :meth:`commit_fenced`: here it does nothing.
        """
        if self.fenced or (not self.dirty and extra is None):
            return
        pipe = self.client.pipeline(transaction=True)
        self._queue(pipe)
        if extra is not None:
            extra(pipe)
        pipe.execute()
        self._written()

    def commit_fenced(self, lease: str, owner: str, extra: Callable[[Pipeline], None]) -> None:
        """Commit with ``extra`` (the batch's XADDs and XACK) only while ``lease`` names ``owner``:
        WATCH the lease, check it, MULTI/EXEC. Raises :class:`LeaseLost` (nothing written) otherwise.
        The owner's own renewals touch the lease too: a transaction they abort is tried again."""
        for _attempt in range(FENCE_ATTEMPTS):
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
                continue  # the lease changed between WATCH and EXEC: renewed (ours still) or taken
            finally:
                pipe.reset()
            self._written()
            return
        raise LeaseLost(lease)

    def _written(self) -> None:
        self._dirty_users.clear()
        self._dirty_timers.clear()
        self._dirty_meta.clear()
        self._maybe_stored = self._maybe_stored or bool(self._users)

    def _queue(self, pipe: Pipeline) -> None:
        if self._dirty_users:
            pipe.hset(self.users_key, mapping={u: _encode(s) for u, s in self._dirty_users.items()})
        due: dict[str, int] = {}
        data: dict[str, bytes] = {}
        gone: list[str] = []
        for key in self._dirty_timers:
            timer = self._timers.get(key)
            if timer is None:
                gone.append(key)
            else:
                due[key] = timer.due
                data[key] = _encode(timer)
        if due:
            pipe.zadd(self.timers_key, due)  # type: ignore[arg-type]
            pipe.hset(self.timer_data_key, mapping=data)  # type: ignore[arg-type]
        if gone:
            pipe.zrem(self.timers_key, *gone)
            pipe.hdel(self.timer_data_key, *gone)
        if self._dirty_meta:
            pipe.hset(self.meta_key, mapping={k: _encode(self._meta[k]) for k in self._dirty_meta})

    def close(self) -> None:
        """Commit (unless fenced: a worker's uncommitted batch is given up) and let go of the client."""
        if self._closed:
            return
        self.commit()
        self._closed = True
        if self._owns_client:
            self.client.close()


def open_redis_store(url: str, partition: int) -> RedisStore:
    """A :class:`RedisStore` for ``partition`` on the Redis at ``url`` (``redis://host:port/db``,
    ``rediss://`` for TLS, ``unix://``); the store owns the connection and closes it on close()."""
    return RedisStore(redis.Redis.from_url(url), partition, owns_client=True)
