"""Why a user would (not) get a campaign's push now: the SPEC §9.3 pipeline, step by step, read-only.

`pushlang preview` prints it; the REPL's `:why` will too. Nothing here changes the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pushlang.runtime.engine import Engine, in_control_group, period_keys
from pushlang.runtime.instants import iso, local
from pushlang.runtime.records import Event
from pushlang.runtime.render import MAX_PLAINTEXT, MissingProperty, Rendered, payload_size, web_push_payload


@dataclass
class Step:
    name: str
    passed: bool
    detail: str


@dataclass
class Trace:
    campaign: str
    user: str
    at: int
    steps: list[Step] = field(default_factory=list)
    outcome: str = "send"  # send | control | delay | suppress | skip (scheduled, outside the audience)
    reason: str | None = None
    rendered: Rendered | None = None
    platforms: list[str] = field(default_factory=list)

    def stop(self, name: str, detail: str, outcome: str, reason: str | None) -> Trace:
        self.steps.append(Step(name, False, detail))
        self.outcome, self.reason = outcome, reason
        return self

    def ok(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, True, detail))


def trace(engine: Engine, campaign_id: str, user_id: str, at: int, event: Event | None = None) -> Trace:
    """The decision the engine would make for this user at ``at`` (with ``event`` as the trigger)."""
    c = engine.by_id[campaign_id]
    p = c.plan
    result = Trace(campaign_id, user_id, at)
    state = engine.store.get(user_id)
    if state is None:
        return result.stop("known user", "no record of this user has been seen", "suppress", "unreachable")
    env = engine.env_for(c, state, at, event)
    if event is None and p.is_live:
        result.ok("trigger", "no triggering event: conditions on event.* are false")
    if c.end is not None and at >= c.end:
        return result.stop("campaign_ended", f"{iso(at)} is at or after end {iso(c.end)}", "suppress",
                           "campaign_ended")
    result.ok("campaign window", f"{iso(at)} is before end" if c.end else "no end")
    if not c.audience(env):
        if p.is_live:
            return result.stop("not_in_audience", "`who` is false for this user", "suppress", "not_in_audience")
        return result.stop("audience", "`who` is false: a scheduled campaign skips the user, no record",
                           "skip", None)
    result.ok("audience", "`who` holds" if p.audience is not None else "no `who`: everybody")
    subs = [s for s in state.subscriptions.values() if s.active and s.platform in p.platforms]
    if not subs:
        known = ", ".join(f"{s.platform}{'' if s.active else ' (inactive)'}" for s in state.subscriptions.values())
        return result.stop("unreachable", f"no active subscription on {', '.join(p.platforms)}"
                           + (f"; the user has: {known}" if known else ""), "suppress", "unreachable")
    result.ok("reachable", ", ".join(sorted({s.platform for s in subs})))
    if p.control_percent and in_control_group(c.id, user_id, p.control_percent):
        return result.stop("control", f"in the {p.control_percent:g}% control group: held out", "control", None)
    if p.control_percent:
        result.ok("control group", f"not in the {p.control_percent:g}% control group")
    try:
        rendered = c.renderer.render(env)
    except MissingProperty as exc:
        return result.stop("missing_property", f"a personalisation has no value and no default {exc}".strip(),
                           "suppress", "missing_property")
    if rendered.url is None:
        subs = [s for s in subs if s.platform != "safari"]
        if not subs:
            return result.stop("safari_requires_url", "only Safari subscriptions and the message has no url",
                               "suppress", "safari_requires_url")
    size = payload_size(web_push_payload(rendered, p.message, campaign=c.id, send_id="x" * 24))
    if size > MAX_PLAINTEXT:
        return result.stop("payload_too_large", f"{size} bytes > {MAX_PLAINTEXT}", "suppress", "payload_too_large")
    result.rendered, result.platforms = rendered, sorted({s.platform for s in subs})
    result.ok("message", f"rendered, {size} bytes")
    zone = engine.user_zone(c, state)
    if p.dnd is not None:
        until = engine.dnd_until(p.dnd, at, zone)
        when = local(at, zone).strftime("%H:%M")
        if until is not None:
            if p.dnd.mode == "discard":
                return result.stop("dnd", f"{when} in {zone} is inside DND {p.dnd.start[:5]}–{p.dnd.end[:5]}",
                                   "suppress", "dnd")
            return result.stop("dnd", f"{when} in {zone} is inside DND: delayed until {iso(until)}", "delay", "dnd")
        result.ok("dnd", f"{when} in {zone} is outside DND {p.dnd.start[:5]}–{p.dnd.end[:5]}")
    periods = period_keys(at, zone)
    for limit in p.limits:
        sent = state.counters.get(f"{c.id}|{periods[limit.period]}", 0)
        if sent >= limit.count:
            return result.stop("campaign_limit", f"{sent} of {limit.count} per {limit.period} already sent",
                               "suppress", "campaign_limit")
        result.ok("campaign limit", f"{sent} of {limit.count} per {limit.period}")
    cap = engine.settings.global_per_user_per_day
    if cap is not None:
        sent = state.counters.get(f"*|{periods['day']}", 0)
        if p.ignore_global_limits:
            result.ok("global limit", f"ignored by this campaign ({sent} of {cap} today)")
        elif sent >= cap:
            return result.stop("global_limit", f"{sent} of {cap} pushes today already", "suppress", "global_limit")
        else:
            result.ok("global limit", f"{sent} of {cap} today")
    result.steps.append(Step("send", True, f"to {', '.join(result.platforms)}"))
    return result


def render_trace(t: Trace) -> str:
    lines = [f"campaign {t.campaign}, user {t.user}, at {iso(t.at)}"]
    for step in t.steps:
        lines.append(f"  {'✓' if step.passed else '✗'} {step.name}: {step.detail}")
    verdict = t.outcome + (f" ({t.reason})" if t.reason else "")
    lines.append(f"→ {verdict}")
    if t.rendered is not None:
        r = t.rendered
        lines.append("")
        lines.append(f"  title  {r.title}")
        lines.append(f"  body   {r.body}")
        for name, value in (("url", r.url), ("image", r.image), ("icon", r.icon)):
            if value:
                lines.append(f"  {name:<6} {value}")
        for label, url in r.buttons:
            lines.append(f"  button {label} -> {url}")
    return "\n".join(lines)
