"""The activity log: output records (decisions, conversions, views, clicks, deliveries) in an SQLite table.

The live service keeps it in its store's database file, written in the store's transactions (a
decision and its record are durable together or not at all); `pushlang stats` loads a replay's
decisions into one in memory. Either way, :mod:`pushlang.runtime.stats` computes every figure over
it with the same SQL.

Each row keeps its record's ``variant`` (SPEC §12.3) and ``lang`` (§12.5, §9.4: the tag whose texts
a decision used, null for the message's own), and a `winner` record (SPEC §12.4; no user) its
``rates`` and whether it was ``significant``. A file written before those columns existed is
brought up to date when a log opens it (:func:`migrate`); the stats also read one that was not.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pushlang.runtime.erasure import Anonymized
from pushlang.runtime.outcomes import Output

if TYPE_CHECKING:
    from pushlang.runtime.sqlite_store import SqliteStore

COLUMNS = """
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,            -- UTC ISO-8601, seconds, Z
    campaign TEXT NOT NULL,
    user_id TEXT,                -- null on a `winner` record only
    outcome TEXT NOT NULL,       -- send | control | delay | suppress | convert | viewed | clicked | delivered | failed | winner
    reason TEXT,                 -- a `control` decision: null (the campaign's control group) or global_holdout
    send_id TEXT,
    revenue REAL,
    status INTEGER,
    attempts INTEGER,
    platform TEXT,
    variant TEXT,                -- a decision of a campaign with variants, its conversions; a winner: the winner
    rates TEXT,                  -- a `winner` record: its rates, a JSON object {variant: rate}
    significant INTEGER,         -- a `winner` record: 1 when the winner differs from the runner-up, p < 0.05
    lang TEXT                    -- a decision, a conversion: the `lang` tag whose texts were used; null: the message's own
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS activity_campaign_outcome ON activity (campaign, outcome, at);
CREATE INDEX IF NOT EXISTS activity_send ON activity (send_id);
"""
SCHEMA = f"CREATE TABLE IF NOT EXISTS activity ({COLUMNS});\n{INDEXES}"

# The columns of the first version of the table, which every later one keeps.
_FIRST = ("id", "at", "campaign", "user_id", "outcome", "reason", "send_id", "revenue", "status", "attempts", "platform")
_ROW = ("at", "campaign", "user_id", "outcome", "reason", "send_id", "revenue", "status", "attempts", "platform",
        "variant", "rates", "significant", "lang")
_NAMES = ("at", "campaign", "user", "outcome", "reason", "send_id", "revenue", "status", "attempts", "platform",
          "variant", "rates", "significant", "lang")


def migrate(db: sqlite3.Connection) -> bool:
    """Bring an older ``activity`` table to the current shape, in one transaction; True if it did.

    The first version had no ``variant``, ``rates`` and ``significant`` columns and a NOT NULL
    ``user_id``: SQLite cannot relax a constraint in place, so the table is rebuilt (its rows, ids
    and indexes kept). The second had those but no ``lang``: it gets the column, null in its rows
    (they were written before the language was recorded). Either happens once, when a log opens the
    file. A current table, or none, is left alone.
    """
    def missing() -> set[str]:
        columns = {str(row[1]) for row in db.execute("PRAGMA table_info(activity)")}
        return {"variant", "lang"} - columns if columns else set()

    if not missing():
        return False
    db.execute("BEGIN IMMEDIATE")
    try:
        lacking = missing()
        if not lacking:  # another connection migrated it meanwhile
            db.execute("ROLLBACK")
            return False
        if "variant" in lacking:  # the first version: rebuilt, with every later column
            first = ", ".join(_FIRST)
            db.execute(f"CREATE TABLE activity_migrating ({COLUMNS})")
            db.execute(f"INSERT INTO activity_migrating ({first}) SELECT {first} FROM activity ORDER BY id")
            db.execute("DROP TABLE activity")  # and its indexes, made again below
            db.execute("ALTER TABLE activity_migrating RENAME TO activity")
            for statement in filter(str.strip, INDEXES.split(";")):
                db.execute(statement)
        else:  # the second: the language of each decision
            db.execute("ALTER TABLE activity ADD COLUMN lang TEXT")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return True


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
        migrate(self.db)
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
        rates = None if out.rates is None else json.dumps(out.rates)
        significant = None if out.significant is None else int(out.significant)
        self._pending.append((out.at, out.campaign, user, out.outcome, out.reason, send_id, out.revenue,
                              out.status, out.attempts, platform, out.variant, rates, significant, out.lang))

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
        db.executemany(f"INSERT INTO activity ({', '.join(_ROW)}) VALUES ({', '.join('?' * len(_ROW))})",
                       self._pending)
        self._writing = len(self._pending)

    def pending_written(self) -> None:
        del self._pending[: self._writing]
        self._writing = 0

    def rows(self, campaigns: Iterable[str] | None = None) -> list[dict[str, object]]:
        """The committed rows, oldest first (``user``: the row's user_id; a winner's ``rates`` decoded
        and ``significant`` a bool)."""
        query = f"SELECT {', '.join(_ROW)} FROM activity"
        params: list[object] = []
        if campaigns is not None:
            ids: list[object] = list(campaigns)
            query += f" WHERE campaign IN ({', '.join('?' * len(ids))})"
            params = ids
        found = []
        for row in self.db.execute(query + " ORDER BY id", params):
            values = dict(zip(_NAMES, row, strict=True))
            if values["rates"] is not None:
                values["rates"] = json.loads(str(values["rates"]))
            if values["significant"] is not None:
                values["significant"] = bool(values["significant"])
            found.append(values)
        return found

    def close(self) -> None:
        """Commit and close; riding a store, nothing: the store's ``close`` does both."""
        if self._store is None:
            self.commit()
            self.db.close()
