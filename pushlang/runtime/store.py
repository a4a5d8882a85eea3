"""The engine's memory, keyed by user id (DESIGN.md "State, keyed by user"): the `Store` protocol
and the in-memory store.

Every change goes through a method of the store, so a persistent store (SQLite, Redis) can write
exactly what changed. Timers are the one structure not owned by a user: a scheduled campaign's
occurrence belongs to everybody.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from mypy_extensions import mypyc_attr

from pushlang.runtime.best_time import Runs, count_hours


@dataclass(slots=True)
class Subscription:
    key: str  # the endpoint, or the device token of legacy Safari
    platform: str
    since: int
    endpoint: str | None = None
    keys: dict[str, str] | None = None
    device_token: str | None = None
    active: bool = True


@dataclass(slots=True)
class Window:
    """An open conversion window of a send or control decision: (start, end]."""

    campaign: str
    send_id: str
    start: int
    end: int
    variant: str | None = None  # the decision's variant: its `convert` record carries it (SPEC §12.3)
    lang: str | None = None  # the decision's language: its `convert` record carries it (SPEC §9.4)


@dataclass(slots=True)
class UserState:
    user: str
    first_seen: int
    profile: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    history: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # "campaign|period" → sends
    windows: list[Window] = field(default_factory=list)
    sends: set[str] = field(default_factory=set)


@dataclass(slots=True, order=True)
class Timer:
    """Something due at an instant. ``key`` is unique: re-arming replaces, cancelling removes."""

    due: int
    campaign: str
    user: str  # the user; for a scheduled campaign's occurrence, the zone it is for
    key: str = field(compare=False)
    kind: str = field(compare=False)  # inaction | at | delay | occurrence
    payload: dict[str, Any] = field(compare=False, default_factory=dict)


THROTTLE = "throttle:"  # the meta entries of throttle periods


class Store(Protocol):
    """What the engine, replay and reach need of a store: users, their state's changes, timers and
    bookkeeping. :class:`MemoryStore`, ``SqliteStore`` and ``RedisStore`` implement it."""

    # users
    def get(self, user: str) -> UserState | None: ...
    def user(self, user: str, ts: int) -> UserState: ...
    def user_ids(self) -> list[str]: ...
    def preload(self, users: Iterable[str]) -> None: ...
    def merge_profile(self, state: UserState, props: dict[str, Any]) -> None: ...
    def put_subscription(self, state: UserState, sub: Subscription) -> None: ...
    def set_active(self, state: UserState, key: str, active: bool) -> None: ...
    def add_event(self, state: UserState, name: str, ts: int, props: dict[str, Any]) -> None: ...
    def prune_history(self, state: UserState, name: str, before: int) -> int: ...
    def bump_counter(self, state: UserState, key: str) -> None: ...
    def set_counter(self, state: UserState, key: str, value: int) -> None: ...
    def drop_counter(self, state: UserState, key: str) -> None: ...
    def add_send(self, state: UserState, send_id: str) -> None: ...
    def open_window(self, state: UserState, window: Window) -> None: ...
    def close_window(self, state: UserState, window: Window) -> None: ...
    # throttle periods (SPEC §12.1): per campaign, shared by every user (in scale-out, by every worker)
    def throttle_count(self, campaign: str, period: int) -> int: ...
    def throttle_room(self, campaign: str, period: int, length: int, cap: int) -> int: ...
    def throttle_take(self, campaign: str, period: int, cap: int) -> bool: ...
    def throttle_forget(self, before: int) -> None: ...
    # winner tests (SPEC §12.4): every part of the users' tallies of a test, once all are in
    def test_tally(self, campaign: str, s: int, local: dict[str, list[int]]) -> dict[str, list[int]] | None: ...
    @property
    def writes_campaign_records(self) -> bool: ...
    # best time (SPEC §12.6): each user's events in (since, until] counted by local hour
    def hour_counts(self, users: list[str], events: tuple[str, ...], since: int, until: int,
                    runs: Runs) -> dict[str, list[int]]: ...
    # timers
    def add_timer(self, timer: Timer) -> None: ...
    def cancel_timer(self, key: str) -> None: ...
    def timer(self, key: str) -> Timer | None: ...
    def next_due(self) -> int | None: ...
    def pop_due(self, due: int) -> list[Timer]: ...
    def pending_timers(self, user: str | None = None) -> list[Timer]: ...
    # bookkeeping
    def meta(self, key: str, default: Any = None) -> Any: ...
    def set_meta(self, key: str, value: Any) -> None: ...
    def meta_items(self, prefix: str) -> list[tuple[str, Any]]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


@mypyc_attr(allow_interpreted_subclasses=True)  # extended by the SQLite and Redis stores
class MemoryStore:
    """All state in dictionaries: replay's default, the REPL and the tests."""

    def __init__(self) -> None:
        self._users: dict[str, UserState] = {}
        self._timers: dict[str, Timer] = {}
        # (due, campaign, user, key); stale entries (re-armed, cancelled) are skipped, and dropped
        # when they outnumber the timers
        self._heap: list[tuple[int, str, str, str]] = []
        self._meta: dict[str, Any] = {}
        self._full: dict[str, tuple[int, int]] = {}  # campaign → [from, to): throttle periods known full

    # ---- users ---------------------------------------------------------------------------------

    def get(self, user: str) -> UserState | None:
        return self._users.get(user)

    def user(self, user: str, ts: int) -> UserState:
        state = self._users.get(user)
        if state is None:
            state = self._users[user] = UserState(user, ts)
            self._created(state)
        return state

    def user_ids(self) -> list[str]:
        return sorted(self._users)

    def preload(self, users: Iterable[str]) -> None:
        """A hint that these users are about to be asked for: a store that keeps them elsewhere may
        load them together (here every user is in memory already)."""

    def _created(self, state: UserState) -> None:
        """Hook for persistent stores."""

    def merge_profile(self, state: UserState, props: dict[str, Any]) -> None:
        state.profile.update(props)

    def put_subscription(self, state: UserState, sub: Subscription) -> None:
        state.subscriptions[sub.key] = sub

    def set_active(self, state: UserState, key: str, active: bool) -> None:
        sub = state.subscriptions.get(key)
        if sub is not None:
            sub.active = active

    def add_event(self, state: UserState, name: str, ts: int, props: dict[str, Any]) -> None:
        state.history.setdefault(name, []).append((ts, props))

    def prune_history(self, state: UserState, name: str, before: int) -> int:
        """Forget events of ``name`` at or before ``before`` (nothing can read them any more); how many.
        A name left with no event is dropped, as a reload from a persistent store would see it."""
        events = state.history.get(name)
        if not events or events[0][0] > before:
            return 0
        keep = next((i for i, (ts, _) in enumerate(events) if ts > before), len(events))
        del events[:keep]
        if not events:
            del state.history[name]
        return keep

    def bump_counter(self, state: UserState, key: str) -> None:
        state.counters[key] = state.counters.get(key, 0) + 1

    def set_counter(self, state: UserState, key: str, value: int) -> None:
        state.counters[key] = value

    def drop_counter(self, state: UserState, key: str) -> None:
        state.counters.pop(key, None)

    def add_send(self, state: UserState, send_id: str) -> None:
        state.sends.add(send_id)

    def open_window(self, state: UserState, window: Window) -> None:
        state.windows.append(window)

    def close_window(self, state: UserState, window: Window) -> None:
        state.windows.remove(window)

    # ---- throttle periods ----------------------------------------------------------------------
    # A campaign's sends and reserved slots in a period are the meta entry ``throttle:<campaign>:<start>``,
    # so that SQLite keeps them with the rest of the bookkeeping. Counts only grow, so a period found
    # full stays full: ``_full`` remembers, per campaign, a run of full periods [from, to) and a search
    # for room starts after it.

    def throttle_count(self, campaign: str, period: int) -> int:
        count: int = self._meta.get(f"{THROTTLE}{campaign}:{period}") or 0
        return count

    def throttle_room(self, campaign: str, period: int, length: int, cap: int) -> int:
        """The first period at or after ``period`` (each ``length`` µs) with fewer than ``cap`` taken."""
        full = self._full.get(campaign)
        start = full[1] if full is not None and full[0] <= period < full[1] else period
        found = self._first_room(campaign, start, length, cap)
        if found > period:
            self._full[campaign] = (full[0] if full is not None and full[0] <= period < full[1] else period, found)
        return found

    def _first_room(self, campaign: str, period: int, length: int, cap: int) -> int:
        while self.throttle_count(campaign, period) >= cap:
            period += length
        return period

    def throttle_take(self, campaign: str, period: int, cap: int) -> bool:
        """Take a slot of the period if it has room (a send, or a reservation for a delayed decision)."""
        key = f"{THROTTLE}{campaign}:{period}"
        count = self._meta.get(key) or 0
        if count >= cap:
            return False
        self.set_meta(key, count + 1)
        return True

    def throttle_forget(self, before: int) -> None:
        """Drop the periods that end before ``before``: no decision can take a slot there any more."""
        for key in [k for k in self._meta if k.startswith(THROTTLE)]:
            if int(key.rpartition(":")[2]) < before - 3600 * 1_000_000:  # an hour's margin: the longest period
                self.set_meta(key, None)
                self._meta.pop(key, None)  # (a persistent store deletes it at the next commit)
        self._full.clear()

    # ---- winner tests ----------------------------------------------------------------------------

    def test_tally(self, campaign: str, s: int, local: dict[str, list[int]]) -> dict[str, list[int]] | None:
        """The tally ([hits, sends] per variant) of the test at occurrence ``s`` over every user: here,
        where every user is, ``local`` itself. A store that holds a part of the users (a scale-out
        partition) adds its part and answers None until every part is in."""
        return local

    @property
    def writes_campaign_records(self) -> bool:
        """Whether this store's engine writes the records about a campaign rather than a user (a winner):
        one of the partitions in scale-out, always here."""
        return True

    # ---- best time -------------------------------------------------------------------------------

    def hour_counts(self, users: list[str], events: tuple[str, ...], since: int, until: int,
                    runs: Runs) -> dict[str, list[int]]:
        """For each user (all in the zone whose offsets ``runs`` are), their events named in ``events``
        (every event when empty) with ts in (since, until], counted by the local hour of day: here, from
        the history each user's state holds (in scale-out, the partition's)."""
        out: dict[str, list[int]] = {}
        for user in users:
            state = self.get(user)
            history = {} if state is None else state.history
            kept = list(history.values()) if not events else [history[e] for e in events if e in history]
            out[user] = count_hours(kept, since, until, runs)
        return out

    # ---- timers --------------------------------------------------------------------------------

    def add_timer(self, timer: Timer) -> None:
        timers, heap = self._timers, self._heap
        timers[timer.key] = timer
        heapq.heappush(heap, (timer.due, timer.campaign, timer.user, timer.key))
        if len(heap) > 2 * len(timers) + 4096:  # mostly re-armed or cancelled entries: rebuild
            self._heap = [(t.due, t.campaign, t.user, t.key) for t in timers.values()]
            heapq.heapify(self._heap)

    def cancel_timer(self, key: str) -> None:
        self._timers.pop(key, None)

    def timer(self, key: str) -> Timer | None:
        return self._timers.get(key)

    def next_due(self) -> int | None:
        heap = self._heap
        while heap:
            due, _, _, key = heap[0]
            timer = self._timers.get(key)
            if timer is not None and timer.due == due:
                return due
            heapq.heappop(heap)
        return None

    def pop_due(self, due: int) -> list[Timer]:
        """The timers due exactly at ``due``, removed, in campaign-then-user order."""
        out: list[Timer] = []
        heap = self._heap
        while heap and heap[0][0] == due:
            _, _, _, key = heapq.heappop(heap)
            timer = self._timers.get(key)
            if timer is not None and timer.due == due:
                out.append(self._timers.pop(key))
        return out

    def pending_timers(self, user: str | None = None) -> list[Timer]:
        timers = self._timers.values()
        return sorted(t for t in timers if user is None or t.user == user)

    # ---- bookkeeping ---------------------------------------------------------------------------

    def meta(self, key: str, default: Any = None) -> Any:
        return self._meta.get(key, default)

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = value

    def meta_items(self, prefix: str) -> list[tuple[str, Any]]:
        """The bookkeeping entries whose key starts with ``prefix`` and whose value is not null."""
        return sorted((k, v) for k, v in self._meta.items() if k.startswith(prefix) and v is not None)

    def commit(self) -> None:
        """Make everything so far durable (nothing to do in memory)."""

    def close(self) -> None:
        self.commit()


