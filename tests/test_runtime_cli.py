"""The runtime commands through ``main(argv)``: replay, preview and stats on the example shop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pushlang.cli import main

ROOT = Path(__file__).resolve().parent.parent
EVENTS = str(ROOT / "examples" / "events.jsonl.gz")


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "decisions.jsonl"
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--out", str(out)]) == 0
    return out


def test_replay_writes_decisions_and_a_summary(decisions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = decisions.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) > 10_000
    assert {r["outcome"] for r in records} >= {"send", "suppress", "delay", "control", "convert"}
    assert all(r["at"].endswith("Z") and len(r["at"]) == 20 for r in records)
    send = next(r for r in records if r["outcome"] == "send")
    assert set(send) == {"at", "campaign", "user", "outcome", "reason", "send_id", "title", "body", "url",
                         "platforms", "until", "revenue", "status", "attempts", "variant", "lang", "rates", "significant"}


def test_replay_on_sqlite_continues_and_never_repeats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = f"sqlite:///{tmp_path / 'shop.db'}"
    first, second, whole = tmp_path / "first.jsonl", tmp_path / "second.jsonl", tmp_path / "whole.jsonl"
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--store", store, "--out", str(first)]) == 0
    summary = capsys.readouterr().err
    assert "cart_abandoned_10m" in summary and "suppressed by reason:" in summary
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--store", store, "--out", str(second)]) == 0
    assert second.read_text(encoding="utf-8") == ""
    assert "51,946 records older than the store's clock skipped" in capsys.readouterr().err
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--out", str(whole)]) == 0
    assert first.read_bytes() == whole.read_bytes()  # SQLite and in-memory stores decide alike


def test_stats_over_replay_decisions(decisions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(decisions), "--format", "json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    cart = stats["cart_abandoned_10m"]
    assert cart["sends"] > 0 and cart["control"] > 0
    assert cart["conversions"] + cart["control_conversions"] > 0
    assert main(["stats", str(decisions)]) == 0
    assert "lift" in capsys.readouterr().out


def test_preview_shows_the_message_or_the_stopping_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(ROOT / "examples"), "--campaign", "cart_abandoned_10m", "--user", "u00164",
                 "--events", EVENTS]) == 0
    out = capsys.readouterr().out
    assert "✗ dnd: 02:54 in Europe/Berlin is inside DND 21:00–09:00: delayed until 2026-12-01T08:00:00Z" in out
    assert "decided again at 2026-12-01T08:00:00Z: send" in out and "\n→ send\n" in out
    assert "title  Still thinking it over, Farid?" in out
    assert main(["preview", str(ROOT / "examples"), "--campaign", "cart_abandoned_10m", "--user", "u00271",
                 "--events", EVENTS]) == 0
    assert "→ suppress (not_in_audience)" in capsys.readouterr().out


def test_runtime_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(ROOT / "examples"), "--campaign", "nope", "--user", "u1", "--events", EVENTS]) == 2
    assert "the campaigns are:" in capsys.readouterr().err
    assert main(["replay", str(ROOT / "examples"), "--events", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--until", "soon"]) == 2
    assert main(["replay", str(ROOT / "examples"), "--events", EVENTS, "--store", "postgres://x"]) == 2


@pytest.mark.parametrize("command", [["preview", "--user", "u1"], ["send-test", "--to", "u1"], ["reach"]])
def test_commands_on_a_broken_campaign_show_its_diagnostics(command: list[str], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Every command that compiles shows the same diagnostics (file:line:col) and summary, never a traceback."""
    broken = tmp_path / "broken.push"
    broken.write_text('campaign cart {\n  on "Added To Cart"\n  message {\n    title 42\n  }\n}\n', encoding="utf-8")
    name, *options = command
    assert main([name, str(broken), "--campaign", "cart", *options, "--events", EVENTS]) == 1
    err = capsys.readouterr().err
    assert f"{broken}:4:" in err and "error[PL" in err
    assert "error" in err.strip().splitlines()[-1] and "Traceback" not in err
