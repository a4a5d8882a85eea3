"""One set of figures (SPEC §12.7): `replay` + `pushlang stats` and `serve` + `/v1/stats` agree on one log.

The log has sends and a control group, deliveries to the loopback push service, views and clicks
(a send clicked twice, a click of a control user's send_id, a click of a send_id nobody got) and
conversions of both groups. Two more campaigns meet the limits of SPEC §9.3: `limit 1 per day`,
`[limits] global_per_user_per_day` and `min_gap` suppress, DND delays. Both hosts deliver for real, so
every figure is compared, deliveries and the reasons too.

A fourth campaign, `flash`, is throttled to one send a minute (SPEC §12.1): three readers at one
instant give a send and two throttled delays, sent in the next two minutes.

A campaign with variants `a` and `b` and a control group (SPEC §12.3) gives the same per-variant
figures both ways too, with views, clicks and conversions (tests/test_experiment_stats.py checks the
figures themselves on written records, and against statsmodels).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import TOKEN, user_token
from peers.webpush_service import WebPushService

from pushlang.cli import main
from pushlang.runtime.instants import parse_instant
from pushlang.runtime.pipeline import in_control_group, send_id_for
from pushlang.service.app import LiveService

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAMPAIGN = '''campaign cart {
  labels "retention"
  platforms chrome
  on "Added To Cart"
  message {
    title "Still thinking?"
    body "Your @event.product is waiting"
    url "https://shop.example.com/cart"
  }
  control group 40%
  conversion "Charged" within 1d revenue event.amount
}
'''
# The limits' campaigns: a sale page seen twice a day meets `limit 1 per day`, an article read
# within the hour after a push meets min_gap, a third push of the day the global limit; a sale page
# seen at night is delayed by DND.
SALE = '''campaign sale {
  labels "promo"
  platforms chrome
  on "Opened Sale"
  when {
    dnd 21:00 to 07:00 delay
    limit 1 per day
  }
  message {
    title "Sale"
    body "Up to 50% off"
    url "https://shop.example.com/sale"
  }
}
'''
NEWS = '''campaign news {
  labels "promo"
  platforms chrome
  on "Read Article"
  message {
    title "More to read"
    body "The next article is out"
    url "https://shop.example.com/news"
  }
}
'''
FLASH = '''campaign flash {
  labels "promo"
  platforms chrome
  on "Flash"
  when {
    throttle 1 per minute
    ignore global limits
  }
  message {
    title "Flash sale"
    body "One hour only"
    url "https://shop.example.com/flash"
  }
}
'''
LIMITS = '''[limits]
global_per_user_per_day = 2
min_gap = "1h"
'''
USERS = [f"u{n:02d}" for n in range(24)]
READERS = ["w1", "w2", "w3"]


def at(hour: int, minute: int) -> str:
    return f"2026-12-01T{hour:02d}:{minute:02d}:00Z"


def log(push: WebPushService) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Three parts, as they would reach the service: the shop's records, what browsers report, and
    the charges that convert."""
    shop: list[dict[str, Any]] = []
    for n, user in enumerate(USERS):
        sub = push.new_subscription("chrome")
        shop.append({"type": "subscribe", "user": user, "ts": at(8, 0), "platform": "chrome",
                     "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})
        shop.append({"user": user, "ts": at(9, n), "name": "Added To Cart", "props": {"product": f"Lamp {n}"}})
    browser: list[dict[str, Any]] = []
    for n, user in enumerate(USERS):
        props = {"send_id": send_id_for("cart", user, parse_instant(at(9, n))), "campaign": "cart"}  # as sw.js sends
        if n % 3 != 2:
            browser.append({"user": user, "ts": at(10, n), "name": "Push Viewed", "props": props})
        if n % 3 == 0:
            browser.append({"user": user, "ts": at(10, n), "name": "Push Clicked", "props": props})
        if n % 6 == 0:  # a second click (a button) of the same send: still one clicked send
            browser.append({"user": user, "ts": at(10, n + 1), "name": "Push Clicked", "props": props})
    browser.append({"user": "u01", "ts": at(11, 0), "name": "Push Clicked",
                    "props": {"send_id": "f" * 24, "campaign": "cart"}})  # nobody got that push
    charges = [{"user": user, "ts": at(12, n), "name": "Charged", "props": {"amount": 10 + n}}
               for n, user in enumerate(USERS) if n % 4 != 3]
    return shop, browser, charges


def limited(push: WebPushService) -> list[dict[str, Any]]:
    """The readers' records, after the others: per reader, `sale` sends and then meets its limit, `news`
    meets min_gap, sends, and meets the global limit; w3 opens the sale at night."""
    records: list[dict[str, Any]] = []
    for n, user in enumerate(READERS):
        sub = push.new_subscription("chrome")
        records.append({"type": "subscribe", "user": user, "ts": at(13, n), "platform": "chrome",
                        "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})
    for n, user in enumerate(READERS):
        records.append({"user": user, "ts": at(13, 10 + n), "name": "Opened Sale"})  # sale: send
        records.append({"user": user, "ts": at(13, 40 + n), "name": "Read Article"})  # news: min_gap
    for n, user in enumerate(READERS[:2]):
        records.append({"user": user, "ts": at(14, n), "name": "Opened Sale"})  # sale: campaign_limit
        records.append({"user": user, "ts": at(15, n), "name": "Read Article"})  # news: send, the second
        records.append({"user": user, "ts": at(16, n), "name": "Read Article"})  # news: global_limit
    for user in READERS:  # flash: a send and two throttled delays, sent at 16:31 and 16:32
        records.append({"user": user, "ts": at(16, 30), "name": "Flash"})
    records.append({"user": "w3", "ts": at(22, 0), "name": "Opened Sale"})  # sale: delay (dnd)
    return records


@pytest.fixture
def project(push_project: tuple[Path, WebPushService]) -> tuple[Path, WebPushService]:
    (push_project[0] / "cart.push").write_text(CAMPAIGN, encoding="utf-8")
    (push_project[0] / "sale.push").write_text(SALE, encoding="utf-8")
    (push_project[0] / "flash.push").write_text(FLASH, encoding="utf-8")
    (push_project[0] / "news.push").write_text(NEWS, encoding="utf-8")
    with (push_project[0] / "pushlang.toml").open("a", encoding="utf-8") as config:
        config.write("browser_burst = 100\n")  # [server]: every user's browser reports from 127.0.0.1 here
        config.write(LIMITS)
    return push_project


async def _once_delivered(client: TestClient) -> dict[str, dict[str, Any]]:
    """`/v1/stats` per campaign once every send was delivered (deliveries go out in the background)."""
    for _ in range(200):
        figures = (await (await client.get("/v1/stats", headers=AUTH)).json())["campaigns"]
        if all(c["delivered"] == c["sends"] > 0 for c in figures):
            return {c["id"]: {k: v for k, v in c.items() if k not in ("id", "name", "labels")} for c in figures}
        await asyncio.sleep(0.05)
    raise AssertionError("the sends were not all delivered")


def lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_replay_and_stats_give_the_figures_of_serve_and_v1_stats(
        project: tuple[Path, WebPushService], capsys: pytest.CaptureFixture[str]) -> None:
    folder, push = project
    shop, browser, charges = log(push)
    readers = limited(push)
    control = {u for u in USERS if in_control_group("cart", u, 40)}
    assert 0 < len(control) < len(USERS)
    files = ["cart.push", "sale.push", "news.push", "flash.push"]

    (folder / "log.jsonl").write_text(lines(shop + browser + charges + readers), encoding="utf-8")
    assert main(["replay", *files, "--events", "log.jsonl", "--out", "decisions.jsonl", "--dispatch", "live"]) == 0
    capsys.readouterr()
    assert main(["stats", "decisions.jsonl", "--format", "json"]) == 0
    everything = json.loads(capsys.readouterr().out)
    offline = everything["cart"]
    assert main(["stats", "decisions.jsonl"]) == 0
    table = capsys.readouterr().out

    async def serve() -> dict[str, dict[str, Any]]:
        # the wall clock stands at the log's last instant: every record is in the past, as a live
        # service that relays a log receives it (a record ahead of the wall clock counts as now)
        start = max(parse_instant(str(r["ts"])) for r in shop + browser + charges + readers) / 1e6
        service = LiveService([str(folder / name) for name in files], store_path=str(folder / "state.db"),
                              tick=0.05, clock=lambda: start)
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as client:
            assert (await client.post("/v1/records", data=lines(shop), headers=AUTH)).status == 200
            rejected = []
            for user in USERS:  # each browser posts its own user's reports, with its token
                mine = [(i, b) for i, b in enumerate(browser) if b["user"] == user]
                r = await client.post("/v1/browser/records", data=lines([b for _, b in mine]),
                                      headers=user_token(user))
                rejected += [mine[x["index"]][0] for x in (await r.json())["rejected"]]
            # the browser endpoint takes reports of real sends only: a control user got no push
            unknown = [i for i, b in enumerate(browser) if b["user"] in control or i == len(browser) - 1]
            assert sorted(rejected) == unknown
            assert (await client.post("/v1/records", data=lines(charges), headers=AUTH)).status == 200
            assert (await client.post("/v1/records", data=lines(readers), headers=AUTH)).status == 200
            return await _once_delivered(client)

    live = asyncio.run(serve())
    assert live == everything
    assert list(live) == ["cart", "flash", "news", "sale"]
    # the reasons, in the same order from both hosts (largest first)
    assert [(c, list(f["suppressed_by"].items()), list(f["delayed_by"].items())) for c, f in live.items()] == \
        [(c, list(f["suppressed_by"].items()), list(f["delayed_by"].items())) for c, f in everything.items()]
    sale, news, flash = everything["sale"], everything["news"], everything["flash"]
    assert (sale["sends"], sale["delivered"], sale["throttled"], sale["delayed"], sale["suppressed"]) == (3, 3, 0, 1, 2)
    assert sale["suppressed_by"] == {"campaign_limit": 2} and sale["delayed_by"] == {"dnd": 1}
    assert (flash["sends"], flash["delivered"], flash["throttled"], flash["delayed"]) == (3, 3, 2, 2)
    assert flash["delayed_by"] == {"throttle": 2} and flash["suppressed_by"] == {}
    assert (news["sends"], news["delivered"], news["throttled"], news["delayed"], news["suppressed"]) == (2, 2, 0, 0, 5)
    assert list(news["suppressed_by"].items()) == [("min_gap", 3), ("global_limit", 2)] and news["delayed_by"] == {}
    assert (offline["throttled"], offline["suppressed_by"], offline["delayed_by"]) == (0, {}, {})
    assert "  news: suppressed 5 (min_gap 3, global_limit 2)\n" in table
    assert "  sale: suppressed 2 (campaign_limit 2); delayed 1 (dnd 1)\n" in table
    assert "  flash: delayed 2 (throttle 2)\n" in table
    assert "  cart:" not in table  # nothing suppressed or delayed

    sends = len(USERS) - len(control)
    got_push = [n for n, u in enumerate(USERS) if u not in control]
    assert offline["sends"] == offline["delivered"] == sends and offline["control"] == len(control)
    assert offline["viewed"] == len([n for n in got_push if n % 3 != 2])
    assert offline["clicked"] == len([n for n in got_push if n % 3 == 0])  # each send once
    assert offline["click_rate"] == offline["clicked"] / sends
    assert offline["conversions"] == len([n for n in got_push if n % 4 != 3])
    assert offline["control_conversions"] == len([n for n, u in enumerate(USERS) if u in control and n % 4 != 3])
    assert offline["revenue"] == sum(10 + n for n in got_push if n % 4 != 3)
    assert offline["conversion_rate"] == offline["conversions"] / sends
    assert offline["control_rate"] == offline["control_conversions"] / len(control)
    assert offline["lift"] == pytest.approx((offline["conversion_rate"] - offline["control_rate"])
                                            / offline["control_rate"])


# ---- experiments (SPEC §12.3, §12.7): the same per-variant figures from both hosts ----------------------------

EXPERIMENT = '''campaign ab {
  platforms chrome
  on "Added To Cart"
  message a 50% {
    title "Still thinking?"
    body "Your @event.product is waiting"
    url "https://shop.example.com/cart"
  }
  message b 50% {
    title "10% off your cart"
    body "Your @event.product, for less"
    url "https://shop.example.com/cart"
  }
  control group 20%
  conversion "Charged" within 1d revenue event.amount
}
'''
AB_USERS = [f"v{n:02d}" for n in range(40)]


def variant_of(campaign: str, user: str) -> str:
    """SPEC §12.3 for two variants of 50%: the first takes [0, 5000), the second [5000, 10000)."""
    import hashlib

    return "a" if int(hashlib.sha256(f"{campaign}:variant:{user}".encode()).hexdigest()[:8], 16) % 10000 < 5000 else "b"


def test_replay_and_stats_give_the_per_variant_figures_of_serve_and_v1_stats(
        push_project: tuple[Path, WebPushService], capsys: pytest.CaptureFixture[str]) -> None:
    folder, push = push_project
    with (folder / "pushlang.toml").open("a", encoding="utf-8") as config:
        config.write("browser_burst = 100\n")  # [server]: every user's browser reports from 127.0.0.1 here
    (folder / "ab.push").write_text(EXPERIMENT, encoding="utf-8")
    control = {u for u in AB_USERS if in_control_group("ab", u, 20)}
    variant = {u: variant_of("ab", u) for u in AB_USERS if u not in control}
    assert control and set(variant.values()) == {"a", "b"}
    shop: list[dict[str, Any]] = []
    for n, user in enumerate(AB_USERS):
        sub = push.new_subscription("chrome")
        shop.append({"type": "subscribe", "user": user, "ts": at(8, 0), "platform": "chrome",
                     "endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}})
        shop.append({"user": user, "ts": at(9, n), "name": "Added To Cart", "props": {"product": f"Lamp {n}"}})
    browser: list[dict[str, Any]] = []  # the browsers of the users who got a push: views and clicks
    for n, user in enumerate(AB_USERS):
        if user in control:
            continue
        props = {"send_id": send_id_for("ab", user, parse_instant(at(9, n))), "campaign": "ab"}
        if n % 3 != 2:
            browser.append({"user": user, "ts": at(10, n), "name": "Push Viewed", "props": props})
        if n % 3 == 0 or (variant[user] == "b" and n % 3 == 1):
            browser.append({"user": user, "ts": at(10, n), "name": "Push Clicked", "props": props})
    charges = [{"user": user, "ts": at(12, n), "name": "Charged", "props": {"amount": 10 + n}}
               for n, user in enumerate(AB_USERS) if n % 4 != 3 and (user in control or variant[user] == "b" or n % 2)]

    (folder / "log.jsonl").write_text(lines(shop + browser + charges), encoding="utf-8")
    assert main(["replay", "ab.push", "--events", "log.jsonl", "--out", "decisions.jsonl", "--dispatch", "live"]) == 0
    capsys.readouterr()
    assert main(["stats", "decisions.jsonl", "--format", "json"]) == 0
    offline = json.loads(capsys.readouterr().out)

    async def serve() -> dict[str, dict[str, Any]]:
        start = max(parse_instant(str(r["ts"])) for r in shop + browser + charges) / 1e6
        service = LiveService([str(folder / "ab.push")], store_path=str(folder / "state.db"), tick=0.05,
                              clock=lambda: start)
        async with TestClient(TestServer(service.app(), host="127.0.0.1")) as client:
            assert (await client.post("/v1/records", data=lines(shop), headers=AUTH)).status == 200
            for user in AB_USERS:
                mine = [b for b in browser if b["user"] == user]
                if mine:
                    r = await client.post("/v1/browser/records", data=lines(mine), headers=user_token(user))
                    assert (await r.json())["rejected"] == []
            assert (await client.post("/v1/records", data=lines(charges), headers=AUTH)).status == 200
            return await _once_delivered(client)

    live = asyncio.run(serve())
    assert live == offline
    ab = offline["ab"]
    assert list(ab["variants"]) == ["a", "b"] and ab["control"] == len(control)
    for v, figures in ab["variants"].items():
        got = [n for n, u in enumerate(AB_USERS) if variant.get(u) == v]
        assert figures["sends"] == len(got), v
        assert figures["viewed"] == len([n for n in got if n % 3 != 2]), v
        assert figures["clicked"] == len([n for n in got if n % 3 == 0 or (v == "b" and n % 3 == 1)]), v
        converted = [n for n in got if n % 4 != 3 and (v == "b" or n % 2)]
        assert figures["conversions"] == len(converted) and figures["revenue"] == sum(10 + n for n in converted), v
        assert figures["vs_control"] is not None
    assert ab["variants"]["a"]["vs_first"] is None and ab["variants"]["b"]["vs_first"]["diff"] is not None
    assert sum(f["sends"] for f in ab["variants"].values()) == ab["sends"]
