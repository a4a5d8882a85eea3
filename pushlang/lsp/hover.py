"""Hover: what the thing under the cursor is, in Markdown — a diagnostic and its explanation, a segment's or
template's definition, a campaign's trigger, a keyword in one line, a duration in words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pushlang import ast
from pushlang.builtins import FILTERS, FUNCTIONS
from pushlang.diagnostics import Diagnostic, lookup
from pushlang.lsp.locate import Named, contains, line_state, named_at, word_at
from pushlang.lsp.workspace import Checked, Workspace
from pushlang.source import Span
from pushlang.syntax.literals import DURATION_UNITS, duration_seconds

# What each word of the language does, in one line (SPEC §2–§8, §12); a test checks that every keyword of
# `syntax.keywords.KEYWORDS` has one.
KEYWORD_DOCS: dict[str, str] = {
    "campaign": '`campaign ID ["Display name"] { … }`: one campaign; its id keys decisions, stats and the control group.',
    "segment": "`segment NAME { … }` defines an audience (its lines are ANDed); `segment NAME` in a condition holds for its users.",
    "template": "`template NAME { … }`: a reusable message; a campaign starts from it with `message use NAME`.",
    "import": '`import "std/segments"` or `import "./file.push"`: that file\'s segments and templates come into scope.',
    "who": "`who { … }`: the campaign's audience, one condition a line, all must hold (without it: every user).",
    "when": "`when { … }`: start, end, timezone, dnd, limit, throttle, priority, delivery time and cut-off.",
    "message": "`message { … }`, `message use NAME`, or a variant `message ID P% { … }`: what is sent.",
    "use": "`message use NAME`: the message starts from template NAME; the campaign's own fields win.",
    "true": "The boolean true.",
    "false": "The boolean false.",
    "null": "No value.",
    "labels": '`labels "a", "b"`: tags for the campaign, for stats and filtering.',
    "platforms": "`platforms chrome, firefox, edge, safari`: the browsers a send goes to (default: all).",
    "on": '`on "E" [where X]`: a live trigger; each matching E makes a decision (later with `unless … within` or `at`).',
    "where": "`where EXPR`: the condition an event must meet (after `on`, `unless`, `did`, `conversion`).",
    "unless": '`unless "F" [where X] within D`: inaction within time; the decision waits D, a matching F cancels it.',
    "within": "`within D`: how long `unless` waits, or how long after a send a `conversion` counts.",
    "at": '`at`: the time of `send once at`, `send … at HH:MM`, `on "E" at EXPR`; also `at least N times`.',
    "send": "`send once at …`, `send at …, …`, `send every …`: a scheduled campaign's schedule.",
    "once": "`send once at DATETIME`: a scheduled campaign that runs one time.",
    "every": "`send every day|WEEKDAY|month on day N|N days at TIME`: a recurring schedule (needs a `start`).",
    "day": "A day: `send every day`, `on day N`, `on last day`, `limit N per day` (the user's local calendar day).",
    "month": "`send every month on day N|last day at TIME`: monthly (months without day N are skipped).",
    "days": "`send every N days at TIME`: on `start`'s date and every N days after it.",
    "start": "`start DATETIME`: no decision before this instant (recurring schedules need one).",
    "end": "`end DATETIME`: no decision at or after this instant (`suppress`/`campaign_ended`).",
    "timezone": '`timezone "Area/City"`: the zone of the campaign\'s date-times, and of users without one.',
    "dnd": "`dnd HH:MM to HH:MM discard|delay`: quiet hours in the user's local time, [from, to).",
    "to": "`dnd FROM to TO`: where the quiet hours end (TO itself is outside them).",
    "discard": "`dnd … discard`: a decision in the quiet hours is suppressed (reason `dnd`).",
    "delay": "`dnd … delay`: a decision in the quiet hours waits until they end.",
    "ignore": "`ignore global limits`: the global per-user limits and min_gap do not block this campaign (its sends count).",
    "global": "`ignore global limits`: the global per-user limits and min_gap do not block this campaign.",
    "limits": "`ignore global limits`: the global per-user limits and min_gap do not block this campaign.",
    "limit": "`limit N per day|week|campaign|DURATION`: at most N sends of this campaign to one user in the period.",
    "per": "`per day|week|campaign|DURATION` after `limit`, `per minute|hour` after `throttle`: the period counted.",
    "week": "`limit N per week`: in the user's local ISO week.",
    "throttle": "`throttle N per minute|hour`: at most N sends of this campaign per UTC minute (hour); the rest wait.",
    "minute": "`throttle N per minute`: per UTC minute.",
    "hour": "`throttle N per hour`: per UTC hour.",
    "priority": "`priority N` (−100 to 100, default 0): the higher wins when decisions collide on a limit.",
    "deliver": "`deliver in user timezone` or `deliver at best time`: when each user gets a scheduled send.",
    "in": "`x in [..]`, `did … in last D`, `deliver in user timezone`.",
    "user": "`user.NAME` reads the user's profile; `deliver in user timezone` sends at each user's local time.",
    "best": '`deliver at best time [between HH:MM and HH:MM] [by "E", …]`: each user at their most active hour.',
    "between": "`between HH:MM and HH:MM`: the hours best time may choose from.",
    "cutoff": "`cutoff HH:MM`: a scheduled decision at or after this time of day is suppressed (`cutoff`).",
    "title": "`title TEXT`: the notification's title (required).",
    "body": "`body TEXT`: the notification's text (required).",
    "url": "`url TEXT`: the page opened on click (Safari needs one).",
    "image": "`image TEXT`: a large image's URL (dropped on Safari).",
    "icon": "`icon TEXT` or `icon default NAME`: the small icon (dropped on Safari).",
    "default": "`icon default NAME`: a built-in icon; `| default: v`: the value of a missing property.",
    "ttl": "`ttl D`: how long the push service keeps the message (at most 28d).",
    "require": "`require interaction`: the notification stays until the user acts on it.",
    "interaction": "`require interaction`: the notification stays until the user acts on it.",
    "button": "`button TEXT -> URL`: a call to action (Chrome shows at most 2).",
    "tag": '`tag "x"`: the collapse key; a newer push with the same tag replaces the older one.',
    "urgency": "`urgency very-low|low|normal|high`: the Web Push urgency.",
    "lang": '`lang "TAG" { … }`: the fields for users whose `language` matches TAG (RFC 4647 lookup).',
    "control": "`control group P%`: P% of users get no push, so that lift can be measured.",
    "group": "`control group P%`: P% of users get no push, so that lift can be measured.",
    "conversion": '`conversion "E" [where X] within D [revenue EXPR]`: the goal, the first E within D of a send.',
    "revenue": "`revenue EXPR`: what a conversion is worth (e.g. `event.amount`).",
    "test": "`test P% then winner by clicks|conversions after D`: the variants go to P% first, the best to the rest.",
    "then": "`if C then A else B`: A when C is true; `test … then winner`.",
    "winner": "`then winner by …`: the variant with the best rate goes to everyone else.",
    "by": '`by clicks|conversions`: what picks the winner; `by "E", …`: the events best time scores.',
    "clicks": "`by clicks`: the winner has the highest click rate.",
    "conversions": "`by conversions`: the winner has the highest conversion rate (needs a `conversion`).",
    "after": "`after D`: how long the test runs before the winner is chosen.",
    "did": '`did [not] "E" [where X] [at least|at most|exactly N times] in last D`: the user\'s past events.',
    "not": '`not X`: negation; also `did not "E"`, `not in`, `not segment NAME`.',
    "least": "`at least N times`: N or more matching events.",
    "most": "`at most N times`: N or fewer matching events.",
    "exactly": "`exactly N times`: exactly N matching events.",
    "times": "`N times`: how many matching events `did` counts.",
    "time": "`1 time`: one matching event; `deliver at best time`: each user at their most active hour.",
    "last": "`in last D`: the window (t − D, t] before the decision; `on last day`: the month's last day.",
    "and": "`a and b`: both hold.",
    "or": "`a or b`: at least one holds.",
    "exists": "`exists user.x`: the property has a value.",
    "contains": "`s contains x`: a string contains a substring, or a list an item.",
    "starts": "`s starts with x`: a string begins with x.",
    "ends": "`s ends with x`: a string ends with x.",
    "with": "`starts with`, `ends with`.",
    "if": "`if C then A else B`: A when C is true, else B (false, missing or not a boolean).",
    "else": "`if C then A else B`: B when C is not true.",
}

_UNIT_WORDS = {"w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second"}
_DURATION = re.compile(r"\d+[smhdw]")


def duration_words(seconds: int) -> str:
    """A duration in words, largest units first: 129600 → ``1 day 12 hours``."""
    parts = []
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda u: -u[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {_UNIT_WORDS[unit]}{'s' if count != 1 else ''}")
    return " ".join(parts) or "0 seconds"


@dataclass(frozen=True)
class Hover:
    markdown: str
    span: Span | None = None


def hover(workspace: Workspace, checked: Checked, module: ast.Module | None, text: str, line: int,
          column: int) -> Hover | None:
    """What is under (``line``, ``column``) of an open file ``text`` (``module``: its syntax tree, or the
    last one that parsed)."""
    parts: list[str] = []
    span: Span | None = None
    for d in checked.diagnostics:
        if d.path == checked.shown and contains(d.span, line, column):
            parts.append(explain_markdown(d))
    named = named_at(module, line, column) if module is not None else None
    if module is not None and named is not None:
        about = _about(workspace, checked, module, named)
        if about:
            parts.append(about)
            span = named.span
    else:
        word = _word(text, line, column)
        if word is not None:
            start, found = word
            if _DURATION.fullmatch(found):
                parts.append(f"`{found}`: {duration_words(duration_seconds(found))}")
            elif found in KEYWORD_DOCS and text.split("\n")[line - 1][start - 1:start] != ".":
                parts.append(KEYWORD_DOCS[found])
            else:
                found = ""
            if found:
                span = Span(line, start + 1, line, start + 1 + len(found))
    return Hover("\n\n---\n\n".join(parts), span) if parts else None


def _word(text: str, line: int, column: int) -> tuple[int, str] | None:
    """The word under the cursor, in code (not in a string or a comment)."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    found = word_at(lines[line - 1], column)
    if found is None or line_state(lines[line - 1][:found[0]]).where != "code":
        return None
    return found


