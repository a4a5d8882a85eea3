"""Campaign stats over decisions (SPEC §11 `stats`): sends, conversions, revenue, control and lift."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from pushlang.runtime.engine import Output
from pushlang.runtime.hosts import open_records


@dataclass
class CampaignStats:
    sends: int = 0
    control: int = 0
    delayed: int = 0
    suppressed: int = 0
    delivered: int = 0
    failed: int = 0
    viewed: int = 0
    clicked: int = 0
    conversions: int = 0
    control_conversions: int = 0
    revenue: float = 0.0
    control_revenue: float = 0.0

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.sends if self.sends else None

    @property
    def control_rate(self) -> float | None:
        return self.control_conversions / self.control if self.control else None

    @property
    def lift(self) -> float | None:
        """(rate of those who got the push − rate of the control group) / control rate."""
        rate, base = self.conversion_rate, self.control_rate
        if rate is None or base is None or base == 0:
            return None
        return (rate - base) / base


def collect(outputs: Iterable[Output]) -> dict[str, CampaignStats]:
    stats: dict[str, CampaignStats] = {}
    control_ids: set[str] = set()
    for o in outputs:
        s = stats.setdefault(o.campaign, CampaignStats())
        if o.outcome == "send":
            s.sends += 1
        elif o.outcome == "control":
            s.control += 1
            if o.send_id:
                control_ids.add(o.send_id)
        elif o.outcome == "delay":
            s.delayed += 1
        elif o.outcome == "suppress":
            s.suppressed += 1
        elif o.outcome == "delivered":
            s.delivered += 1
        elif o.outcome == "failed":
            s.failed += 1
        elif o.outcome == "viewed":
            s.viewed += 1
        elif o.outcome == "clicked":
            s.clicked += 1
        elif o.outcome == "convert":
            if o.send_id in control_ids:
                s.control_conversions += 1
                s.control_revenue += o.revenue or 0.0
            else:
                s.conversions += 1
                s.revenue += o.revenue or 0.0
    return dict(sorted(stats.items()))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def render(stats: dict[str, CampaignStats]) -> str:
    header = ("campaign", "sends", "delivered", "failed", "viewed", "clicked", "conversions", "conv. rate",
              "revenue", "control", "control rate", "lift")
    rows = [header]
    for cid, s in stats.items():
        rows.append((cid, f"{s.sends:,}", f"{s.delivered:,}", f"{s.failed:,}", f"{s.viewed:,}", f"{s.clicked:,}",
                     f"{s.conversions:,}",
                     _pct(s.conversion_rate), f"{s.revenue:,.2f}", f"{s.control:,}", _pct(s.control_rate),
                     "-" if s.lift is None else f"{s.lift:+.1%}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _from_store(path: str) -> list[Output]:
    if not Path(path).is_file():
        raise ValueError(f"no database {path}")
    from pushlang.service.activity import ActivityLog

    log = ActivityLog(path)
    try:
        return [Output(str(r["at"]), str(r["campaign"]), str(r["user"]), str(r["outcome"]),
                       r["reason"] if isinstance(r["reason"], str) else None,
                       r["send_id"] if isinstance(r["send_id"], str) else None,
                       revenue=float(r["revenue"]) if isinstance(r["revenue"], (int, float)) else None)
                for r in log.rows()]
    finally:
        log.close()


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "stats", help="sends, conversions, revenue and lift per campaign",
        description="Per-campaign stats over the decisions a replay wrote (JSON Lines): sends, deliveries, "
                    "conversions and their rate, revenue, and for campaigns with a control group the "
                    "control conversion rate and the lift.",
    )
    p.add_argument("decisions", metavar="DECISIONS", nargs="?",
                   help="decisions as JSON Lines (`replay --out`), or - for stdin")
    p.add_argument("--store", metavar="FILE", help="or the SQLite file of `pushlang serve` (its activity log)")
    p.add_argument("--campaign", action="append", metavar="ID", help="only these campaigns (repeatable)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    if (args.decisions is None) == (args.store is None):
        raise ValueError("give a decisions file (`replay --out`) or --store FILE (`pushlang serve`'s database)")
    if args.store is not None:
        outputs = _from_store(args.store.removeprefix("sqlite:///"))
    else:
        decoder = msgspec.json.Decoder(Output)
        with open_records(args.decisions) as lines:
            outputs = [decoder.decode(line) for line in lines if line.strip()]
    stats = collect(o for o in outputs if not args.campaign or o.campaign in args.campaign)
    if args.format == "json":
        data = {cid: {**vars(s), "conversion_rate": s.conversion_rate,
                      "control_rate": s.control_rate, "lift": s.lift} for cid, s in stats.items()}
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(data), indent=2).decode() + "\n")
    else:
        print(render(stats))
    return 0
