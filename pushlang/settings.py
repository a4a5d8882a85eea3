"""The config values that change decisions (SPEC §10): read from pushlang.toml, carried in the plan."""

from __future__ import annotations

import msgspec


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timezone: str = "UTC"
    global_per_user_per_day: int | None = None
    default_ttl: int = 28 * 86400
