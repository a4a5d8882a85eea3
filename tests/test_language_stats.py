"""The statistics per language (SPEC §12.5, §12.7): over written output records, each campaign with
`lang` blocks broken down by the tag whose texts its sends used (``default``: the message's own), with
its control group by the language its users would have got; `pushlang stats` as text and JSON; the
same figures from `replay` + `pushlang stats` and from `serve` + `/v1/stats` over real records; and
an activity table written before the ``lang`` column, migrated when a log opens it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TOKEN, user_token
from peers.webpush_service import WebPushService

from pushlang.cli import main
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.instants import parse_instant
from pushlang.runtime.outcomes import Output
from pushlang.runtime.pipeline import in_control_group, send_id_for
from pushlang.runtime.stats import by_campaign, campaign_stats, compare, from_outputs, render_table
from pushlang.service.app import LiveService

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "store_v1"


def at(hour: int, minute: int = 0) -> str:
    return f"2026-12-01T{hour:02d}:{minute:02d}:00Z"


# cart, per language (None: the message's own texts): sends, viewed, clicked, the revenue of each
# converted send, control decisions, the revenue of each converted control decision.
LANGS: dict[str | None, tuple[int, int, int, list[float], int, list[float]]] = {
    None: (6, 4, 2, [12.0, 8.0], 4, [5.0]),
    "fr": (5, 3, 3, [30.0], 2, [4.0]),
    "pt-BR": (4, 1, 0, [15.0, 25.0], 0, []),
}


def records() -> list[Output]:
    """As the runtime writes them (SPEC §9.4): every decision carries its lang, a conversion its send's
    (or its control decision's); views and clicks name only the send_id."""
    out: list[Output] = []
    for lang, (sends, viewed, clicked, revenues, control, control_revenues) in LANGS.items():
        name = lang or "default"
        for n in range(sends):
            user, sid = f"{name}-{n}", f"s-{name}-{n}"
            if lang == "fr" and n == 4:  # delayed by DND first: the delay is not a send
                out.append(Output(at(8, 50), "cart", user, "delay", "dnd", sid, until=at(9, n), lang=lang))
            out.append(Output(at(9, n), "cart", user, "send", None, sid, "Hi", "Your cart", platforms=["chrome"],
                              lang=lang))
            out.append(Output(at(9, n), "cart", user, "delivered", None, sid, platforms=["chrome"], status=201,
                              attempts=1))
            if n < viewed:
                out.append(Output(at(10, n), "cart", user, "viewed", send_id=sid))
            if n < clicked:
                out.append(Output(at(10, n), "cart", user, "clicked", send_id=sid))
                if n == 0:  # a second click of the same send (a button): still one clicked send
                    out.append(Output(at(10, 30), "cart", user, "clicked", send_id=sid))
            if n < len(revenues):
                out.append(Output(at(11, n), "cart", user, "convert", None, sid, revenue=revenues[n], lang=lang))
        for n in range(control):
            user, sid = f"k-{name}-{n}", f"k-{name}-{n}"
            out.append(Output(at(9, 20 + n), "cart", user, "control", None, sid, lang=lang))
            if n < len(control_revenues):
                out.append(Output(at(11, 20 + n), "cart", user, "convert", None, sid, revenue=control_revenues[n],
                                  lang=lang))
    # the global holdout is not the campaign's control group, in any language (SPEC §8)
    out.append(Output(at(9, 40), "cart", "h0", "control", "global_holdout", "h-0", lang="fr"))
    out.append(Output(at(11, 40), "cart", "h0", "convert", None, "h-0", revenue=7.0, lang="fr"))
    out.append(Output(at(9, 50), "cart", "pt-BR-0", "suppress", "min_gap", "x-p0", lang="pt-BR"))
    # news: no `lang` blocks, every record's lang null: no breakdown
    for n in range(3):
        out.append(Output(at(13, n), "news", f"n{n}", "send", None, f"n-{n}", "News", "Out now"))
    out.append(Output(at(14), "news", "n0", "convert", None, "n-0", revenue=1.0))
    return out


FIGURES = ("sends", "viewed", "clicked", "click_rate", "conversions", "conversion_rate", "revenue", "control",
           "control_conversions", "control_rate")


def test_per_language_figures() -> None:
    result = campaign_stats(from_outputs(records()), {})
    cart, news = result["campaigns"]
    assert news["languages"] == {}
    assert list(cart["languages"]) == ["default", "fr", "pt-BR"]  # the message's own texts first
    default, fr, pt = cart["languages"].values()
    assert {k: default[k] for k in FIGURES} == {
        "sends": 6, "viewed": 4, "clicked": 2, "click_rate": 2 / 6, "conversions": 2, "conversion_rate": 2 / 6,
        "revenue": 20.0, "control": 4, "control_conversions": 1, "control_rate": 0.25}
    assert {k: fr[k] for k in FIGURES} == {
        "sends": 5, "viewed": 3, "clicked": 3, "click_rate": 0.6, "conversions": 1, "conversion_rate": 0.2,
        "revenue": 30.0, "control": 2, "control_conversions": 1, "control_rate": 0.5}
    assert {k: pt[k] for k in FIGURES} == {
        "sends": 4, "viewed": 1, "clicked": 0, "click_rate": 0.0, "conversions": 2, "conversion_rate": 0.5,
        "revenue": 40.0, "control": 0, "control_conversions": 0, "control_rate": None}
    # against the control group of the same language; none without one
    assert default["vs_control"] == compare(2, 6, 1, 4) and fr["vs_control"] == compare(1, 5, 1, 2)
    assert pt["vs_control"] is None
    # the languages add up to the campaign (the global holdout apart)
    for key in ("sends", "viewed", "clicked", "conversions", "revenue", "control", "control_conversions"):
        assert sum(x[key] for x in cart["languages"].values()) == cart[key], key
    assert (cart["sends"], cart["control"], cart["global_holdout"]["held_out"]) == (15, 6, 1)
    assert "languages" not in result["totals"]
    json.dumps(result, allow_nan=False)


def test_a_language_with_control_decisions_only_and_the_label_filter() -> None:
    outs = [Output(at(9), "promo", "u1", "send", None, "s1", lang="de"),
            Output(at(9), "promo", "u2", "control", None, "k2", lang="it"),  # nobody got `it` yet but control
            Output(at(9), "promo", "u3", "send", None, "s3")]
    result = campaign_stats(from_outputs(outs + records()), {"promo": ("p",), "cart": ()}, label="p")
    (promo,) = result["campaigns"]
    assert list(promo["languages"]) == ["default", "de", "it"]
    assert [(x["sends"], x["control"], x["conversion_rate"]) for x in promo["languages"].values()] == [
        (1, 0, 0.0), (1, 0, 0.0), (0, 1, None)]
    assert promo["languages"]["it"]["vs_control"] == compare(0, 0, 0, 1)  # no sends: nothing defined


def decisions_file(path: Path, outs: list[Output]) -> None:
    encode = msgspec.json.Encoder().encode
    path.write_bytes(b"".join(encode(o) + b"\n" for o in outs))


def test_stats_command_shows_each_language(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    decisions_file(tmp_path / "decisions.jsonl", records())
    assert main(["stats", str(tmp_path / "decisions.jsonl")]) == 0
    text = capsys.readouterr().out
    assert text == render_table(campaign_stats(from_outputs(records()), {})) + "\n"
    lines = text.splitlines()
    start = lines.index("languages (the texts each send used, by `lang` tag; default: the message's own texts; "
                        "conversion rate: difference from the control group of the same language, 95% CI, "
                        "two-sided p; * p < 0.05):")
    assert lines[start + 1:start + 7] == [
        "  cart",
        "    language  sends  viewed  clicked  click rate  conversions  conv. rate  revenue  control  control rate"
        "                         vs control    lift",
        "    --------  -----  ------  -------  ----------  -----------  ----------  -------  -------  ------------"
        "  ---------------------------------  ------",
        "    default       6       4        2       33.3%            2       33.3%    20.00        4         25.0%"
        "    +8.3 pts [-48.4, +65.1] p=0.778  +33.3%",
        "    fr            5       3        3       60.0%            1       20.0%    30.00        2         50.0%"
        "  -30.0 pts [-107.7, +47.7] p=0.427  -60.0%",
        "    pt-BR         4       1        0        0.0%            2       50.0%    40.00        0             -"
        "                                  -       -",
    ]
    assert "  news" not in lines[start:]  # no languages
    assert main(["stats", str(tmp_path / "decisions.jsonl"), "--format", "json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures == json.loads(json.dumps(by_campaign(campaign_stats(from_outputs(records()), {}))))
    assert list(figures["cart"]["languages"]) == ["default", "fr", "pt-BR"]
    assert figures["cart"]["languages"]["fr"] == {
        "sends": 5, "viewed": 3, "clicked": 3, "conversions": 1, "control": 2, "control_conversions": 1,
        "revenue": 30.0, "click_rate": 0.6, "conversion_rate": 0.2, "control_rate": 0.5,
        "vs_control": json.loads(json.dumps(compare(1, 5, 1, 2)))}
    assert figures["news"]["languages"] == {}
    assert main(["stats", str(tmp_path / "decisions.jsonl"), "--campaign", "news"]) == 0
    assert "languages (" not in capsys.readouterr().out


# ---- the activity table of before ----------------------------------------------------------------------------

# The table as it was before the ``lang`` column (variants, winners, no language).
SECOND = """
CREATE TABLE activity (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, campaign TEXT NOT NULL, user_id TEXT, outcome TEXT NOT NULL,
    reason TEXT, send_id TEXT, revenue REAL, status INTEGER, attempts INTEGER, platform TEXT,
    variant TEXT, rates TEXT, significant INTEGER
);
CREATE INDEX activity_campaign_outcome ON activity (campaign, outcome, at);
CREATE INDEX activity_send ON activity (send_id);
INSERT INTO activity (at, campaign, user_id, outcome, send_id, variant)
    VALUES ('2026-12-01T09:00:00Z', 'cart', 'u1', 'send', 's1', 'a');
INSERT INTO activity (at, campaign, user_id, outcome, send_id, variant)
    VALUES ('2026-12-01T09:01:00Z', 'cart', 'u2', 'send', 's2', 'b');
"""


def test_an_activity_table_without_lang_is_migrated_or_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SECOND)
    db.close()
    # read as it is (`pushlang stats --store` opens the file read-only): its variants, no languages
    readonly = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    (cart,) = campaign_stats(readonly, {})["campaigns"]
    readonly.close()
    assert (cart["sends"], list(cart["variants"]), cart["languages"]) == (2, ["a", "b"], {})
    # opened by a log: the column is added, the rows, their ids and the indexes stay
    log = ActivityLog(str(path))
    log.record(Output(at(9, 2), "cart", "u3", "send", None, "s3", variant="a", lang="fr"))
    log.close()
    log = ActivityLog(str(path))  # once migrated, opening again changes nothing
    assert [str(r[1]) for r in log.db.execute("PRAGMA table_info(activity)")][-4:] == [
        "variant", "rates", "significant", "lang"]
    assert [(r["user"], r["variant"], r["lang"]) for r in log.rows()] == [
        ("u1", "a", None), ("u2", "b", None), ("u3", "a", "fr")]
    assert [r[0] for r in log.db.execute("SELECT id FROM activity ORDER BY id")] == [1, 2, 3]
    indexes = {r[0] for r in log.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"activity_campaign_outcome", "activity_send"} <= indexes
    (cart,) = campaign_stats(log.db, {})["campaigns"]
    log.close()
    # the rows of before used no `lang` block as far as anyone knows: they count as the own texts
    assert [(k, x["sends"]) for k, x in cart["languages"].items()] == [("default", 2), ("fr", 1)]


def test_the_first_activity_table_is_rebuilt_with_lang(tmp_path: Path) -> None:
    path = tmp_path / "first.db"
    db = sqlite3.connect(path)
    db.executescript((FIXTURES / "activity.sql").read_text(encoding="utf-8"))
    db.execute("INSERT INTO activity (at, campaign, user_id, outcome, send_id) VALUES (?, 'cart', 'u1', 'send', 's1')",
               (at(9),))
    db.commit()
    db.close()
    log = ActivityLog(str(path))
    log.record(Output(at(9, 1), "cart", "u2", "send", None, "s2", lang="pt-BR"))
    log.close()
    log = ActivityLog(str(path))
    assert [(r["user"], r["lang"]) for r in log.rows()] == [("u1", None), ("u2", "pt-BR")]
    log.close()


# ---- serve + /v1/stats and replay + pushlang stats over the same real records ---------------------------------

CAMPAIGN = '''campaign cart {
  platforms chrome
  on "Added To Cart"
  message {
    title "Still thinking?"
    body "Your @event.product is waiting"
    url "https://shop.example.com/cart"
    lang "fr" {
      title "Vous hésitez ?"
      body "Votre @event.product vous attend"
    }
    lang "pt-BR" {
      title "Ainda pensando?"
    }
  }
  control group 30%
  conversion "Charged" within 1d revenue event.amount
}
'''
USERS = [f"u{n:02d}" for n in range(24)]
# The users' `language`: fr-CA gets `fr` (a shorter prefix), pt_BR `pt-BR` (`_` read as `-`), en and no
# language at all the message's own texts.
SPOKEN = ["fr-CA", "pt_BR", "en", None]
TAG = {"fr-CA": "fr", "pt_BR": "pt-BR", "en": "default", None: "default"}


def lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_replay_and_stats_give_the_per_language_figures_of_serve_and_v1_stats(
        push_project: tuple[Path, WebPushService], capsys: pytest.CaptureFixture[str]) -> None:
    folder, push = push_project
    with (folder / "pushlang.toml").open("a", encoding="utf-8") as config:
        config.write("browser_burst = 100\n")  # [server]: every user's browser reports from 127.0.0.1 here
    (folder / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    control = {u for u in USERS if in_control_group("cart", u, 30)}
    tag = {u: TAG[SPOKEN[n % 4]] for n, u in enumerate(USERS)}
    assert control and {tag[u] for u in control} != {"default"}
    shop: list[dict[str, Any]] = []
    for n, user in enumerate(USERS):
        sub = push.new_subscription("chrome")
        shop.append({"type": "subscribe", "user": user, "ts": at(8, 0), "platform": "chrome",
                     "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})
        if SPOKEN[n % 4] is not None:
            shop.append({"type": "profile", "user": user, "ts": at(8, 1), "props": {"language": SPOKEN[n % 4]}})
        shop.append({"user": user, "ts": at(9, n), "name": "Added To Cart", "props": {"product": f"Lamp {n}"}})
    browser: list[dict[str, Any]] = []  # the browsers of the users who got a push: views and clicks
    for n, user in enumerate(USERS):
        if user in control:
            continue
        props = {"send_id": send_id_for("cart", user, parse_instant(at(9, n))), "campaign": "cart"}
        if n % 3 != 2:
            browser.append({"user": user, "ts": at(10, n), "name": "Push Viewed", "props": props})
        if n % 3 == 0:
            browser.append({"user": user, "ts": at(10, n), "name": "Push Clicked", "props": props})
    charges = [{"user": user, "ts": at(12, n), "name": "Charged", "props": {"amount": 10 + n}}
               for n, user in enumerate(USERS) if n % 5 != 4]

    (folder / "log.jsonl").write_text(lines(shop + browser + charges), encoding="utf-8")
    assert main(["replay", "cart.push", "--events", "log.jsonl", "--out", "decisions.jsonl", "--dispatch", "live"]) == 0
    capsys.readouterr()
    assert main(["stats", "decisions.jsonl", "--format", "json"]) == 0
    offline = json.loads(capsys.readouterr().out)

    async def serve() -> dict[str, dict[str, Any]]:
        start = max(parse_instant(str(r["ts"])) for r in shop + browser + charges) / 1e6
        service = LiveService([str(folder / "cart.push")], store_path=str(folder / "state.db"), tick=0.05,
                              clock=lambda: start)
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as client:
            assert (await client.post("/v1/records", data=lines(shop), headers=AUTH)).status == 200
            for user in USERS:
                mine = [b for b in browser if b["user"] == user]
                if mine:
                    r = await client.post("/v1/browser/records", data=lines(mine), headers=user_token(user))
                    assert (await r.json())["rejected"] == []
            assert (await client.post("/v1/records", data=lines(charges), headers=AUTH)).status == 200
            for _ in range(200):  # deliveries go out in the background
                figures = (await (await client.get("/v1/stats", headers=AUTH)).json())["campaigns"]
                if all(c["delivered"] == c["sends"] > 0 for c in figures):
                    return {c["id"]: {k: v for k, v in c.items() if k not in ("id", "name", "labels")}
                            for c in figures}
                await asyncio.sleep(0.05)
            raise AssertionError("the sends were not all delivered")

    live = asyncio.run(serve())
    assert live == offline
    languages = offline["cart"]["languages"]
    assert list(languages) == ["default", "fr", "pt-BR"]
    for name, figures in languages.items():
        got = [n for n, u in enumerate(USERS) if tag[u] == name and u not in control]
        held = [n for n, u in enumerate(USERS) if tag[u] == name and u in control]
        converted = [n for n in got if n % 5 != 4]
        assert figures["sends"] == len(got) and figures["control"] == len(held), name
        assert figures["viewed"] == len([n for n in got if n % 3 != 2]), name
        assert figures["clicked"] == len([n for n in got if n % 3 == 0]), name
        assert figures["conversions"] == len(converted), name
        assert figures["revenue"] == sum(10 + n for n in converted), name
        assert figures["control_conversions"] == len([n for n in held if n % 5 != 4]), name
        assert figures["vs_control"] == (compare(len(converted), len(got), figures["control_conversions"], len(held))
                                         if held else None), name
    assert main(["stats", "--store", "state.db", "--format", "json"]) == 0  # the service's file, read as it is
    assert json.loads(capsys.readouterr().out) == offline
