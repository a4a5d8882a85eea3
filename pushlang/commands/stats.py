"""`pushlang stats`: sends, views, clicks, conversions, revenue and lift per campaign, per variant, per language,
and for the global holdout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pushlang.commands import common

if TYPE_CHECKING:
    from pushlang.runtime.outcomes import Output


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "stats", help="sends, views, clicks, conversions, revenue and lift per campaign",
        description="Per-campaign figures over the decisions a replay wrote (JSON Lines) or over the activity "
                    "log of `pushlang serve` (--store): sends, delays by the campaign's throttle, deliveries, "
                    "sends viewed and clicked and the click rate (clicked / sends), conversions, their rate "
                    "and revenue, and for campaigns with a control group its conversions, rate and the lift; "
                    "under the table, each campaign's suppressed and delayed decisions by reason (JSON: "
                    "throttled, suppressed_by, delayed_by); for campaigns with variants, a row per variant "
                    "with its difference in conversion rate from the first variant and from control (95% "
                    "Wald interval, two-sided p of the pooled z-test, * when p < 0.05) and the winner record "
                    "(JSON: variants, winners); for campaigns with `lang` blocks, a row per language whose texts "
                    "the sends used, `default` for the message's own texts (sends, viewed, clicked, conversions, "
                    "revenue, the control group of that language and the difference from it; JSON: languages); "
                    "and the global holdout's conversions against the sends' "
                    "(JSON: global_holdout). The figures are the same ones /v1/stats and the dashboard show, "
                    "computed the same way.",
    )
    p.add_argument("decisions", metavar="DECISIONS", nargs="?",
                   help="decisions as JSON Lines (`replay --out`), or - for stdin")
    p.add_argument("--store", metavar="FILE", help="or the SQLite file of `pushlang serve` (its activity log)")
    p.add_argument("--campaign", action="append", metavar="ID", help="only these campaigns (repeatable)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def run(args: argparse.Namespace) -> int:
    import sqlite3

    import msgspec

    from pushlang.runtime import stats
    from pushlang.runtime.records import open_records

    if (args.decisions is None) == (args.store is None):
        raise common.UsageError("give a decisions file (`replay --out`) or --store FILE (`pushlang serve`'s database)")
    if args.store is not None:
        path = args.store.removeprefix("sqlite:///")
        if not Path(path).is_file():
            raise common.UsageError(f"no database {path}")
        db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    else:
        with open_records(args.decisions) as lines:
            db = stats.from_outputs(_decisions(args.decisions, lines))
    try:
        result = stats.campaign_stats(db, {})
    except sqlite3.DatabaseError as exc:
        raise common.UsageError(f"{args.store or args.decisions}: {exc}") from None
    finally:
        db.close()
    if args.campaign:
        result["campaigns"] = [c for c in result["campaigns"] if c["id"] in args.campaign]
        result["totals"] = stats.totals_of(result["campaigns"])  # the global holdout's "all" of those only
    if args.format == "json":
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(stats.by_campaign(result)), indent=2).decode()
                         + "\n")
    else:
        print(stats.render_table(result))
    return common.EXIT_OK


def _decisions(path: str, lines: Iterable[bytes]) -> Iterator[Output]:
    """The output records of a decisions file; a line that is not one is an error that says where."""
    import msgspec

    from pushlang.runtime.outcomes import Output

    decoder = msgspec.json.Decoder(Output)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise common.UsageError(
                f"{path}:{number}: not a decision ({exc}): stats reads the output of `pushlang replay --out`, "
                "not its input records") from None
