"""`pushlang diff OLD NEW --events FILE`: replay two versions of the campaigns and compare the decisions.

Errors in either version are printed as ``lint`` prints them (exit 1); differences are not an error
(exit 0); usage errors exit 2, and so does a worker process (``--jobs 2``) that ends without a result.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from pushlang.commands import common

if TYPE_CHECKING:
    from pushlang.compiler import CompileResult
    from pushlang.runtime.diff import CampaignDiff, Report

# runtime.diff.DEFAULT_USERS, written out so that building the parser imports no runtime (a test
# checks that the two agree)
DEFAULT_USERS = 5

# ---- text ------------------------------------------------------------------------------------------


_MARKS = {"added": "+", "removed": "-", "changed": "~", "affected": "*"}
_COLORS = {"added": "32", "removed": "31", "changed": "33", "affected": "36"}


def _num(value: int | float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"


def _signed(value: int | float) -> str:
    if not value:
        return _num(value)
    return f"{value:+,.2f}" if isinstance(value, float) else f"{value:+,}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _examples(ids: list[str], total: int) -> str:
    text = ", ".join(ids)
    return f"{text} and {total - len(ids):,} more" if total > len(ids) else text


def _why_affected(c: CampaignDiff) -> str:
    causes = {"config": "the config changed", "global limit": "other campaigns' sends count toward the global limit"}
    reasons = [causes.get(a, f"{a} changed") for a in c.affected_by] or ["other changes in the plan"]
    return "plan unchanged, decisions differ: " + "; ".join(reasons)


def _table(c: CampaignDiff, all_days: bool) -> list[str]:
    from pushlang.runtime.diff import FEW_DAYS

    rows: list[tuple[str, str, str, str]] = [("", "old", "new", "delta")]
    for outcome, d in c.outcomes.items():
        if outcome not in ("send", "suppress") and not d.old and not d.new:
            continue
        rows.append((outcome, _num(d.old), _num(d.new), _signed(d.delta)))
        if outcome == "suppress":
            rows.extend((f"  {reason}", _num(r.old), _num(r.new), _signed(r.delta))
                        for reason, r in c.suppressed.items())
    rows.append(("conversions", _num(c.conversions.old), _num(c.conversions.new), _signed(c.conversions.delta)))
    rows.append(("revenue", _num(c.revenue.old), _num(c.revenue.new), _signed(c.revenue.delta)))
    if c.sends_per_variant:
        rows.append(("sends per variant", "", "", ""))
        rows.extend((f"  {variant}", _num(d.old), _num(d.new), _signed(d.delta))
                    for variant, d in c.sends_per_variant.items())
    days = c.sends_per_day if all_days or len(c.sends_per_day) <= FEW_DAYS else \
        [d for d in c.sends_per_day if d.delta]
    hidden = len(c.sends_per_day) - len(days)
    if c.sends_per_day:
        title = "sends per day (UTC)" + (f", {_plural(hidden, 'day')} the same not shown" if hidden else "")
        rows.append((title, "", "", ""))
        rows.extend((f"  {d.date}", _num(d.old), _num(d.new), _signed(d.delta)) for d in days)
    label = max(len(r[0]) for r in rows if r[1])  # section titles may overhang the label column
    widths = [max(len(r[i]) for r in rows) for i in (1, 2, 3)]
    out = []
    for r in rows:
        if not r[1] and r[0]:
            out.append(f"    {r[0]}")
            continue
        cells = "  ".join(v.rjust(w) for v, w in zip(r[1:], widths, strict=True))
        out.append(f"    {r[0].ljust(label)}  {cells}".rstrip())
    return out


def _block(c: CampaignDiff, report: Report, *, all_days: bool, paint: Callable[[str, str], str]) -> list[str]:
    import msgspec

    from pushlang.runtime.diff import BLOCK_OF

    head = f"{_MARKS[c.status]} {c.campaign}"
    if c.name != c.campaign:
        head += f" \"{c.name}\""
    if c.status == "changed":
        fields = ", ".join(f"{f} ({BLOCK_OF[f]})" if f in BLOCK_OF else f for f in c.changed_fields)
        head += f"  changed: {fields}"
        if c.changed_segments:
            head += f"; segments used changed: {', '.join(c.changed_segments)}"
    elif c.status == "affected":
        head += f"  {_why_affected(c)}"
    else:
        head += f"  {c.status}"
    if c.status == "changed" and c.decisions_identical:
        return [paint(c.status, head + "; decisions identical")]
    lines = [paint(c.status, head)]
    u = c.users
    lines.append(f"    users with a send: {u.old:,} -> {u.new:,} ({u.gained:+,} gained, {-u.lost:+,} lost)"
                 .replace("+0 gained", "0 gained").replace("+0 lost", "0 lost"))
    if u.gained_examples:
        lines.append(f"      gained: {_examples(u.gained_examples, u.gained)}")
    if u.lost_examples:
        lines.append(f"      lost:   {_examples(u.lost_examples, u.lost)}")
    lines.extend(_table(c, all_days))
    for w in c.winners:
        if w.old == w.new:
            lines.append(f"    winner at {w.at}: {w.new} (the same)")
        else:
            lines.append(f"    winner at {w.at}: {w.old or 'no winner record'} -> {w.new or 'no winner record'}")
    m = c.messages
    if m is not None:
        lines.append(f"    messages: {m.changed:,} of {_plural(m.compared, 'send')} made by both render differently"
                     + (f", e.g. {m.example.user} at {m.example.at}:" if m.example else ""))
        if m.example:
            width = max(len(name) for name in m.example.fields)
            for name, change in m.example.fields.items():
                old = msgspec.json.encode(change.old).decode()
                new = msgspec.json.encode(change.new).decode()
                lines.append(f"      {name.ljust(width)}  {old}")
                lines.append(f"      {' ' * width}  -> {new}")
    return lines


def render_report(report: Report, *, all_days: bool = False, color: bool = False) -> str:
    """The report as a reviewer reads it: a header, a block per difference, unchanged on one line."""
    import msgspec

    from pushlang.runtime.diff import STATUSES

    def paint(status: str, text: str) -> str:
        return f"\x1b[{_COLORS[status]}m{text}\x1b[0m" if color and status in _COLORS else text

    lines = [f"pushlang diff {report.old} -> {report.new}",
             f"replayed {_plural(report.records, 'record')} of {report.events}"
             + (f" ({report.rejected:,} rejected)" if report.rejected else "")
             + (f" until {report.until}" if report.until else "")]
    counts = ", ".join(f"{n:,} {status}" for status, n in report.counts.items() if n)
    lines.append(f"campaigns: {counts or 'none'}")
    if report.settings_changed:
        lines.append("config changed: " + ", ".join(
            f"{k} {msgspec.json.encode(v.old).decode()} -> {msgspec.json.encode(v.new).decode()}"
            for k, v in report.settings_changed.items()))
    if report.segments_changed:
        lines.append(f"segments changed: {', '.join(report.segments_changed)}")
    for status in STATUSES[:-1]:
        for c in report.campaigns:
            if c.status == status:
                lines.append("")
                lines.extend(_block(c, report, all_days=all_days, paint=paint))
    unchanged = [c.campaign for c in report.campaigns if c.status == "unchanged"]
    if unchanged:
        lines.append("")
        lines.append(f"unchanged (identical decisions): {', '.join(unchanged)}")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------------------


def add_parser(subparsers: common.Subparsers) -> argparse.ArgumentParser:
    """Register ``pushlang diff`` on the ``add_subparsers()`` object of the root parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diff", help="replay two versions of the campaigns over the same records and compare the decisions",
        description="Review a campaign change: compile OLD and NEW (each a .push file or a folder), replay "
                    "both over the same records with in-memory stores, and report per campaign id what "
                    "changed in the plan and in the decisions: campaigns added, removed and changed (with "
                    "the plan fields that differ), users who gain or lose a send, outcome counts and "
                    "suppress reasons side by side, conversions and revenue, sends per UTC day, and for a "
                    "campaign with variants the sends per variant and the winner records' variants. "
                    "Campaigns with identical decisions are listed on one line. Nothing is delivered.",
        epilog="Example: git worktree add /tmp/base main && pushlang diff /tmp/base/campaigns campaigns "
               "--events sample.jsonl.gz. Exit codes: 0 compared (differences are not an error), "
               "1 compile errors in either version, 2 usage error.",
    )
    p.add_argument("old", metavar="OLD", help="the current version: a .push file or a folder of them")
    p.add_argument("new", metavar="NEW", help="the proposed version: a .push file or a folder of them")
    p.add_argument("--events", required=True, metavar="FILE",
                   help="records as JSON Lines (.gz is read compressed), or - for stdin")
    p.add_argument("--until", metavar="DATETIME",
                   help="fire timers due up to this instant at the end (default: the last record's time)")
    p.add_argument("--config", metavar="FILE",
                   help="pushlang.toml for both versions (default: ./pushlang.toml, else one beside each path, "
                        "so a config change is part of the diff)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    p.add_argument("--users", type=common.non_negative, default=DEFAULT_USERS, metavar="N",
                   help=f"example user ids to list per campaign for gained and lost users (default {DEFAULT_USERS})")
    p.add_argument("--all-days", action="store_true",
                   help="text format: list every day, not only days that differ (all are listed when few)")
    p.add_argument("--jobs", type=common.positive, metavar="N",
                   help="processes for the two replays: 2 replays OLD in a worker process while NEW replays "
                        "in this one (about twice as fast on two cores, twice the peak memory); 1 replays "
                        "them one after the other; more than 2 is the same as 2. The report is the same "
                        "byte for byte whatever N (default: 2 when this process may use two CPUs or more, "
                        "else 1)")
    return p


