"""The SQLite store: what was committed is exactly what a reopened store sees, as MemoryStore would."""

from __future__ import annotations

import copy
import random
import sqlite3
from pathlib import Path

import pytest

from pushlang.runtime.sqlite_store import INDEXES, SqliteStore, open_store
from pushlang.runtime.store import MemoryStore, Subscription, Timer, UserState, Window

PROFILE = {
    "first_name": "Asha",
    "country": "IN",
    "test": True,
    "score": 4.5,
    "visits": 12,
    "nothing": None,
    "address": {"city": "Pune", "geo": [18.52, 73.85], "tags": {"vip": False}},
    "langs": ["hi", "en", {"pref": 1}],
}


def normalized(state: UserState | None) -> UserState | None:
    """A state as a reload sees it: an event name whose events were all pruned has no entry."""
    if state is None:
        return None
    state = copy.deepcopy(state)
    state.history = {name: events for name, events in state.history.items() if events}
    return state


def assert_same(store: MemoryStore, expected: MemoryStore) -> None:
    assert store.user_ids() == expected.user_ids()
    for user in expected.user_ids():
        assert normalized(store.get(user)) == normalized(expected.get(user)), user
    assert store.pending_timers() == expected.pending_timers()
    for timer in expected.pending_timers():
        got = store.timer(timer.key)
        assert got is not None
        assert (got.kind, got.payload) == (timer.kind, timer.payload)
    assert store.next_due() == expected.next_due()
    assert store._meta == expected._meta


def feed(store: MemoryStore) -> None:
    """The same calls the engine would make, touching every kind of state."""
    u1 = store.user("u1", 100)
    store.merge_profile(u1, PROFILE)
    store.merge_profile(u1, {"country": "DE", "address": {"city": "Berlin"}})
    web = Subscription(
        "https://push.example/e1",
        "chrome",
        110,
        endpoint="https://push.example/e1",
        keys={"p256dh": "P", "auth": "A"},
    )
    store.put_subscription(u1, web)
    store.put_subscription(u1, Subscription("tok-1", "safari", 111, device_token="tok-1"))
    store.set_active(u1, "https://push.example/e1", False)
    store.set_active(u1, "missing", False)
    for ts in range(120, 130):
        store.add_event(u1, "Viewed", ts, {"i": ts, "nested": {"list": [1, 2.5, None, True]}})
    store.add_event(u1, "Added To Cart", 130, {"price": 120, "product_id": "sku-9"})
    store.add_event(u1, "Bare", 131, {})
    store.prune_history(u1, "Viewed", 124)
    store.prune_history(u1, "Nothing", 124)
    store.bump_counter(u1, "cart|2026-12-01")
    store.bump_counter(u1, "cart|2026-12-01")
    store.bump_counter(u1, "*|2026-12-01")
    store.add_send(u1, "s1")
    store.add_send(u1, "s1")
    w1 = Window("cart", "s1", 140, 200)
    store.open_window(u1, w1)
    store.open_window(u1, Window("cart", "s2", 150, 210))
    store.open_window(u1, Window("promo", "s3", 160, 220))
    store.close_window(u1, Window("cart", "s2", 150, 210))

    u2 = store.user("u2", 105)
    store.merge_profile(u2, {"first_name": "Ben", "timezone": "Europe/Berlin"})
    store.add_event(u2, "Signed Up", 105, {})
    store.add_event(u2, "Viewed", 106, {"x": 1})
    store.prune_history(u2, "Viewed", 106)  # everything: the name disappears
    store.add_send(u2, "s9")

    store.user("u3", 107)  # a user with nothing but first_seen
    store.user("u1", 999)  # first_seen is not moved by a later record

    store.add_timer(Timer(300, "cart", "u1", "cart|u1", "inaction", {"since": 130, "props": {"a": [1]}}))
    store.add_timer(Timer(250, "cart", "u2", "cart|u2", "delay"))
    store.add_timer(Timer(250, "daily", "Europe/Berlin", "daily|Europe/Berlin", "occurrence", {"n": 1}))
    store.add_timer(Timer(260, "promo", "u1", "promo|u1", "at"))
    store.add_timer(Timer(400, "cart", "u1", "cart|u1", "inaction", {"since": 131}))  # re-armed
    store.cancel_timer("promo|u1")
    store.cancel_timer("never-armed")
    due = store.next_due()
    assert due == 250
    assert [t.key for t in store.pop_due(due)] == ["cart|u2", "daily|Europe/Berlin"]

    store.set_meta("clock", 250)
    store.set_meta("plan", {"version": 1, "ids": ["cart", "promo"]})
    store.set_meta("clock", 260)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