@mypyc_attr(allow_interpreted_subclasses=True)  # extended by the SQLite and Redis stores
class PersistentStore(MemoryStore):
    """A store whose users live elsewhere (SQLite, Redis): a user is loaded on first touch and kept
    in the in-memory dictionaries; the subclass writes what changed on ``commit``."""

    _maybe_stored = True  # False while the backing store is known to hold no users: no lookups

    def __init__(self) -> None:
        super().__init__()
        self._dirty_timers: set[str] = set()  # timer keys added, cancelled or fired since the commit
        self._dirty_meta: set[str] = set()

    def _load(self, user: str) -> UserState | None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, user: str) -> UserState | None:
        state = self._users.get(user)
        if state is None and self._maybe_stored:
            state = self._load(user)
        return state

    def user(self, user: str, ts: int) -> UserState:
        state = self.get(user)
        return state if state is not None else super().user(user, ts)

    # ---- what changed since the last commit ------------------------------------------------------

    def add_timer(self, timer: Timer) -> None:
        super().add_timer(timer)
        self._dirty_timers.add(timer.key)

    def cancel_timer(self, key: str) -> None:
        if key in self._timers:
            super().cancel_timer(key)
            self._dirty_timers.add(key)

    def pop_due(self, due: int) -> list[Timer]:
        timers = super().pop_due(due)
        self._dirty_timers.update(t.key for t in timers)
        return timers

    def set_meta(self, key: str, value: Any) -> None:
        super().set_meta(key, value)
        self._dirty_meta.add(key)