def _compile(label: str, path: str, config: str | None) -> CompileResult:
    from pushlang.compiler import compile_paths
    from pushlang.diagnostics.render import render_summary, render_text, use_color
    from pushlang.loader import expand_paths

    result = compile_paths([path], config_path=config)
    if result.has_errors:
        text = render_text(result.diagnostics, result.sources, color=use_color(sys.stderr))
        print(text + "\n", file=sys.stderr)
        summary = render_summary(result.diagnostics, len(expand_paths([path])))
        print(f"{label} ({path}): {summary}", file=sys.stderr)
    return result


def run(args: argparse.Namespace) -> int:
    import msgspec

    from pushlang.diagnostics.render import render_json, use_color
    from pushlang.loader import expand_paths
    from pushlang.runtime.diff import WorkerFailed, compare, default_jobs, record_source
    from pushlang.runtime.instants import parse_datetime

    for path in (args.old, args.new):
        if not os.path.exists(path):
            raise common.UsageError(f"no such file or directory: {path}")
        if not expand_paths([path]):
            raise common.UsageError(f"no .push files in {path}")
    if args.events != "-" and not os.path.isfile(args.events):
        raise common.UsageError(f"no such file: {args.events}")
    old = _compile("old", args.old, args.config)
    new = _compile("new", args.new, args.config)
    if old.plan is None or new.plan is None:
        if args.format == "json":
            print('{"error": "compile errors", "diagnostics": {"old": ' + render_json(old.diagnostics)
                  + ', "new": ' + render_json(new.diagnostics) + "}}")
        return common.EXIT_FINDINGS
    tz = new.plan.settings.timezone
    until = parse_datetime(args.until, tz, "--until") if args.until is not None else None
    try:
        report = compare(old.plan, new.plan, record_source(args.events), until=until, users=args.users,
                         old_label=args.old, new_label=args.new, events_label=args.events,
                         jobs=default_jobs() if args.jobs is None else args.jobs)
    except WorkerFailed as exc:
        raise common.UsageError(str(exc)) from None
    if args.format == "json":
        print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    else:
        print(render_report(report, all_days=args.all_days, color=use_color(sys.stdout)))
    return common.EXIT_OK
