"""Live campaign stats (the seed's "Viewing Web Push Campaign Stats"), computed in SQL over the activity log.

The numbers mean what the replay stats (``pushlang.runtime.stats``) mean, over the rows of the
``activity`` table (``pushlang.service.activity``): every row counts once, a ``convert`` whose
``send_id`` is that of a ``control`` decision of the same campaign is a conversion of the control
group (SPEC §8), every other ``convert`` one of the push. ``delivered`` and ``failed`` count push
service answers (one per subscription reached), ``viewed`` and ``clicked`` the reports of the
service worker. Rates are null where their denominator is zero.

Both functions are pure reads over a ``sqlite3.Connection`` and return JSON-ready dicts; the
routes in ``pushlang.service.dashboard`` serve them as ``/v1/stats`` and ``/v1/stats/series``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

BUCKETS: dict[str, str] = {"hour": "%Y-%m-%dT%H:00:00Z", "day": "%Y-%m-%dT00:00:00Z"}

COUNTS = ("sends", "control", "delivered", "failed", "viewed", "clicked", "conversions",
          "control_conversions")
SERIES_COUNTS = ("sends", "delivered", "viewed", "clicked", "conversions")

# The campaign filter of a query, when a label selects campaigns (their ids as a JSON array).
_FILTER = "AND {column} IN (SELECT value FROM json_each(:campaigns))"

# A `convert` row `a` converts a control decision of its campaign (SPEC §8).
_OF_CONTROL = """EXISTS (SELECT 1 FROM activity AS c
                  WHERE c.send_id = a.send_id AND c.outcome = 'control' AND c.campaign = a.campaign)"""

# Counts per (campaign, outcome) come from the (campaign, outcome, at) index alone; only the
# `convert` rows are read for their revenue and matched against the control decisions.
_STATS_SQL = """
WITH rows AS (
    SELECT campaign, outcome, COUNT(*) AS n, 0.0 AS revenue
    FROM activity WHERE outcome <> 'convert' {filter}
    GROUP BY campaign, outcome
    UNION ALL
    SELECT a.campaign, CASE WHEN {of_control} THEN 'control_convert' ELSE 'convert' END, COUNT(*), TOTAL(a.revenue)
    FROM activity AS a WHERE a.outcome = 'convert' {filter_a}
    GROUP BY 1, 2
),
counts AS (
    SELECT campaign,
           SUM(CASE outcome WHEN 'send' THEN n ELSE 0 END) AS sends,
           SUM(CASE outcome WHEN 'control' THEN n ELSE 0 END) AS control,
           SUM(CASE outcome WHEN 'delivered' THEN n ELSE 0 END) AS delivered,
           SUM(CASE outcome WHEN 'failed' THEN n ELSE 0 END) AS failed,
           SUM(CASE outcome WHEN 'viewed' THEN n ELSE 0 END) AS viewed,
           SUM(CASE outcome WHEN 'clicked' THEN n ELSE 0 END) AS clicked,
           SUM(CASE outcome WHEN 'convert' THEN n ELSE 0 END) AS conversions,
           SUM(CASE outcome WHEN 'control_convert' THEN n ELSE 0 END) AS control_conversions,
           TOTAL(CASE outcome WHEN 'convert' THEN revenue END) AS revenue,
           TOTAL(CASE outcome WHEN 'control_convert' THEN revenue END) AS control_revenue
    FROM rows GROUP BY campaign
),
rates AS (
    SELECT *,
           CAST(conversions AS REAL) / NULLIF(sends, 0) AS conversion_rate,
           CAST(control_conversions AS REAL) / NULLIF(control, 0) AS control_rate,
           CAST(clicked AS REAL) / NULLIF(delivered, 0) AS click_rate
    FROM counts
)
SELECT campaign, sends, control, delivered, failed, viewed, clicked, conversions, control_conversions,
       revenue, control_revenue, conversion_rate, control_rate, click_rate,
       (conversion_rate - control_rate) / NULLIF(control_rate, 0) AS lift
FROM rates ORDER BY campaign
"""

_STATS_COLUMNS = ("campaign", *COUNTS, "revenue", "control_revenue", "conversion_rate", "control_rate",
                  "click_rate", "lift")

_SERIES_SQL = """
WITH rows AS (
    SELECT campaign, strftime(:format, at) AS t, outcome, COUNT(*) AS n, 0.0 AS revenue
    FROM activity WHERE outcome IN ('send', 'delivered', 'viewed', 'clicked') {filter}
    GROUP BY campaign, t, outcome
    UNION ALL
    SELECT a.campaign, strftime(:format, a.at), 'convert', COUNT(*), TOTAL(a.revenue)
    FROM activity AS a WHERE a.outcome = 'convert' AND NOT {of_control} {filter_a}
    GROUP BY 1, 2
)
SELECT campaign, t, CAST(strftime('%s', t) AS INTEGER) AS ts,
       SUM(CASE outcome WHEN 'send' THEN n ELSE 0 END) AS sends,
       SUM(CASE outcome WHEN 'delivered' THEN n ELSE 0 END) AS delivered,
       SUM(CASE outcome WHEN 'viewed' THEN n ELSE 0 END) AS viewed,
       SUM(CASE outcome WHEN 'clicked' THEN n ELSE 0 END) AS clicked,
       SUM(CASE outcome WHEN 'convert' THEN n ELSE 0 END) AS conversions,
       TOTAL(revenue) AS revenue
