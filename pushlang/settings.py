"""The config values that change decisions (SPEC §10): read from pushlang.toml, carried in the plan."""

from __future__ import annotations

import msgspec


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timezone: str = "UTC"
    global_per_user_per_day: int | None = None
    global_per_user_per_week: int | None = None  # in the user's local ISO week
    min_gap: int | None = None  # seconds: no send within this after the user's previous send
    global_holdout: float = 0.0  # percent of users held out of every campaign (SPEC §8)
    default_ttl: int = 28 * 86400
