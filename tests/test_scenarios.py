"""The runtime's conformance suite: every scenario folder, replayed on every store that can run it."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_runner import Scenario, expected, mismatch, run, scenarios

from pushlang.runtime.sqlite_store import SqliteStore
from pushlang.runtime.store import MemoryStore

SCENARIOS = scenarios()
IDS = [s.name for s in SCENARIOS]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_scenario_in_memory(scenario: Scenario, tmp_path: Path) -> None:
    problem = mismatch(run(scenario, tmp_path, MemoryStore), expected(scenario))
    assert problem is None, f"{scenario.name}: {scenario.description}\n{problem}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=IDS)
def test_scenario_on_sqlite(scenario: Scenario, tmp_path: Path) -> None:
    """The same decisions with the SQLite store, closed and reopened halfway through the records."""
    problem = mismatch(run(scenario, tmp_path, lambda: SqliteStore(str(tmp_path / "state.db")), split=-1),
                       expected(scenario))
    assert problem is None, f"{scenario.name} (SQLite): {scenario.description}\n{problem}"


def test_every_reason_of_the_pipeline_is_covered() -> None:
    reasons = {"campaign_ended", "not_in_audience", "unreachable", "missing_property", "safari_requires_url",
               "payload_too_large", "dnd", "cutoff", "campaign_limit", "global_limit", "past_due", "min_gap",
               "throttle"}
    outcomes = {"send", "control", "delay", "suppress", "convert"}
    seen_reasons = {e.get("reason") for s in SCENARIOS for e in expected(s)}
    seen_outcomes = {e.get("outcome") for s in SCENARIOS for e in expected(s)}
    assert reasons <= seen_reasons, reasons - seen_reasons
    assert outcomes <= seen_outcomes, outcomes - seen_outcomes
    assert len(SCENARIOS) >= 40
