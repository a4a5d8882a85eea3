"""The embedded durable store (DESIGN.md "Embedded default: SQLite"): one WAL file, batched commits.

State lives in the inherited in-memory dictionaries, which act as a cache: a user is loaded from
SQL the first time it is touched, every mutation changes memory and records what it changed, and
``commit()`` writes the net effect of everything since the last commit in one transaction. So a
record costs a few dictionary operations, not a round trip; durability is per batch.

JSON columns (profile properties, event props, subscription keys, timer payloads, meta values) are
TEXT written by msgspec, so SQL can read them with ``json_extract`` (``reach`` counts segments that
way). Values must be JSON-shaped: tuples come back as lists, non-string keys as strings.
"""

from __future__ import annotations

import heapq
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice, pairwise
from pathlib import Path
from typing import Any, Protocol

import msgspec
from mypy_extensions import mypyc_attr

from pushlang.runtime.best_time import Runs, count_hours
from pushlang.runtime.erasure import Anonymized, anonymize
from pushlang.runtime.instants import HOUR
from pushlang.runtime.store import MemoryStore, PersistentStore, Subscription, Timer, UserState, Window

_CHUNK = 500  # users per best-time query
CHECKPOINT_PAGES = 16384  # pages of write-ahead log between two checkpoints (SQLite's default: 1,000)

SCHEMA_VERSION = 5  # 2: windows.variant; 3: windows.lang; 4: sends keyed by user, no timers_due; 5: counters

# Schema 4 (from 1-3, on open): the sends keyed by (user_id, send_id), and no index on timers.due.
# Replaying 1M records on SQLite, 4-7% less time than with the sends keyed by send_id and indexed
# by user, and the timers indexed by due (which nothing read).
TO_SCHEMA_4 = """
CREATE TABLE sends_v4 (
  user_id TEXT NOT NULL,
  send_id TEXT NOT NULL,
  PRIMARY KEY (user_id, send_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO sends_v4 (user_id, send_id) SELECT user_id, send_id FROM sends;
DROP TABLE sends;
ALTER TABLE sends_v4 RENAME TO sends;
DROP INDEX IF EXISTS timers_due;
"""

# Schema 5 (from 1-4, on open): a user's counters in one row, a JSON object, instead of a row per key.
# A send bumps three to five counters (per period, in all, the day's): one row per user written, not one
# per key.
TO_SCHEMA_5 = """
CREATE TABLE counters_v5 (
  user_id TEXT PRIMARY KEY,
  counts TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO counters_v5 (user_id, counts)
  SELECT user_id, json_group_object(key, count) FROM counters GROUP BY user_id;
DROP TABLE counters;
ALTER TABLE counters_v5 RENAME TO counters;
"""

