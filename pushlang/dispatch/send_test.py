"""Test sends (the seed's "send a test"): a campaign's message rendered for chosen users, for real delivery.

The audience, DND and limits are not applied — the point is to see the notification on a real
device before the campaign goes live. Which subscriptions a user has and what the message says are
the pipeline's own reachable and render steps. A campaign with variants (SPEC §12.3) sends one
variant, or each of them in turn: the variant is given to the render step (as a test's winner is),
so the render step renders it, and a send of several is labelled with its variant id.
"""

from __future__ import annotations

import msgspec

from pushlang import plan
from pushlang.runtime.engine import Engine, SendJob
from pushlang.runtime.outcomes import PendingSend, Send
from pushlang.runtime.pipeline import Attempt, language_of, targets, trace
from pushlang.runtime.records import Event
from pushlang.runtime.store import Store

TEST_STEPS = ("reachable", "render")  # the pipeline steps a test send goes through


class UnknownVariant(ValueError):
    """A variant the campaign does not have; the message lists the ones it has."""


def variants_to_send(campaign: plan.Campaign, variant: str | None) -> tuple[str | None, ...]:
    """The variants a test send renders: the one asked for, else every variant in the order written
    (``(None,)``: the campaign's one message). Raises :class:`UnknownVariant`."""
    ids = tuple(v.id for v in campaign.variants)
    if variant is None:
        return ids or (None,)
    if variant not in ids:
        has = f"its variants are: {', '.join(ids)}" if ids else "it has one message and no variants"
        raise UnknownVariant(f"campaign {campaign.id} has no variant `{variant}`; {has}")
    return (variant,)


def check_lang(campaign: plan.Campaign, lang: str | None) -> None:
    """``send-test --lang TAG``: some message of the campaign must have a block the lookup finds for TAG."""
    if lang is None:
        return
    if not any(language_of(m, {}, lang) is not None for m in campaign.messages):
        tags = campaign.lang_tags()
        has = f"its languages are: {', '.join(tags)}" if tags else "it has no `lang` blocks"
        raise UnknownVariant(f"campaign {campaign.id} has no `lang` block for {lang!r}; {has}")


def labelled(send: PendingSend, variant: str) -> PendingSend:
    """A variant's test send among several: its title starts with ``[ID] ``."""
    return msgspec.structs.replace(send, title=f"[{variant}] {send.title}")


def test_jobs(compiled: plan.Plan, store: Store, campaign_id: str, users: list[str] | None,
              last_events: dict[str, Event], now: int, variant: str | None = None, lang: str | None = None
              ) -> tuple[list[SendJob], list[str]]:
    """The jobs to send, and a line for each user who cannot get one. ``users`` None: every profile
    with `test: true`. ``variant`` None: every variant of a campaign with variants, each labelled.
    ``lang``: read by the render step instead of each user's profile `language` (SPEC §12.5)."""
    engine = Engine(compiled, store, lambda out: None)
    c = engine.by_id[campaign_id]
    pipeline = engine.pipelines[campaign_id]
    chosen = variants_to_send(c.plan, variant)
    several = len(chosen) > 1
    order = [v.id for v in c.plan.variants]
    if users is None:
        users = [u for u in store.user_ids() if (s := store.get(u)) is not None and s.profile.get("test") is True]
    jobs: list[SendJob] = []
    problems: list[str] = []
    for user in users:
        state = store.get(user)
        if state is None:
            problems.append(f"{user}: unknown user")
            continue
        for v in chosen:
            # each variant its own send_id (the ordinal), so one never replaces another at the push service
            a = Attempt(c, state, now, compiled.settings, env=c.env(state, now, last_events.get(user)),
                        ordinal=order.index(v) if v is not None else 0, variant=v, language=lang)
            t = trace(pipeline, a, only=TEST_STEPS)
            who = user if v is None else f"{user} variant {v}"
            if not isinstance(t.decision, Send):
                stop = t.verdicts[-1]
                problems.append(f"{who}: {stop.detail} ({t.reason})")
                continue
            send, campaign = t.decision.send, c.plan
            if v is not None and several:
                # each variant its own notification: labelled, and without the tag that would replace another
                # (the job sends the variant's own message: SendJob.message)
                campaign = msgspec.structs.replace(campaign, variants=tuple(
                    msgspec.structs.replace(x, message=msgspec.structs.replace(x.message, tag=None))
                    for x in campaign.variants))
                send = labelled(send, v)
            jobs.append(SendJob(now, campaign, user, send, targets(c, state, send)))
    return jobs, problems
