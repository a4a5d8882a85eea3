"""`pushlang send-test`: render a campaign for test users and really send it to their browsers."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from pushlang.commands import common

if TYPE_CHECKING:
    from pushlang.dispatch.base import Delivery
    from pushlang.runtime.engine import SendJob
    from pushlang.runtime.store import Subscription


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "send-test", help="really send a campaign's message to test users",
        description="Render a campaign's message for test users (--to USER, else every profile with "
                    "`test: true`) and send it for real to each of their active subscriptions, with the "
                    "credentials of pushlang.toml. Audience, DND and limits are not applied. For a live "
                    "campaign, event.* comes from the user's last triggering event. A campaign with "
                    "variants sends each of its variants, the title of each prefixed with its id ([a] …) "
                    "and without the message's tag (so none replaces another on the device); --variant ID "
                    "sends that one variant exactly as its users would get it.",
    )
    common.add_paths(p)
    p.add_argument("--campaign", required=True, metavar="ID")
    p.add_argument("--to", action="append", metavar="USER", help="a user id (repeatable)")
    p.add_argument("--variant", metavar="ID",
                   help="a campaign with variants: send only this variant (default: each variant, labelled)")
    p.add_argument("--lang", metavar="TAG",
                   help="render the message in this language, as a user whose profile `language` is TAG")
    p.add_argument("--events", metavar="FILE", help="records (JSON Lines, .gz, or -) that know the users")
    p.add_argument("--store", metavar="URL", help="or a store that knows them (sqlite:///file.db)")
    common.add_config(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang import aio
    from pushlang.dispatch.dispatcher import DeliverySettings, Dispatcher
    from pushlang.dispatch.send_test import UnknownVariant, check_lang, test_jobs, variants_to_send
    from pushlang.runtime.engine import Engine
    from pushlang.runtime.instants import US
    from pushlang.runtime.records import Event, open_records, read_records
    from pushlang.runtime.sqlite_store import open_store

    compiled, config = common.compile_checked(args.paths, config_path=args.config)
    campaign = common.find_campaign(compiled, args.campaign)
    try:
        variants_to_send(campaign, args.variant)
        check_lang(campaign, args.lang)
    except UnknownVariant as exc:
        raise common.UsageError(str(exc)) from None
    if not args.events and not args.store:
        raise common.UsageError("send-test needs --events or --store to know the users and their subscriptions")
    settings = DeliverySettings.from_config(config)
    if settings.problems():
        raise common.UsageError("send-test needs in pushlang.toml: " + "; ".join(settings.problems()))
    store = open_store(args.store)
    trigger_event = getattr(campaign.trigger, "event", None)
    last_events: dict[str, Event] = {}
    try:
        if args.events:
            engine = Engine(compiled, store, lambda out: None)
            with open_records(args.events) as lines:
                for record in read_records(lines):
                    engine.feed(record)
                    if isinstance(record, Event) and record.name == trigger_event:
                        last_events[record.user] = record
        jobs, problems = test_jobs(compiled, store, campaign.id, args.to, last_events, int(time.time()) * US,
                                   args.variant, args.lang)
    finally:
        store.close()
    for line in problems:
        print(f"✗ {line}")
    if not jobs:
        print("nothing was sent" + ("" if args.to else ": name users with --to, or mark profiles `test: true`"))
        return common.EXIT_FINDINGS

    async def deliver() -> list[tuple[SendJob, Subscription, Delivery]]:
        async with Dispatcher(settings, compiled.settings.default_ttl) as dispatcher:
            return await dispatcher.deliver(jobs)

    failed = bool(problems)
    for job, sub, outcome in aio.run(deliver()):
        failed = failed or not outcome.delivered
        variant = f" variant {job.send.variant}" if job.send.variant is not None else ""
        variant += f" lang {job.send.lang}" if job.send.lang is not None else ""
        print(f"{'✓' if outcome.delivered else '✗'} {job.user} {sub.platform}{variant}: "
              f"{'delivered' if outcome.delivered else 'failed'} ({_answer(outcome.status, outcome.attempts)})"
              + (f": {outcome.reason}" if outcome.reason else "") + f' — "{job.send.title}"')
    return common.EXIT_FINDINGS if failed else common.EXIT_OK


def _answer(status: int | None, attempts: int) -> str:
    """How the push service answered, in words: "HTTP 201, 1 attempt", "no answer, 2 attempts",
    "not sent"."""
    if attempts == 0:
        return "not sent"
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    return f"HTTP {status}, {tries}" if status is not None else f"no answer, {tries}"
