"""Scenario folders: campaigns + records → expected decisions (the runtime's conformance suite).

A scenario is a folder under tests/scenarios/ with
- one or more ``*.push`` files (the campaigns),
- ``records.jsonl`` (the input records),
- ``expected.jsonl``: the expected output records, in order. Each expected line lists only the
  fields it cares about (``at``, ``campaign``, ``user``, ``outcome``, ``reason``, ``until``,
  ``title`` ...); the actual record must have those values, and the number of records must match,
- optionally ``scenario.toml``: ``description``, ``until`` (the replay's --until), and a ``[config]``
  table written as the scenario's pushlang.toml (timezone, limits ...).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from pushlang import plan
from pushlang.compiler import compile_paths
from pushlang.config import Config, load_config
from pushlang.diagnostics import Sink
from pushlang.runtime.instants import parse_datetime
from pushlang.runtime.outcomes import Output
from pushlang.runtime.records import InvalidRecord, decode_record
from pushlang.runtime.replay import replay
from pushlang.runtime.store import MemoryStore

ROOT = Path(__file__).resolve().parent / "scenarios"


@dataclass
class Scenario:
    path: Path
    description: str
    until: str | None
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name


def scenarios() -> list[Scenario]:
    found = []
    for folder in sorted(p for p in ROOT.iterdir() if p.is_dir()):
        meta: dict[str, Any] = {}
        if (folder / "scenario.toml").is_file():
            meta = tomllib.loads((folder / "scenario.toml").read_text(encoding="utf-8"))
        found.append(Scenario(folder, meta.get("description", ""), meta.get("until"), meta.get("config", {})))
    return found


def _config(scenario: Scenario, tmp: Path) -> Config:
    if not scenario.config:
        return load_config(None, Sink())
    path = tmp / "pushlang.toml"
    lines = []
    for key, value in scenario.config.items():
        if isinstance(value, dict):
            continue
        lines.append(f"{key} = {_toml(value)}")
    for key, value in scenario.config.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines.extend(f"{k} = {_toml(v)}" for k, v in value.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sink = Sink()
    config = load_config(str(path), sink)
    assert not sink.items, sink.items
    return config


def _toml(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def run(scenario: Scenario, tmp: Path, store_factory: Callable[[], MemoryStore] = MemoryStore,
        split: int | None = None) -> list[dict[str, Any]]:
    """The scenario's outputs as dicts; ``split`` replays the records in two runs on one store
    (the second on a new store object over the same state), -1 at an instant near the middle."""
    compiled = plan_of(scenario, tmp)
    lines = record_lines(scenario)
    if split == -1:
        split = instant_boundary(lines)
    outputs: list[Output] = []
    until = until_of(scenario, compiled)
    if split is None:
        store = store_factory()
        replay(compiled, lines, store, outputs.append, until=until)
        store.close()
    else:
        first = store_factory()
        replay(compiled, lines[:split], first, outputs.append, until=None)
        first.close()
        second = store_factory()
        replay(compiled, lines[split:], second, outputs.append, until=until)
        second.close()
    return [msgspec.to_builtins(o) for o in outputs]


def plan_of(scenario: Scenario, tmp: Path) -> plan.Plan:
    """The scenario's campaigns compiled with its config."""
    result = compile_paths(sorted(str(p) for p in scenario.path.glob("*.push")), config=_config(scenario, tmp))
    assert result.plan is not None, result.diagnostics
    return result.plan


def record_lines(scenario: Scenario) -> list[bytes]:
    return [line for line in (scenario.path / "records.jsonl").read_bytes().splitlines() if line.strip()]


def until_of(scenario: Scenario, compiled: plan.Plan) -> int | None:
    """The scenario's --until as an instant (a local date-time is read in the config's zone)."""
    return parse_datetime(scenario.until, compiled.settings.timezone) if scenario.until else None


def instant_boundary(lines: list[bytes]) -> int:
    """An index near the middle where the records' time moves on: a clean place to stop a replay."""
    times = []
    for line in lines:
        try:
            times.append(decode_record(line).ts)
        except InvalidRecord:
            times.append(times[-1] if times else 0)
    for k in range(max(1, len(lines) // 2), len(lines)):
        if times[k] > times[k - 1]:
            return k
    return len(lines)


def expected(scenario: Scenario) -> list[dict[str, Any]]:
    text = (scenario.path / "expected.jsonl").read_text(encoding="utf-8")
    return [msgspec.json.decode(line) for line in text.splitlines() if line.strip() and not line.startswith("//")]


def mismatch(actual: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> str | None:
    """None when every expected record matches the actual one at its position."""
    problems = []
    for i, want in enumerate(wanted):
        got = actual[i] if i < len(actual) else None
        if got is None or any(got.get(k) != v for k, v in want.items()):
            problems.append(f"record {i + 1}: expected {want}\n           got      {got}")
    if len(actual) != len(wanted):
        problems.append(f"{len(actual)} records, expected {len(wanted)}")
        problems.extend(f"  extra: {a}" for a in actual[len(wanted):])
    return "\n".join(problems) if problems else None
