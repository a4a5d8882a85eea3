"""Campaigns of a plan compiled once for the runtime: closures for their conditions and message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushlang import plan
from pushlang.plan import Message
from pushlang.runtime.evaluate import Compiler, Env, Fn, History
from pushlang.runtime.instants import US, from_local
from pushlang.runtime.records import Event
from pushlang.runtime.render import MessageRenderer
from pushlang.runtime.store import UserState


class UserHistory(History):
    """What behaviour conditions read of one user: the events the store kept."""

    __slots__ = ("state",)

    def __init__(self, state: UserState) -> None:
        self.state = state

    def events(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        return self.state.history.get(name, [])


class Segments(dict[str, Fn]):
    """Compiled segments by name; a segment with no conditions is not in the plan and holds for everyone."""

    def __missing__(self, key: str) -> Fn:
        return _everyone


def _everyone(env: Env) -> bool:
    return True


def compile_segments(compiled: plan.Plan, tz: str) -> Segments:
    compiler = Compiler(tz)
    return Segments({name: compiler.compile(expr) for name, expr in compiled.segments.items()})


@dataclass
class CompiledCampaign:
    """A campaign of the plan with its conditions and message compiled in its timezone."""

    plan: plan.Campaign
    tz: str
    start: int | None
    end: int | None
    audience: Callable[[Env], bool]
    renderer: MessageRenderer
    segments: dict[str, Fn]
    trigger_where: Callable[[Env], bool] = field(default=lambda env: True)
    unless_where: Callable[[Env], bool] = field(default=lambda env: True)
    at: Fn | None = None
    conversion_where: Callable[[Env], bool] = field(default=lambda env: True)
    revenue: Fn | None = None
    id: str = ""
    is_live: bool = True
    # for the trigger loop, derived from the plan: [arm_from, arm_until) µs, the kind of trigger
    arm_from: int = 0
    arm_until: int = 0
    single: bool = False  # a single action: decide at once
    inaction: bool = False  # an inaction window: arm a timer `within` µs ahead
    within: int = 0
    inaction_key: str = ""  # the inaction timer's key, less the user id
    counter_prefix: str = ""  # the per-user send counters' key, less the period (pipeline.limit_key)
    rolling: int = 0  # seconds: the longest rolling `limit … per DURATION` window (0: none)
    # variants (SPEC §12.3): each one's renderer and message, and the upper ends of their bucket ranges
    variants: dict[str, tuple[MessageRenderer, Message]] = field(default_factory=dict)
    variant_ranges: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        self.id, self.is_live = self.plan.id, self.plan.is_live
        self.arm_from = -(1 << 63) if self.start is None else self.start
        self.arm_until = 1 << 63 if self.end is None else self.end
        trigger = self.plan.trigger
        self.single = isinstance(trigger, plan.SingleAction)
        if isinstance(trigger, plan.InactionWithin):
            self.inaction, self.within = True, trigger.within * US
        self.inaction_key = f"inaction:{self.id}:"
        self.counter_prefix = f"{self.id}|"
        self.rolling = max((limit.window for limit in self.plan.limits if limit.period == "rolling"), default=0)

    def env(self, state: UserState, now: int, event: Event | None = None) -> Env:
        """What the campaign's expressions read for this user at ``now`` (with ``event`` as ``event.*``)."""
        if event is None:
            return Env(state.user, state.profile, now, UserHistory(state), self.segments)
        return Env(state.user, state.profile, now, UserHistory(state), self.segments, event.name, event.ts,
                   event.props)


def compile_campaign(c: plan.Campaign, segments: dict[str, Fn]) -> CompiledCampaign:
    """``segments``: the plan's segments compiled in ``c``'s timezone."""
    compiler = Compiler(c.timezone)
    compiled = CompiledCampaign(
        plan=c, tz=c.timezone,
        start=from_local(c.start, c.timezone) if c.start else None,
        end=from_local(c.end, c.timezone) if c.end else None,
        audience=compiler.condition(c.audience),
        renderer=MessageRenderer(c.message, compiler),
        segments=segments,
    )
    trigger = c.trigger
    if isinstance(trigger, (plan.SingleAction, plan.InactionWithin, plan.OnDate)):
        compiled.trigger_where = compiler.condition(trigger.where)
    if isinstance(trigger, plan.InactionWithin):
        compiled.unless_where = compiler.condition(trigger.unless_where)
    if isinstance(trigger, plan.OnDate):
        compiled.at = compiler.compile(trigger.at)
    if c.conversion is not None:
        compiled.conversion_where = compiler.condition(c.conversion.where)
        compiled.revenue = compiler.compile(c.conversion.revenue) if c.conversion.revenue else None
    upper = 0
    ranges = []
    for variant in c.variants:
        compiled.variants[variant.id] = (MessageRenderer(variant.message, compiler), variant.message)
        upper += variant.weight
        ranges.append((upper, variant.id))
    compiled.variant_ranges = tuple(ranges)
    return compiled
