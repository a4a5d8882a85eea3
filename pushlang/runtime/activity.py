"""The activity log: output records (decisions, conversions, views, clicks, deliveries) in an SQLite table.

The live service keeps it in its store's database file, written in the store's transactions (a
decision and its record are durable together or not at all); `pushlang stats` loads a replay's
decisions into one in memory. Either way, :mod:`pushlang.runtime.stats` computes every figure over
it with the same SQL.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pushlang.runtime.engine import Output
from pushlang.runtime.erasure import Anonymized

if TYPE_CHECKING:
    from pushlang.runtime.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,            -- UTC ISO-8601, seconds, Z
    campaign TEXT NOT NULL,
    user_id TEXT NOT NULL,
    outcome TEXT NOT NULL,       -- send | control | delay | suppress | convert | viewed | clicked | delivered | failed
    reason TEXT,
    send_id TEXT,
    revenue REAL,
    status INTEGER,
    attempts INTEGER,
    platform TEXT
);
CREATE INDEX IF NOT EXISTS activity_campaign_outcome ON activity (campaign, outcome, at);
CREATE INDEX IF NOT EXISTS activity_send ON activity (send_id);
"""




class ActivityLog:
    """Append-only: ``record`` keeps a row pending until a commit writes it.

    Given a file (or ``":memory:"``), the log has a connection of its own and ``commit`` writes the
    pending rows in a transaction of its own. Given a :class:`SqliteStore`, it lives in the store's
    file and rides the store (a :class:`~pushlang.runtime.sqlite_store.Rider`): the store's
    ``commit`` writes the pending rows in the same transaction as the state changes they record,
    ``commit`` here is the store's, and the store closes the connection.
    """

    def __init__(self, where: str | SqliteStore) -> None:
        self._store: SqliteStore | None = None
        if not isinstance(where, str):  # a SqliteStore
            self._store = where
            self.db = where.connection
        else:
            self.db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._pending: list[tuple[object, ...]] = []
        self._renamed: dict[str, tuple[str, str]] = {}  # send_id → (anonymous user, new send_id)
        self._writing = 0  # how many of the pending rows the open transaction has written
        if self._store is not None:
            self._store.add_rider(self)

    def record(self, out: Output) -> None:
        platform = out.platforms[0] if out.platforms and len(out.platforms) == 1 else None
        user, send_id = out.user, out.send_id
        if self._renamed and send_id in self._renamed:
            user, send_id = self._renamed[send_id]
        self._pending.append((out.at, out.campaign, user, out.outcome, out.reason, send_id, out.revenue,
                              out.status, out.attempts, platform))

    def rename(self, anonymized: Anonymized, send_ids: Iterable[str]) -> None:
        """Records of these sends still to come (their delivery was under way when the user was
        erased) are written under the erasure's anonymous ids, as :func:`anonymize` left the others."""
        for send_id in send_ids:
            self._renamed[send_id] = (anonymized.user, anonymized.send_ids.get(send_id) or secrets.token_hex(12))

    def send_of(self, send_id: str) -> tuple[str, str] | None:
        """The campaign and user of a `send` record, committed or not; None when there is none."""
        row = self.db.execute("SELECT campaign, user_id FROM activity WHERE send_id = ? AND outcome = 'send' LIMIT 1",
                              (send_id,)).fetchone()
        if row is None:
            found = [p for p in self._pending if p[5] == send_id and p[3] == "send"]
            return (str(found[0][1]), str(found[0][2])) if found else None
        return str(row[0]), str(row[1])

    def campaign_of(self, send_id: str) -> str | None:
        found = self.send_of(send_id)
        return None if found is None else found[0]

    def commit(self) -> None:
        """Write the pending rows; on failure nothing is written and they stay pending."""
        if self._store is not None:
            self._store.commit()
            return
        if not self._pending:
            return
        with self.db:  # commits, or rolls back on an exception
            self.db.execute("BEGIN")
            self.write_pending(self.db)
        self.pending_written()

    # ---- as a rider of the store's transaction ----------------------------------------------------

    def pending_rows(self) -> int:
        return len(self._pending)

    def write_pending(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO activity (at, campaign, user_id, outcome, reason, send_id, revenue, status, attempts,"
            " platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
        self._writing = len(self._pending)

    def pending_written(self) -> None:
        del self._pending[: self._writing]
        self._writing = 0

    def rows(self, campaigns: Iterable[str] | None = None) -> list[dict[str, object]]:
        query = "SELECT at, campaign, user_id, outcome, reason, send_id, revenue, status, attempts, platform" \
                " FROM activity"
        params: list[object] = []
        if campaigns is not None:
            ids: list[object] = list(campaigns)
            query += f" WHERE campaign IN ({', '.join('?' * len(ids))})"
            params = ids
        names = ("at", "campaign", "user", "outcome", "reason", "send_id", "revenue", "status", "attempts",
                 "platform")
        return [dict(zip(names, row, strict=True)) for row in self.db.execute(query + " ORDER BY id", params)]

    def close(self) -> None:
        """Commit and close; riding a store, nothing: the store's ``close`` does both."""
        if self._store is None:
            self.commit()
            self.db.close()