def explain_markdown(d: Diagnostic) -> str:
    """A diagnostic with what `pushlang explain CODE` says about its code."""
    lines = [f"**{d.code}** `{d.name}` ({d.severity.value}): {d.message}"]
    if d.help:
        lines.append(f"help: {d.help}")
    lines += [f"note: {n}" for n in d.notes]
    code = lookup(d.code)
    if code is not None:
        lines += [code.summary, f"*Why:* {code.why}", f"*Example:*\n```push\n{code.example}\n```",
                  f"*Fix:* {code.fix}"]
    return "\n\n".join(lines)


def _about(workspace: Workspace, checked: Checked, module: ast.Module, named: Named) -> str | None:
    if named.kind in ("segment", "template"):
        where = checked.definition(named.kind, named.name)
        if where is None:
            return f"{named.kind} `{named.name}`: not defined in this file or what it imports"
        return _definition_text(workspace, checked, f"{named.kind} `{named.name}`", where)
    if named.kind == "campaign":
        campaign = next((i for i in module.items if isinstance(i, ast.CampaignDef) and i.id == named.name), None)
        return _campaign(campaign) if campaign is not None else None
    if named.kind == "import":
        item = next((i for i in module.items if isinstance(i, ast.Import) and i.span == named.span), None)
        target = workspace.import_target(checked.path, item) if item is not None else None
        return _import(workspace, target) if target is not None else None
    if named.kind == "function" and named.name in FUNCTIONS:
        return f"`{named.name}()`: {FUNCTIONS[named.name][2]}"
    if named.kind == "filter" and named.name in FILTERS:
        return f"`| {named.name}`: {FILTERS[named.name][2]}"
    if named.kind == "property" and named.name.startswith("user.") and checked.schema is not None:
        name = named.name.split(".")[1]
        spec = checked.schema.user_properties.get(name)
        if spec is not None:
            return f"`{named.name}`: {spec.type}, {'required' if spec.required else 'may be missing'} (schema)"
    return None


