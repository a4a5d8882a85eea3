"""Campaign statistics (the seed's "Viewing Web Push Campaign Stats", SPEC §12.7), defined once.

Every figure is one SQL expression over the ``activity`` table (:mod:`pushlang.runtime.activity`),
whichever host wrote it: ``pushlang stats DECISIONS`` loads a replay's output records into an
in-memory table (:func:`from_outputs`), ``pushlang stats --store``, ``/v1/stats`` and the dashboard
read the live service's. So a replay and the service give the same figures for the same log.

Per campaign:

- ``sends``, ``control``, ``delayed``, ``suppressed``: decisions by outcome (a delayed decision is
  made again later: ``delayed`` counts the delays, not the decisions);
- ``throttled``: the delays with reason `throttle` (the campaign's `throttle N per minute|hour`,
  SPEC §12.1), counted in ``delayed`` too;
- ``suppressed_by``, ``delayed_by``: the `suppress` and `delay` records by their reason (SPEC §9.3),
  ``{reason: count}`` largest first (ties by name), e.g. min_gap 7, global_limit 5 and throttle 38,
  dnd 2; the counts sum to ``suppressed`` / ``delayed``, a record without a reason counts under
  ``unknown``, and a campaign with none has ``{}``;
- ``delivered``, ``failed``: push service answers (one per subscription reached);
- ``viewed``, ``clicked``: sends with at least one `viewed` / `clicked` record (a `Push Viewed` /
  `Push Clicked` of that send_id), each send counted once;
- ``click_rate`` = clicked / sends;
- ``conversions``, ``revenue``: `convert` records of the sends; ``conversion_rate`` = conversions / sends;
- ``control_conversions``, ``control_revenue``: `convert` records whose send_id is a `control`
  decision's (SPEC §8); ``control_rate`` = control_conversions / control;
- ``lift`` = (conversion_rate − control_rate) / control_rate.

Rates are null where their denominator is zero. The functions are pure reads over a
``sqlite3.Connection`` and return JSON-ready dicts; ``/v1/stats`` and ``/v1/stats/series`` serve
them as they are.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.engine import Output

BUCKETS: dict[str, str] = {"hour": "%Y-%m-%dT%H:00:00Z", "day": "%Y-%m-%dT00:00:00Z"}

COUNTS = ("sends", "control", "delayed", "throttled", "suppressed", "delivered", "failed", "viewed", "clicked",
          "conversions", "control_conversions")
REASONS = ("suppressed_by", "delayed_by")  # {reason: count}, largest first
SERIES_COUNTS = ("sends", "delivered", "viewed", "clicked", "conversions")

# The campaign filter of a query, when a label selects campaigns (their ids as a JSON array).
_FILTER = "AND {column} IN (SELECT value FROM json_each(:campaigns))"

# A `convert` row `a` converts a control decision of its campaign (SPEC §8).
_OF_CONTROL = """EXISTS (SELECT 1 FROM activity AS c
                  WHERE c.send_id = a.send_id AND c.outcome = 'control' AND c.campaign = a.campaign)"""

# Counts per (campaign, outcome) come from the (campaign, outcome, at) index; views and clicks count
# each send once; only the `convert` rows are read for their revenue and matched against the control
# decisions.
_COUNT = "CASE WHEN outcome IN ('viewed', 'clicked') THEN COUNT(DISTINCT send_id) ELSE COUNT(*) END"

_STATS_SQL = """
WITH rows AS (
    SELECT campaign, outcome, {count} AS n, 0.0 AS revenue
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
           SUM(CASE outcome WHEN 'delay' THEN n ELSE 0 END) AS delayed,
           SUM(CASE outcome WHEN 'suppress' THEN n ELSE 0 END) AS suppressed,
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
           CAST(clicked AS REAL) / NULLIF(sends, 0) AS click_rate
    FROM counts
),
reasons AS (
    SELECT campaign, outcome, COALESCE(reason, 'unknown') AS reason, COUNT(*) AS n
    FROM activity WHERE outcome IN ('suppress', 'delay') {filter}
    GROUP BY 1, 2, 3
),
by_reason AS (
    SELECT campaign,
           SUM(CASE WHEN outcome = 'delay' AND reason = 'throttle' THEN n ELSE 0 END) AS throttled,
           json_group_object(reason, n) FILTER (WHERE outcome = 'suppress') AS suppressed_by,
           json_group_object(reason, n) FILTER (WHERE outcome = 'delay') AS delayed_by
    FROM reasons GROUP BY campaign
)
SELECT campaign, sends, control, delayed, COALESCE(throttled, 0), suppressed, delivered, failed, viewed, clicked,
       conversions, control_conversions,
       revenue, control_revenue, conversion_rate, control_rate, click_rate,
       (conversion_rate - control_rate) / NULLIF(control_rate, 0) AS lift,
       COALESCE(suppressed_by, '{{}}'), COALESCE(delayed_by, '{{}}')
