"""Every example and stdlib file lints clean, and every plan survives a JSON round trip; the bundled log
gives the newer examples something to decide."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
from pathlib import Path
from zoneinfo import ZoneInfo

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
    assert any(c.best_time and c.best_time.start and c.best_time.events and c.deliver_in_user_timezone
               for c in campaigns)
    assert any({lang.tag for lang in c.message.langs} >= {"de", "fr", "pt-BR"} for c in campaigns)
    assert any(isinstance(part, plan.Personalised) and isinstance(part.expr, plan.IfThen)
               for c in campaigns for part in c.message.body.parts)


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


def test_the_bundled_log_gives_best_time_and_languages_something_to_decide(tmp_path: Path) -> None:
    """Replayed over the bundled log, the best-time digest sends at many local hours (each user's own,
    within its window, Tuesday 08:00 for the early risers) and the multilingual cart in several languages,
    each matched from the profile's `language` by the rule of SPEC §12.5."""
    out = tmp_path / "decisions.jsonl"
    events = ROOT / "examples" / "events.jsonl.gz"
    assert main(["replay", str(ROOT / "examples" / "best_time_digest.push"),
                 str(ROOT / "examples" / "multilingual_cart.push"), "--events", str(events), "--out", str(out)]) == 0
    profiles: dict[str, dict[str, object]] = {}
    with gzip.open(events, "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("type") == "profile":
                profiles[record["user"]] = record["props"]
    decisions = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    hours: collections.Counter[int] = collections.Counter()
    for d in decisions:
        if d["campaign"] == "best_time_digest" and d["outcome"] == "send":
            local = dt.datetime.fromisoformat(d["at"]).astimezone(ZoneInfo(str(profiles[d["user"]]["timezone"])))
            assert 8 <= local.hour < 21 and local.minute == 0, d
            assert (local.strftime("%a"), local.hour >= 9) in {("Mon", True), ("Tue", False)}, d
            hours[local.hour] += 1
    assert len(hours) == 13 and min(hours.values()) >= 20, hours  # every hour from 08:00 to 20:00, each often

    langs: collections.Counter[str | None] = collections.Counter()
    for d in decisions:
        if d["campaign"] == "cart_abandoned_intl" and d["outcome"] == "send":
            spoken = str(profiles[d["user"]].get("language", "")).replace("_", "-").lower()
            expected = next((tag for tag in ("pt-BR", "de", "fr", "es")
                             if spoken == tag.lower() or spoken.startswith(tag.lower() + "-")), None)
            assert d["lang"] == expected, (d, spoken)
            langs[d["lang"]] += 1
    assert set(langs) == {None, "de", "fr", "pt-BR", "es"}, langs