def _definition_text(workspace: Workspace, checked: Checked, title: str, where: tuple[Path, Span]) -> str:
    """The definition at ``where`` as written, with the comment lines just above it."""
    path, name_span = where
    source = checked.source(path)
    text = source.text if source is not None else workspace.text(path) or ""
    module = workspace.module(path)
    node = next((i for i in module.items if getattr(i, "name_span", None) == name_span), None) if module else None
    lines = text.split("\n")
    first, last = (node.span.line, node.span.end_line) if node is not None else (name_span.line, name_span.line)
    while first > 1 and lines[first - 2].lstrip().startswith("#"):  # the comment that says what it is
        first -= 1
    body = "\n".join(lines[first - 1:last])
    shown = source.path if source is not None else workspace.shown(path)
    return f"{title}, {shown}:{name_span.line}\n```push\n{body}\n```"


# The seed names of the triggers and schedules (SPEC §3).
_SCHEDULES = {"once": "one time", "dates": "multiple dates", "daily": "recurring, every day",
              "weekly": "recurring, weekly", "monthly": "recurring, monthly", "every": "recurring, every N days"}


def _campaign(campaign: ast.CampaignDef) -> str:
    triggers = [i for i in campaign.items if isinstance(i, (ast.OnTrigger, ast.Schedule))]
    title = f"campaign `{campaign.id}`" + (f" “{campaign.display_name}”" if campaign.display_name else "")
    if len(triggers) != 1:
        return f"{title}: {'no trigger or schedule' if not triggers else 'more than one trigger or schedule'}"
    t = triggers[0]
    if isinstance(t, ast.OnTrigger):
        kind = "live, " + ("inaction within time" if t.unless is not None else
                           "on a date/time" if t.at is not None else "single action")
        what = f'each "{t.event}" event'
        if t.unless is not None:
            what += f' arms a timer of {duration_words(t.unless.within)}, cancelled by a "{t.unless.event}"'
        elif t.at is not None:
            what += " schedules a decision at its `at` time"
        else:
            what += " makes a decision at once"
    else:
        kind = "scheduled, " + ("recurring, on the last day of the month" if t.last_day else _SCHEDULES[t.kind])
        what = "every known user, at each occurrence"
    return f"{title}: {kind}; {what}.\n\nReach: `pushlang reach PATH --campaign {campaign.id} --events FILE`."


def _import(workspace: Workspace, target: Path) -> str:
    module = workspace.module(target)
    segments = [i.name for i in module.items if isinstance(i, ast.SegmentDef)] if module else []
    templates = [i.name for i in module.items if isinstance(i, ast.TemplateDef)] if module else []
    lines = [f"`{workspace.shown(target)}`"]
    if segments:
        lines.append("segments: " + ", ".join(f"`{s}`" for s in segments))
    if templates:
        lines.append("templates: " + ", ".join(f"`{t}`" for t in templates))
    return "\n\n".join(lines)
