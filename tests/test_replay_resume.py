"""A replay on a SQLite store that dies between two commits goes on from the last one: what the dead
run decided up to that commit, then what the second run decides, is exactly what one run decides.

The bundled example shop (every campaign of `examples/`, 51,946 records: live triggers, schedules,
best time, DND delays, winner tests, throttles, conversions) is replayed whole on memory; then on a
SQLite store that is abandoned uncommitted (the process "dies": no close, no last commit) after a
given number of decisions, and replayed again on the same file from the start of the log."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pushlang.compiler import compile_paths
from pushlang.plan import Plan
from pushlang.runtime.outcomes import Output
from pushlang.runtime.replay import replay
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore

ROOT = Path(__file__).resolve().parent.parent


COMMIT_EVERY = 10_000  # several commits over the shop's 51,946 records (a replay's default: one)


class Died(Exception):
    """The replay's process dies here: nothing after the last commit reaches the file."""


@pytest.fixture(scope="module")
def shop() -> tuple[Plan, list[bytes], list[Output]]:
    result = compile_paths([str(ROOT / "examples")])
    assert result.plan is not None, result.diagnostics
    with gzip.open(ROOT / "examples" / "events.jsonl.gz", "rb") as f:
        lines = f.read().splitlines()
    whole: list[Output] = []
    replay(result.plan, lines, MemoryStore(), whole.append)
    return result.plan, lines, whole


@pytest.mark.parametrize("dies_after", [23_456, 41_000])
def test_a_replay_dead_between_commits_goes_on_from_the_last_one(
        tmp_path: Path, shop: tuple[Plan, list[bytes], list[Output]], dies_after: int) -> None:
    compiled, lines, whole = shop
    assert len(lines) > 3 * COMMIT_EVERY and len(whole) > dies_after
    db = tmp_path / "shop.db"

    first: list[Output] = []
    at_commit: list[int] = []  # how many decisions were out at each commit

    class Dying(SqliteStore):
        def commit(self) -> None:
            super().commit()
            at_commit.append(len(first))

    def emit(output: Output) -> None:
        if len(first) == dies_after:
            raise Died
        first.append(output)

    store = Dying(str(db))
    with pytest.raises(Died):
        replay(compiled, lines, store, emit, commit_every=COMMIT_EVERY)
    store._db.close()  # abandoned: no close(), so no last commit
    assert at_commit and at_commit[-1] < dies_after  # it died with decisions made since its last commit

    second: list[Output] = []
    with SqliteStore(str(db)) as again:
        summary = replay(compiled, lines, again, second.append, commit_every=COMMIT_EVERY)
    assert summary.skipped > 0  # the records before the commit are not fed again
    assert first[:at_commit[-1]] + second == whole
