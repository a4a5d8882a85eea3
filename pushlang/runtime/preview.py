"""`pushlang preview`: the message one user would get from a campaign, or the step that stops it."""

from __future__ import annotations

import argparse

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.runtime.engine import Engine
from pushlang.runtime.evaluate import as_datetime
from pushlang.runtime.hosts import find_campaign, open_records, parse_until
from pushlang.runtime.instants import US, from_datetime, iso
from pushlang.runtime.records import Event, Record, read_records
from pushlang.runtime.store import MemoryStore
from pushlang.runtime.why import Step, Trace, render_trace, trace


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "preview", help="the message one user would get, or why not",
        description="Replay the records up to the moment that matters and show, step by step (SPEC §9.3), "
                    "what the campaign would do for one user: the rendered message, or the step that "
                    "stops it. For a live campaign the moment is the user's last triggering event "
                    "(its timer's due time for an inaction campaign); otherwise --at or the last record.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    p.add_argument("--campaign", required=True, metavar="ID")
    p.add_argument("--user", required=True, metavar="ID")
    p.add_argument("--events", required=True, metavar="FILE", help="records as JSON Lines (.gz too), or -")
    p.add_argument("--at", metavar="DATETIME", help="the decision instant (default: see above)")
    p.add_argument("--config", metavar="FILE", help="pushlang.toml to use")


def preview(compiled: plan.Plan, records: list[Record], campaign_id: str, user: str, at: int | None) -> Trace:
    campaign = find_campaign(compiled, campaign_id)
    engine = Engine(compiled, MemoryStore(), lambda out: None)
    trigger = campaign.trigger
    event: Event | None = None
    stop = len(records)
    if isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
        for i, r in enumerate(records):
            if isinstance(r, Event) and r.user == user and r.name == trigger.event and (at is None or r.ts <= at):
                event, stop = r, i
    elif at is not None:
        stop = next((i for i, r in enumerate(records) if r.ts >= at), len(records))
    for record in records[:stop]:
        engine.feed(record)
    when = at
    if event is not None and when is None:
        when = event.ts
        if isinstance(trigger, plan.InactionWithin):
            when = event.ts + trigger.within * US
        elif isinstance(trigger, plan.OnDate):
            c = engine.by_id[campaign_id]
            assert c.at is not None
            env = engine.env_for(c, engine.store.user(user, event.ts), event.ts, event)
            value = as_datetime(c.at(env), c.tz)
            when = from_datetime(value) if value is not None else event.ts
    if when is None:
        when = engine.clock
    engine.advance(when)
    result = trace(engine, campaign_id, user, when, event)
    if event is not None:
        c = engine.by_id[campaign_id]
        env = engine.env_for(c, engine.store.user(user, event.ts), event.ts, event)
        matched = c.trigger_where(env)
        result.steps.insert(0, Step("trigger", matched,
                                    f'"{event.name}" at {iso(event.ts)}' + ("" if matched else ": its `where` is false")))
        if not matched:
            result.outcome, result.reason, result.rendered = "no decision", None, None
        elif isinstance(trigger, plan.InactionWithin):
            cancel = _cancelled_by(engine, records[stop + 1:], campaign_id, event, when)
            if cancel is not None:
                result.steps.insert(1, Step("unless", False, f'"{cancel.name}" at {iso(cancel.ts)} cancelled it'))
                result.outcome, result.reason, result.rendered = "no decision", None, None
    elif isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
        result.outcome, result.reason, result.rendered = "no decision", None, None
        result.steps.insert(0, Step("trigger", False, f'the user never did "{trigger.event}"'))
    return result


def run(args: argparse.Namespace) -> int:
    result = compile_paths(args.paths, config_path=args.config)
    result.report()
    if result.plan is None:
        return 1
    at = parse_until(args.at, result.plan.settings.timezone)
    with open_records(args.events) as lines:
        records = list(read_records(lines))
    print(render_trace(preview(result.plan, records, args.campaign, args.user, at)))
    return 0


def _cancelled_by(engine: Engine, later: list[Record], campaign_id: str, trigger: Event, due: int) -> Event | None:
    """The first `unless` event in (trigger, due] that cancels an inaction campaign's timer."""
    c = engine.by_id[campaign_id]
    spec = c.plan.trigger
    assert isinstance(spec, plan.InactionWithin)
    state = engine.store.user(trigger.user, trigger.ts)
    for r in later:
        if r.ts > due:
            break
        if isinstance(r, Event) and r.user == trigger.user and r.name == spec.unless_event:
            env = engine.env_for(c, state, r.ts, r)
            env.trigger, env.trigger_name, env.trigger_ts = trigger.props, trigger.name, trigger.ts
            if c.unless_where(env):
                return r
    return None
