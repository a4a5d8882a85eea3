"""``pushlang diff OLD NEW --events FILE``: what a campaign change does, for review in a pull request.

Both versions are compiled (errors are printed as ``lint`` prints them; exit 1), then replayed over
the same records, each with its own in-memory store, and compared per campaign id:

- ``added`` / ``removed``: the id is in only one version;
- ``changed``: the compiled plan ``Campaign`` differs (its ``file`` aside); the report names the
  top-level plan fields that differ (``audience``, ``limits``, ``message``, ``trigger`` ... as
  ``pushlang compile`` prints them);
- ``affected``: the plan is the same but the decisions differ (a segment it uses changed, the
  config changed, or another campaign's sends now count toward the global limit);
- ``unchanged``: same plan, identical decisions (every output record equal, in order).

For each campaign that is not unchanged: users gained and lost (users with at least one ``send``
in one version and none in the other), outcome counts and suppress reasons side by side,
conversions and revenue, sends per UTC day, and, when the message changed, how many sends render
differently with one example. ``--format json`` prints the same data. Differences are not an
error: the exit status is 0 (1 for compile errors, 2 for usage errors).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from pushlang import plan
from pushlang.compiler import CompileResult, compile_paths
from pushlang.diagnostics.render import render_json, render_summary, render_text
from pushlang.loader import expand_paths
from pushlang.runtime.engine import Output
from pushlang.runtime.hosts import open_records, parse_until
from pushlang.runtime.instants import iso
from pushlang.runtime.replay import CampaignSummary, replay
from pushlang.runtime.store import MemoryStore

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
DEFAULT_USERS = 5
FEW_DAYS = 7  # up to this many days, the text report shows every day; beyond, only days that differ
MAIN_OUTCOMES = ("send", "control", "delay", "suppress")
STATUSES = ("added", "removed", "changed", "affected", "unchanged")

# Plan fields that come from a differently named block of the language, for the text report.
_BLOCK_OF = {
    "audience": "who", "timezone": "when", "start": "when", "end": "when", "dnd": "when",
    "ignore_global_limits": "when", "limits": "when", "deliver_in_user_timezone": "when",
    "cutoff": "when", "trigger": "on/send", "control_percent": "control group",
}
_MESSAGE_FIELDS = ("title", "body", "url", "platforms")


# ---- the report --------------------------------------------------------------------------------


class Delta(msgspec.Struct, frozen=True):
    old: int | float
    new: int | float
    delta: int | float


class Day(msgspec.Struct, frozen=True):
    date: str  # UTC calendar date of the decisions' `at`
    old: int
    new: int
    delta: int


class Users(msgspec.Struct, frozen=True):
    """Users with at least one ``send`` in each version, and who is only in one of them."""

    old: int
    new: int
    gained: int
    lost: int
    gained_examples: list[str]
    lost_examples: list[str]


class FieldChange(msgspec.Struct, frozen=True):
    old: Any
    new: Any


class MessageExample(msgspec.Struct, frozen=True):
    user: str
    at: str
    send_id: str
    fields: dict[str, FieldChange]


class Messages(msgspec.Struct, frozen=True):
    """Sends made in both versions (same ``send_id``) whose rendered message differs."""

    compared: int
    changed: int
    example: MessageExample | None = None


class CampaignDiff(msgspec.Struct, frozen=True):
    campaign: str
    status: str  # added | removed | changed | affected | unchanged
    name: str
    changed_fields: list[str]
    changed_segments: list[str]  # segments it uses (directly or through others) that changed
    affected_by: list[str]  # status affected: "segment NAME", "config" and/or "global limit"
    decisions_identical: bool
    users: Users
    outcomes: dict[str, Delta]
    suppressed: dict[str, Delta]
    conversions: Delta
    revenue: Delta
    sends_per_day: list[Day]
    messages: Messages | None = None


class Report(msgspec.Struct, frozen=True):
    old: str
    new: str
    events: str
    until: str | None
    records: int
    rejected: int
    settings_changed: dict[str, FieldChange]
    segments_changed: list[str]
    counts: dict[str, int]  # campaigns per status
    campaigns: list[CampaignDiff]


# ---- one replay ----------------------------------------------------------------------------------


@dataclass
class _Side:
    """What one version did to one campaign, beyond replay's summary."""

    sends_by_day: Counter[str] = field(default_factory=Counter)
    senders: set[str] = field(default_factory=set)
    digest: Any = field(default_factory=hashlib.sha256)
    messages: dict[str, tuple[Any, ...]] | None = None  # send_id -> rendered fields (tracked only)
    first_send: dict[str, tuple[str, str]] = field(default_factory=dict)  # send_id -> (user, at)


