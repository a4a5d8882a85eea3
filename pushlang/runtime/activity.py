"""The activity log: output records (decisions, conversions, views, clicks, deliveries) in an SQLite table.

The live service keeps it in its store's database file; `pushlang stats` loads a replay's decisions
into one in memory. Either way, :mod:`pushlang.runtime.stats` computes every figure over it with the
same SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from pushlang.runtime.engine import Output

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
    """Append-only; writes are committed with the store's batch (``commit``)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._pending: list[tuple[object, ...]] = []

    def record(self, out: Output) -> None:
        platform = out.platforms[0] if out.platforms and len(out.platforms) == 1 else None
        self._pending.append((out.at, out.campaign, out.user, out.outcome, out.reason, out.send_id, out.revenue,
                              out.status, out.attempts, platform))

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
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO activity (at, campaign, user_id, outcome, reason, send_id, revenue, status, attempts,"
                " platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

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
        self.commit()
        self.db.close()
