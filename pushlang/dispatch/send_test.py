"""Test sends (the seed's "send a test"): a campaign's message rendered for chosen users, for real delivery.

The audience, DND and limits are not applied — the point is to see the notification on a real
device before the campaign goes live. Which subscriptions a user has and what the message says are
the pipeline's own reachable and render steps.
"""

from __future__ import annotations

from pushlang import plan
from pushlang.runtime.engine import Engine, SendJob
from pushlang.runtime.pipeline import Attempt, Send, targets, trace
from pushlang.runtime.records import Event
from pushlang.runtime.store import Store

TEST_STEPS = ("reachable", "render")  # the pipeline steps a test send goes through


def test_jobs(compiled: plan.Plan, store: Store, campaign_id: str, users: list[str] | None,
              last_events: dict[str, Event], now: int) -> tuple[list[SendJob], list[str]]:
    """The jobs to send, and a line for each user who cannot get one. ``users`` None: every profile
    with `test: true`."""
    engine = Engine(compiled, store, lambda out: None)
    c = engine.by_id[campaign_id]
    pipeline = engine.pipelines[campaign_id]
    if users is None:
        users = [u for u in store.user_ids() if (s := store.get(u)) is not None and s.profile.get("test") is True]
    jobs: list[SendJob] = []
    problems: list[str] = []
    for user in users:
        state = store.get(user)
        if state is None:
            problems.append(f"{user}: unknown user")
            continue
        a = Attempt(c, state, now, compiled.settings, env=c.env(state, now, last_events.get(user)))
        t = trace(pipeline, a, only=TEST_STEPS)
        if not isinstance(t.decision, Send):
            stop = t.verdicts[-1]
            problems.append(f"{user}: {stop.detail} ({t.reason})")
            continue
        jobs.append(SendJob(now, c.plan, user, t.decision.send, targets(c, state, t.decision.send)))
    return jobs, problems