FROM rows WHERE t IS NOT NULL
GROUP BY campaign, t
ORDER BY campaign, t
"""


def _sql(template: str, filtered: bool) -> str:
    return template.format(of_control=_OF_CONTROL,
                           filter=_FILTER.format(column="campaign") if filtered else "",
                           filter_a=_FILTER.format(column="a.campaign") if filtered else "")


def _has_activity(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'activity'").fetchone() \
        is not None


def all_labels(labels: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every label of the loaded campaigns, sorted: the choices of the dashboard's filter."""
    return sorted({name for names in labels.values() for name in names})


def _selected(labels: Mapping[str, tuple[str, ...]], label: str | None) -> list[str] | None:
    """The campaign ids the label selects (None: no filter)."""
    if label is None or label == "":
        return None
    return sorted(cid for cid, names in labels.items() if label in names)


def _campaign_ids(db: sqlite3.Connection, labels: Mapping[str, tuple[str, ...]],
                  selected: list[str] | None) -> list[str]:
    """The campaigns to report: the selected ones, or every loaded campaign and every campaign with
    activity (one no longer loaded still has its history)."""
    if selected is not None:
        return selected
    found = {str(row[0]) for row in db.execute("SELECT DISTINCT campaign FROM activity")} \
        if _has_activity(db) else set()
    return sorted(found | set(labels))


def _describe(cid: str, labels: Mapping[str, tuple[str, ...]], names: Mapping[str, str] | None) -> dict[str, Any]:
    return {"id": cid, "name": (names or {}).get(cid, cid), "labels": list(labels.get(cid, ()))}


def _empty_stats() -> dict[str, Any]:
    return {**dict.fromkeys(COUNTS, 0), "revenue": 0.0, "control_revenue": 0.0, "conversion_rate": None,
            "control_rate": None, "click_rate": None, "lift": None}


def campaign_stats(db: sqlite3.Connection, labels: dict[str, tuple[str, ...]], *, label: str | None = None,
                   campaigns: dict[str, str] | None = None) -> dict[str, Any]:
    """Per-campaign totals over the whole activity log.

    ``labels`` maps each loaded campaign id to its labels, ``campaigns`` (optional) to its display
    name. With ``label``, only the campaigns carrying it. Returns::

        {"label": label or None, "labels": [every label, sorted],
         "campaigns": [{"id", "name", "labels", "sends", "control", "delivered", "failed", "viewed",
                        "clicked", "conversions", "control_conversions", "revenue", "control_revenue",
                        "conversion_rate", "control_rate", "click_rate", "lift"}, ...],   # by id
         "totals": {the counts and revenues summed over those campaigns, with their rates}}

    ``conversion_rate`` = conversions / sends, ``control_rate`` = control_conversions / control,
    ``lift`` = (conversion_rate − control_rate) / control_rate, ``click_rate`` = clicked / delivered.
    """
    selected = _selected(labels, label)
    ids = _campaign_ids(db, labels, selected)
    found: dict[str, dict[str, Any]] = {}
    if _has_activity(db) and ids:
        params = {"campaigns": json.dumps(selected)} if selected is not None else {}
        for row in db.execute(_sql(_STATS_SQL, selected is not None), params):
            values = dict(zip(_STATS_COLUMNS, row, strict=True))
            found[str(values.pop("campaign"))] = values
    rows = [{**_describe(cid, labels, campaigns), **found.get(cid, _empty_stats())} for cid in ids]
    return {"label": label or None, "labels": all_labels(labels), "campaigns": rows, "totals": _totals(rows)}


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {key: sum(r[key] for r in rows) for key in COUNTS}
    total["revenue"] = sum(r["revenue"] for r in rows)
    total["control_revenue"] = sum(r["control_revenue"] for r in rows)
    rate = total["conversions"] / total["sends"] if total["sends"] else None
    base = total["control_conversions"] / total["control"] if total["control"] else None
    total["conversion_rate"], total["control_rate"] = rate, base
    total["click_rate"] = total["clicked"] / total["delivered"] if total["delivered"] else None
    total["lift"] = (rate - base) / base if rate is not None and base else None
    return total


def series(db: sqlite3.Connection, labels: dict[str, tuple[str, ...]] | None = None, *,
           label: str | None = None, bucket: str = "hour",
           campaigns: dict[str, str] | None = None) -> dict[str, Any]:
    """Per campaign, the activity per UTC time bucket (``hour`` or ``day``), for the charts.

    Only buckets with activity are listed (the dashboard fills the gaps with zeros). Returns::

        {"label": label or None, "bucket": "hour", "step": 3600,
         "campaigns": [{"id", "name", "labels",
                        "points": [{"t": "2026-12-01T08:00:00Z", "ts": 1796112000, "sends", "delivered",
                                    "viewed", "clicked", "conversions", "revenue"}, ...]}, ...]}

    ``t`` is the bucket's start (``ts`` the same in Unix seconds); ``conversions`` and ``revenue``
    are those of the push (not of the control group), counted when the conversion happened.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    labels = labels or {}
    selected = _selected(labels, label)
    ids = _campaign_ids(db, labels, selected)
    points: dict[str, list[dict[str, Any]]] = {cid: [] for cid in ids}
    if _has_activity(db) and ids:
        params = {"format": BUCKETS[bucket]}
        if selected is not None:
            params["campaigns"] = json.dumps(selected)
        for cid, t, ts, *values in db.execute(_sql(_SERIES_SQL, selected is not None), params):
            point: dict[str, Any] = {"t": t, "ts": ts, **dict(zip(SERIES_COUNTS, values[:-1], strict=True))}
            point["revenue"] = values[-1]
            points.setdefault(str(cid), []).append(point)
    return {"label": label or None, "bucket": bucket, "step": 3600 if bucket == "hour" else 86400,
            "campaigns": [{**_describe(cid, labels, campaigns), "points": points[cid]} for cid in ids]}

