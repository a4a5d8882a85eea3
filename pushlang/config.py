"""pushlang.toml: the settings that change decisions (SPEC §10), icons, and tool options."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pendulum

from pushlang.diagnostics import Sink, codes
from pushlang.resources import stdlib_dir
from pushlang.settings import Settings
from pushlang.source import Span
from pushlang.syntax.literals import DURATION_UNITS

CONFIG_NAME = "pushlang.toml"
MAX_TTL = 28 * 86400


@dataclass
class Config:
    path: str | None = None
    settings: Settings = field(default_factory=Settings)
    icons: dict[str, str] = field(default_factory=dict)
    schema: str | None = None  # [lint] schema, resolved against the config's folder
    raw: dict[str, Any] = field(default_factory=dict)


def find_config(explicit: str | None, paths: list[str]) -> str | None:
    """``--config``, else ./pushlang.toml, else the first pushlang.toml beside a given path."""
    if explicit:
        return explicit
    if Path(CONFIG_NAME).is_file():
        return CONFIG_NAME
    for p in paths:
        folder = Path(p) if Path(p).is_dir() else Path(p).parent
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return str(candidate)
    return None


def stdlib_icons() -> dict[str, str]:
    data = tomllib.loads((stdlib_dir() / "icons.toml").read_text(encoding="utf-8"))
    return dict(data.get("icons", {}))


def parse_duration(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    return int(m.group(1)) * DURATION_UNITS[m.group(2)] if m else None


def load_config(path: str | None, sink: Sink) -> Config:
    """The config at ``path`` (None: defaults); problems are PL700 diagnostics, never exceptions."""
    config = Config(icons=stdlib_icons())
    if path is None:
        return config
    config.path = path
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        sink.report(codes.INVALID_CONFIG, path, Span(1, 1, 1, 1), f"cannot read the config: {exc.strerror}")
        return config
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        line = int(m.group(1)) if (m := re.search(r"line (\d+)", str(exc))) else 1
        sink.report(codes.INVALID_CONFIG, path, Span(line, 1, line, 2), f"not valid TOML: {exc}")
        return config
    config.raw = data

    def bad(key: str, message: str, help: str | None = None) -> None:
        m = re.search(rf"^\s*{re.escape(key)}\s*=", text, re.MULTILINE)
        line = text.count("\n", 0, m.start()) + 1 if m else 1
        sink.report(codes.INVALID_CONFIG, path, Span(line, 1, line, 2), message, help=help)

    timezone = data.get("timezone", "UTC")
    if not isinstance(timezone, str) or not is_timezone(timezone):
        bad("timezone", f"`timezone = {timezone!r}` is not an IANA timezone", 'use a name like "Europe/Berlin"')
        timezone = "UTC"
    limits = data.get("limits", {})
    per_day, per_week = (_whole(limits, key, bad) for key in ("global_per_user_per_day", "global_per_user_per_week"))
    gap_text = limits.get("min_gap")
    min_gap = parse_duration(gap_text) if isinstance(gap_text, str) else None
    if gap_text is not None and not min_gap:
        bad("min_gap", f"`min_gap = {gap_text!r}` must be a duration of 1s or more", 'e.g. "4h"; remove it for none')
        min_gap = None
    holdout = data.get("experiments", {}).get("global_holdout", 0)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 100:
        bad("global_holdout", f"`global_holdout = {holdout!r}` must be a percent from 0 to under 100",
            "e.g. 5 holds 5% of the users out of every campaign; remove it for none")
        holdout = 0
    ttl_text = data.get("message", {}).get("default_ttl", "4w")
    ttl = parse_duration(ttl_text) if isinstance(ttl_text, str) else None
    if ttl is None or not 0 < ttl <= MAX_TTL:
        bad("default_ttl", f"`default_ttl = {ttl_text!r}` must be a duration up to 28d", 'e.g. "4w" or "2d"')
        ttl = MAX_TTL
    config.settings = Settings(timezone=timezone, global_per_user_per_day=per_day, global_per_user_per_week=per_week,
                               min_gap=min_gap, global_holdout=float(holdout), default_ttl=ttl)
    icons = data.get("icons", {})
    for name, url in icons.items():
        if not isinstance(url, str):
            bad(name, f"icon `{name}` must be a URL string")
            continue
        config.icons[name] = url
    schema = data.get("lint", {}).get("schema")
    if isinstance(schema, str):
        config.schema = str(Path(path).parent / schema)
    return config


def _whole(section: dict[str, Any], key: str, bad: Callable[..., None]) -> int | None:
    """A global limit of the `[limits]` section: a whole number of 1 or more, else reported and none."""
    value = section.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        bad(key, f"`{key}` must be a whole number of 1 or more", "remove it for no such global limit")
        return None
    return value


def is_timezone(name: str) -> bool:
    try:
        pendulum.timezone(name)
    except Exception:  # pendulum raises several types for unknown or malformed names
        return False
    return True
