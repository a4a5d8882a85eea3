"""The store's state and the activity log commit in one SQLite transaction: both or neither."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.outcomes import Output
from pushlang.runtime.sqlite_store import SqliteStore

FAIL_SENDS = """CREATE TRIGGER refuse_sends BEFORE INSERT ON activity WHEN NEW.outcome = 'send'
                BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"""


def counts(db: Path) -> dict[str, int]:
    """What another connection sees committed."""
    con = sqlite3.connect(db)
    try:
        return {table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("users", "sends", "counters", "meta", "activity")}
    finally:
        con.close()


def decide(store: SqliteStore, log: ActivityLog, user: str, send_id: str) -> None:
    """What the engine and the service do for one send decision."""
    state = store.user(user, 1)
    store.add_send(state, send_id)
    store.bump_counter(state, "welcome|all")
    store.set_meta("outbox:" + send_id, {"state": "pending"})
    log.record(Output("2026-12-01T08:00:00Z", "welcome", user, "send", None, send_id))


def test_a_failure_half_way_writes_neither_the_state_nor_the_activity(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStore(db)
    log = ActivityLog(store)
    store.connection.execute(FAIL_SENDS)
    decide(store, log, "u1", "s1")
    log.record(Output("2026-12-01T08:00:00Z", "welcome", "u0", "suppress", "not_in_audience"))
    # the store's rows are written first, then the activity rows: the trigger fails the second half
    with pytest.raises(sqlite3.IntegrityError, match="refused by the test"):
        store.commit()
    assert counts(db) == {"users": 0, "sends": 0, "counters": 0, "meta": 0, "activity": 0}
    assert not store.connection.in_transaction
    # nothing is lost in memory: once SQLite accepts the rows, the next commit writes all of them
    store.connection.execute("DROP TRIGGER refuse_sends")
    log.commit()  # riding the store: the store's commit
    assert counts(db) == {"users": 1, "sends": 1, "counters": 1, "meta": 1, "activity": 2}
    assert log.pending_rows() == 0
    store.close()
    log.close()  # the store closed the shared connection; closing the log again is harmless
    assert counts(db)["activity"] == 2


def test_a_failing_store_table_writes_no_activity_either(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = SqliteStore(db)
    log = ActivityLog(store)
    store.connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON counters BEGIN SELECT RAISE(ABORT, 'no'); END")
    decide(store, log, "u1", "s1")
    with pytest.raises(sqlite3.IntegrityError):
        store.commit()
    assert counts(db) == {"users": 0, "sends": 0, "counters": 0, "meta": 0, "activity": 0}
    store.connection.execute("DROP TRIGGER refuse")
    store.close()
    assert counts(db) == {"users": 1, "sends": 1, "counters": 1, "meta": 1, "activity": 1}


def test_an_activity_log_alone_commits_on_its_own_and_keeps_rows_a_failure_refused(tmp_path: Path) -> None:
    db = tmp_path / "alone.db"
    log = ActivityLog(str(db))
    log.db.execute(FAIL_SENDS)
    log.record(Output("2026-12-01T08:00:00Z", "welcome", "u1", "send", None, "s1"))
    with pytest.raises(sqlite3.IntegrityError):
        log.commit()
    assert log.pending_rows() == 1 and log.rows() == []
    log.db.execute("DROP TRIGGER refuse_sends")
    log.close()
    assert counts_activity(db) == 1
    memory = ActivityLog(":memory:")  # as `pushlang stats` uses it
    memory.record(Output("2026-12-01T08:00:00Z", "welcome", "u1", "send", None, "s1"))
    memory.commit()
    assert [r["send_id"] for r in memory.rows()] == ["s1"]


def counts_activity(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM activity").fetchone()[0])
    finally:
        con.close()
