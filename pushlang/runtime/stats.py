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
- ``lift`` = (conversion_rate − control_rate) / control_rate. The control group here is the
  campaign's own (`control` decisions with reason null); the global holdout is reported apart:
- ``global_holdout``: ``{"held_out", "conversions", "revenue", "conversion_rate", "sends_vs_holdout"}``,
  the `control` decisions with reason `global_holdout` (SPEC §8), their conversions, and the
  campaign's conversion rate against theirs (a comparison, below); ``totals`` has it over the
  campaigns reported;
- ``variants`` (SPEC §12.7; ``{}`` for a campaign without variants): per variant of the `send`
  decisions, ``{"sends", "viewed", "clicked", "click_rate", "conversions", "conversion_rate",
  "revenue", "vs_first", "vs_control"}`` — the figures above counted over the sends of that variant
  (views, clicks and conversions belong to the variant of the send they name), ordered by variant id
  (the log does not know the order the file wrote them in: ``a``, ``b``, …), the first one being the
  baseline: ``vs_first`` compares each later variant's conversion rate with the first's (null for
  the first), ``vs_control`` with the campaign's control group (null without control decisions);
- ``winners``: the `winner` records (SPEC §12.4), oldest first: ``[{"at", "variant", "rates",
  "significant"}, …]``, as the runtime wrote them;
- ``languages`` (SPEC §12.5, §12.7; ``{}`` for a campaign none of whose `send` or `control` decisions
  carries a ``lang``: one without `lang` blocks, or one whose users have all got the message's own
  texts so far): per language, ``{"sends", "viewed", "clicked", "click_rate", "conversions",
  "conversion_rate", "revenue", "control", "control_conversions", "control_rate", "vs_control"}`` —
  the figures above counted over the sends whose texts were that language's (views, clicks and
  conversions belong to the language of the send they name), and over the campaign's control group
  by the language its users would have got (SPEC §9.4). Keyed by the tag as the file wrote it, and
  ``"default"`` (:data:`DEFAULT_LANG`) for the decisions that used the message's own texts (``lang``
  null; no tag can be named so, lint wants 2 or 3 letters before a tag's first ``-``); ``default``
  first, then the tags in code-point order. ``vs_control`` compares the language's conversion rate
  with its control group's (null without control decisions in that language). Languages are not
  compared with one another: who reads which language is not chosen at random, so a difference
  between two of them is not the texts' doing.

A comparison (:func:`compare`) of rate₁ = x₁/n₁ with rate₂ = x₂/n₂ is ``{"diff", "low", "high", "p",
"significant", "lift"}``: ``diff`` = rate₁ − rate₂; ``low``, ``high`` its 95% Wald confidence interval
(unpooled: diff ± z₀.₉₇₅·√(r₁(1−r₁)/n₁ + r₂(1−r₂)/n₂)); ``p`` the two-sided p-value of the pooled
two-proportion z-test; ``significant`` = p < 0.05; ``lift`` = diff / rate₂. Where a figure is not
defined it is null (never NaN): every figure when n₁ or n₂ is 0 (no sends, nobody held out); ``p``
when the pooled variance is 0 (both rates 0, or both 1: nothing to test), and then ``significant`` is
false; ``lift`` when rate₂ is 0. A zero unpooled variance gives the interval [diff, diff].

Rates are null where their denominator is zero. The functions are pure reads over a
``sqlite3.Connection`` and return JSON-ready dicts; ``/v1/stats`` and ``/v1/stats/series`` serve
them as they are.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pushlang.runtime import significance
from pushlang.runtime.activity import ActivityLog
from pushlang.runtime.outcomes import Output

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
# ... and which: 'holdout_convert' (the global holdout's), 'control_convert' (the campaign's own
# control group's), or null (a send's).
_CONTROL_KIND = """(SELECT CASE WHEN c.reason = 'global_holdout' THEN 'holdout_convert' ELSE 'control_convert' END
                   FROM activity AS c
                   WHERE c.send_id = a.send_id AND c.outcome = 'control' AND c.campaign = a.campaign LIMIT 1)"""