# Names of indexes are part of the design: a segment count or a behaviour check without the right
# index is ten times slower (DESIGN.md).
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  user_id TEXT PRIMARY KEY,
  first_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles (
  user_id TEXT PRIMARY KEY,
  props TEXT NOT NULL                -- JSON object: json_extract(props, '$.country')
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
  user_id TEXT NOT NULL,
  key TEXT NOT NULL,                 -- the endpoint, or the legacy Safari device token
  platform TEXT NOT NULL,
  endpoint TEXT,
  keys TEXT,                         -- JSON object {"p256dh": ..., "auth": ...}
  device_token TEXT,
  active INTEGER NOT NULL,
  since INTEGER NOT NULL,
  PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,            -- arrival order within (user_id, name)
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  ts INTEGER NOT NULL,
  props TEXT                         -- JSON object; NULL when empty
);
CREATE INDEX IF NOT EXISTS events_user_name_ts ON events (user_id, name, ts);
CREATE TABLE IF NOT EXISTS counters (
  user_id TEXT PRIMARY KEY,
  counts TEXT NOT NULL               -- JSON object: {"<campaign>|<period>": count, ...}
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sends (
  user_id TEXT NOT NULL,
  send_id TEXT NOT NULL,             -- a replayed record never sends twice (the id names its user)
  PRIMARY KEY (user_id, send_id)     -- a user's rows side by side: a commit writes fewer pages
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS windows (
  id INTEGER PRIMARY KEY,            -- opening order
  user_id TEXT NOT NULL,
  campaign TEXT NOT NULL,
  send_id TEXT NOT NULL,
  start INTEGER NOT NULL,
  "end" INTEGER NOT NULL,
  variant TEXT,                      -- the decision's variant (SPEC §12.3); NULL: a single message
  lang TEXT                          -- the decision's language tag (SPEC §12.5); NULL: the message's own texts
);
CREATE INDEX IF NOT EXISTS windows_user ON windows (user_id);
CREATE TABLE IF NOT EXISTS timers (
  key TEXT PRIMARY KEY,
  due INTEGER NOT NULL,
  campaign TEXT NOT NULL,
  user TEXT NOT NULL,                -- a user id, or the zone of a scheduled occurrence
  kind TEXT NOT NULL,
  payload TEXT                       -- JSON object; NULL when empty
) WITHOUT ROWID;                     -- no index on due: opening the store reads every timer
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL                -- JSON
) WITHOUT ROWID;
"""

INDEXES = ("events_user_name_ts", "windows_user")

_encode_bytes = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_decode_counts = msgspec.json.Decoder(dict[str, int]).decode


def _encode(value: Any) -> str:
    return _encode_bytes(value).decode()


def _encode_props(props: dict[str, Any] | None) -> str | None:
    return _encode_bytes(props).decode() if props else None


def _decode_props(text: str | None) -> dict[str, Any]:
    return _decode(text) if text else {}


class _Dirty:
    """What changed for one user since the last commit (the net effect, not the call sequence)."""

    __slots__ = ("counters", "created", "events", "profile", "sends", "state", "subs", "windows")

    def __init__(self, state: UserState) -> None:
        self.state = state
        self.created = False
        self.profile = False
        self.subs: set[str] = set()
        # name → [appended and not yet written, written rows to delete from the oldest]
        self.events: dict[str, list[int]] = {}
        self.counters = False
        self.sends: list[str] = []
        self.windows = False


# What an erasure counts, in the order it reports them.
ERASED = ("users", "profiles", "subscriptions", "events", "counters", "sends", "windows", "timers", "outbox",
          "activity")


@dataclass(frozen=True)
class Erasure:
    """What :meth:`SqliteStore.forget` did. ``counts``: rows deleted per kind, and ``activity``: the
    activity rows unlinked from the user (kept for the figures). ``anonymized`` and ``outbox`` (the
    send_ids and states of the outbox entries removed) are for the host, never to be shown: next to
    the user id they would link the anonymous rows back."""

    counts: dict[str, int]
    anonymized: Anonymized
    outbox: dict[str, str]

    @property
    def found(self) -> bool:
        return any(self.counts.values())


class Rider(Protocol):
    """Rows of another table that the store's ``commit()`` writes in its own transaction, so that
    both are durable or neither is (the live service's activity log)."""

    def pending_rows(self) -> int:
        """How many rows wait to be written."""
        ...

    def write_pending(self, db: sqlite3.Connection) -> None:
        """Insert them on ``db``, inside the store's open transaction (no BEGIN or COMMIT)."""
        ...

    def pending_written(self) -> None:
        """The transaction committed: forget the rows ``write_pending`` wrote."""
        ...


@mypyc_attr(allow_interpreted_subclasses=True)  # extended by a test's dying store
class SqliteStore(PersistentStore):
    """A :class:`MemoryStore` whose state survives the process, in one SQLite file.

    Not thread-safe: one writer, its caller serialises calls.

    ``cache_size`` bounds how many users stay in memory: a least recently used cache (``get`` and
    ``user`` count as a use). After each commit, when more users are cached than the bound, the
    least recently used ones are dropped — never one with uncommitted changes, since a commit has
    just written them all — and reloaded from SQL when touched again; so callers must not keep a
    :class:`UserState` across ``commit()``. A user costs a few KiB of memory: its profile, its
    subscriptions, the events its campaigns still read, counters, open windows and send ids. None
    (the default, and what ``replay`` uses) keeps every user once loaded.

    A meta value set to None is removed: from memory at once, from the table at the next commit.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 1000,
        commit_interval: float = 0.05,
        cache_size: int | None = None,
    ) -> None:
        super().__init__()
        self.path = str(path)
        folder = Path(self.path).resolve().parent
        if not folder.is_dir():
            raise ValueError(f"the store {self.path}: the folder {folder} does not exist")
        self.batch_size = batch_size
        self.commit_interval = commit_interval
        if cache_size is not None and cache_size < 1:
            raise ValueError(f"the store's cache must hold at least one user, not {cache_size}")
        self.cache_size = cache_size
        self._riders: list[Rider] = []
        # isolation_level=None: no implicit transactions; commit() brackets its own.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA cache_size=-32768")  # 32 MiB of page cache
        # A checkpoint copies into the file every page the log holds. A commit of a replay changes
        # thousands of pages all over the tables, so at SQLite's default (every 1,000 pages) each commit
        # was copied again; every 16,384 pages (64 MiB of log), one copy serves several commits. Replaying
        # 1M records (compiled runtime): about 7% less time.
        self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 4096}")  # the log file kept no larger
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise ValueError(
                f"{self.path}: store schema version {version} is newer than this pushlang "
                f"understands ({SCHEMA_VERSION})"
            )
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(windows)")}
        if "variant" not in columns:  # a store of schema 1
            self._db.execute("ALTER TABLE windows ADD COLUMN variant TEXT")
        if "lang" not in columns:  # a store of schema 1 or 2
            self._db.execute("ALTER TABLE windows ADD COLUMN lang TEXT")
        (sends,) = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'sends'").fetchone()
        if "send_id TEXT PRIMARY KEY" in sends:  # a store of schema 1 to 3
            self._db.executescript(f"BEGIN IMMEDIATE; {TO_SCHEMA_4} COMMIT;")
        if "count" in {row[1] for row in self._db.execute("PRAGMA table_info(counters)")}:  # schema 1 to 4
            self._db.executescript(f"BEGIN IMMEDIATE; {TO_SCHEMA_5} COMMIT;")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        self._dirty: dict[str, _Dirty] = {}
        self._since_commit = 0
        self._last_commit = time.monotonic()
        self._closed = False
        # False while SQL is known to hold no user that memory lacks: lookups of new users skip SQL.
        self._maybe_stored = self._db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

        # the keys of the timers the table holds: one added and gone between two commits is never
        # written, and needs no DELETE either
        self._stored_timers: set[str] = set()
        for key, due, campaign, user, kind, payload in self._db.execute(
            "SELECT key, due, campaign, user, kind, payload FROM timers"
        ):
            MemoryStore.add_timer(self, Timer(due, campaign, user, key, kind, _decode_props(payload)))
            self._stored_timers.add(key)
        for key, value in self._db.execute("SELECT key, value FROM meta"):
            decoded = _decode(value)
            if decoded is None:  # an entry removed by an earlier version, which wrote null
                self._dirty_meta.add(key)  # deleted at the next commit
            else:
                self._meta[key] = decoded

    @property
    def connection(self) -> sqlite3.Connection:
        """The store's connection, for a :class:`Rider` and for reading (never for writing)."""
        return self._db

    def add_rider(self, rider: Rider) -> None:
        """Write ``rider``'s pending rows in each commit's transaction, after the store's own."""
        self._riders.append(rider)

    # ---- users ---------------------------------------------------------------------------------

    def user_ids(self) -> list[str]:
        stored = {row[0] for row in self._db.execute("SELECT user_id FROM users")}
        return sorted(stored.union(self._users))

    def user(self, user: str, ts: int) -> UserState:
        state = self._users.get(user)
        if state is not None and self.cache_size is None:  # the common case, without a call further down
            return state
        return super().user(user, ts)

    def get(self, user: str) -> UserState | None:
        cached = self._users
        state = cached.get(user)
        if state is None:
            return self._load(user) if self._maybe_stored else None  # loaded as the most recent
        if self.cache_size is not None:  # dict order is the LRU order: the user moves to the end
            del cached[user]
            cached[user] = state
        return state

    def _load(self, user: str) -> UserState | None:
        return self._load_many([user]).get(user)

    def preload(self, users: Iterable[str]) -> None:
        """Bring those of ``users`` that SQL holds and memory does not into memory, a few hundred in
        one query per table rather than one user in seven (a replay on a store asks for the users of
        its next records)."""
        if not self._maybe_stored:
            return
        cached = self._users
        wanted = [user for user in dict.fromkeys(users) if user not in cached]
        if wanted:
            self._load_many(wanted)

    def _load_many(self, users: list[str]) -> dict[str, UserState]:
        """The state of those of ``users`` that SQL holds, each put in memory as the most recently used
        (in the order given)."""
        db = self._db
        found: dict[str, UserState] = {}
        for i in range(0, len(users), _CHUNK):
            chunk = users[i:i + _CHUNK]
            where = f"user_id IN ({', '.join('?' * len(chunk))})"
            states = {user: UserState(user, first_seen)
                      for user, first_seen in db.execute(f"SELECT user_id, first_seen FROM users WHERE {where}", chunk)}
            if not states:
                continue
            for user, props in db.execute(f"SELECT user_id, props FROM profiles WHERE {where}", chunk):
                if (state := states.get(user)) is not None:
                    state.profile = _decode(props)
            for user, key, platform, endpoint, keys, device_token, active, since in db.execute(
                "SELECT user_id, key, platform, endpoint, keys, device_token, active, since"
                f" FROM subscriptions WHERE {where} ORDER BY user_id, key",
                chunk,
            ):
                if (state := states.get(user)) is not None:
                    state.subscriptions[key] = Subscription(
                        key,
                        platform,
                        since,
                        endpoint,
                        None if keys is None else _decode(keys),
                        device_token,
                        bool(active),
                    )
            for user, name, ts, props in db.execute(
                f"SELECT user_id, name, ts, props FROM events WHERE {where} ORDER BY user_id, name, id", chunk
            ):
                if (state := states.get(user)) is not None:
                    events = state.history.get(name)
                    if events is None:
                        events = state.history[name] = []
                    events.append((ts, _decode_props(props)))
            for user, counts in db.execute(f"SELECT user_id, counts FROM counters WHERE {where}", chunk):
                if (state := states.get(user)) is not None:
                    state.counters = _decode_counts(counts)
            for user, send_id in db.execute(f"SELECT user_id, send_id FROM sends WHERE {where}", chunk):
                if (state := states.get(user)) is not None:
                    state.sends.add(send_id)
            for user, campaign, send_id, start, end, variant, lang in db.execute(
                'SELECT user_id, campaign, send_id, start, "end", variant, lang FROM windows'
                f" WHERE {where} ORDER BY user_id, id",
                chunk,
            ):
                if (state := states.get(user)) is not None:
                    state.windows.append(Window(campaign, send_id, start, end, variant, lang))
            found.update(states)
        cached = self._users
        for user in users:
            if (state := found.get(user)) is not None:
                cached[user] = state
        return found

    def _created(self, state: UserState) -> None:
        self._dirt(state).created = True

    def _dirt(self, state: UserState) -> _Dirty:
        dirty = self._dirty.get(state.user)
        if dirty is None:
            dirty = self._dirty[state.user] = _Dirty(state)
        return dirty

    def merge_profile(self, state: UserState, props: dict[str, Any]) -> None:
        super().merge_profile(state, props)
        if props:
            self._dirt(state).profile = True

    def put_subscription(self, state: UserState, sub: Subscription) -> None:
        super().put_subscription(state, sub)
        self._dirt(state).subs.add(sub.key)

    def set_active(self, state: UserState, key: str, active: bool) -> None:
        super().set_active(state, key, active)
        if key in state.subscriptions:
            self._dirt(state).subs.add(key)

    def add_event(self, state: UserState, name: str, ts: int, props: dict[str, Any]) -> None:
        super().add_event(state, name, ts, props)
        dirty = self._dirty.get(state.user) or self._dirt(state)
        counts = dirty.events.get(name)
        if counts is None:
            dirty.events[name] = [1, 0]
        else:
            counts[0] += 1

    def prune_history(self, state: UserState, name: str, before: int) -> int:
        count = len(state.history.get(name, ()))
        removed = super().prune_history(state, name, before)
        if not removed:
            return 0
        # The removed events are the oldest: first those already written, then appended ones.
        counts = self._dirt(state).events.setdefault(name, [0, 0])
        written = count - counts[0]
        from_written = min(removed, written)
        counts[1] += from_written
        counts[0] -= removed - from_written
        return removed

    def bump_counter(self, state: UserState, key: str) -> None:
        super().bump_counter(state, key)
        self._dirt(state).counters = True

    def set_counter(self, state: UserState, key: str, value: int) -> None:
        super().set_counter(state, key, value)
        self._dirt(state).counters = True

    def drop_counter(self, state: UserState, key: str) -> None:
        if key in state.counters:
            super().drop_counter(state, key)
            self._dirt(state).counters = True

    def add_send(self, state: UserState, send_id: str) -> None:
        new = send_id not in state.sends
        super().add_send(state, send_id)
        if new:
            self._dirt(state).sends.append(send_id)

    def set_meta(self, key: str, value: Any) -> None:
        if value is None:
            self._meta.pop(key, None)  # deleted from the table at the next commit
        else:
            self._meta[key] = value  # (the engine sets the clock at every record: no call further down)
        self._dirty_meta.add(key)

    def open_window(self, state: UserState, window: Window) -> None:
        super().open_window(state, window)
        self._dirt(state).windows = True

    def close_window(self, state: UserState, window: Window) -> None:
        super().close_window(state, window)
        self._dirt(state).windows = True

    def put_meta_now(self, key: str, value: Any) -> None:
        """Write one meta value (None: remove it) at once, in its own transaction, and leave every
        other pending change for ``commit()``: the live service marks a request ``sending`` this
        way just before it goes out, whatever else is half done."""
        if value is None:  # the file first: memory says what the file holds, also when it fails
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            self._meta.pop(key, None)
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, _encode(value)))
            MemoryStore.set_meta(self, key, value)

    # ---- erasure -------------------------------------------------------------------------------

    def forget(self, user: str) -> Erasure:
        """Erase a user, in one transaction: the profile, subscriptions, history, counters, sends,
        conversion windows, the user's timers and bookkeeping entries (a JSON object whose ``user``
        is the id, or a key ending in one of the user's send_ids: the service's outbox), and unlink
        the user's activity rows (:func:`pushlang.runtime.erasure.anonymize`). Pending changes are
        committed first, so no later commit writes the user again; the user leaves memory too.

        Deleted content is overwritten (``secure_delete``) and the write-ahead log checkpointed and
        truncated, so the id is not left in free pages or old log frames either. A host must have
        written its own pending activity records before (they would name the user).
        """
        self.commit()
        db = self._db
        timers = [t.key for t in self._timers.values() if t.user == user and t.kind != "occurrence"]
        send_ids = {row[0] for row in db.execute("SELECT send_id FROM sends WHERE user_id = ?", (user,))}
        meta = {key: value for key, value in self._meta.items()
                if (isinstance(value, dict) and value.get("user") == user) or key.rpartition(":")[2] in send_ids}
        counts = dict.fromkeys(ERASED, 0)
        db.execute("PRAGMA secure_delete = ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            stored = db.execute("SELECT counts FROM counters WHERE user_id = ?", (user,)).fetchone()
            for table in ERASED[:7]:
                counts[table] = db.execute(f"DELETE FROM {table} WHERE user_id = ?", (user,)).rowcount
            counts["counters"] = len(_decode_counts(stored[0])) if stored else 0  # the counters, not the row
            counts["timers"] = sum(db.execute("DELETE FROM timers WHERE key = ?", (key,)).rowcount for key in timers)
            counts["outbox"] = sum(db.execute("DELETE FROM meta WHERE key = ?", (key,)).rowcount for key in meta)
            anonymized = anonymize(db, user)
            counts["activity"] = anonymized.rows
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.execute("PRAGMA secure_delete = OFF")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._users.pop(user, None)
        self._dirty.pop(user, None)
        for key in timers:
            del self._timers[key]
        self._stored_timers.difference_update(timers)
        self._heap = [entry for entry in self._heap if entry[3] in self._timers]
        heapq.heapify(self._heap)
        for key in meta:
            del self._meta[key]
        outbox = {key.rpartition(":")[2]: str(value.get("state", "")) for key, value in meta.items()
                  if isinstance(value, dict)}
        return Erasure(counts, anonymized, outbox)

    # ---- best time -------------------------------------------------------------------------------

    def hour_counts(self, users: list[str], events: tuple[str, ...], since: int, until: int,
                    runs: Runs) -> dict[str, list[int]]:
        """The events written so far are counted in SQL, grouped by user and local hour over the
        (user_id, name, ts) index, the offset of each event's run chosen by a CASE; the few appended
        since the last commit (not in the table yet) are counted from memory."""
        out = {user: [0] * 24 for user in users}
        offset = " ".join("WHEN ts < ? THEN ?" for _ in runs[1:])
        offset = f"CASE {offset} ELSE ? END" if offset else "?"
        offsets: list[int] = [x for (_, previous), (start, _) in pairwise(runs) for x in (start, previous)]
        offsets.append(runs[-1][1])
        names = f" AND name IN ({', '.join('?' * len(events))})" if events else ""
        for i in range(0, len(users), _CHUNK):
            chunk = users[i:i + _CHUNK]
            sql = (f"SELECT user_id, ((ts + {offset}) / {HOUR}) % 24 AS hour, count(*) FROM events"
                   f" WHERE user_id IN ({', '.join('?' * len(chunk))}){names} AND ts > ? AND ts <= ?"
                   " GROUP BY user_id, hour")
            for user, hour, n in self._db.execute(sql, (*offsets, *chunk, *events, since, until)):
                out[user][hour] += n
        for user in users:
            dirty = self._dirty.get(user)
            if dirty is None:
                continue
            history = dirty.state.history
            tails = [history[name][len(history[name]) - appended:] for name, (appended, _) in dirty.events.items()
                     if appended and (not events or name in events) and name in history]
            for hour, n in enumerate(count_hours(tails, since, until, runs)):
                out[user][hour] += n
        return out

    # ---- bookkeeping ---------------------------------------------------------------------------

    def maybe_commit(self, records_seen: int = 1) -> bool:
        """Count ``records_seen`` more records; commit when a batch is full or the interval passed.

        Returns whether it committed.
        """
        self._since_commit += records_seen
        if (
            self._since_commit >= self.batch_size
            or time.monotonic() - self._last_commit >= self.commit_interval
        ):
            self.commit()
            return True
        return False

    def commit(self) -> None:
        """Write everything changed since the last commit, and the riders' pending rows, in one
        transaction; then drop the least recently used users beyond ``cache_size``."""
        if self._dirty or self._dirty_timers or self._dirty_meta or any(r.pending_rows() for r in self._riders):
            self._write()
            self._dirty = {}
            self._dirty_timers.clear()
            self._dirty_meta.clear()
            for rider in self._riders:
                rider.pending_written()
        if self.cache_size is not None and len(self._users) > self.cache_size:
            self._evict(self.cache_size)
        self._since_commit = 0
        self._last_commit = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self.commit()
        self._db.close()
        self._closed = True

    def _write(self) -> None:
        users: list[tuple[str, int]] = []
        profiles: list[tuple[str, str]] = []
        subs: list[tuple[Any, ...]] = []
        drop_events: list[tuple[str, str]] = []
        drop_oldest: list[tuple[str, str, int]] = []
        events: list[tuple[str, str, int, str | None]] = []
        counters: list[tuple[str, str]] = []
        drop_counters: list[tuple[str]] = []
        sends: list[tuple[str, str]] = []
        window_users: list[tuple[str]] = []
        windows: list[tuple[str, str, str, int, int, str | None, str | None]] = []
        for user, dirty in self._dirty.items():
            state = dirty.state
            if dirty.created:
                users.append((user, state.first_seen))
            if dirty.profile:
                profiles.append((user, _encode(state.profile)))
            for key in dirty.subs:
                s = state.subscriptions[key]
                keys = None if s.keys is None else _encode(s.keys)
                subs.append((user, key, s.platform, s.endpoint, keys, s.device_token, int(s.active), s.since))
            for name, (appended, deleted) in dirty.events.items():
                current = state.history.get(name, ())
                if deleted:
                    if len(current) == appended:  # nothing written survives
                        drop_events.append((user, name))
                    else:
                        drop_oldest.append((user, name, deleted))
                if appended:
                    events.extend(
                        (user, name, ts, _encode_props(props))
                        for ts, props in current[len(current) - appended :]
                    )
            if dirty.counters:
                if state.counters:
                    counters.append((user, _encode(state.counters)))
                else:
                    drop_counters.append((user,))
            sends.extend((send_id, user) for send_id in dirty.sends)
            if dirty.windows:
                window_users.append((user,))
                windows.extend((user, w.campaign, w.send_id, w.start, w.end, w.variant, w.lang)
                               for w in state.windows)
        timers: list[tuple[str, int, str, str, str, str | None]] = []
        drop_timers: list[tuple[str]] = []
        stored = self._stored_timers
        for key in self._dirty_timers:
            timer = self._timers.get(key)
            if timer is None:
                if key in stored:
                    drop_timers.append((key,))
            else:
                timers.append(
                    (key, timer.due, timer.campaign, timer.user, timer.kind, _encode_props(timer.payload))
                )
        meta: list[tuple[str, str]] = []
        drop_meta: list[tuple[str]] = []
        for key in self._dirty_meta:
            if self._meta.get(key) is not None:
                meta.append((key, _encode(self._meta[key])))
            else:
                drop_meta.append((key,))

        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if users:
                db.executemany("INSERT OR IGNORE INTO users (user_id, first_seen) VALUES (?, ?)", users)
            if profiles:
                db.executemany("INSERT OR REPLACE INTO profiles (user_id, props) VALUES (?, ?)", profiles)
            if subs:
                db.executemany(
                    "INSERT OR REPLACE INTO subscriptions"
                    " (user_id, key, platform, endpoint, keys, device_token, active, since)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    subs,
                )
            if drop_events:
                db.executemany("DELETE FROM events WHERE user_id = ? AND name = ?", drop_events)
            if drop_oldest:
                db.executemany(
                    "DELETE FROM events WHERE id IN"
                    " (SELECT id FROM events WHERE user_id = ? AND name = ? ORDER BY id LIMIT ?)",
                    drop_oldest,
                )
            if events:
                db.executemany("INSERT INTO events (user_id, name, ts, props) VALUES (?, ?, ?, ?)", events)
            if counters:
                db.executemany("INSERT OR REPLACE INTO counters (user_id, counts) VALUES (?, ?)", counters)
            if drop_counters:
                db.executemany("DELETE FROM counters WHERE user_id = ?", drop_counters)
            if sends:
                db.executemany("INSERT OR IGNORE INTO sends (send_id, user_id) VALUES (?, ?)", sends)
            if window_users:
                db.executemany("DELETE FROM windows WHERE user_id = ?", window_users)
            if windows:
                db.executemany(
                    'INSERT INTO windows (user_id, campaign, send_id, start, "end", variant, lang) '
                    'VALUES (?, ?, ?, ?, ?, ?, ?)',
                    windows,
                )
            if drop_timers:
                db.executemany("DELETE FROM timers WHERE key = ?", drop_timers)
            if timers:
                db.executemany(
                    "INSERT OR REPLACE INTO timers (key, due, campaign, user, kind, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    timers,
                )
            if meta:
                db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
            if drop_meta:
                db.executemany("DELETE FROM meta WHERE key = ?", drop_meta)
            for rider in self._riders:
                rider.write_pending(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")  # memory and the pending changes stay: a later commit retries
            raise
        stored.difference_update(key for (key,) in drop_timers)
        stored.update(row[0] for row in timers)

    def _evict(self, bound: int) -> None:
        """Drop the least recently used users until ``bound`` remain (none has uncommitted changes)."""
        cached = self._users
        for user in list(islice(cached, len(cached) - bound)):
            if user not in self._dirty:
                del cached[user]
        self._maybe_stored = True


def open_store(url: str | None) -> MemoryStore:
    """The store a ``--store`` URL names: ``memory`` (the default) or ``sqlite:///path.db``.

    ``sqlite:///state.db`` is relative to the current directory, ``sqlite:////var/lib/p.db`` is
    absolute (as in SQLAlchemy URLs). ValueError, in words, for anything else.
    """
    if url is None or url in ("memory", "memory:", "memory://"):
        return MemoryStore()
    prefix = "sqlite:///"
    if url.startswith(prefix):
        path = url[len(prefix) :]
        if not path:
            raise ValueError(f"store URL {url!r} names no file: use sqlite:///path/to/file.db")
        if "?" in path or "#" in path:
            raise ValueError(f"store URL {url!r}: query strings and fragments are not supported")
        return SqliteStore(path)
    if url.startswith("sqlite:"):
        raise ValueError(
            f"store URL {url!r} is malformed: use sqlite:///relative/file.db or sqlite:////absolute/file.db"
        )
    raise ValueError(
        f"unsupported store URL {url!r}: expected 'memory' or 'sqlite:///path/to/file.db'"
        " (four slashes for an absolute path)"
    )
