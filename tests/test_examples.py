"""Every example and stdlib file lints clean, and every plan survives a JSON round trip."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from pushlang import plan
from pushlang.cli import main
from pushlang.compiler import compile_paths

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.push"))


def test_lint_examples_and_stdlib_exits_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["lint", "examples/", "stdlib/"]) == 0
    out = capsys.readouterr().out
    assert "error" not in out
    assert out.strip().endswith("no problems.")


def test_examples_cover_every_seed_scenario() -> None:
    result = compile_paths([str(ROOT / "examples")])
    assert result.plan is not None
    triggers = {type(c.trigger).__name__ for c in result.plan.campaigns}
    assert triggers == {"SingleAction", "InactionWithin", "OnDate", "SendOnce", "SendDates", "SendDaily", "SendEvery",
                        "SendWeekly", "SendMonthly"}
    campaigns = result.plan.campaigns
    assert any(c.dnd and c.dnd.mode == "discard" for c in campaigns)
    assert any(c.dnd and c.dnd.mode == "delay" for c in campaigns)
    assert any(c.ignore_global_limits for c in campaigns)
    assert any(c.deliver_in_user_timezone and c.cutoff for c in campaigns)
    assert any(c.control_percent and c.conversion and c.conversion.revenue for c in campaigns)
    assert any("safari" in c.platforms and c.message.url for c in campaigns)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_plan_round_trips(path: Path) -> None:
    result = compile_paths([str(path)])
    assert not result.has_errors, result.diagnostics
    assert result.plan is not None
    encoded = plan.to_json(result.plan)
    decoded = plan.from_json(encoded)
    assert decoded == result.plan
    assert plan.to_json(decoded) == encoded
    assert decoded.format_version == plan.FORMAT_VERSION


def test_plan_decoding_rejects_unknown_fields() -> None:
    result = compile_paths([str(EXAMPLES[0])])
    assert result.plan is not None
    data = msgspec.json.decode(plan.to_json(result.plan))
    data["campaigns"][0]["surprise"] = 1
    with pytest.raises(msgspec.ValidationError):
        plan.from_json(msgspec.json.encode(data))