HOLDOUT = "global_holdout"  # the reason of a `control` decision of the global holdout

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
    SELECT campaign, 'holdout', COUNT(*), 0.0
    FROM activity WHERE outcome = 'control' AND reason = 'global_holdout' {filter}
    GROUP BY campaign
    UNION ALL
    SELECT a.campaign, COALESCE({control_kind}, 'convert'), COUNT(*), TOTAL(a.revenue)
    FROM activity AS a WHERE a.outcome = 'convert' {filter_a}
    GROUP BY 1, 2
),
counts AS (
    SELECT campaign,
           SUM(CASE outcome WHEN 'send' THEN n ELSE 0 END) AS sends,
           SUM(CASE outcome WHEN 'control' THEN n WHEN 'holdout' THEN -n ELSE 0 END) AS control,
           SUM(CASE outcome WHEN 'holdout' THEN n ELSE 0 END) AS held_out,
           SUM(CASE outcome WHEN 'delay' THEN n ELSE 0 END) AS delayed,
           SUM(CASE outcome WHEN 'suppress' THEN n ELSE 0 END) AS suppressed,
           SUM(CASE outcome WHEN 'delivered' THEN n ELSE 0 END) AS delivered,
           SUM(CASE outcome WHEN 'failed' THEN n ELSE 0 END) AS failed,
           SUM(CASE outcome WHEN 'viewed' THEN n ELSE 0 END) AS viewed,
           SUM(CASE outcome WHEN 'clicked' THEN n ELSE 0 END) AS clicked,
           SUM(CASE outcome WHEN 'convert' THEN n ELSE 0 END) AS conversions,
           SUM(CASE outcome WHEN 'control_convert' THEN n ELSE 0 END) AS control_conversions,
           TOTAL(CASE outcome WHEN 'convert' THEN revenue END) AS revenue,
           TOTAL(CASE outcome WHEN 'control_convert' THEN revenue END) AS control_revenue,
           SUM(CASE outcome WHEN 'holdout_convert' THEN n ELSE 0 END) AS holdout_conversions,
           TOTAL(CASE outcome WHEN 'holdout_convert' THEN revenue END) AS holdout_revenue
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
       COALESCE(suppressed_by, '{{}}'), COALESCE(delayed_by, '{{}}'),
       held_out, holdout_conversions, holdout_revenue
FROM rates LEFT JOIN by_reason USING (campaign) ORDER BY campaign
"""

_STATS_COLUMNS = ("campaign", *COUNTS, "revenue", "control_revenue", "conversion_rate", "control_rate",
                  "click_rate", "lift", *REASONS, "held_out", "holdout_conversions", "holdout_revenue")
VARIANT_COUNTS = ("sends", "viewed", "clicked", "conversions")

# Per variant: its sends, and the views, clicks and conversions of those sends (each send_id once).
_VARIANTS_SQL = """
WITH sent AS (
    SELECT campaign, send_id, MIN(variant) AS variant, COUNT(*) AS n
    FROM activity WHERE outcome = 'send' AND variant IS NOT NULL {filter}
    GROUP BY campaign, send_id
),
rows AS (
    SELECT campaign, variant, 'send' AS outcome, SUM(n) AS n, 0.0 AS revenue FROM sent GROUP BY 1, 2
    UNION ALL
    SELECT s.campaign, s.variant, a.outcome,
           CASE WHEN a.outcome = 'convert' THEN COUNT(*) ELSE COUNT(DISTINCT a.send_id) END, TOTAL(a.revenue)
    FROM sent AS s JOIN activity AS a ON a.send_id = s.send_id AND a.campaign = s.campaign
    WHERE a.outcome IN ('viewed', 'clicked', 'convert')
    GROUP BY 1, 2, 3
),
counts AS (
    SELECT campaign, variant,
           SUM(CASE outcome WHEN 'send' THEN n ELSE 0 END) AS sends,
           SUM(CASE outcome WHEN 'viewed' THEN n ELSE 0 END) AS viewed,
           SUM(CASE outcome WHEN 'clicked' THEN n ELSE 0 END) AS clicked,
           SUM(CASE outcome WHEN 'convert' THEN n ELSE 0 END) AS conversions,
           TOTAL(CASE outcome WHEN 'convert' THEN revenue END) AS revenue
    FROM rows GROUP BY campaign, variant
)
SELECT campaign, variant, sends, viewed, clicked, conversions, revenue,
       CAST(clicked AS REAL) / NULLIF(sends, 0) AS click_rate,
       CAST(conversions AS REAL) / NULLIF(sends, 0) AS conversion_rate
FROM counts ORDER BY campaign, variant
"""
_VARIANT_COLUMNS = ("campaign", "variant", *VARIANT_COUNTS, "revenue", "click_rate", "conversion_rate")

LANGUAGE_COUNTS = ("sends", "viewed", "clicked", "conversions", "control", "control_conversions")
DEFAULT_LANG = "default"  # the key of the decisions that used the message's own texts (`lang` null)

# Per language, of the campaigns whose sends or control-group decisions carry one: its sends and the
# views, clicks and conversions of those sends, its control-group decisions (the language they would
# have got, SPEC §9.4) and their conversions (each send_id once, as for the variants).
_LANGUAGES_SQL = """
WITH languaged AS (
    SELECT DISTINCT campaign FROM activity
    WHERE outcome IN ('send', 'control') AND lang IS NOT NULL {filter}
),
decided AS (
    SELECT campaign, send_id, outcome, MIN(lang) AS lang, COUNT(*) AS n
    FROM activity
    WHERE campaign IN (SELECT campaign FROM languaged)
      AND (outcome = 'send' OR (outcome = 'control' AND reason IS NOT 'global_holdout'))
    GROUP BY campaign, send_id, outcome
),
rows AS (
    SELECT campaign, lang, outcome, SUM(n) AS n, 0.0 AS revenue FROM decided GROUP BY 1, 2, 3
    UNION ALL
    SELECT d.campaign, d.lang, d.outcome || ' ' || a.outcome,
           CASE WHEN a.outcome = 'convert' THEN COUNT(*) ELSE COUNT(DISTINCT a.send_id) END, TOTAL(a.revenue)
    FROM decided AS d JOIN activity AS a ON a.send_id = d.send_id AND a.campaign = d.campaign
    WHERE a.outcome IN ('viewed', 'clicked', 'convert')
    GROUP BY 1, 2, 3
),
counts AS (
    SELECT campaign, lang,
           SUM(CASE outcome WHEN 'send' THEN n ELSE 0 END) AS sends,
           SUM(CASE outcome WHEN 'send viewed' THEN n ELSE 0 END) AS viewed,
           SUM(CASE outcome WHEN 'send clicked' THEN n ELSE 0 END) AS clicked,
           SUM(CASE outcome WHEN 'send convert' THEN n ELSE 0 END) AS conversions,
           SUM(CASE outcome WHEN 'control' THEN n ELSE 0 END) AS control,
           SUM(CASE outcome WHEN 'control convert' THEN n ELSE 0 END) AS control_conversions,
           TOTAL(CASE outcome WHEN 'send convert' THEN revenue END) AS revenue
    FROM rows GROUP BY campaign, lang
)
SELECT campaign, lang, sends, viewed, clicked, conversions, control, control_conversions, revenue,
       CAST(clicked AS REAL) / NULLIF(sends, 0) AS click_rate,
       CAST(conversions AS REAL) / NULLIF(sends, 0) AS conversion_rate,
       CAST(control_conversions AS REAL) / NULLIF(control, 0) AS control_rate
FROM counts ORDER BY campaign, lang IS NOT NULL, lang
"""
_LANGUAGE_COLUMNS = ("campaign", "lang", *LANGUAGE_COUNTS, "revenue", "click_rate", "conversion_rate", "control_rate")

_WINNERS_SQL = """
SELECT campaign, at, variant, rates, significant FROM activity WHERE outcome = 'winner' {filter}
ORDER BY campaign, at, id
"""

# ---- the tests of significance ------------------------------------------------------------------------

def compare(x1: int, n1: int, x2: int, n2: int) -> dict[str, Any]:
    """Rate x1/n1 against rate x2/n2: ``{"diff", "low", "high", "p", "significant", "lift"}``.

    ``diff`` = x1/n1 − x2/n2 with its 95% Wald interval [``low``, ``high``] (unpooled variance), ``p``
    the two-sided p-value of the two-proportion z-test (pooled variance), ``significant`` = p < 0.05
    (all from :func:`pushlang.runtime.significance.compare`, which the winner record uses too),
    ``lift`` = diff / (x2/n2). Undefined figures are None (see the module's docstring): all of them
    when n1 or n2 is 0, ``p`` when the pooled variance is 0, ``lift`` when x2 is 0.
    """
    d = significance.compare(x1, n1, x2, n2)
    base = x2 / n2 if n2 > 0 else 0
    return {"diff": d.diff, "low": d.low, "high": d.high, "p": d.p_value, "significant": d.significant,
            "lift": d.diff / base if d.diff is not None and base else None}


def _holdout(held_out: int, conversions: int, revenue: float, sends: int, sent_conversions: int) -> dict[str, Any]:
    """The global holdout's figures: its conversions, and the sends' conversion rate against its rate."""
    return {"held_out": held_out, "conversions": conversions, "revenue": revenue,
            "conversion_rate": conversions / held_out if held_out else None,
            "sends_vs_holdout": compare(sent_conversions, sends, conversions, held_out)}

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
    return template.format(of_control=_OF_CONTROL, control_kind=_CONTROL_KIND, count=_COUNT,
                           filter=_FILTER.format(column="campaign") if filtered else "",
                           filter_a=_FILTER.format(column="a.campaign") if filtered else "")


def _has_activity(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'activity'").fetchone() \
        is not None


def _has_column(db: sqlite3.Connection, name: str) -> bool:
    """Whether the table has this column (a file written before ``variant``, or before ``lang``, read
    without being migrated, as ``pushlang stats --store`` reads, has none: no variants and no winners,
    or no languages)."""
    return any(row[1] == name for row in db.execute("PRAGMA table_info(activity)"))


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
            "control_rate": None, "click_rate": None, "lift": None, "suppressed_by": {}, "delayed_by": {},
            "global_holdout": _holdout(0, 0, 0.0, 0, 0), "variants": {}, "winners": [], "languages": {}}


def _variants(db: sqlite3.Connection, selected: list[str] | None, params: dict[str, Any],
              found: dict[str, dict[str, Any]]) -> None:
    """Each campaign's ``variants`` and ``winners``, into ``found`` (its other figures)."""
    for row in db.execute(_sql(_VARIANTS_SQL, selected is not None), params):
        values = dict(zip(_VARIANT_COLUMNS, row, strict=True))
        campaign = found.get(str(values.pop("campaign")))
        if campaign is not None:
            campaign["variants"][str(values.pop("variant"))] = values
    for campaign in found.values():
        first: dict[str, Any] | None = None
        for figures in campaign["variants"].values():
            figures["vs_first"] = None if first is None else \
                compare(figures["conversions"], figures["sends"], first["conversions"], first["sends"])
            figures["vs_control"] = compare(figures["conversions"], figures["sends"], campaign["control_conversions"],
                                            campaign["control"]) if campaign["control"] else None
            first = first or figures
    for cid, at, variant, rates, significant in db.execute(_sql(_WINNERS_SQL, selected is not None), params):
        if str(cid) in found:
            found[str(cid)]["winners"].append({"at": at, "variant": variant,
                                               "rates": None if rates is None else json.loads(rates),
                                               "significant": None if significant is None else bool(significant)})


def _languages(db: sqlite3.Connection, selected: list[str] | None, params: dict[str, Any],
               found: dict[str, dict[str, Any]]) -> None:
    """Each campaign's ``languages``, into ``found`` (its other figures)."""
    for row in db.execute(_sql(_LANGUAGES_SQL, selected is not None), params):
        values = dict(zip(_LANGUAGE_COLUMNS, row, strict=True))
        campaign = found.get(str(values.pop("campaign")))
        if campaign is None:
            continue
        lang = values.pop("lang")
        values["vs_control"] = compare(values["conversions"], values["sends"], values["control_conversions"],
                                       values["control"]) if values["control"] else None
        campaign["languages"][DEFAULT_LANG if lang is None else str(lang)] = values


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
                        "lift", "suppressed_by", "delayed_by", "global_holdout", "variants", "winners",
                        "languages"}, ...],  # by id
         "totals": {the counts, revenues and reasons summed over those campaigns, with their rates, and
                    the global holdout over them (no variants, no winners, no languages)}}

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
            values["global_holdout"] = _holdout(values.pop("held_out"), values.pop("holdout_conversions"),
                                                values.pop("holdout_revenue"), values["sends"], values["conversions"])
            values["variants"], values["winners"], values["languages"] = {}, [], {}
            found[str(values.pop("campaign"))] = values
        if _has_column(db, "variant"):
            _variants(db, selected, params, found)
        if _has_column(db, "lang"):
            _languages(db, selected, params, found)
    rows = [{**_describe(cid, labels, campaigns), **found.get(cid, _empty_stats())} for cid in ids]
    return {"label": label or None, "labels": all_labels(labels), "campaigns": rows, "totals": totals_of(rows)}


