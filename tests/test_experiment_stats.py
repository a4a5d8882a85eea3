"""The statistics of experiments (SPEC §8, §12.7) over written output records: per variant, each
variant against the first and against the campaign's control group, the global holdout on its own,
the winner record; the tests of significance against statsmodels; the activity table of before.

The runtime that writes variants, winners and the global holdout lands with the language change: the
records here are written as SPEC §9.4 and §12.3–12.4 describe them.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TOKEN

from pushlang.cli import main
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.outcomes import Output
from pushlang.runtime.stats import by_campaign, campaign_stats, compare, from_outputs, render_table, series
from pushlang.service.app import LiveService

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "store_v1"


def at(hour: int, minute: int = 0) -> str:
    return f"2026-12-01T{hour:02d}:{minute:02d}:00Z"


# cart: variants a (10 sends), b (10) and c (8), a control group of 10 (one converts), 5 users of the
# global holdout (one converts), and the winner record of the test.
VARIANTS = {"a": (10, 6, 3, 2, 10.0), "b": (10, 8, 5, 6, 20.0), "c": (8, 2, 0, 0, 0.0)}  # sends, viewed, clicked,
#                                                                                       conversions, revenue each
WINNER = Output(at(12), "cart", None, "winner", variant="b", rates={"a": 0.3, "b": 0.5, "c": 0.0}, significant=False)


def records() -> list[Output]:
    out: list[Output] = []
    for variant, (sends, viewed, clicked, conversions, revenue) in VARIANTS.items():
        for n in range(sends):
            user, sid = f"{variant}{n}", f"s-{variant}{n}"
            out.append(Output(at(9, n), "cart", user, "send", None, sid, "Hi", "Your cart", variant=variant,
                              platforms=["chrome"]))
            out.append(Output(at(9, n), "cart", user, "delivered", None, sid, platforms=["chrome"], status=201,
                              attempts=1))
            if n < viewed:
                out.append(Output(at(10, n), "cart", user, "viewed", send_id=sid))
            if n < clicked:
                out.append(Output(at(10, n), "cart", user, "clicked", send_id=sid))
                if n == 0:  # a second click of the same send (a button): still one clicked send
                    out.append(Output(at(10, 30), "cart", user, "clicked", send_id=sid))
            if n < conversions:
                out.append(Output(at(11, n), "cart", user, "convert", None, sid, revenue=revenue, variant=variant))
    for n in range(10):  # the campaign's own control group: variant null, reason null
        out.append(Output(at(9, 20 + n), "cart", f"k{n}", "control", None, f"k-{n}"))
    out.append(Output(at(11, 30), "cart", "k0", "convert", None, "k-0", revenue=5.0))
    for n in range(5):  # the global holdout (SPEC §8)
        out.append(Output(at(9, 40 + n), "cart", f"h{n}", "control", "global_holdout", f"h-{n}"))
    out.append(Output(at(11, 40), "cart", "h0", "convert", None, "h-0", revenue=7.0))
    out.append(Output(at(9, 50), "cart", "a0", "suppress", "min_gap", "x-a0", variant=None))
    out.append(WINNER)
    # news: no variants, no control group; two of its users are in the global holdout
    for n in range(4):
        out.append(Output(at(13, n), "news", f"n{n}", "send", None, f"n-{n}", "News", "Out now"))
    out.append(Output(at(14), "news", "n0", "convert", None, "n-0", revenue=1.0))
    for n in range(2):
        out.append(Output(at(13, 10 + n), "news", f"h{n}", "control", "global_holdout", f"nh-{n}"))
    return out


def test_per_variant_figures_and_their_comparisons() -> None:
    db = from_outputs(records())
    result = campaign_stats(db, {})
    cart, news = result["campaigns"]
    # the campaign's own control group only: the global holdout is apart (SPEC §8)
    assert (cart["sends"], cart["control"], cart["control_conversions"], cart["control_revenue"]) == (28, 10, 1, 5.0)
    assert (cart["conversions"], cart["revenue"]) == (8, 2 * 10.0 + 6 * 20.0)
    assert cart["lift"] == pytest.approx((8 / 28 - 0.1) / 0.1)
    assert list(cart["variants"]) == ["a", "b", "c"]
    a, b, c = cart["variants"].values()
    assert {k: a[k] for k in ("sends", "viewed", "clicked", "conversions", "revenue")} == \
        {"sends": 10, "viewed": 6, "clicked": 3, "conversions": 2, "revenue": 20.0}
    assert (a["click_rate"], a["conversion_rate"]) == (0.3, 0.2)
    assert (b["click_rate"], b["conversion_rate"], b["revenue"]) == (0.5, 0.6, 120.0)
    assert (c["sends"], c["clicked"], c["click_rate"], c["conversion_rate"]) == (8, 0, 0.0, 0.0)
    # the variants add up to the campaign
    for key in ("sends", "viewed", "clicked", "conversions", "revenue"):
        assert sum(v[key] for v in cart["variants"].values()) == cart[key], key
    # against the first variant, and against control
    assert a["vs_first"] is None
    assert b["vs_first"] == compare(6, 10, 2, 10) and c["vs_first"] == compare(0, 8, 2, 10)
    assert b["vs_first"]["diff"] == pytest.approx(0.4)
    assert b["vs_first"]["low"] == pytest.approx(0.4 - 1.959963984540054 * 0.2)  # √(.6·.4/10 + .2·.8/10) = .2
    assert b["vs_first"]["p"] == pytest.approx(0.0678891548618)  # pooled: z = .4 / √(.4·.6·.2)
    assert b["vs_first"]["significant"] is False  # the interval leaves out 0, the pooled test does not: p > .05
    assert [v["vs_control"] for v in (a, b, c)] == [compare(2, 10, 1, 10), compare(6, 10, 1, 10), compare(0, 8, 1, 10)]
    assert b["vs_control"]["significant"] is True and b["vs_control"]["lift"] == pytest.approx(5.0)
    assert cart["winners"] == [{"at": at(12), "variant": "b", "rates": {"a": 0.3, "b": 0.5, "c": 0.0},
                                "significant": False}]
    # the global holdout: per campaign, the sends' conversion rate against the held-out users'
    assert cart["global_holdout"] == {"held_out": 5, "conversions": 1, "revenue": 7.0, "conversion_rate": 0.2,
                                      "sends_vs_holdout": compare(8, 28, 1, 5)}
    assert news["variants"] == {} and news["winners"] == [] and news["control"] == 0
    assert news["global_holdout"] == {"held_out": 2, "conversions": 0, "revenue": 0.0, "conversion_rate": 0.0,
                                      "sends_vs_holdout": compare(1, 4, 0, 2)}
    assert news["global_holdout"]["sends_vs_holdout"]["lift"] is None  # the holdout's rate is 0
    totals = result["totals"]
    assert totals["control"] == 10 and totals["global_holdout"] == {
        "held_out": 7, "conversions": 1, "revenue": 7.0, "conversion_rate": 1 / 7,
        "sends_vs_holdout": compare(9, 32, 1, 7)}
    # the holdout's and the control group's conversions stay out of the charts' conversions
    (cart_points, _) = [c["points"] for c in series(db, {}, bucket="day")["campaigns"]]
    assert cart_points[0]["conversions"] == 8
    # JSON as it is served: no NaN anywhere
    json.dumps(result, allow_nan=False)


def test_a_campaign_with_variants_and_no_control_group() -> None:
    db = from_outputs([r for r in records() if r.outcome != "control" and r.user not in ("k0", "h0")])
    (cart, _) = campaign_stats(db, {})["campaigns"]
    assert all(v["vs_control"] is None for v in cart["variants"].values())
    assert cart["variants"]["b"]["vs_first"] == compare(6, 10, 2, 10)
    assert cart["global_holdout"]["held_out"] == 0
    assert cart["global_holdout"]["sends_vs_holdout"] == {"diff": None, "low": None, "high": None, "p": None,
                                                          "significant": False, "lift": None}


def test_undefined_figures_are_null_never_nan() -> None:
    none = {"diff": None, "low": None, "high": None, "p": None, "significant": False, "lift": None}
    assert compare(0, 0, 3, 10) == none and compare(3, 10, 0, 0) == none  # no sends / nobody to compare with
    # 0/0 pooled variance (both rates 0, or both 1): no test; the interval is [0, 0]
    assert compare(0, 5, 0, 9) == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": None, "significant": False,
                                   "lift": None}
    assert compare(5, 5, 9, 9) == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": None, "significant": False,
                                   "lift": 0.0}
    # a zero unpooled variance with a pooled one: the test is defined, the interval has no width
    everyone = compare(0, 10, 10, 10)
    assert (everyone["low"], everyone["high"], everyone["significant"]) == (-1.0, -1.0, True)
    # a variant with no sends yet, in a campaign's breakdown
    db = from_outputs([Output(at(9), "t", "u1", "send", None, "s1", variant="a"),
                       Output(at(9), "t", "u2", "control", None, "k1"),
                       Output(at(9), "t", "u3", "delay", "dnd", "s3", variant="b", until=at(10))])
    (t,) = campaign_stats(db, {})["campaigns"]
    assert list(t["variants"]) == ["a"]  # a variant appears with its first send
    assert t["variants"]["a"]["vs_control"] == {**none, "diff": 0.0, "low": 0.0, "high": 0.0, "lift": None}
    json.dumps(t, allow_nan=False)


# ---- the tests of significance against an independent implementation ----------------------------------------


def tables() -> list[tuple[int, int, int, int]]:
    """2×2 tables (x1, n1, x2, n2): small counts, zeros, all converted, equal rates, large counts."""
    rng = random.Random(16)
    found = [(0, 10, 3, 7), (3, 7, 0, 10), (1, 1, 0, 1), (0, 1, 1, 1), (0, 10, 10, 10), (10, 10, 0, 1),
             (3, 10, 6, 20), (50, 1000, 100, 2000), (1, 2, 1, 2), (0, 3, 1, 1000), (999, 1000, 1000, 1000),
             (6, 10, 2, 10), (2, 10, 1, 10), (1, 4, 0, 2), (0, 5, 0, 9), (4, 4, 7, 7)]
    for _ in range(30):  # small counts
        n1, n2 = rng.randint(1, 12), rng.randint(1, 12)
        found.append((rng.randint(0, n1), n1, rng.randint(0, n2), n2))
    for _ in range(30):  # experiments of some size
        n1, n2 = rng.randint(50, 20000), rng.randint(50, 20000)
        p1, p2 = rng.uniform(0.001, 0.3), rng.uniform(0.001, 0.3)
        found.append((round(n1 * p1), n1, round(n2 * p2), n2))
    for _ in range(6):  # equal rates
        k, m1, m2 = rng.randint(1, 9), rng.randint(1, 5), rng.randint(1, 5)
        found.append((k * m1, 10 * m1, k * m2, 10 * m2))
    return found


def test_compare_agrees_with_statsmodels() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion",
                                     reason="statsmodels (the `test` extra) checks the tests of significance")
    cases = tables()
    tested = undefined = 0
    for x1, n1, x2, n2 in cases:
        mine = compare(x1, n1, x2, n2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # statsmodels divides 0 by 0 where the test is undefined
            _, p = proportion.proportions_ztest([x1, x2], [n1, n2])  # pooled, two-sided
        low, high = proportion.confint_proportions_2indep(x1, n1, x2, n2, method="wald", compare="diff")
        where = (x1, n1, x2, n2)
        assert mine["diff"] == pytest.approx(x1 / n1 - x2 / n2, abs=1e-12), where
        assert abs(mine["low"] - low) < 1e-9 and abs(mine["high"] - high) < 1e-9, where
        if x1 + x2 in (0, n1 + n2):  # both rates 0 or both 1: the pooled variance is 0, statsmodels has NaN
            assert math.isnan(p) and mine["p"] is None and mine["significant"] is False, where
            undefined += 1
            continue
        assert abs(mine["p"] - p) < 1e-9, where
        assert mine["significant"] == (p < 0.05), where
        tested += 1
    assert tested >= 50 and undefined >= 1
    assert any(compare(*t)["significant"] for t in cases) and not all(compare(*t)["significant"] for t in cases)


# ---- the table of before, the command, and both hosts --------------------------------------------------------


def test_an_activity_table_of_before_is_migrated_or_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript((FIXTURES / "activity.sql").read_text(encoding="utf-8"))
    db.execute("INSERT INTO activity (at, campaign, user_id, outcome, send_id) VALUES (?, 'cart', 'u1', 'send', 's1')",
               (at(9),))
    db.execute("INSERT INTO activity (at, campaign, user_id, outcome, reason, send_id) "
               "VALUES (?, 'cart', 'u2', 'control', 'global_holdout', 'k1')", (at(9),))
    db.commit()
    db.close()
    # read as it is (`pushlang stats --store` opens the file read-only): no variants, no winners
    readonly = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    (cart,) = campaign_stats(readonly, {})["campaigns"]
    readonly.close()
    assert (cart["sends"], cart["control"], cart["global_holdout"]["held_out"]) == (1, 0, 1)
    assert (cart["variants"], cart["winners"]) == ({}, [])
    # opened by a log: migrated, its rows and ids kept, and a winner (no user) can be written
    log = ActivityLog(str(path))
    log.record(WINNER)
    log.close()
    log = ActivityLog(str(path))  # once migrated, opening again changes nothing
    rows = log.rows()
    assert [(r["user"], r["outcome"], r["variant"]) for r in rows] == [
        ("u1", "send", None), ("u2", "control", None), (None, "winner", "b")]
    assert (rows[2]["rates"], rows[2]["significant"]) == ({"a": 0.3, "b": 0.5, "c": 0.0}, False)
    assert [r[0] for r in log.db.execute("SELECT id FROM activity ORDER BY id")] == [1, 2, 3]
    indexes = {r[0] for r in log.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"activity_campaign_outcome", "activity_send"} <= indexes
    log.close()


def decisions_file(path: Path, outs: list[Output]) -> None:
    encode = msgspec.json.Encoder().encode
    path.write_bytes(b"".join(encode(o) + b"\n" for o in outs))


def test_stats_command_shows_variants_the_winner_and_the_global_holdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decisions_file(tmp_path / "decisions.jsonl", records())
    assert main(["stats", str(tmp_path / "decisions.jsonl")]) == 0
    text = capsys.readouterr().out
    assert text == render_table(campaign_stats(from_outputs(records()), {})) + "\n"
    lines = text.splitlines()
    start = lines.index("variants (conversion rate: difference from the first variant and from control, "
                        "95% CI, two-sided p; * p < 0.05):")
    block = lines[start + 1:]
    assert block[0] == "  cart"
    header, rule, a, b, c, winner = block[1:7]
    assert set(rule.replace(" ", "")) == {"-"}
    assert header.split()[:5] == ["variant", "sends", "clicked", "click", "rate"]
    assert a.split()[:7] == ["a", "10", "3", "30.0%", "2", "20.0%", "20.00"]
    assert "+40.0 pts [+0.8, +79.2] p=0.068" in b and "+50.0 pts [+14.4, +85.6] p=0.019 *  +500.0%" in b
    assert c.split()[:3] == ["c", "8", "0"]
    assert winner == "    winner: b at 2026-12-01T12:00:00Z (a 30.0%, b 50.0%, c 0.0%), not significant"
    holdout = lines[lines.index("global holdout (held-out users' conversions against the sends'; "
                                "95% CI, two-sided p; * p < 0.05):") + 1:]
    assert holdout[2].split()[:4] == ["cart", "5", "1", "20.0%"]
    assert holdout[3].split()[:4] == ["news", "2", "0", "0.0%"]
    assert holdout[4].split()[:4] == ["all", "7", "1", "14.3%"]
    assert main(["stats", str(tmp_path / "decisions.jsonl"), "--campaign", "news"]) == 0
    only = capsys.readouterr().out.splitlines()  # the holdout's "all" is news's alone
    header = next(i for i, line in enumerate(only) if line.startswith("  campaign  held out"))
    assert [line.split()[:3] for line in only[header + 2:]] == [["news", "2", "0"], ["all", "2", "0"]]
    assert main(["stats", str(tmp_path / "decisions.jsonl"), "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures == json.loads(json.dumps(by_campaign(campaign_stats(from_outputs(records()), {}))))
    assert figures["cart"]["variants"]["b"]["vs_first"]["p"] == pytest.approx(0.0678891548618)


def test_written_records_give_the_same_per_variant_figures_to_stats_and_v1_stats(
        push_project: tuple[Path, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """The same activity rows, written to both hosts: `pushlang stats` over a decisions file and the
    service's `/v1/stats` (and `pushlang stats --store` over its file) agree on every figure."""
    folder, _ = push_project
    (folder / "cart.push").write_text('campaign cart {\n  on "Added To Cart"\n  message {\n    title "Hi"\n'
                                      '    body "Your cart"\n  }\n  control group 10%\n}\n', encoding="utf-8")
    outs = records()
    decisions_file(folder / "decisions.jsonl", outs)
    assert main(["stats", "decisions.jsonl", "--format", "json"]) == 0
    offline = json.loads(capsys.readouterr().out)

    async def serve() -> dict[str, Any]:
        service = LiveService([str(folder / "cart.push")], store_path=str(folder / "state.db"), tick=0.05)
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as client:
            for out in outs:
                service.activity.record(out)
            service.activity.commit()
            answer = await (await client.get("/v1/stats", headers=AUTH)).json()
            return {c["id"]: {k: v for k, v in c.items() if k not in ("id", "name", "labels")}
                    for c in answer["campaigns"]}

    live = asyncio.run(serve())
    assert live == offline
    assert live["cart"]["variants"]["b"]["vs_control"]["significant"] is True
    assert main(["stats", "--store", "state.db", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == offline
