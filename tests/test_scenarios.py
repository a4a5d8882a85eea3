"""The runtime's conformance suite: every scenario folder, replayed with the in-memory store."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_runner import expected, mismatch, run, scenarios

SCENARIOS = scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    problem = mismatch(run(scenario, tmp_path), expected(scenario))
    assert problem is None, f"{scenario.name}: {scenario.description}\n{problem}"


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 1