FROM rates LEFT JOIN by_reason USING (campaign) ORDER BY campaign
"""

_STATS_COLUMNS = ("campaign", *COUNTS, "revenue", "control_revenue", "conversion_rate", "control_rate",
                  "click_rate", "lift", *REASONS)

_SERIES_SQL = """
WITH rows AS (
    SELECT campaign, strftime(:format, at) AS t, outcome, {count} AS n, 0.0 AS revenue
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
    return template.format(of_control=_OF_CONTROL, count=_COUNT,
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
            "control_rate": None, "click_rate": None, "lift": None, "suppressed_by": {}, "delayed_by": {}}


def _largest_first(counts: Mapping[str, int]) -> dict[str, int]:
    """Reasons by count, largest first, ties by name (one order for every host and format)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def campaign_stats(db: sqlite3.Connection, labels: dict[str, tuple[str, ...]], *, label: str | None = None,
                   campaigns: dict[str, str] | None = None) -> dict[str, Any]:
    """Per-campaign totals over the whole activity log.

    ``labels`` maps each loaded campaign id to its labels, ``campaigns`` (optional) to its display
    name. With ``label``, only the campaigns carrying it. Returns::

        {"label": label or None, "labels": [every label, sorted],
         "campaigns": [{"id", "name", "labels", "sends", "control", "delayed", "throttled", "suppressed",
                        "delivered", "failed", "viewed", "clicked", "conversions", "control_conversions",
                        "revenue", "control_revenue", "conversion_rate", "control_rate", "click_rate",
                        "lift", "suppressed_by", "delayed_by"}, ...],   # by id
         "totals": {the counts, revenues and reasons summed over those campaigns, with their rates}}

    The figures are those of the module's docstring.
    """
    selected = _selected(labels, label)
    ids = _campaign_ids(db, labels, selected)
    found: dict[str, dict[str, Any]] = {}
    if _has_activity(db) and ids:
        params = {"campaigns": json.dumps(selected)} if selected is not None else {}
        for row in db.execute(_sql(_STATS_SQL, selected is not None), params):
            values = dict(zip(_STATS_COLUMNS, row, strict=True))
            for key in REASONS:
                values[key] = _largest_first(json.loads(values[key]))
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
    total["click_rate"] = total["clicked"] / total["sends"] if total["sends"] else None
    total["lift"] = (rate - base) / base if rate is not None and base else None
    for key in REASONS:
        summed: Counter[str] = Counter()
        for r in rows:
            summed.update(r[key])
        total[key] = _largest_first(summed)
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
    are those of the push (not of the control group), counted when the conversion happened;
    ``viewed`` and ``clicked`` count the sends viewed or clicked in that bucket, so a send viewed in
    two buckets counts in both (the totals of ``campaign_stats`` count it once).
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



# ---- a replay's decisions, and the figures as text -------------------------------------------------


def from_outputs(outputs: Iterable[Output]) -> sqlite3.Connection:
    """An in-memory activity log holding ``outputs`` (a replay's records), for the functions above."""
    log = ActivityLog(":memory:")
    for out in outputs:
        log.record(out)
    log.commit()
    return log.db


def by_campaign(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``campaign_stats``' rows keyed by campaign id, with only the figures."""
    return {row["id"]: {k: v for k, v in row.items() if k not in ("id", "name", "labels")}
            for row in stats["campaigns"]}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def reasons_line(s: Mapping[str, Any]) -> str | None:
    """A campaign's suppressions and delays by reason, largest first, e.g. ``flash_sale: suppressed 12
    (min_gap 7, global_limit 5); delayed 40 (throttle 38, dnd 2)``; None when it has neither."""
    parts = []
    for word, total, by in (("suppressed", "suppressed", "suppressed_by"), ("delayed", "delayed", "delayed_by")):
        if s[total]:
            reasons = ", ".join(f"{reason} {n:,}" for reason, n in s[by].items())
            parts.append(f"{word} {s[total]:,} ({reasons})")
    return f"{s['id']}: {'; '.join(parts)}" if parts else None


def render_table(stats: dict[str, Any]) -> str:
    """``campaign_stats`` as a table, one campaign a row, then each campaign's suppressions and delays
    by reason."""
    header = ("campaign", "sends", "throttled", "delivered", "failed", "viewed", "clicked", "click rate",
              "conversions", "conv. rate", "revenue", "control", "control conv.", "control rate", "lift")
    rows = [header]
    for s in stats["campaigns"]:
        rows.append((s["id"], f"{s['sends']:,}", f"{s['throttled']:,}", f"{s['delivered']:,}", f"{s['failed']:,}",
                     f"{s['viewed']:,}", f"{s['clicked']:,}", _pct(s["click_rate"]), f"{s['conversions']:,}",
                     _pct(s["conversion_rate"]), f"{s['revenue']:,.2f}", f"{s['control']:,}",
                     f"{s['control_conversions']:,}", _pct(s["control_rate"]),
                     "-" if s["lift"] is None else f"{s['lift']:+.1%}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("(throttled: delays by the campaign's throttle; viewed, clicked: sends with a view or a click; "
                 "click rate = clicked / sends; conversions and revenue of the sends, the control group's apart; "
                 "lift against the control group)")
    reasons = [line for s in stats["campaigns"] if (line := reasons_line(s)) is not None]
    if reasons:
        lines += ["", "suppressed and delayed by reason:", *(f"  {line}" for line in reasons)]
    return "\n".join(lines)
