"""The checks, small and named, run in this order over a loaded program."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pushlang.check import experiments, names, platforms, properties, structure, timing, types
from pushlang.check.context import CampaignView, CheckContext


class Check(NamedTuple):
    name: str
    run: Callable[[CheckContext], None]


CHECKS: tuple[Check, ...] = (
    Check("duplicate-names", names.duplicate_names),
    Check("unknown-names", names.unknown_names),
    Check("segment-cycles", names.segment_cycles),
    Check("fixed-words", names.fixed_words),
    Check("one-trigger", structure.one_trigger),
    Check("items-once", structure.items_once),
    Check("message-complete", structure.message_complete),
    Check("scopes", structure.scopes),
    Check("behaviour-conditions", structure.behaviour_conditions),
    Check("live-only-options", structure.live_only_options),
    Check("window", timing.window),
    Check("recurrence", timing.recurrence),
    Check("timezones", timing.timezones),
    Check("message-ttl", timing.message_ttl),
    Check("limits", timing.limits),
    Check("delivery-controls", timing.delivery_controls),
    Check("best-time", timing.best_time),
    Check("durations", timing.durations),
    Check("literal-types", types.literal_types),
    Check("control-group", platforms.control_group),
    Check("variants", experiments.variants),
    Check("winner-test", experiments.winner_test),
    Check("safari", platforms.safari),
    Check("buttons", platforms.buttons),
    Check("tags", platforms.tags),
    Check("languages", platforms.languages),
    Check("known-events", properties.known_events),
    Check("known-properties", properties.known_properties),
    Check("personalisation-defaults", properties.personalisation_defaults),
)


def run_checks(ctx: CheckContext) -> None:
    for check in CHECKS:
        check.run(ctx)


__all__ = ["CHECKS", "CampaignView", "Check", "CheckContext", "run_checks"]
