"""The scenario suite through the scale-out host: records ingested into a Redis stream, processed by a
`Worker` (leases, consumer group, batches committed in one MULTI/EXEC), decisions read back from
`out:{p}`. One partition, so the worker's output order is the engine's and each scenario's
expected.jsonl applies as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scenario_runner import Scenario, _config, expected, mismatch, scenarios

from pushlang.compiler import compile_paths
from pushlang.runtime.instants import parse_datetime
from pushlang.runtime.records import read_records
from pushlang.scaleout.ingest import collect_outputs, end_of_input, ingest
from pushlang.scaleout.worker import Worker

SCENARIOS = scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_on_the_worker_host(scenario: Scenario, tmp_path: Path, server: Any) -> None:
    server.flushall()
    result = compile_paths(sorted(str(p) for p in scenario.path.glob("*.push")), config=_config(scenario, tmp_path))
    assert result.plan is not None, result.diagnostics
    lines = [line for line in (scenario.path / "records.jsonl").read_bytes().splitlines() if line.strip()]
    last = max(record.ts for record in read_records(lines))
    until = parse_datetime(scenario.until, result.plan.settings.timezone) if scenario.until else last
    ingest(server, lines, partitions=1)
    end_of_input(server, 1, until)
    Worker(server, result.plan, "scenario-worker", partitions=1, batch=7, clock="records").run(idle_exit=0.3)
    outputs = collect_outputs(server, 1)
    problem = mismatch(outputs, expected(scenario))
    assert problem is None, f"{scenario.name} (worker host): {scenario.description}\n{problem}"