def totals_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``totals`` of these campaign rows (``campaign_stats``' own, or a selection of them)."""
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
    held = [r["global_holdout"] for r in rows]
    total["global_holdout"] = _holdout(sum(h["held_out"] for h in held), sum(h["conversions"] for h in held),
                                       sum(h["revenue"] for h in held), total["sends"], total["conversions"])
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
    experiments = [c for c in stats["campaigns"] if c["variants"] or c["winners"]]
    if experiments:
        lines += ["", "variants (conversion rate: difference from the first variant and from control, 95% CI, "
                  "two-sided p; * p < 0.05):"]
        for c in experiments:
            lines += [f"  {c['id']}", *(f"    {line}" for line in variant_lines(c))]
    with_languages = [c for c in stats["campaigns"] if c["languages"]]
    if with_languages:
        lines += ["", "languages (the texts each send used, by `lang` tag; default: the message's own texts; "
                  "conversion rate: difference from the control group of the same language, 95% CI, two-sided p; "
                  "* p < 0.05):"]
        for c in with_languages:
            lines += [f"  {c['id']}", *(f"    {line}" for line in language_lines(c))]
    if stats["totals"]["global_holdout"]["held_out"]:
        lines += ["", "global holdout (held-out users' conversions against the sends'; 95% CI, two-sided p; "
                  "* p < 0.05):", *(f"  {line}" for line in holdout_lines(stats))]
    return "\n".join(lines)


def comparison_text(c: Mapping[str, Any] | None) -> str:
    """A comparison in percentage points: ``+40.0 pts [+0.8, +79.2] p=0.068`` (`` *`` when significant);
    ``-`` when there is none, ``p=-`` when the test is not defined."""
    if c is None or c["diff"] is None:
        return "-"
    p = "-" if c["p"] is None else "<0.001" if c["p"] < 0.001 else f"={c['p']:.3f}"
    return (f"{c['diff'] * 100:+.1f} pts [{c['low'] * 100:+.1f}, {c['high'] * 100:+.1f}] p{p}"
            + (" *" if c["significant"] else ""))


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned columns (the first to the left, the figures to the right), with a rule under the
    header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def variant_lines(c: Mapping[str, Any]) -> list[str]:
    """A campaign's variants, one a row, and its winner records (the latest, and how many there were)."""
    variants = c["variants"]
    first = next(iter(variants), "first")
    rows = [("variant", "sends", "clicked", "click rate", "conversions", "conv. rate", "revenue", f"vs {first}",
             "vs control", "lift")]
    for vid, v in variants.items():
        lift = (v["vs_control"] or {}).get("lift")
        rows.append((vid, f"{v['sends']:,}", f"{v['clicked']:,}", _pct(v["click_rate"]), f"{v['conversions']:,}",
                     _pct(v["conversion_rate"]), f"{v['revenue']:,.2f}", comparison_text(v["vs_first"]),
                     comparison_text(v["vs_control"]), "-" if lift is None else f"{lift:+.1%}"))
    lines = _columns(rows) if variants else []
    if c["winners"]:
        w = c["winners"][-1]
        rates = ", ".join(f"{k} {_pct(r)}" for k, r in (w["rates"] or {}).items())
        called = {True: "significant", False: "not significant", None: "significance not given"}[w["significant"]]
        more = f"; the latest of {len(c['winners'])} winner records" if len(c["winners"]) > 1 else ""
        lines.append(f"winner: {w['variant']} at {w['at']} ({rates}), {called}{more}")
    return lines


def language_lines(c: Mapping[str, Any]) -> list[str]:
    """A campaign's languages, one a row (``default`` first)."""
    rows = [("language", "sends", "viewed", "clicked", "click rate", "conversions", "conv. rate", "revenue",
             "control", "control rate", "vs control", "lift")]
    for tag, x in c["languages"].items():
        lift = (x["vs_control"] or {}).get("lift")
        rows.append((tag, f"{x['sends']:,}", f"{x['viewed']:,}", f"{x['clicked']:,}", _pct(x["click_rate"]),
                     f"{x['conversions']:,}", _pct(x["conversion_rate"]), f"{x['revenue']:,.2f}",
                     f"{x['control']:,}", _pct(x["control_rate"]), comparison_text(x["vs_control"]),
                     "-" if lift is None else f"{lift:+.1%}"))
    return _columns(rows) if c["languages"] else []


def holdout_lines(stats: Mapping[str, Any]) -> list[str]:
    """The global holdout: per campaign that held users out, then all of them."""
    rows = [("campaign", "held out", "conversions", "rate", "sends", "conversions", "rate", "sends − holdout",
             "lift")]
    for name, s in [*((c["id"], c) for c in stats["campaigns"] if c["global_holdout"]["held_out"]),
                    ("all", stats["totals"])]:
        h = s["global_holdout"]
        lift = h["sends_vs_holdout"]["lift"]
        rows.append((name, f"{h['held_out']:,}", f"{h['conversions']:,}", _pct(h["conversion_rate"]),
                     f"{s['sends']:,}", f"{s['conversions']:,}", _pct(s["conversion_rate"]),
                     comparison_text(h["sends_vs_holdout"]), "-" if lift is None else f"{lift:+.1%}"))
    return _columns(rows)
