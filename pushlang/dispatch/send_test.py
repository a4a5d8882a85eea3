"""`pushlang send-test`: render a campaign for test users and really send it to their browsers.

Like the seed's "send a test": the audience, DND and limits are not applied — the point is to see
the notification on a real device before the campaign goes live. The users are the ones named with
--to, else every profile with `test: true`.
"""

from __future__ import annotations

import argparse
import time

from pushlang import aio, plan
from pushlang.compiler import compile_paths
from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher
from pushlang.runtime.engine import Engine, SendJob, send_id_for
from pushlang.runtime.hosts import find_campaign, open_records, open_store_url
from pushlang.runtime.instants import US
from pushlang.runtime.records import Event, read_records
from pushlang.runtime.render import MissingProperty
from pushlang.runtime.store import MemoryStore


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "send-test", help="really send a campaign's message to test users",
        description="Render a campaign's message for test users (--to USER, else every profile with "
                    "`test: true`) and send it for real to each of their active subscriptions, with the "
                    "credentials of pushlang.toml. Audience, DND and limits are not applied. For a live "
                    "campaign, event.* comes from the user's last triggering event.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    p.add_argument("--campaign", required=True, metavar="ID")
    p.add_argument("--to", action="append", metavar="USER", help="a user id (repeatable)")
    p.add_argument("--events", metavar="FILE", help="records (JSON Lines, .gz, or -) that know the users")
    p.add_argument("--store", metavar="URL", help="or a store that knows them (sqlite:///file.db)")
    p.add_argument("--config", metavar="FILE", help="pushlang.toml with [vapid] (and [apns]) credentials")


def test_jobs(compiled: plan.Plan, store: MemoryStore, campaign_id: str, users: list[str] | None,
              last_events: dict[str, Event], now: int) -> tuple[list[SendJob], list[str]]:
    """The jobs to send, and a line for each user who cannot get one."""
    engine = Engine(compiled, store, lambda out: None)
    c = engine.by_id[campaign_id]
    p = c.plan
    if users is None:
        users = [u for u in store.user_ids() if (s := store.get(u)) is not None and s.profile.get("test") is True]
    jobs: list[SendJob] = []
    problems: list[str] = []
    for user in users:
        state = store.get(user)
        if state is None:
            problems.append(f"{user}: unknown user")
            continue
        try:
            rendered = c.renderer.render(engine.env_for(c, state, now, last_events.get(user)))
        except MissingProperty:
            problems.append(f"{user}: a personalisation has no value and no default (missing_property)")
            continue
        targets = tuple(s for s in state.subscriptions.values()
                        if s.active and s.platform in p.platforms and (rendered.url or s.platform != "safari"))
        if not targets:
            problems.append(f"{user}: no active subscription on {', '.join(p.platforms)}")
            continue
        jobs.append(SendJob(now, p, user, send_id_for(p.id, user, now), rendered, targets))
    return jobs, problems


def run(args: argparse.Namespace) -> int:
    result = compile_paths(args.paths, config_path=args.config)
    result.report()
    if result.plan is None:
        return 1
    compiled = result.plan
    campaign = find_campaign(compiled, args.campaign)
    if not args.events and not args.store:
        raise ValueError("send-test needs --events or --store to know the users and their subscriptions")
    settings = DeliverySettings.from_config(result.config)
    if settings.problems():
        raise ValueError("send-test needs in pushlang.toml: " + "; ".join(settings.problems()))
    store = open_store_url(args.store)
    trigger_event = getattr(campaign.trigger, "event", None)
    last_events: dict[str, Event] = {}
    if args.events:
        engine = Engine(compiled, store, lambda out: None)
        with open_records(args.events) as lines:
            for record in read_records(lines):
                engine.feed(record)
                if isinstance(record, Event) and record.name == trigger_event:
                    last_events[record.user] = record
    jobs, problems = test_jobs(compiled, store, campaign.id, args.to, last_events, int(time.time()) * US)
    for line in problems:
        print(f"✗ {line}")
    if not jobs:
        print("nothing was sent" + ("" if args.to else ": name users with --to, or mark profiles `test: true`"))
        return 1

    async def deliver() -> list[tuple[SendJob, object, object]]:
        async with Dispatcher(settings, compiled.settings.default_ttl) as dispatcher:
            return list(await dispatcher.deliver(jobs))

    failed = bool(problems)
    for job, sub, outcome in aio.run(deliver()):
        ok = getattr(outcome, "delivered", False)
        failed = failed or not ok
        status, reason, attempts = (getattr(outcome, k) for k in ("status", "reason", "attempts"))
        print(f"{'✓' if ok else '✗'} {job.user} {getattr(sub, 'platform', '?')}: "
              f"{'delivered' if ok else 'failed'} (status {status}, {attempts} attempt(s))"
              + (f": {reason}" if reason else "") + f' — "{job.rendered.title}"')
    store.close()
    return 1 if failed else 0
