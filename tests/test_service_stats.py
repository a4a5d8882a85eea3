"""Live stats over the activity log (SQL), their routes, and the dashboard with its vendored charts."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.outcomes import Output
from pushlang.runtime.stats import campaign_stats, series
from pushlang.service.dashboard import STATIC, add_routes, static_files

LABELS: dict[str, tuple[str, ...]] = {
    "welcome": ("onboarding", "web"),
    "cart": ("retention",),
    "idle": ("web",),  # loaded, never triggered
}
NAMES = {"welcome": "Welcome series", "cart": "Abandoned cart", "idle": "Idle campaign"}


def day1(hms: str) -> str:
    return f"2026-12-01T{hms}Z"


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def fill(log: ActivityLog) -> None:
    """Two campaigns with different labels, plus the history of one no longer loaded."""
    out = log.record
    # welcome: 4 sends (one delayed first), 3 delivered, 1 failed, 3 held out, 1 suppressed.
    out(Output(day1("07:50:00"), "welcome", "u1", "delay", "dnd", "s1", until=day1("08:05:00")))
    for user, sid, at in (("u1", "s1", "08:05:00"), ("u2", "s2", "08:20:00"), ("u3", "s3", "08:59:59"),
                          ("u4", "s4", "09:10:00")):
        out(Output(day1(at), "welcome", user, "send", None, sid, "Hi", "Welcome", platforms=["chrome"]))
    for sid, user, at in (("s1", "u1", "08:05:00"), ("s2", "u2", "08:20:00"), ("s3", "u3", "08:59:59")):
        out(Output(day1(at), "welcome", user, "delivered", None, sid, platforms=["chrome"], status=201, attempts=1))
    out(Output(day1("09:10:00"), "welcome", "u4", "failed", "gone", "s4", platforms=["firefox"], status=410,
               attempts=1))
    for user, sid in (("u5", "k1"), ("u6", "k2"), ("u7", "k3")):
        out(Output(day1("08:30:00"), "welcome", user, "control", None, sid))
    out(Output(day1("08:31:00"), "welcome", "u8", "suppress", "campaign_limit", "s8"))
    # welcome's throttle (SPEC §12.1) delays two decisions, min_gap and the global limits suppress three
    out(Output(day1("08:40:10"), "welcome", "u10", "delay", "throttle", "t10", until=day1("08:41:00")))
    out(Output(day1("08:40:20"), "welcome", "u11", "delay", "throttle", "t11", until=day1("08:42:00")))
    out(Output(day1("08:45:00"), "welcome", "u2", "suppress", "min_gap", "g2"))
    out(Output(day1("08:46:00"), "welcome", "u3", "suppress", "min_gap", "g3"))
    out(Output(day1("08:47:00"), "welcome", "u1", "suppress", "global_limit", "g1"))
    out(Output(day1("08:06:00"), "welcome", "u1", "viewed", send_id="s1"))
    out(Output(day1("08:07:00"), "welcome", "u1", "clicked", send_id="s1"))
    out(Output(day1("09:01:00"), "welcome", "u2", "viewed", send_id="s2"))
    out(Output(day1("09:30:00"), "welcome", "u1", "convert", None, "s1", revenue=10.0))
    out(Output(day1("10:15:00"), "welcome", "u2", "convert", None, "s2"))  # no revenue expression
    out(Output(day1("09:45:00"), "welcome", "u5", "convert", None, "k1", revenue=5.0))  # of the control group
    # cart: the next day, 2 sends, both delivered, one viewed and clicked and converted.
    for user, sid in (("u1", "c1"), ("u9", "c2")):
        out(Output("2026-12-02T10:00:00Z", "cart", user, "send", None, sid, "Your cart", "…"))
        out(Output("2026-12-02T10:00:00Z", "cart", user, "delivered", None, sid, status=201, attempts=1))
    out(Output("2026-12-02T10:02:00Z", "cart", "u1", "viewed", send_id="c1"))
    out(Output("2026-12-02T10:03:00Z", "cart", "u1", "clicked", send_id="c1"))
    out(Output("2026-12-02T11:00:00Z", "cart", "u1", "convert", None, "c1", revenue=25.5))
    out(Output("2026-12-02T11:30:00Z", "cart", "u9", "suppress", "global_limit", "c3"))
    # old: removed from the campaign files, its history stays.
    out(Output("2026-11-30T12:00:00Z", "old", "u1", "send", None, "o1"))
    log.commit()


@pytest.fixture
def db_path(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pushlang.db"
    log = ActivityLog(str(path))
    fill(log)
    log.close()
    yield path


@pytest.fixture
def db(db_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(db_path)
    yield conn
    conn.close()


def by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in result["campaigns"]}


UNDEFINED = {"diff": None, "low": None, "high": None, "p": None, "significant": False, "lift": None}
# No variants, no winner, nobody in the global holdout, no languages: the figures of experiments a campaign
# has then.
NO_EXPERIMENT = {"global_holdout": {"held_out": 0, "conversions": 0, "revenue": 0.0, "conversion_rate": None,
                                    "sends_vs_holdout": UNDEFINED},
                 "variants": {}, "winners": [], "languages": {}}
WELCOME = {
    "id": "welcome", "name": "Welcome series", "labels": ["onboarding", "web"],
    "sends": 4, "control": 3, "delayed": 3, "throttled": 2, "suppressed": 4, "delivered": 3, "failed": 1, "viewed": 2,
    "clicked": 1, "conversions": 2, "control_conversions": 1, "revenue": 10.0, "control_revenue": 5.0,
    "conversion_rate": 0.5, "control_rate": 1 / 3, "click_rate": 1 / 4, "lift": (0.5 - 1 / 3) / (1 / 3),
    "suppressed_by": {"min_gap": 2, "campaign_limit": 1, "global_limit": 1}, "delayed_by": {"throttle": 2, "dnd": 1},
    **NO_EXPERIMENT,
}
CART = {
    "id": "cart", "name": "Abandoned cart", "labels": ["retention"],
    "sends": 2, "control": 0, "delayed": 0, "throttled": 0, "suppressed": 1, "delivered": 2, "failed": 0, "viewed": 1,
    "clicked": 1, "conversions": 1, "control_conversions": 0, "revenue": 25.5, "control_revenue": 0.0,
    "conversion_rate": 0.5, "control_rate": None, "click_rate": 0.5, "lift": None,
    "suppressed_by": {"global_limit": 1}, "delayed_by": {}, **NO_EXPERIMENT,
}
IDLE = {
    "id": "idle", "name": "Idle campaign", "labels": ["web"],
    "sends": 0, "control": 0, "delayed": 0, "throttled": 0, "suppressed": 0, "delivered": 0, "failed": 0, "viewed": 0,
    "clicked": 0, "conversions": 0, "control_conversions": 0, "revenue": 0.0, "control_revenue": 0.0,
    "conversion_rate": None, "control_rate": None, "click_rate": None, "lift": None,
    "suppressed_by": {}, "delayed_by": {}, **NO_EXPERIMENT,
}


def test_campaign_stats_counts_rates_and_lift(db: sqlite3.Connection) -> None:
    result = campaign_stats(db, LABELS, campaigns=NAMES)
    assert result["label"] is None
    assert result["labels"] == ["onboarding", "retention", "web"]
    assert [c["id"] for c in result["campaigns"]] == ["cart", "idle", "old", "welcome"]
    campaigns = by_id(result)
    assert campaigns["welcome"] == WELCOME
    assert campaigns["welcome"]["lift"] == pytest.approx(0.5)
    assert campaigns["cart"] == CART
    assert campaigns["idle"] == IDLE
    assert campaigns["old"]["name"] == "old" and campaigns["old"]["labels"] == []
    assert campaigns["old"]["sends"] == 1
    totals = result["totals"]
    assert {k: totals[k] for k in ("sends", "delivered", "failed", "viewed", "clicked", "conversions",
                                   "control", "control_conversions")} == {
        "sends": 7, "delivered": 5, "failed": 1, "viewed": 3, "clicked": 2, "conversions": 3,
        "control": 3, "control_conversions": 1}
    assert totals["revenue"] == 35.5 and totals["control_revenue"] == 5.0
    assert totals["conversion_rate"] == 3 / 7 and totals["control_rate"] == 1 / 3
    assert totals["lift"] == (3 / 7 - 1 / 3) / (1 / 3)
    assert totals["click_rate"] == 2 / 7  # clicked sends / sends (SPEC §12.7)


def test_campaign_stats_break_suppressions_and_delays_down_by_reason(db: sqlite3.Connection) -> None:
    result = campaign_stats(db, LABELS)
    welcome = by_id(result)["welcome"]
    # largest first, ties by name: the order every host and format shows
    assert list(welcome["suppressed_by"]) == ["min_gap", "campaign_limit", "global_limit"]
    assert list(welcome["delayed_by"]) == ["throttle", "dnd"]
    assert welcome["throttled"] == welcome["delayed_by"]["throttle"] == 2
    for c in result["campaigns"]:  # the reasons add up to their outcome's count
        assert sum(c["suppressed_by"].values()) == c["suppressed"], c["id"]
        assert sum(c["delayed_by"].values()) == c["delayed"], c["id"]
    totals = result["totals"]
    assert (totals["throttled"], totals["suppressed"], totals["delayed"]) == (2, 5, 3)
    assert totals["suppressed_by"] == {"global_limit": 2, "min_gap": 2, "campaign_limit": 1}
    assert list(totals["suppressed_by"]) == ["global_limit", "min_gap", "campaign_limit"]
    assert totals["delayed_by"] == {"throttle": 2, "dnd": 1}
    # a label filter reads only its campaigns' reasons
    retention = campaign_stats(db, LABELS, label="retention")
    assert retention["totals"]["suppressed_by"] == {"global_limit": 1} and retention["totals"]["delayed_by"] == {}


def test_a_suppression_or_delay_without_a_reason_counts_as_unknown() -> None:
    log = ActivityLog(":memory:")
    log.record(Output(day1("08:00:00"), "odd", "u1", "suppress", None, "x1"))
    log.record(Output(day1("08:00:00"), "odd", "u2", "delay", None, "x2", until=day1("09:00:00")))
    log.commit()
    (odd,) = campaign_stats(log.db, {})["campaigns"]
    assert (odd["suppressed_by"], odd["delayed_by"], odd["throttled"]) == ({"unknown": 1}, {"unknown": 1}, 0)
    log.close()


def test_campaign_stats_filtered_by_label(db: sqlite3.Connection) -> None:
    retention = campaign_stats(db, LABELS, label="retention", campaigns=NAMES)
    assert retention["label"] == "retention"
    assert retention["labels"] == ["onboarding", "retention", "web"]  # the filter's choices stay
    assert retention["campaigns"] == [CART]
    assert retention["totals"]["sends"] == 2 and retention["totals"]["revenue"] == 25.5
    web_ = campaign_stats(db, LABELS, label="web", campaigns=NAMES)
    assert web_["campaigns"] == [IDLE, WELCOME]
    nothing = campaign_stats(db, LABELS, label="nope")
    assert nothing["campaigns"] == [] and nothing["totals"]["sends"] == 0 and nothing["totals"]["lift"] is None
    assert campaign_stats(db, LABELS, label="")["campaigns"] == campaign_stats(db, LABELS)["campaigns"]


def test_campaign_stats_without_names_or_activity(tmp_path: Path) -> None:
    empty = sqlite3.connect(tmp_path / "empty.db")  # no activity table yet
    result = campaign_stats(empty, {"a": ("x",)})
    assert result["campaigns"] == [{**IDLE, "id": "a", "name": "a", "labels": ["x"]}]
    assert series(empty, {"a": ("x",)})["campaigns"] == [{"id": "a", "name": "a", "labels": ["x"], "points": []}]


def point(t: str, sends: int = 0, delivered: int = 0, viewed: int = 0, clicked: int = 0, conversions: int = 0,
          revenue: float = 0.0) -> dict[str, Any]:
    return {"t": t, "ts": ts(t), "sends": sends, "delivered": delivered, "viewed": viewed, "clicked": clicked,
            "conversions": conversions, "revenue": revenue}


def test_series_per_hour(db: sqlite3.Connection) -> None:
    result = series(db, LABELS, label="web", bucket="hour", campaigns=NAMES)
    assert (result["label"], result["bucket"], result["step"]) == ("web", "hour", 3600)
    assert [c["id"] for c in result["campaigns"]] == ["idle", "welcome"]
    idle, welcome = result["campaigns"]
    assert idle == {"id": "idle", "name": "Idle campaign", "labels": ["web"], "points": []}
    assert welcome["name"] == "Welcome series" and welcome["labels"] == ["onboarding", "web"]
    assert welcome["points"] == [
        point(day1("08:00:00"), sends=3, delivered=3, viewed=1, clicked=1),
        point(day1("09:00:00"), sends=1, viewed=1, conversions=1, revenue=10.0),
        point(day1("10:00:00"), conversions=1),  # the control group's conversion (09:45) is not counted
    ]
    assert welcome["points"][0]["ts"] == 1796112000


def test_series_per_day_and_unfiltered(db: sqlite3.Connection) -> None:
    result = series(db, LABELS, bucket="day")
    assert result["step"] == 86400
    points = {c["id"]: c["points"] for c in result["campaigns"]}
    assert points == {
        "cart": [point("2026-12-02T00:00:00Z", sends=2, delivered=2, viewed=1, clicked=1, conversions=1,
                       revenue=25.5)],
        "idle": [],
        "old": [point("2026-11-30T00:00:00Z", sends=1)],
        "welcome": [point("2026-12-01T00:00:00Z", sends=4, delivered=3, viewed=2, clicked=1, conversions=2,
                          revenue=10.0)],
    }
    # The series add up to the totals.
    stats = by_id(campaign_stats(db, LABELS))
    for cid, pts in points.items():
        for key in ("sends", "delivered", "viewed", "clicked", "conversions", "revenue"):
            assert sum(p[key] for p in pts) == stats[cid][key], (cid, key)
    with pytest.raises(ValueError, match="bucket"):
        series(db, LABELS, bucket="week")


# ---- routes ------------------------------------------------------------------------------------

def serve(app: web.Application, check: Any) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await check(client)

    asyncio.run(main())


def test_routes_serve_stats_series_dashboard_and_vendored_library(db_path: Path, db: sqlite3.Connection) -> None:
    app = web.Application()
    add_routes(app, db_path, lambda: (LABELS, NAMES))
    expected = json.loads(json.dumps(campaign_stats(db, LABELS, label="web", campaigns=NAMES)))
    expected_series = json.loads(json.dumps(series(db, LABELS, label="retention", bucket="day", campaigns=NAMES)))

    async def check(client: TestClient[Any, Any]) -> None:
        r = await client.get("/v1/stats", params={"label": "web"})
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == expected
        r = await client.get("/v1/stats")
        assert [c["id"] for c in (await r.json())["campaigns"]] == ["cart", "idle", "old", "welcome"]
        r = await client.get("/v1/stats/series", params={"label": "retention", "bucket": "day"})
        assert r.status == 200 and await r.json() == expected_series
        r = await client.get("/v1/stats/series")
        assert (await r.json())["bucket"] == "hour"
        r = await client.get("/v1/stats/series", params={"bucket": "week"})
        assert r.status == 400 and "bucket" in (await r.json())["error"]

        r = await client.get("/dashboard")
        assert r.status == 200 and r.content_type == "text/html"
        html = await r.text()
        assert '<script src="/dashboard/static/vendor/uPlot.iife.min.js"' in html
        assert "/dashboard/static/dashboard.js" in html and 'id="label"' in html
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]

        r = await client.get("/dashboard/static/vendor/uPlot.iife.min.js")
        assert r.status == 200 and r.content_type == "text/javascript"
        body = await r.read()
        assert body == (STATIC / "vendor" / "uPlot.iife.min.js").read_bytes()
        assert body.startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
        for name, kind in (("vendor/uPlot.min.css", "text/css"), ("dashboard.js", "text/javascript"),
                           ("dashboard.css", "text/css"), ("vendor/uPlot.LICENSE", "text/plain")):
            r = await client.get(f"/dashboard/static/{name}")
            assert (r.status, r.content_type) == (200, kind), name
        for missing in ("nope.js", "vendor/nope.js", "..%2Fdashboard.py", "%2E%2E/dashboard.py", "sdk/sw.js"):
            r = await client.get(f"/dashboard/static/{missing}")
            assert r.status == 404, missing

    serve(app, check)


def test_routes_read_through_the_activity_logs_connection(db_path: Path) -> None:
    """The service passes its log's connection: the routes read the same file on their own connection,
    see what was committed since, and leave the log's connection open."""
    log = ActivityLog(str(db_path))
    app = web.Application()
    add_routes(app, lambda: log.db, lambda: LABELS)  # labels only: names default to the ids

    async def check(client: TestClient[Any, Any]) -> None:
        first = by_id(await (await client.get("/v1/stats", params={"label": "retention"})).json())
        assert first["cart"]["name"] == "cart" and first["cart"]["clicked"] == 1
        log.record(Output("2026-12-02T12:00:00Z", "cart", "u9", "clicked", send_id="c2"))
        log.commit()
        again = by_id(await (await client.get("/v1/stats", params={"label": "retention"})).json())
        assert again["cart"]["clicked"] == 2 and again["cart"]["click_rate"] == 1.0

    serve(app, check)
    assert log.db.execute("SELECT COUNT(*) FROM activity").fetchone()[0] > 0  # still open
    log.close()


def test_routes_on_an_in_memory_database() -> None:
    log = ActivityLog(":memory:")
    fill(log)
    app = web.Application()
    add_routes(app, lambda: log.db, lambda: (LABELS, NAMES))

    async def check(client: TestClient[Any, Any]) -> None:
        stats = by_id(await (await client.get("/v1/stats")).json())
        assert stats["welcome"] == WELCOME

    serve(app, check)
    log.close()


def test_vendored_library_is_complete() -> None:
    vendor = STATIC / "vendor"
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    readme = (vendor / "README.md").read_text()
    assert "uPlot 1.6.32" in readme and "npm" in readme
    assert {"dashboard.html", "dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css"} <= set(static_files())


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_dashboard_script_parses() -> None:
    subprocess.run(["node", "--check", str(STATIC / "dashboard.js")], check=True)