def test_committed_state_survives_reopen(db: Path) -> None:
    expected = MemoryStore()
    feed(expected)
    store = SqliteStore(db)
    feed(store)
    assert_same(store, expected)
    store.commit()
    store.close()

    reopened = SqliteStore(db)
    assert reopened._users == {}  # loaded lazily
    assert_same(reopened, expected)
    u1 = reopened.get("u1")
    assert u1 is not None and u1.first_seen == 100
    assert u1.subscriptions["https://push.example/e1"].active is False
    assert u1.profile["address"] == {"city": "Berlin"}
    assert [ts for ts, _ in u1.history["Viewed"]] == [125, 126, 127, 128, 129]
    assert reopened.get("nobody") is None
    reopened.close()


def test_users_preloaded_together_are_the_users_loaded_one_by_one(db: Path) -> None:
    store = SqliteStore(db)
    feed(store)
    store.close()

    def orders(state: UserState | None) -> tuple[object, ...]:
        assert state is not None
        return (list(state.subscriptions), list(state.history), list(state.counters), state.windows)

    with SqliteStore(db) as one_by_one, SqliteStore(db) as together:
        together.preload(["u3", "nobody", "u1", "u2", "u1"])
        assert list(together._users) == ["u3", "u1", "u2"]  # as asked, each once; nobody is not stored
        for user in ("u1", "u2", "u3"):
            state = one_by_one.get(user)
            assert together._users[user] == state
            assert orders(together._users[user]) == orders(state)
        assert together.get("nobody") is None


def test_changes_after_a_reopen_are_kept_too(db: Path) -> None:
    expected = MemoryStore()
    feed(expected)
    with SqliteStore(db) as store:
        feed(store)

    feed_more(expected)
    with SqliteStore(db) as store:
        feed_more(store)
    with SqliteStore(db) as store:
        assert_same(store, expected)


def test_uncommitted_changes_are_not_visible(db: Path) -> None:
    writer = SqliteStore(db)
    u1 = writer.user("u1", 1)
    writer.add_event(u1, "Viewed", 1, {})
    writer.add_timer(Timer(5, "c", "u1", "c|u1", "at"))
    writer.set_meta("clock", 1)
    writer.commit()

    writer.add_event(u1, "Viewed", 2, {})
    writer.merge_profile(u1, {"country": "IN"})
    writer.user("u2", 2)
    writer.cancel_timer("c|u1")
    writer.set_meta("clock", 2)

    reader = SqliteStore(db)  # a second connection while the writer has not committed
    assert reader.user_ids() == ["u1"]
    state = reader.get("u1")
    assert state is not None
    assert state.history == {"Viewed": [(1, {})]} and state.profile == {}
    assert reader.timer("c|u1") is not None
    assert reader.meta("clock") == 1
    assert writer.user_ids() == ["u1", "u2"]  # the writer's own view includes what it has not committed
    reader.close()
    writer.close()  # close commits

    with SqliteStore(db) as after:
        assert after.user_ids() == ["u1", "u2"]
        assert after.timer("c|u1") is None and after.meta("clock") == 2


