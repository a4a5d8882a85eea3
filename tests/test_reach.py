"""`pushlang reach`: counting in SQL over the SQLite store gives exactly what evaluating each user gives."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushlang import plan
from pushlang.commands.reach import add_parser, run
from pushlang.compiler import compile_paths
from pushlang.runtime.audience_sql import AudienceQuery, Untranslatable
from pushlang.runtime.evaluate import Compiler, Env, History
from pushlang.runtime.instants import US, parse_instant
from pushlang.runtime.pipeline import in_control_group
from pushlang.runtime.reach import COUNTED_IN_SQL, Reach, count_reach, render_text
from pushlang.runtime.replay import replay
from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore, Subscription

ROOT = Path(__file__).resolve().parent.parent
AT = "2026-12-10T12:00:00Z"

CAMPAIGNS = """\
segment big_spenders {
  did "Charged" where event.amount >= 100 at least 2 times in last 90d
}

segment browsers {
  did "Viewed Product" in last 7d
}

campaign by_country "By country" {
  send once at 2026-12-20 10:00
  who {
    user.country in ["IN", "US"]
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
  control group 30%
}

campaign adults {
  send once at 2026-12-20 10:00
  who {
    user.age >= 30
    user.vip == true or exists user.tags or user["loyalty tier"] == "gold"
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign big {
  platforms chrome, firefox, edge
  send once at 2026-12-20 10:00
  who {
    segment big_spenders
  }
  message {
    title "Hi"
    body "There"
  }
}

campaign browsing_not_big {
  send once at 2026-12-20 10:00
  who {
    segment browsers
    not segment big_spenders
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
  control group 50%
}

campaign not_india {
  send once at 2026-12-20 10:00
  who {
    user.country not in ["IN"]
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign strings {
  send once at 2026-12-20 10:00
  who {
    user.address.city starts with "Pu" or user.first_name ends with "rg" or user.tags contains "b2b"
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign did_counts {
  send once at 2026-12-20 10:00
  who {
    did "Charged" at most 1 times in last 30d
    did not "Viewed Product" where event.category == "hats" in last 7d
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign exactly_two {
  send once at 2026-12-20 10:00
  who {
    did "Charged" where event.amount >= 100 and user.country != "DE" exactly 2 times in last 30d
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign lowered {
  platforms chrome, safari
  send once at 2026-12-20 10:00
  who {
    lower(user.country) == "in"
  }
  message {
    title "Hi"
    body "There"
  }
}

campaign conditional {
  send once at 2026-12-20 10:00
  who {
    if user.vip == true then user.age >= 30 else user.country in ["IN", "US"] and did "Viewed Product" in last 7d
    (if exists user.tags then user.age > 20 else user.vip != true) != false
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign conditional_value {
  send once at 2026-12-20 10:00
  who {
    (if user.vip == true then user.age else 0) >= 30
  }
  message {
    title "@{if user.vip == true then 'VIP' else 'Hi'}"
    body "There"
    url "https://shop.example.com/"
  }
}

campaign live_cart {
  on "Added To Cart"
  who {
    event.price > 20 or user.country == "DE"
  }
  message {
    title "Hi"
    body "There"
    url "https://shop.example.com/cart"
  }
}

campaign everyone {
  send once at 2026-12-20 10:00
  message {
    title "Hi"
    body "There"
  }
}
"""

FILLERS = [f"f{i:02d}" for i in range(12)]


def _records() -> list[dict[str, Any]]:
    def profile(user: str, ts: str, **props: Any) -> dict[str, Any]:
        return {"type": "profile", "user": user, "ts": ts, "props": props}

    def web(user: str, ts: str, platform: str) -> dict[str, Any]:
        return {"type": "subscribe", "user": user, "ts": ts, "platform": platform,
                "endpoint": f"https://push.example/{platform}/{user}", "keys": {"p256dh": "P", "auth": "A"}}

    def token(user: str, ts: str) -> dict[str, Any]:
        return {"type": "subscribe", "user": user, "ts": ts, "platform": "safari", "device_token": f"tok-{user}"}

    def gone(user: str, ts: str, platform: str) -> dict[str, Any]:
        return {"type": "unsubscribe", "user": user, "ts": ts, "endpoint": f"https://push.example/{platform}/{user}"}

    def event(user: str, ts: str, name: str, **props: Any) -> dict[str, Any]:
        return {"user": user, "ts": ts, "name": name, "props": props}

    records = [
        profile("u1", "2026-11-01T08:00:00Z", first_name="Asha", country="IN", age=31, vip=True,
                address={"city": "Pune", "zip": "411001"}, tags=["early", "b2b"], **{"loyalty tier": "gold"}),
        web("u1", "2026-11-01T08:01:00Z", "chrome"),
        web("u1", "2026-11-01T08:02:00Z", "firefox"),
        event("u1", "2026-11-20T10:00:00Z", "Charged", amount=120),
        event("u1", "2026-12-01T10:00:00Z", "Charged", amount=150),
        event("u1", "2026-12-09T10:00:00Z", "Viewed Product", category="shoes"),
        profile("u2", "2026-11-02T08:00:00Z", country="US", age="31", vip=False, address={"city": "Austin"}),
        token("u2", "2026-11-02T08:01:00Z"),
        event("u2", "2026-12-05T10:00:00Z", "Charged", amount=50),
        event("u2", "2026-12-08T10:00:00Z", "Viewed Product", category="hats"),
        event("u2", "2026-12-09T10:00:00Z", "Viewed Product", category="shoes"),
        profile("u3", "2026-11-03T08:00:00Z", country="DE", age=45.5, first_name="Jörg", tags=["b2b"]),
        web("u3", "2026-11-03T08:01:00Z", "edge"),
        gone("u3", "2026-11-04T08:00:00Z", "edge"),
        web("u3", "2026-11-04T08:01:00Z", "chrome"),
        event("u3", "2026-12-02T10:00:00Z", "Charged", amount=100),
        event("u3", "2026-12-03T10:00:00Z", "Charged", amount=100.0),
        event("u3", "2026-12-04T10:00:00Z", "Charged", amount="100"),  # a string: no amount >= 100
        event("u4", "2026-12-10T09:00:00Z", "Viewed Product", category="hats"),  # no profile
        web("u4", "2026-12-10T09:01:00Z", "firefox"),
        profile("u5", "2026-11-05T08:00:00Z", country="IN", address={"city": "Mumbai"}),
        web("u5", "2026-11-05T08:01:00Z", "chrome"),
        gone("u5", "2026-11-06T08:00:00Z", "chrome"),  # known, but unreachable
        profile("u6", "2026-11-06T08:00:00Z", country=None, age=None, vip="true"),
        web("u6", "2026-11-06T08:01:00Z", "safari"),  # Safari 16+ Web Push
        profile("u7", "2026-11-07T08:00:00Z", country="in", first_name="Ravi"),
        web("u7", "2026-11-07T08:01:00Z", "chrome"),
        web("u7", "2026-11-07T08:02:00Z", "edge"),
        event("u7", "2026-08-01T09:00:00Z", "Charged", amount=300),  # outside every window at AT
        event("u7", "2026-12-09T11:00:00Z", "Charged", amount=200),
        profile("u8", "2026-11-08T08:00:00Z", country="US", vip=True, tags="early b2b"),
        web("u8", "2026-11-08T08:01:00Z", "chrome"),
        token("u8", "2026-11-08T08:02:00Z"),
        event("u8", "2026-12-01T10:00:00Z", "Charged", amount=120),
        event("u8", "2026-12-02T10:00:00Z", "Charged", amount=130),
        event("u8", "2026-12-03T10:00:00Z", "Charged", amount=20),
        event("u8", "2026-12-04T10:00:00Z", "Added To Cart", price=99),
    ]
    for i, user in enumerate(FILLERS):
        records.append(profile(user, f"2026-11-10T08:{i:02d}:00Z", country="US", first_name="Sam"))
        records.append(web(user, f"2026-11-10T09:{i:02d}:00Z", "chrome"))
    records.append(event("u1", AT, "Viewed Product", category="socks"))  # the latest record: the clock
    return sorted(records, key=lambda r: parse_instant(r["ts"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reach")
    (folder / "campaigns.push").write_text(CAMPAIGNS, encoding="utf-8")
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def compiled(project: Path) -> plan.Plan:
    result = compile_paths([str(project / "campaigns.push")])
    assert result.plan is not None, result.diagnostics
    return result.plan


def _replayed(compiled: plan.Plan, project: Path, store: MemoryStore) -> MemoryStore:
    lines = (project / "records.jsonl").read_bytes().splitlines()
    summary = replay(compiled, lines, store, lambda decision: None)
    assert not summary.rejects
    return store


@pytest.fixture(scope="module")
def sqlite_store(compiled: plan.Plan, project: Path) -> Any:
    store = _replayed(compiled, project, SqliteStore(project / "state.db"))
    yield store
    store.close()


@pytest.fixture(scope="module")
def memory_store(compiled: plan.Plan, project: Path) -> MemoryStore:
    return _replayed(compiled, project, MemoryStore())


def _reach(compiled: plan.Plan, campaign: str, store: MemoryStore, *, per_user: bool = False,
           at: str = AT) -> Reach:
    found = compiled.campaign(campaign)
    assert found is not None
    return count_reach(compiled, found, store, parse_instant(at), per_user=per_user)


ALL = ("by_country", "adults", "big", "browsing_not_big", "not_india", "strings", "did_counts", "exactly_two",
       "lowered", "conditional", "conditional_value", "live_cart", "everyone")
PER_USER = {  # campaign id → why its audience is not counted in SQL
    "lowered": "the function lower() is not translated to SQL",
    "conditional_value": "`if ... then ... else` as a value (not a condition) is not translated to SQL",
}
TRANSLATABLE = tuple(c for c in ALL if c not in PER_USER)


def _variants(campaign: plan.Campaign, weights: tuple[int, ...] = (5000, 5000),
              test: plan.WinnerTest | None = None) -> plan.Campaign:
    """``campaign`` with variants a, b, … of those weights (basis points), each titled by its id (the
    variant syntax lands with the language change; the plan is what the runtime reads)."""
    variants = tuple(plan.Variant(chr(ord("a") + i), weight,
                                  msgspec.structs.replace(campaign.message, title=plan.Text((plan.Literal(chr(ord("a") + i)),))))
                     for i, weight in enumerate(weights))
    return msgspec.structs.replace(campaign, variants=variants, message=variants[0].message, test=test)


EXPERIMENTS = {  # campaign id → its variants' weights and winner test
    "by_country": ((5000, 5000), plan.WinnerTest(85.0, "clicks", 4 * 3600)),
    "everyone": ((3334, 3333, 3333), None),
    "browsing_not_big": ((2500, 7500), plan.WinnerTest(50.0, "clicks", 3600)),
    "lowered": ((5000, 5000), None),  # counted per user in both ways (lower() has no SQL)
    "did_counts": ((1, 9999), None),
}


@pytest.fixture(scope="module")
def experiments(compiled: plan.Plan) -> plan.Plan:
    """The same campaigns with a 20% global holdout, and some of them with variants and winner tests."""
    campaigns = tuple(_variants(c, *EXPERIMENTS[c.id]) if c.id in EXPERIMENTS else c for c in compiled.campaigns)
    return msgspec.structs.replace(compiled, campaigns=campaigns,
                                   settings=msgspec.structs.replace(compiled.settings, global_holdout=20.0))


@pytest.mark.parametrize("experiment", [False, True], ids=["as_written", "holdout_and_variants"])
@pytest.mark.parametrize("campaign", ALL)
def test_sql_and_per_user_counts_agree(campaign: str, experiment: bool, compiled: plan.Plan,
                                       experiments: plan.Plan, sqlite_store: SqliteStore,
                                       memory_store: MemoryStore) -> None:
    if experiment:
        compiled = experiments
    in_sql = _reach(compiled, campaign, sqlite_store)
    in_memory = _reach(compiled, campaign, memory_store)
    per_user = _reach(compiled, campaign, sqlite_store, per_user=True)
    assert in_sql.numbers() == in_memory.numbers() == per_user.numbers()
    if experiment:
        assert in_sql.global_holdout_percent == 20.0
        assert bool(in_sql.variants) == (campaign in EXPERIMENTS)
        assert sum(in_sql.variants.values()) == (in_sql.sendable if in_sql.variants else 0)
    else:
        assert (in_sql.global_holdout, in_sql.variants, in_sql.test_variants) == (0, {}, {})
    assert in_memory.method == per_user.method == "per_user"
    if campaign in TRANSLATABLE:
        assert (in_sql.method, in_sql.counted) == ("sql", COUNTED_IN_SQL)
    else:
        assert in_sql.method == "per_user"
        assert in_sql.counted == "evaluated per user: " + PER_USER[campaign]


@pytest.mark.parametrize("at", ["2026-12-03T00:00:00Z", "2026-11-15T00:00:00Z", "2027-02-01T00:00:00Z"])
@pytest.mark.parametrize("campaign", ["big", "browsing_not_big", "did_counts", "exactly_two", "everyone"])
def test_agree_at_other_instants(campaign: str, at: str, compiled: plan.Plan, sqlite_store: SqliteStore,
                                 memory_store: MemoryStore) -> None:
    in_sql = _reach(compiled, campaign, sqlite_store, at=at)
    assert in_sql.method == "sql"
    assert in_sql.numbers() == _reach(compiled, campaign, memory_store, at=at).numbers()


def test_numbers_by_hand(compiled: plan.Plan, sqlite_store: SqliteStore) -> None:
    # Known: u1–u8 and the 12 fillers. In IN or US: u1, u2, u5, u8 and the fillers; u5 unsubscribed.
    r = _reach(compiled, "by_country", sqlite_store)
    assert (r.known_users, r.audience, r.reachable) == (20, 16, 15)
    assert r.by_platform == {"chrome": 14, "firefox": 1, "edge": 0, "safari": 2}  # u2's token, u8's token
    reachable = ["u1", "u2", "u8", *FILLERS]
    assert r.control == sum(in_control_group("by_country", u, 30.0) for u in reachable)
    assert 0 < r.control < 15

    # Big spenders: u1 (150, 120), u3 (100 and 100.0; "100" is a string), u8 (120, 130); u7's 300 is too old.
    # No Safari on the list; u3's Edge subscription is inactive.
    r = _reach(compiled, "big", sqlite_store)
    assert (r.audience, r.reachable) == (3, 3)
    assert r.by_platform == {"chrome": 3, "firefox": 1, "edge": 0}

    # A JSON null country is not in ["IN"], a missing one is not anything: u4 is out.
    r = _reach(compiled, "not_india", sqlite_store)
    assert r.audience == 17  # u2, u3, u6, u7 ("in"), u8 and the fillers

    # `lower()` is evaluated per user; no url, so u1's and u7's Chrome count and nobody's Safari.
    r = _reach(compiled, "lowered", sqlite_store)
    assert (r.audience, r.reachable, r.by_platform) == (3, 2, {"chrome": 2})

    # `event.*` without an event is false: only the German user is in the live campaign's audience.
    r = _reach(compiled, "live_cart", sqlite_store)
    assert r.audience == 1

    # exactly 2 Charged >= 100 in the last 30 days, not in DE: u1 and u8 (u3 is German).
    assert _reach(compiled, "exactly_two", sqlite_store).audience == 2

    # `if`: u1 is a VIP of 31 (and has tags, age > 20); u2 is no VIP, in the US, browsing, without tags and
    # its vip is not true. u8 is a VIP without an age; u6's vip is the string "true", so its `else` holds
    # and its null country is not in the list.
    r = _reach(compiled, "conditional", sqlite_store)
    assert (r.method, r.audience) == ("sql", 2)
    # As a value, per user: u1's age; u8's is missing, so the comparison is false; the rest compare 0.
    r = _reach(compiled, "conditional_value", sqlite_store)
    assert (r.method, r.audience) == ("per_user", 1)


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10000


def test_experiment_numbers_by_hand(experiments: plan.Plan, sqlite_store: SqliteStore) -> None:
    # SPEC §8, §12.3, §12.4 computed here from the hashes, not with the pipeline's functions.
    reachable = ["u1", "u2", "u8", *FILLERS]
    holdout = [u for u in reachable if _bucket(f"global:{u}") < 2000]
    group = [u for u in reachable if u not in holdout and _bucket(f"by_country:{u}") < 3000]
    sendable = [u for u in reachable if u not in holdout and u not in group]
    variant = {u: "a" if _bucket(f"by_country:variant:{u}") < 5000 else "b" for u in sendable}
    tested = [u for u in sendable if _bucket(f"by_country:test:{u}") < 8500]
    for per_user in (False, True):
        r = _reach(experiments, "by_country", sqlite_store, per_user=per_user)
        assert (r.reachable, r.control, r.global_holdout, r.control_group) == (
            15, len(holdout) + len(group), len(holdout), len(group))
        assert r.variants == {v: sum(1 for u in sendable if variant[u] == v) for v in "ab"}
        assert r.test_variants == {v: sum(1 for u in tested if variant[u] == v) for v in "ab"}
        assert r.test_group == len(tested)
    assert holdout and group and 0 < len(tested) < len(sendable)  # the population exercises every part

    # did_counts: weights 1 and 9999 basis points; the bucket decides, not the share
    r = _reach(experiments, "did_counts", sqlite_store)
    users = [u for u in ("u1", "u2", "u3", "u4", "u6", "u7", "u8", *FILLERS) if _bucket(f"global:{u}") >= 2000]
    assert r.variants["a"] == sum(1 for u in users if _bucket(f"did_counts:variant:{u}") < 1)


def test_experiment_numbers_are_what_the_engine_decides(experiments: plan.Plan, project: Path) -> None:
    """Replayed past the occurrence, the pipeline holds out, tests and sends exactly the users `reach` counted."""
    store = MemoryStore()
    outputs: list[Any] = []
    lines = (project / "records.jsonl").read_bytes().splitlines()
    replay(experiments, lines, store, outputs.append, until=parse_instant("2026-12-21T00:00:00Z"))
    r = _reach(experiments, "by_country", _replayed(experiments, project, MemoryStore()))
    mine = [o for o in outputs if o.campaign == "by_country"]
    s, later = "2026-12-20T10:00:00Z", "2026-12-20T14:00:00Z"
    held = [o for o in mine if o.outcome == "control"]
    assert len(held) == r.control and sum(o.reason == "global_holdout" for o in held) == r.global_holdout
    tested = [o for o in mine if o.outcome == "send" and o.at == s]
    assert {v: sum(o.variant == v for o in tested) for v in "ab"} == r.test_variants
    (winner,) = [o for o in mine if o.outcome == "winner"]
    rest = [o for o in mine if o.outcome == "send" and o.at == later]
    assert len(rest) == r.sendable - r.test_group and {o.variant for o in rest} == {winner.variant}


def test_experiment_agrees_over_a_larger_population(population: SqliteStore) -> None:
    campaign = _variants(msgspec.structs.replace(BARE_CAMPAIGN, control_percent=10.0), (2000, 3000, 5000),
                         plan.WinnerTest(30.0, "clicks", 3600))
    compiled = plan.Plan(plan.FORMAT_VERSION, (campaign,), {}, plan.Settings(global_holdout=15.0))
    in_sql = count_reach(compiled, campaign, population, PROPERTY_AT)
    per_user = count_reach(compiled, campaign, population, PROPERTY_AT, per_user=True)
    assert in_sql.method == "sql" and per_user.method == "per_user"
    assert in_sql.numbers() == per_user.numbers()
    assert all(in_sql.variants.values()) and all(in_sql.test_variants.values())
    assert 0 < in_sql.global_holdout < in_sql.control < in_sql.reachable


def test_experiment_text_and_json(experiments: plan.Plan, sqlite_store: SqliteStore) -> None:
    r = _reach(experiments, "by_country", sqlite_store)
    data = r.to_json()
    assert data["control"] == data["global_holdout"] + data["control_group"]
    assert data["global_holdout_percent"] == 20.0 and data["control_percent"] == 30.0
    assert list(data["variants"]) == ["a", "b"]
    assert sum(v["users"] for v in data["variants"].values()) == r.sendable
    assert data["variants"]["a"] == {"users": r.variants["a"], "share": round(r.variants["a"] / r.sendable, 4),
                                     "weight_percent": 50.0}
    assert data["test"] == {"percent": 85.0, "by": "clicks", "after": 14400, "test_group": r.test_group,
                            "test_group_share": round(r.test_group / r.sendable, 4),
                            "test_group_variants": r.test_variants, "rest": r.sendable - r.test_group}
    text = render_text(r)

    def row(label: str, n: int, extra: str) -> str:
        return f"{label:<18}{n:>2}   {extra}"

    assert row("control", r.control, "held out of the reachable users") in text
    assert row("  global holdout", r.global_holdout,
               "20% of all users, held out of every campaign (reason global_holdout)") in text
    assert row("  control group", r.control_group, "this campaign's 30%") in text
    assert f"variants of the {r.sendable} reachable users not held out, by their bucket:" in text
    assert row("  b", r.variants["b"], f"{100 * r.variants['b'] / r.sendable:5.1f}%   weight 50%") in text
    assert "winner test 85% then winner by clicks after 4h:" in text
    assert row("  test group", r.test_group, f"{100 * r.test_group / r.sendable:5.1f}%   a 4, b 1, at each occurrence") in text
    rest = r.sendable - r.test_group
    assert row("  rest", rest, f"{100 * rest / r.sendable:5.1f}%   the winner, 4h later") in text

    plain = _reach(experiments, "adults", sqlite_store)  # no variants, no control group: the holdout alone
    assert plain.to_json()["variants"] == {} and plain.to_json()["test"] is None
    assert "variants" not in render_text(plain)
    assert row("  control group", 0, "no control group") in render_text(plain)


def test_the_audience_query_uses_the_events_index(compiled: plan.Plan, sqlite_store: SqliteStore) -> None:
    campaign = compiled.campaign("browsing_not_big")
    assert campaign is not None
    query = AudienceQuery(compiled, campaign, parse_instant(AT))
    db = sqlite3.connect(sqlite_store.path)
    try:
        steps = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query.sql, query.params)]
    finally:
        db.close()
    searches = [s for s in steps if "events" in s or s.startswith("SEARCH e")]
    assert searches and all("INDEX events_user_name_ts (user_id=? AND name=? AND ts>? AND ts<?)" in s for s in searches), steps


def test_untranslatable_nodes_say_why(compiled: plan.Plan) -> None:
    def reason(expr: plan.Expr) -> str:
        campaign = compiled.campaigns[0]
        with pytest.raises(Untranslatable) as caught:
            AudienceQuery(compiled, _with_audience(campaign, expr), 0)
        return str(caught.value)

    country, age = plan.Var("user", ("country",)), plan.Var("user", ("age",))
    assert "days_since()" in reason(plan.BinOp(">", plan.Call("days_since", (country,)), plan.Const("number", 3)))
    assert "arithmetic" in reason(plan.BinOp(">", plan.BinOp("+", age, plan.Const("number", 1)), age))
    assert "two properties" in reason(plan.BinOp("==", country, age))
    assert "trigger.*" in reason(plan.BinOp("==", plan.Var("trigger", ("x",)), plan.Const("number", 1)))
    assert "datetime" in reason(plan.BinOp("<", age, plan.Const("datetime", "2026-12-01T00:00:00")))
    assert "`if ... then ... else` as a value" in reason(
        plan.BinOp(">", plan.IfThen(plan.Var("user", ("vip",)), age, plan.Const("number", 0)), plan.Const("number", 1)))


# ---- the SQL translation against the Python evaluator, on generated expressions ----------------

VALUES: list[Any] = [None, True, False, 0, 1, 1.0, 2.5, -3, 100, "", "a", "ab", "ba", "IN", "in", "b2b",
                     "Jörg", [], ["a", 1, True, None], ["IN", "b2b"], {"a": 1}, {"x": "a"}]
SCALARS = [v for v in VALUES if not isinstance(v, (list, dict))]
KEYS = ("x", "y")
PROPERTY_AT = 1_000_000 * US


def _with_audience(campaign: plan.Campaign, expr: plan.Expr) -> plan.Campaign:
    fields = {name: getattr(campaign, name) for name in campaign.__struct_fields__}
    return plan.Campaign(**{**fields, "audience": expr})


BARE = plan.Plan(plan.FORMAT_VERSION, (), {}, plan.Settings())
BARE_CAMPAIGN = plan.Campaign("generated", "generated", "generated.push", plan.SendOnce("2026-12-20T10:00:00"),
                              plan.Message(plan.Text(()), plan.Text(())), "UTC")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Users with every kind of JSON value under x, y and n.x, and "E" events with such a v."""
    store = SqliteStore(tmp_path_factory.mktemp("population") / "state.db")
    n = 0
    for i, a in enumerate(VALUES):
        for j, b in enumerate(VALUES[i % 3::3]):
            n += 1
            state = store.user(f"p{n:03d}", PROPERTY_AT - n)
            props: dict[str, Any] = {"x": a, "n": {"x": b}}
            if j % 2:
                props["y"] = b
            if n % 7 == 0:
                props = {}
            store.merge_profile(state, props)
            for k in range((i + j) % 4):
                store.add_event(state, "E", PROPERTY_AT - (k + 1) * 3600 * US, {"v": VALUES[(i * 3 + k) % len(VALUES)]})
            if n % 5 == 0:
                store.add_event(state, "E", PROPERTY_AT - 3600 * US, {})
            if n % 4:
                store.put_subscription(state, Subscription(f"s{n}", "chrome", 0))
    store.commit()
    yield store
    store.close()


def _consts() -> st.SearchStrategy[plan.Expr]:
    def const(v: Any) -> plan.Const:
        kind = {type(None): "null", bool: "bool", str: "string"}.get(type(v), "number")
        return plan.Const(kind, v)

    return st.sampled_from(SCALARS).map(const)


def _values(event: bool) -> st.SearchStrategy[plan.Expr]:
    names = [("x",), ("y",), ("n", "x"), ("n",), ("missing",)]
    props = [plan.Var("user", p) for p in names] + [plan.Var("user", ("id",))]
    if event:
        props += [plan.Var("event", ("v",)), plan.Var("event", ("w",))]
    else:
        props.append(plan.Var("event", ("v",)))  # no event in `who`: missing
    return st.sampled_from(props)


def _conditions(event: bool) -> st.SearchStrategy[plan.Expr]:
    value, const = _values(event), _consts()
    lists = st.lists(_consts(), max_size=3).map(lambda items: plan.ListOf(tuple(items)))
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains", "starts with",
                           "ends with"])
    atoms = st.one_of(
        st.builds(plan.BinOp, ops, value, st.one_of(const, lists)),
        st.builds(plan.BinOp, ops, st.one_of(const, lists), value),
        value.map(lambda v: plan.Exists(v) if isinstance(v, plan.Var) else v),
        value,
    )
    if not event:
        did = st.builds(plan.DidEvent, st.just("E"), st.one_of(st.none(), _conditions(True)),
                        st.sampled_from(["at least", "at most", "exactly"]), st.integers(0, 3),
                        st.sampled_from([1800, 7200, 86400]))
        atoms = st.one_of(atoms, did)
    return st.recursive(atoms, lambda inner: st.one_of(
        inner.map(plan.Not),
        st.builds(plan.BinOp, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(plan.IfThen, inner, inner, inner),
        st.builds(plan.BinOp, st.sampled_from(["==", "!="]), inner, st.sampled_from([True, False]).map(
            lambda b: plan.Const("bool", b))),
    ), max_leaves=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=_conditions(False))
def test_generated_audiences_agree(expr: plan.Expr, population: SqliteStore) -> None:
    try:
        query = AudienceQuery(BARE, _with_audience(BARE_CAMPAIGN, expr), PROPERTY_AT)
    except Untranslatable:
        return
    db = sqlite3.connect(population.path)
    try:
        in_sql = {row[0] for row in db.execute(query.sql, query.params)}
    finally:
        db.close()
    holds = Compiler("UTC").condition(expr)
    expected = set()
    for user in population.user_ids():
        state = population.get(user)
        assert state is not None
        history = _StateHistory(state.history)
        if holds(Env(user, state.profile, PROPERTY_AT, history, {})):
            expected.add(user)
    assert in_sql == expected, query.sql


class _StateHistory(History):
    def __init__(self, history: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        self.history = history

    def events(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        return self.history.get(name, [])


# ---- the command -------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    root = argparse.ArgumentParser(prog="pushlang")
    add_parser(root.add_subparsers(dest="command"))
    return root.parse_args(["reach", *argv])


def test_command_text_and_json(project: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    push, records = str(project / "campaigns.push"), str(project / "records.jsonl")
    db = tmp_path / "cli.db"
    assert run(_args(push, "--campaign", "by_country", "--events", records, "--store", f"sqlite:///{db}")) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [f'reach of by_country "By country" at {AT}', COUNTED_IN_SQL]
    assert "known users" in out and "80.0% of known users" in out  # 16 of 20
    assert "  safari" in out

    # The store the first run left is counted again without --events.
    assert run(_args(push, "--campaign", "live_cart", "--store", f"sqlite:///{db}", "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["audience"] == 1 and data["method"] == "sql" and data["at"] == AT
    assert data["audience_share"] == 0.05
    assert any("without a triggering event" in n and "event.*" in n for n in data["notes"])

    assert run(_args(push, "--campaign", "lowered", "--events", records, "--format", "json",
                     "--at", "2026-12-09 12:00")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counted"].startswith("evaluated per user: the in-memory store")
    assert data["at"] == "2026-12-09T12:00:00Z"  # the campaign's timezone: UTC
    assert any("Safari subscriptions are not counted" in n for n in data["notes"])
    assert any("as of the latest record" in n for n in data["notes"])


def test_command_counts_the_global_holdout_of_the_config(project: Path, experiments: plan.Plan,
                                                        sqlite_store: SqliteStore, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pushlang.toml").write_text("[experiments]\nglobal_holdout = 20\n", encoding="utf-8")
    push, records = str(project / "campaigns.push"), str(project / "records.jsonl")
    db = f"sqlite:///{tmp_path / 'holdout.db'}"
    expected = _reach(experiments, "adults", sqlite_store).to_json()
    for store in (db, "memory"):
        assert run(_args(push, "--campaign", "adults", "--events", records, "--store", store, "--format", "json")) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["method"] == ("sql" if store == db else "per_user")
        assert (data["global_holdout"], data["global_holdout_percent"], data["control"], data["control_group"]) == (
            expected["global_holdout"], 20.0, expected["global_holdout"], 0)
    assert 0 < data["global_holdout"] < data["reachable"]
    assert run(_args(push, "--campaign", "adults", "--store", db)) == 0
    assert "20% of all users, held out of every campaign (reason global_holdout)" in capsys.readouterr().out


SPLIT_CAMPAIGN = """\
campaign split {
  send once at 2026-12-20 10:00
  who {
    user.country in ["IN", "US"]
  }
  control group 30%
  test 85% then winner by clicks after 4h
  message a 50% {
    title "a"
    body "There"
    url "https://shop.example.com/"
  }
  message b 50% {
    title "b"
    body "There"
    url "https://shop.example.com/"
  }
}
"""


def test_command_shows_the_split_of_variants(project: Path, experiments: plan.Plan, sqlite_store: SqliteStore,
                                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "split.push").write_text(SPLIT_CAMPAIGN, encoding="utf-8")
    records = str(project / "records.jsonl")
    assert run(_args("split.push", "--campaign", "split", "--events", records, "--store",
                     f"sqlite:///{tmp_path / 'split.db'}", "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "sql"
    users = [u for u in ("u1", "u2", "u8", *FILLERS) if _bucket(f"split:{u}") >= 3000]
    variants = {v: sum(1 for u in users if (_bucket(f"split:variant:{u}") < 5000) == (v == "a")) for v in "ab"}
    assert {v: d["users"] for v, d in data["variants"].items()} == variants
    tested = sum(1 for u in users if _bucket(f"split:test:{u}") < 8500)
    assert (data["test"]["test_group"], data["test"]["rest"]) == (tested, len(users) - tested)
    assert run(_args("split.push", "--campaign", "split", "--store", f"sqlite:///{tmp_path / 'split.db'}")) == 0
    out = capsys.readouterr().out
    assert f"variants of the {len(users)} reachable users not held out" in out
    assert "winner test 85% then winner by clicks after 4h:" in out


def test_repl_reach_shows_the_split(project: Path, experiments: plan.Plan, memory_store: MemoryStore,
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pushlang.repl import Session

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    session = Session([str(project / "campaigns.push")], out=said.append)
    session.handle(f":records {project / 'records.jsonl'}")
    session._use(experiments)  # what a plan with variants that compiled would be
    said.clear()
    session.handle(":reach by_country")
    campaign = experiments.campaign("by_country")
    assert campaign is not None
    expected = count_reach(experiments, campaign, memory_store, parse_instant(AT))
    assert said == [render_text(expected)]
    assert "variants of the" in said[0] and "  global holdout" in said[0] and "winner test 85%" in said[0]


def test_command_errors(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    push, records = str(project / "campaigns.push"), str(project / "records.jsonl")
    with pytest.raises(ValueError, match="no campaign `nope`; the campaigns are: adults, big, "):
        run(_args(push, "--campaign", "nope", "--events", records))
    with pytest.raises(ValueError, match="--at 'soon' is not a date-time"):
        run(_args(push, "--campaign", "big", "--events", records, "--at", "soon"))
    with pytest.raises(ValueError, match="unsupported store URL"):
        run(_args(push, "--campaign", "big", "--events", records, "--store", "redis://x"))
    with pytest.raises(ValueError, match="does not exist"):
        run(_args(push, "--campaign", "big", "--store", "sqlite:///missing.db"))
    with pytest.raises(ValueError, match="nothing to count"):
        run(_args(push, "--campaign", "big"))
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match=r"junk\.db"):
        run(_args(push, "--campaign", "big", "--store", "sqlite:///junk.db"))


def test_help_mentions_the_paths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--help")
    out = capsys.readouterr().out
    assert "--campaign ID" in out and "--events FILE" in out and "counted in SQL" in out


# ---- the example shop --------------------------------------------------------------------------


def test_example_shop_advent_sale(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    events = "examples/events.jsonl.gz"
    assert run(_args("examples/", "--campaign", "advent_sale", "--events", events, "--format", "json")) == 0
    per_user = json.loads(capsys.readouterr().out)
    store = f"sqlite:///{tmp_path / 'shop.db'}"
    assert run(_args("examples/", "--campaign", "advent_sale", "--events", events, "--store", store,
                     "--format", "json")) == 0
    in_sql = json.loads(capsys.readouterr().out)
    assert in_sql["counted"] == COUNTED_IN_SQL and per_user["method"] == "per_user"
    numbers = ("known_users", "audience", "reachable", "by_platform", "control", "at")
    assert {k: in_sql[k] for k in numbers} == {k: per_user[k] for k in numbers}

    with gzip.open(ROOT / events, "rt", encoding="utf-8") as lines:
        users = {json.loads(line)["user"] for line in lines if line.strip()}
    assert in_sql["known_users"] == len(users)
    assert 0 < in_sql["reachable"] < in_sql["audience"] <= in_sql["known_users"]
    assert set(in_sql["by_platform"]) == {"chrome", "firefox", "edge"}  # the campaign's platforms
    assert sum(in_sql["by_platform"].values()) >= in_sql["reachable"]
    assert in_sql["control"] == 0
    # the only notes: the example config's global limits, what they will do to these users
    assert [n.split(":")[0] for n in in_sql["notes"]] == ["global limit", "min_gap 2h"]


def test_a_log_replayed_for_reach_alone_keeps_the_state_a_full_replay_keeps() -> None:
    """`reach --events` into memory replays without deciding (nothing of a decision is read by the
    count): every user's profile, subscriptions, history and first record are those of a replay that
    decides, and so is the reach of every example campaign, at the end of the log and a week before."""
    result = compile_paths([str(ROOT / "examples")])
    assert result.plan is not None, result.diagnostics
    with gzip.open(ROOT / "examples" / "events.jsonl.gz", "rb") as f:
        lines = f.read().splitlines()
    deciding, state_only = MemoryStore(), MemoryStore()
    decisions: list[object] = []
    replay(result.plan, lines, deciding, decisions.append)
    alone: list[object] = []
    replay(result.plan, lines, state_only, alone.append, deciding=False)
    assert len(decisions) > 60_000 and alone == []  # the full replay decided; this one decided nothing
    assert state_only.pending_timers() == []
    assert state_only.user_ids() == deciding.user_ids()
    for user in deciding.user_ids():
        a, b = deciding.get(user), state_only.get(user)
        assert a is not None and b is not None
        assert (b.first_seen, b.profile, b.subscriptions, b.history) == \
            (a.first_seen, a.profile, a.subscriptions, a.history), user
        assert not b.counters and not b.sends and not b.windows
    clock = deciding.meta("clock")
    assert state_only.meta("clock") == clock
    for at in (clock, clock - 7 * 86400 * US):
        for campaign in result.plan.campaigns:
            full = count_reach(result.plan, campaign, deciding, at).to_json()
            assert count_reach(result.plan, campaign, state_only, at).to_json() == full, (campaign.id, at)
