"""The activity log: output records (decisions, conversions, views, clicks, deliveries) in an SQLite table.

The live service keeps it in its store's database file; `pushlang stats` loads a replay's decisions
into one in memory. Either way, :mod:`pushlang.runtime.stats` computes every figure over it with the
same SQL.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Anonymized:
    """What :func:`anonymize` did: how many rows, under which anonymous id, which send_ids it replaced."""

    rows: int
    user: str
    send_ids: dict[str, str] = field(default_factory=dict)  # old → new


def anonymize(db: sqlite3.Connection, user: str) -> Anonymized:
    """Unlink a user's activity rows from the user, inside the caller's transaction (an erasure).

    The rows stay, so every figure over them stays the same; what could point back to the user
    is replaced:

    - ``user_id`` becomes one anonymous id, random and new for each erasure (not derived from the
      user id, so it cannot be recomputed), the same on all the user's rows: a count of distinct
      users is unchanged, and nothing joins the rows to anybody.
    - ``send_id`` becomes a random id per distinct send_id. A send_id is a hash of the campaign,
      the user id and the trigger instant, so whoever knows the user id could recompute it and find
      the rows again; fresh random ids keep what the figures rely on (which rows share a send: a
      view and a click count their send once, a conversion of a control decision is found by its
      send_id) and drop the link.
    - ``at``, ``campaign``, ``outcome``, ``reason``, ``revenue``, ``status``, ``attempts`` and
      ``platform`` are kept: the figures and their series read them, and none names the user
      (reasons are fixed codes such as ``subscription_gone``; titles, bodies and urls are not
      logged here).

    Does nothing when the file has no activity table (a store a replay wrote). The anonymous id and
    the new send_ids are for :meth:`ActivityLog.rename` only (a record still to come of a send that
    was being delivered): shown or logged next to the user id, they would link the rows back.
    """
    anonymous = "erased-" + secrets.token_hex(8)
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'activity'").fetchone() is None:
        return Anonymized(0, anonymous)
    send_ids = [row[0] for row in db.execute(
        "SELECT DISTINCT send_id FROM activity WHERE user_id = ? AND send_id IS NOT NULL", (user,))]
    renamed = {send_id: secrets.token_hex(12) for send_id in send_ids}
    db.executemany("UPDATE activity SET send_id = ? WHERE send_id = ? AND user_id = ?",
                   [(new, old, user) for old, new in renamed.items()])
    rows = db.execute("UPDATE activity SET user_id = ? WHERE user_id = ?", (anonymous, user)).rowcount
    return Anonymized(rows, anonymous, renamed)


class ActivityLog:
    """Append-only; writes are committed with the store's batch (``commit``)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._pending: list[tuple[object, ...]] = []
        self._renamed: dict[str, tuple[str, str]] = {}  # send_id → (anonymous user, new send_id)

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