def test_wal_mode_and_indexes(db: Path) -> None:
    with SqliteStore(db):
        pass
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {
        name: sql
        for name, sql in con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    assert set(INDEXES) <= set(indexes)
    assert "(user_id, name, ts)" in indexes["events_user_name_ts"]
    assert "timers_due" not in indexes and "sends_user" not in indexes  # schema 4: nothing read them
    (sends,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'sends'").fetchone()
    assert "PRIMARY KEY (user_id, send_id)" in sends
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "users",
        "profiles",
        "subscriptions",
        "events",
        "counters",
        "sends",
        "windows",
        "timers",
        "meta",
    } <= tables
    con.close()


def test_profile_properties_are_queryable_in_sql(db: Path) -> None:
    with SqliteStore(db) as store:
        for i in range(10):
            state = store.user(f"u{i}", i)
            store.merge_profile(
                state, {"country": "IN" if i % 3 == 0 else "DE", "address": {"city": f"c{i}"}}
            )
    con = sqlite3.connect(db)
    count = con.execute(
        "SELECT count(*) FROM profiles WHERE json_extract(props, '$.country') = 'IN'"
    ).fetchone()
    assert count == (4,)
    assert con.execute(
        "SELECT json_extract(props, '$.address.city') FROM profiles WHERE user_id = 'u7'"
    ).fetchone() == ("c7",)
    con.close()


def test_send_ids_are_unique(db: Path) -> None:
    with SqliteStore(db) as store:
        state = store.user("u1", 1)
        store.add_send(state, "s1")
        store.commit()
        store.add_send(state, "s1")
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM sends").fetchone() == (1,)
    with pytest.raises(sqlite3.IntegrityError):  # unique per user (a send_id hashes its user: no two share one)
        con.execute("INSERT INTO sends (send_id, user_id) VALUES ('s1', 'u1')")
    con.close()


def test_bounded_cache_drops_and_reloads_users(db: Path) -> None:
    expected = MemoryStore()
    store = SqliteStore(db, cache_size=3)
    for target in (expected, store):
        for i in range(10):
            state = target.user(f"u{i:02}", i)
            target.add_event(state, "Viewed", i, {"i": i})
            target.bump_counter(state, "c|d")
            target.commit()
    assert len(store._users) <= 3
    assert_same(store, expected)  # the dropped users come back from SQL
    for target in (expected, store):
        state = target.user("u00", 50)
        target.add_event(state, "Viewed", 50, {})
        target.prune_history(state, "Viewed", 0)
    store.close()
    with SqliteStore(db) as reopened:
        assert_same(reopened, expected)


def test_maybe_commit_batches(db: Path) -> None:
    store = SqliteStore(db, batch_size=3, commit_interval=3600)
    state = store.user("u1", 1)
    store.add_event(state, "e", 1, {})
    assert [store.maybe_commit(1) for _ in range(3)] == [False, False, True]
    assert not store._dirty
    store.add_event(state, "e", 2, {})
    assert store.maybe_commit(5) is True
    timed = SqliteStore(db, batch_size=10**9, commit_interval=0)
    assert timed.maybe_commit() is True
    timed.close()
    store.close()


def feed_more(store: MemoryStore) -> None:
    """A second session's calls on the state ``feed`` left: changes to rows written earlier."""
    u1 = store.user("u1", 500)
    store.set_active(u1, "https://push.example/e1", True)
    store.merge_profile(u1, {"country": "FR"})
    store.prune_history(u1, "Viewed", 126)  # rows written in an earlier session
    store.add_event(u1, "Viewed", 501, {"late": True})
    store.bump_counter(u1, "cart|2026-12-01")
    store.drop_counter(u1, "*|2026-12-01")  # a counter written in an earlier session goes
    store.add_send(u1, "s4")
    store.close_window(u1, Window("cart", "s1", 140, 200))
    store.pop_due(store.next_due() or 0)
    store.cancel_timer("cart|u1")
    store.add_timer(Timer(600, "promo", "u3", "promo|u3", "at", {"k": "v"}))
    store.set_meta("clock", 501)
    store.user("u4", 502)


def random_call(target: MemoryStore, rng: random.Random, op: int, user: str, clock: int) -> None:
    """One of 14 store calls, drawn from ``rng``: the same draws give the same call on any store."""
    names = ["a", "b", "c"]
    state = target.user(user, clock)
    if op == 0:
        target.merge_profile(
            state, {rng.choice("xyz"): rng.choice([1, "s", [1, {"n": None}], {"d": 2.5}])}
        )
    elif op == 1:
        key = rng.choice(["e1", "e2"])
        target.put_subscription(state, Subscription(key, "chrome", clock, key, {"auth": str(clock)}))
    elif op == 2:
        target.set_active(state, rng.choice(["e1", "e2"]), rng.random() < 0.5)
    elif op in (3, 4, 5):
        target.add_event(state, rng.choice(names), clock, {"v": clock} if op != 5 else {})
    elif op == 6:
        target.prune_history(state, rng.choice(names), clock - rng.randint(0, 40))
    elif op == 7:
        if rng.random() < 0.3:
            target.drop_counter(state, rng.choice(["k1", "k2"]))
        else:
            target.bump_counter(state, rng.choice(["k1", "k2"]))
    elif op == 8:
        target.add_send(state, f"{user}-{rng.randint(0, 5)}")
    elif op == 9:
        target.open_window(state, Window("c", f"s{clock % 3}", clock, clock + 10))
    elif op == 10 and state.windows:
        target.close_window(state, copy.copy(state.windows[len(state.windows) // 2]))
    elif op == 11:
        target.add_timer(
            Timer(clock + rng.randint(0, 20), "c", user, f"t{rng.randint(0, 6)}", "at", {"c": clock})
        )
    elif op == 12:
        target.cancel_timer(f"t{rng.randint(0, 6)}")
    elif op == 13:
        due = target.next_due()
        if due is not None and due <= clock:
            target.pop_due(due)
        target.set_meta("clock", clock)


def random_script(seed: int, db: Path) -> None:
    """Random calls on a MemoryStore and a SqliteStore that commits, closes and reopens at random."""
    rng = random.Random(seed)
    expected = MemoryStore()
    store = SqliteStore(db, cache_size=rng.choice([None, 2, 5]))
    users = [f"u{i}" for i in range(8)]
    clock = 0
    for _ in range(600):
        clock += rng.randint(-3, 10)  # occasionally out of order: history lists are kept as given
        user = rng.choice(users)
        op = rng.randrange(14)
        saved = rng.getstate()
        for target in (expected, store):
            rng.setstate(saved)  # both targets draw the same numbers
            random_call(target, rng, op, user, clock)
        roll = rng.random()
        if roll < 0.05:
            store.commit()
        elif roll < 0.07:
            store.close()
            store = SqliteStore(db, cache_size=store.cache_size)
        elif roll < 0.09:
            store.preload(rng.sample(users, rng.randint(1, len(users))))  # a replay's read-ahead
    store.close()
    with SqliteStore(db) as reopened:
        assert_same(reopened, expected)


@pytest.mark.parametrize("seed", range(12))
def test_random_calls_match_memory_store(seed: int, tmp_path: Path) -> None:
    random_script(seed, tmp_path / "state.db")


def test_many_events_commit(db: Path) -> None:
    """A sanity check that a large batch goes through (speed is measured in bench/, not here)."""
    with SqliteStore(db) as store:
        for i in range(50_000):
            state = store.user(f"u{i % 500}", i)
            store.add_event(state, "Viewed", i, {"product": f"sku-{i % 37}", "price": i % 100})
            store.maybe_commit()
        store.commit()
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*), count(DISTINCT user_id) FROM events").fetchone() == (50_000, 500)
    con.close()


def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert type(open_store(None)) is MemoryStore
    assert type(open_store("memory:")) is MemoryStore
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///rel.db")
    assert isinstance(relative, SqliteStore)
    relative.close()
    assert (tmp_path / "rel.db").exists()
    absolute_path = tmp_path / "sub" / "abs.db"
    absolute_path.parent.mkdir()
    absolute = open_store(f"sqlite:///{absolute_path}")  # sqlite:////tmp/.../abs.db
    assert isinstance(absolute, SqliteStore) and absolute.path == str(absolute_path)
    absolute.close()
    assert absolute_path.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///", "names no file"),
        ("sqlite://host/x.db", "malformed"),
        ("sqlite:x.db", "malformed"),
        ("sqlite:///x.db?mode=ro", "query strings"),
        ("redis://localhost:6379/0", "unsupported store URL"),
        ("state.db", "unsupported store URL"),
        ("", "unsupported store URL"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


def test_newer_schema_is_refused(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(ValueError, match="newer"):
        SqliteStore(db)


def test_the_bounded_cache_keeps_the_users_last_used(db: Path) -> None:
    store = SqliteStore(db, cache_size=3)
    for i in range(3):
        store.add_event(store.user(f"u{i}", i), "Viewed", i, {})
    store.commit()
    assert store.get("u0") is not None  # u0 is used again: u1 is now the least recently used
    store.user("u3", 3)
    store.commit()
    assert sorted(store._users) == ["u0", "u2", "u3"]
    assert store.get("u1") is not None and len(store._users) == 4  # reloaded from SQL when touched
    state = store.user("u4", 4)
    store.add_event(state, "Viewed", 4, {"late": True})
    store.commit()
    assert sorted(store._users) == ["u1", "u3", "u4"]
    store.close()
    with SqliteStore(db) as reopened:
        u4 = reopened.get("u4")
        assert u4 is not None and u4.history == {"Viewed": [(4, {"late": True})]}


def test_reads_alone_do_not_grow_the_cache_past_its_bound(db: Path) -> None:
    with SqliteStore(db) as store:
        for i in range(50):
            store.user(f"u{i}", i)
    store = SqliteStore(db, cache_size=10)
    for i in range(50):
        assert store.get(f"u{i}") is not None
        store.commit()  # nothing to write, but the bound holds
        assert len(store._users) <= 10
    store.close()


def test_an_uncommitted_user_is_never_dropped(db: Path) -> None:
    store = SqliteStore(db, cache_size=1)
    states = [store.user(f"u{i}", i) for i in range(5)]
    for state in states:
        store.bump_counter(state, "c|all")
    assert len(store._users) == 5  # over the bound until the commit has written them
    store.commit()
    assert list(store._users) == ["u4"]
    store.close()
    with SqliteStore(db) as reopened:
        assert [s.counters for s in map(reopened.get, ("u0", "u4")) if s] == [{"c|all": 1}, {"c|all": 1}]


def test_a_cache_of_no_users_is_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="at least one user"):
        SqliteStore(db, cache_size=0)


def test_meta_set_to_none_is_deleted(db: Path) -> None:
    with SqliteStore(db) as store:
        store.set_meta("outbox:s1", {"state": "pending"})
        store.set_meta("outbox:s2", {"state": "pending"})
        store.commit()
        store.set_meta("outbox:s1", None)
        assert store.meta("outbox:s1", "gone") == "gone"
        assert store.meta_items("outbox:") == [("outbox:s2", {"state": "pending"})]
    con = sqlite3.connect(db)
    assert con.execute("SELECT key FROM meta").fetchall() == [("outbox:s2",)]
    # an earlier version wrote removed entries as null: they are not loaded, and deleted at the next commit
    con.execute("INSERT INTO meta (key, value) VALUES ('outbox:old', 'null')")
    con.commit()
    with SqliteStore(db) as store:
        assert "outbox:old" not in store._meta
    assert con.execute("SELECT key FROM meta").fetchall() == [("outbox:s2",)]
    con.close()


def test_re_armed_timers_do_not_pile_up_in_the_heap() -> None:
    store = MemoryStore()
    for n in range(20_000):  # an inaction timer re-armed by each event of ten users
        user = f"u{n % 10}"
        store.add_timer(Timer(1_000 + n, "cart", user, f"inaction:cart:{user}", "inaction"))
    store.cancel_timer("inaction:cart:u0")
    assert len(store._heap) <= 2 * 10 + 4096
    assert store.next_due() == 1_000 + 19_991  # u1's last arming; u0's was cancelled
    assert [t.user for t in store.pop_due(1_000 + 19_991)] == ["u1"]
    assert [t.user for t in store.pending_timers()] == [f"u{i}" for i in range(2, 10)]