@dataclass
class _Run:
    sides: dict[str, _Side]
    summaries: dict[str, CampaignSummary]
    records: int
    rejected: int


def _replay(compiled: plan.Plan, lines: Iterable[bytes], until: int | None, track_messages: set[str]) -> _Run:
    sides: dict[str, _Side] = {}
    encode = msgspec.json.Encoder().encode

    def emit(out: Output) -> None:
        side = sides.get(out.campaign)
        if side is None:
            side = sides[out.campaign] = _Side(messages={} if out.campaign in track_messages else None)
        side.digest.update(encode(out))
        side.digest.update(b"\n")
        if out.outcome == "send":
            side.sends_by_day[out.at[:10]] += 1
            side.senders.add(out.user)
            if side.messages is not None and out.send_id is not None and out.send_id not in side.messages:
                side.messages[out.send_id] = (out.title, out.body, out.url, out.platforms)
                side.first_send[out.send_id] = (out.user, out.at)

    summary = replay(compiled, lines, MemoryStore(), emit, until=until)
    return _Run(sides, summary.campaigns, summary.records, len(summary.rejects))


RecordSource = Callable[[], contextlib.AbstractContextManager[Iterable[bytes]]]


def record_source(path: str) -> RecordSource:
    """Each call gives the records afresh: a file is read once per version, stdin is kept in memory."""
    if path == "-":
        data = sys.stdin.buffer.readlines()

        @contextlib.contextmanager
        def again() -> Iterator[Iterable[bytes]]:
            yield data

        return again
    return lambda: open_records(path)


# ---- comparing plans -------------------------------------------------------------------------------


def _builtins(campaign: plan.Campaign) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(campaign)
    data.pop("file", None)
    return data


def changed_fields(old: plan.Campaign, new: plan.Campaign) -> list[str]:
    """The top-level plan fields that differ (``file`` aside), in the plan's field order."""
    a, b = _builtins(old), _builtins(new)
    return [f for f in plan.Campaign.__struct_fields__ if f != "file" and a.get(f) != b.get(f)]


def _segment_refs(node: Any, into: set[str]) -> set[str]:
    if isinstance(node, dict):
        if node.get("node") == "InSegment":
            into.add(str(node["segment"]))
        for value in node.values():
            _segment_refs(value, into)
    elif isinstance(node, list):
        for value in node:
            _segment_refs(value, into)
    return into


def _segments_used(campaign: plan.Campaign, compiled: plan.Plan) -> set[str]:
    """The segments a campaign uses, directly or through other segments."""
    found: set[str] = set()
    todo = _segment_refs(msgspec.to_builtins(campaign), set())
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        definition = compiled.segments.get(name)
        if definition is not None:
            todo |= _segment_refs(msgspec.to_builtins(definition), set()) - found
    return found


def _changed_segments(old: plan.Plan, new: plan.Plan) -> set[str]:
    a, b = msgspec.to_builtins(old.segments), msgspec.to_builtins(new.segments)
    return {name for name in set(a) | set(b) if a.get(name) != b.get(name)}


def _settings_changed(old: plan.Plan, new: plan.Plan) -> dict[str, FieldChange]:
    a, b = msgspec.to_builtins(old.settings), msgspec.to_builtins(new.settings)
    return {k: FieldChange(a.get(k), b.get(k)) for k in plan.Settings.__struct_fields__ if a.get(k) != b.get(k)}


