"""Experiments in words (SPEC §12.3, §12.4, §8): `preview` and the REPL's `:why` say which variant a user
gets and why (the bucket and its range, or the test's winner), and who is in the global holdout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pushlang.cli import main
from pushlang.repl import Session
from pushlang.runtime.pipeline import bucket, in_global_holdout

SCENARIOS = Path(__file__).parent / "scenarios"

SPLIT = """
campaign split {
  platforms chrome
  on "Go"
  when {
    timezone "UTC"
  }
  message a 25% {
    title "A"
    body "a"
  }
  message b 75% {
    title "B"
    body "b"
  }
}
"""


def test_preview_says_the_bucket_and_range_of_a_test_user_and_the_winner_of_the_others(
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = SCENARIOS / "winner_by_clicks"
    args = ["preview", str(folder / "campaign.push"), "--campaign", "promo", "--events", str(folder / "records.jsonl")]
    assert main([*args, "--user", "p03"]) == 0  # in the test group, decided at s with its own variant
    text = capsys.readouterr().out
    assert f"✓ render: variant a: bucket {bucket('promo:variant:p03')} is in [0, 3400)" in text
    assert main([*args, "--user", "p00"]) == 0  # outside it: decided at s + D with the winner
    text = capsys.readouterr().out
    assert ("the test of 2026-12-02T10:00:00Z (50% of the users, decided then): winner b by clicks, rates "
            "{'a': 0.3333, 'b': 0.6667, 'c': 0.0} (not significant)") in text
    assert (f"✓ render: variant b: the test's winner (outside the test group; the user's own bucket is "
            f"{bucket('promo:variant:p00')})") in text
    assert text.rstrip().splitlines()[-3].strip() == "title  B"


def test_why_in_the_repl_names_the_variant_and_the_global_holdout(tmp_path: Path) -> None:
    config = tmp_path / "pushlang.toml"
    config.write_text("[experiments]\nglobal_holdout = 30\n", encoding="utf-8")
    users = [f"u{i}" for i in range(12)]
    held = next(u for u in users if in_global_holdout(u, 30))
    free = next(u for u in users if not in_global_holdout(u, 30))
    said: list[str] = []
    session = Session(config_path=str(config), out=said.append)
    session.handle(SPLIT)
    for user in (held, free):
        session.handle(":record " + json.dumps({"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z",
                                                "platform": "chrome", "endpoint": f"https://push.example/{user}",
                                                "keys": {"p256dh": "k", "auth": "a"}}))
        session.handle(":record " + json.dumps({"user": user, "ts": "2026-12-01T09:00:00Z", "name": "Go"}))
    session.handle(f":why split {held}")
    assert "✗ global_holdout: in the 30% global holdout: held out of every campaign" in said[-1]
    assert said[-1].endswith("→ control (global_holdout)")
    session.handle(f":why split {free}")
    b = bucket(f"split:variant:{free}")
    expected = f"variant a: bucket {b} is in [0, 2500)" if b < 2500 else f"variant b: bucket {b} is in [2500, 10000)"
    assert "✓ control: not in the 30% global holdout" in said[-1]
    assert f"✓ render: {expected}" in said[-1]


def test_a_send_goes_out_with_its_variants_own_message_options() -> None:
    """The dispatcher reads a send's ttl, urgency and tag from its variant's message (SendJob.message),
    not from the first variant's."""
    from pushlang.compiler import compile_text
    from pushlang.runtime.engine import SendJob
    from pushlang.runtime.replay import replay
    from pushlang.runtime.store import MemoryStore

    text = SPLIT.replace('    title "B"\n', '    title "B"\n    ttl 1h\n    tag "b-tag"\n    urgency high\n')
    result = compile_text("split.push", text)
    assert result.plan is not None, result.diagnostics
    users = [f"u{i}" for i in range(8)]
    lines = [json.dumps({"type": "subscribe", "user": u, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                         "endpoint": f"https://push.example/{u}", "keys": {"p256dh": "k", "auth": "a"}}) for u in users]
    lines += [json.dumps({"user": u, "ts": "2026-12-01T09:00:00Z", "name": "Go"}) for u in users]
    jobs: list[SendJob] = []

    class Collect:
        def __call__(self, job: SendJob) -> None:
            jobs.append(job)

        def flush(self) -> list[object]:
            return []

    replay(result.plan, lines, MemoryStore(), lambda _: None, dispatch=Collect())  # type: ignore[arg-type]
    seen = {job.send.variant: (job.message.ttl, job.message.tag, job.message.urgency) for job in jobs}
    assert seen == {"a": (None, None, None), "b": (3600, "b-tag", "high")}