# ---- the comparison ----------------------------------------------------------------------------------


def _delta(old: int | float, new: int | float) -> Delta:
    if isinstance(old, float) or isinstance(new, float):
        return Delta(round(old, 2), round(new, 2), round(new - old, 2))
    return Delta(old, new, new - old)


def _counts(old: Counter[str], new: Counter[str], order: Iterable[str] = ()) -> dict[str, Delta]:
    first = list(order)
    rest = sorted((set(old) | set(new)) - set(first), key=lambda k: (-max(old[k], new[k]), k))
    return {k: _delta(old[k], new[k]) for k in [*first, *rest]}


def _messages(old: _Side, new: _Side) -> Messages:
    assert old.messages is not None and new.messages is not None
    compared = changed = 0
    example: MessageExample | None = None
    for send_id, rendered in new.messages.items():
        before = old.messages.get(send_id)
        if before is None:
            continue
        compared += 1
        if before == rendered:
            continue
        changed += 1
        if example is None:
            user, at = new.first_send[send_id]
            fields = {name: FieldChange(a, b) for name, a, b in zip(_MESSAGE_FIELDS, before, rendered, strict=True)
                      if a != b}
            example = MessageExample(user, at, send_id, fields)
    return Messages(compared, changed, example)


def compare(old_plan: plan.Plan, new_plan: plan.Plan, records: RecordSource, *, until: int | None = None,
            users: int = DEFAULT_USERS, old_label: str = "old", new_label: str = "new",
            events_label: str = "") -> Report:
    """Replay both plans over the same records and compare them campaign by campaign.

    ``records()`` is called once per version and must give the same lines each time (see
    ``record_source``); ``users`` is how many example ids to keep for gained and lost users.
    """
    old_by_id = {c.id: c for c in old_plan.campaigns}
    new_by_id = {c.id: c for c in new_plan.campaigns}
    fields = {cid: changed_fields(old_by_id[cid], new_by_id[cid]) for cid in old_by_id.keys() & new_by_id.keys()}
    track = {cid for cid, names in fields.items() if "message" in names}
    with records() as lines:
        before = _replay(old_plan, lines, until, track)
    with records() as lines:
        after = _replay(new_plan, lines, until, track)
    segments = _changed_segments(old_plan, new_plan)
    settings = _settings_changed(old_plan, new_plan)

    campaigns: list[CampaignDiff] = []
    for cid in sorted(old_by_id.keys() | new_by_id.keys()):
        old_c, new_c = old_by_id.get(cid), new_by_id.get(cid)
        a, b = before.sides.get(cid, _Side()), after.sides.get(cid, _Side())
        sa = before.summaries.get(cid, CampaignSummary())
        sb = after.summaries.get(cid, CampaignSummary())
        identical = a.digest.digest() == b.digest.digest()
        names = fields.get(cid, [])
        used = sorted(_segments_used(new_c, new_plan) & segments) if old_c and new_c else []
        if old_c is None:
            status = "added"
        elif new_c is None:
            status = "removed"
        elif names:
            status = "changed"
        else:
            status = "unchanged" if identical else "affected"
        gained, lost = sorted(b.senders - a.senders), sorted(a.senders - b.senders)
        days = sorted(a.sends_by_day.keys() | b.sends_by_day.keys())
        affected_by: list[str] = []
        if status == "affected":
            affected_by = [f"segment {name}" for name in used]
            if settings:
                affected_by.append("config")
            if not affected_by and new_c is not None and not new_c.ignore_global_limits and (
                    old_plan.settings.global_per_user_per_day or new_plan.settings.global_per_user_per_day):
                affected_by.append("global limit")
        shown = new_c or old_c
        assert shown is not None
        campaigns.append(CampaignDiff(
            campaign=cid,
            status=status,
            name=shown.name,
            changed_fields=names,
            changed_segments=used,
            affected_by=affected_by,
            decisions_identical=identical,
            users=Users(len(a.senders), len(b.senders), len(gained), len(lost), gained[:users], lost[:users]),
            outcomes=_counts(sa.outcomes, sb.outcomes, MAIN_OUTCOMES),
            suppressed=_counts(sa.suppressed, sb.suppressed),
            conversions=_delta(sa.conversions, sb.conversions),
            revenue=_delta(float(sa.revenue), float(sb.revenue)),
            sends_per_day=[Day(d, a.sends_by_day[d], b.sends_by_day[d], b.sends_by_day[d] - a.sends_by_day[d])
                           for d in days],
            messages=_messages(a, b) if cid in track else None,
        ))
    counts = Counter(c.status for c in campaigns)
    return Report(
        old=old_label, new=new_label, events=events_label,
        until=None if until is None else iso(until),
        records=after.records, rejected=after.rejected,
        settings_changed=settings,
        segments_changed=sorted(segments),
        counts={s: counts[s] for s in STATUSES},
        campaigns=campaigns,
    )


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
    head = f"{_MARKS[c.status]} {c.campaign}"
    if c.name != c.campaign:
        head += f" \"{c.name}\""
    if c.status == "changed":
        fields = ", ".join(f"{f} ({_BLOCK_OF[f]})" if f in _BLOCK_OF else f for f in c.changed_fields)
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``pushlang diff`` on the ``add_subparsers()`` object of the root parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "diff", help="replay two versions of the campaigns over the same records and compare the decisions",
        description="Review a campaign change: compile OLD and NEW (each a .push file or a folder), replay "
                    "both over the same records with in-memory stores, and report per campaign id what "
                    "changed in the plan and in the decisions: campaigns added, removed and changed (with "
                    "the plan fields that differ), users who gain or lose a send, outcome counts and "
                    "suppress reasons side by side, conversions and revenue, and sends per UTC day. "
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
    p.add_argument("--users", type=_non_negative, default=DEFAULT_USERS, metavar="N",
                   help=f"example user ids to list per campaign for gained and lost users (default {DEFAULT_USERS})")
    p.add_argument("--all-days", action="store_true",
                   help="text format: list every day, not only days that differ (all are listed when few)")
    return p


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _usage(message: str) -> int:
    print(f"pushlang: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _color(stream: object) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _compile(label: str, path: str, config: str | None) -> CompileResult:
    result = compile_paths([path], config_path=config)
    if result.has_errors:
        text = render_text(result.diagnostics, result.sources, color=_color(sys.stderr))
        print(text + "\n", file=sys.stderr)
        summary = render_summary(result.diagnostics, len(expand_paths([path])))
        print(f"{label} ({path}): {summary}", file=sys.stderr)
    return result


def run(args: argparse.Namespace) -> int:
    for path in (args.old, args.new):
        if not os.path.exists(path):
            return _usage(f"no such file or directory: {path}")
        if not expand_paths([path]):
            return _usage(f"no .push files in {path}")
    if args.events != "-" and not os.path.isfile(args.events):
        return _usage(f"no such file: {args.events}")
    old = _compile("old", args.old, args.config)
    new = _compile("new", args.new, args.config)
    if old.plan is None or new.plan is None:
        if args.format == "json":
            print('{"error": "compile errors", "diagnostics": {"old": ' + render_json(old.diagnostics)
                  + ', "new": ' + render_json(new.diagnostics) + "}}")
        return EXIT_FINDINGS
    try:
        until = parse_until(args.until, new.plan.settings.timezone)
        report = compare(old.plan, new.plan, record_source(args.events), until=until, users=args.users,
                         old_label=args.old, new_label=args.new, events_label=args.events)
    except ValueError as exc:
        return _usage(str(exc))
    if args.format == "json":
        print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    else:
        print(render_report(report, all_days=args.all_days, color=_color(sys.stdout)))
    return EXIT_OK
