"""``pushlang diff``: two versions of the campaigns replayed over the same records, compared per campaign.

The fixture (tests/fixtures/diff) is a small shop: in ``new/`` the abandoned cart widens ``who``
from ["DE"] to ["DE", "AT"] and adds ``limit 1 per day``, ``price_drop`` is retired,
``back_in_stock`` is added; ``signup_welcome`` and ``order_shipped`` are the same files. The
config (in both versions) has a global limit of 2 sends a day, so the new campaigns crowd out
u2's welcome push.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pushlang import plan
from pushlang.cli import main
from pushlang.commands.diff import render_report
from pushlang.compiler import compile_paths
from pushlang.runtime import diff

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "diff"


def run_diff(argv: list[str]) -> int:
    """``pushlang diff ARGV`` through the command line."""
    return main(["diff", *argv])


def diff_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert run_diff([*argv, "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["campaign"]: c for c in report["campaigns"]}


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def test_fixture_campaign_statuses(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = diff_json(["old", "new", "--events", "records.jsonl"], capsys)
    assert report["records"] == 28
    assert report["rejected"] == 0
    assert report["counts"] == {"added": 1, "removed": 1, "changed": 1, "affected": 1, "unchanged": 1}
    status = {cid: c["status"] for cid, c in by_id(report).items()}
    assert status == {"abandoned_cart": "changed", "back_in_stock": "added", "order_shipped": "unchanged",
                      "price_drop": "removed", "signup_welcome": "affected"}
    assert report["settings_changed"] == {}
    assert report["segments_changed"] == []


def test_fixture_changed_campaign(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cart = by_id(diff_json(["old", "new", "--events", "records.jsonl"], capsys))["abandoned_cart"]
    assert cart["changed_fields"] == ["audience", "limits"]
    assert cart["decisions_identical"] is False
    assert cart["users"] == {"old": 1, "new": 2, "gained": 1, "lost": 0,
                             "gained_examples": ["u2"], "lost_examples": []}
    # u1's second cart on Dec 1 hits the new daily limit; u2 (AT) gets the reminder on Dec 2.
    assert [(d["date"], d["old"], d["new"], d["delta"]) for d in cart["sends_per_day"]] == [
        ("2026-12-01", 2, 1, -1), ("2026-12-02", 1, 2, 1)]
    assert cart["outcomes"]["send"] == {"old": 3, "new": 3, "delta": 0}
    assert cart["suppressed"]["campaign_limit"] == {"old": 0, "new": 1, "delta": 1}
    assert cart["suppressed"]["not_in_audience"] == {"old": 3, "new": 1, "delta": -2}
    assert cart["suppressed"]["unreachable"] == {"old": 0, "new": 1, "delta": 1}  # u3: AT, no subscription
    assert cart["conversions"] == {"old": 1, "new": 2, "delta": 1}
    assert cart["revenue"] == {"old": 80.0, "new": 125.0, "delta": 45.0}
    assert cart["messages"] is None  # the message did not change


def test_fixture_added_removed_affected_unchanged(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaigns = by_id(diff_json(["old", "new", "--events", "records.jsonl"], capsys))
    added, removed = campaigns["back_in_stock"], campaigns["price_drop"]
    assert added["users"]["gained_examples"] == ["u2", "u4"] and added["users"]["lost"] == 0
    assert added["outcomes"]["send"] == {"old": 0, "new": 2, "delta": 2}
    assert removed["users"]["lost_examples"] == ["u6"] and removed["users"]["gained"] == 0
    assert [(d["date"], d["delta"]) for d in removed["sends_per_day"]] == [("2026-12-01", -1), ("2026-12-02", -1)]

    welcome = campaigns["signup_welcome"]
    assert welcome["changed_fields"] == []
    assert welcome["affected_by"] == ["global limit"]
    assert welcome["users"]["lost_examples"] == ["u2"]
    assert welcome["suppressed"]["global_limit"] == {"old": 0, "new": 1, "delta": 1}

    shipped = campaigns["order_shipped"]
    assert shipped["decisions_identical"] is True
    assert shipped["users"]["gained"] == shipped["users"]["lost"] == 0


def test_fixture_text_report(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_diff(["old", "new", "--events", "records.jsonl"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:3] == ["pushlang diff old -> new", "replayed 28 records of records.jsonl",
                         "campaigns: 1 added, 1 removed, 1 changed, 1 affected, 1 unchanged"]
    assert '~ abandoned_cart "Abandoned cart"  changed: audience (who), limits (when)' in lines
    assert '+ back_in_stock "Back in stock"  added' in lines
    assert '- price_drop "Price drop"  removed' in lines
    assert any(line.startswith('* signup_welcome "Welcome"  plan unchanged, decisions differ: ')
               and "global limit" in line for line in lines)
    assert "    users with a send: 1 -> 2 (+1 gained, 0 lost)" in lines
    assert "      gained: u2" in lines
    assert lines[-1] == "unchanged (identical decisions): order_shipped"
    # The cart's table: old, new and signed delta columns, right-aligned.
    start = lines.index('~ abandoned_cart "Abandoned cart"  changed: audience (who), limits (when)')
    table = lines[start + 3:start + 15]
    assert table == [
        "                         old     new   delta",
        "    send                   3       3       0",
        "    suppress               3       3       0",
        "      not_in_audience      3       1      -2",
        "      campaign_limit       0       1      +1",
        "      unreachable          0       1      +1",
        "    conversions            1       2      +1",
        "    revenue            80.00  125.00  +45.00",
        "    sends per day (UTC)",
        "      2026-12-01           2       1      -1",
        "      2026-12-02           1       2      +1",
        "",
    ]


def test_users_option_limits_examples(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    added = by_id(diff_json(["old", "new", "--events", "records.jsonl", "--users", "1"], capsys))["back_in_stock"]
    assert added["users"]["gained"] == 2
    assert added["users"]["gained_examples"] == ["u2"]
    assert run_diff(["old", "new", "--events", "records.jsonl", "--users", "1"]) == 0
    assert "      gained: u2 and 1 more" in capsys.readouterr().out.splitlines()


def test_same_version_is_all_unchanged(in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_diff(["old", "old", "--events", "records.jsonl"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "campaigns: 4 unchanged"
    assert lines[-1] == "unchanged (identical decisions): abandoned_cart, order_shipped, price_drop, signup_welcome"


def test_single_files_and_stdin(in_fixtures: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = (in_fixtures / "records.jsonl").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    report = diff_json(["old/cart.push", "new/cart.push", "--events", "-", "--config", "old/pushlang.toml"], capsys)
    assert [c["campaign"] for c in report["campaigns"]] == ["abandoned_cart"]
    assert report["campaigns"][0]["users"]["gained_examples"] == ["u2"]


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_message_change_counts_rendered_differences(tmp_path: Path, in_fixtures: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    edited = _copy(in_fixtures / "new", tmp_path / "edited")
    cart = edited / "cart.push"
    cart.write_text(cart.read_text(encoding="utf-8").replace("Still thinking", "Forgot something"), encoding="utf-8")
    report = diff_json(["new", str(edited), "--events", "records.jsonl"], capsys)
    c = by_id(report)["abandoned_cart"]
    assert c["status"] == "changed"
    assert c["changed_fields"] == ["message"]
    assert c["users"]["gained"] == c["users"]["lost"] == 0
    assert c["messages"]["compared"] == 3 and c["messages"]["changed"] == 3
    example = c["messages"]["example"]
    assert example["user"] == "u1"
    assert example["fields"] == {"title": {"old": "Still thinking, Jonas?", "new": "Forgot something, Jonas?"}}
    assert report["counts"]["unchanged"] == 3

    assert run_diff(["new", str(edited), "--events", "records.jsonl"]) == 0
    out = capsys.readouterr().out
    assert "    messages: 3 of 3 sends made by both render differently, e.g. u1 at 2026-12-01T10:10:00Z:" in out
    assert '      title  "Still thinking, Jonas?"' in out
    assert '             -> "Forgot something, Jonas?"' in out


def test_label_change_with_identical_decisions(tmp_path: Path, in_fixtures: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    edited = _copy(in_fixtures / "new", tmp_path / "edited")
    cart = edited / "cart.push"
    cart.write_text(cart.read_text(encoding="utf-8").replace('"retention"', '"winback"'), encoding="utf-8")
    assert run_diff(["new", str(edited), "--events", "records.jsonl"]) == 0
    out = capsys.readouterr().out
    assert '~ abandoned_cart "Abandoned cart"  changed: labels; decisions identical' in out.splitlines()


SEGMENT_CAMPAIGN = """segment shoppers {
  did "Added To Cart" in last 7d
}

campaign welcome_shoppers {
  on "Signed Up"
  who {
    segment shoppers
  }
  message {
    title "Welcome back"
    body "Your cart is saved."
    url "https://shop.example.com/cart"
  }
}
"""


def test_segment_change_marks_campaign_affected(tmp_path: Path, in_fixtures: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "c.push").write_text(SEGMENT_CAMPAIGN, encoding="utf-8")
    (tmp_path / "b" / "c.push").write_text(SEGMENT_CAMPAIGN.replace("in last 7d", "at least 2 times in last 7d"),
                                           encoding="utf-8")
    report = diff_json([str(tmp_path / "a"), str(tmp_path / "b"), "--events", "records.jsonl",
                        "--config", "old/pushlang.toml"], capsys)
    assert report["segments_changed"] == ["shoppers"]
    c = by_id(report)["welcome_shoppers"]
    assert c["status"] == "affected"
    assert c["affected_by"] == ["segment shoppers"]
    assert c["changed_segments"] == ["shoppers"]
    assert c["users"]["lost_examples"] == ["u2"] and c["users"]["gained"] == 0


def test_compile_errors_exit_1(tmp_path: Path, in_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = _copy(in_fixtures / "new", tmp_path / "broken")
    (broken / "oops.push").write_text('campaign oops {\n  on "X"\n  who {\n    segment nobody\n  }\n}\n',
                                      encoding="utf-8")
    assert run_diff(["old", str(broken), "--events", "records.jsonl"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error[" in captured.err and "oops.push:4:" in captured.err
    assert f"new ({broken}): 5 files checked: 2 errors." in captured.err

    assert run_diff(["old", str(broken), "--events", "records.jsonl", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["diagnostics"]["old"] == []
    assert any(d["severity"] == "error" for d in data["diagnostics"]["new"])


@pytest.mark.parametrize(("argv", "message"), [
    (["nowhere", "new", "--events", "records.jsonl"], "no such file or directory: nowhere"),
    (["old", "new", "--events", "missing.jsonl"], "no such file: missing.jsonl"),
    (["old", "new", "--events", "records.jsonl", "--until", "soon"], "is not a date-time"),
])
def test_usage_errors_exit_2(argv: list[str], message: str, in_fixtures: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert run_diff(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pushlang: error: ") and message in err


def test_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_diff(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("OLD", "NEW", "--events", "--until", "--config", "--format", "--users"):
        assert option in out


def test_bundled_examples_who_change_gains_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no ./pushlang.toml here: each version uses the one beside it
    new = _copy(ROOT / "examples", tmp_path / "examples")
    cart = new / "abandoned_cart.push"
    text = cart.read_text(encoding="utf-8")
    assert 'user.country in ["DE", "AT", "CH"]' in text
    cart.write_text(text.replace('["DE", "AT", "CH"]', '["DE", "AT", "CH", "US"]'), encoding="utf-8")
    report = diff_json([str(ROOT / "examples"), str(new), "--events", str(ROOT / "examples" / "events.jsonl.gz")],
                       capsys)
    c = by_id(report)["cart_abandoned_10m"]
    assert c["status"] == "changed"
    assert c["changed_fields"] == ["audience"]
    assert c["users"]["gained"] > 0
    assert c["users"]["lost"] == 0
    assert len(c["users"]["gained_examples"]) == diff.DEFAULT_USERS
    assert c["outcomes"]["send"]["delta"] > 0
    assert c["suppressed"]["not_in_audience"]["delta"] < 0
    assert report["counts"]["changed"] == 1
    assert report["counts"]["added"] == report["counts"]["removed"] == 0
    assert report["counts"]["unchanged"] > 0


# ---- variants and winner tests (SPEC §12.3–12.4) -------------------------------------------------

PROMO = """campaign promo {
  platforms chrome
  send once at 2026-12-20 10:00
  message {
    title "Winter sale"
    body "Everything must go"
  }
}
"""

PROMO_VARIANTS = """campaign promo {
  platforms chrome
  send once at 2026-12-20 10:00
  test 50% then winner by clicks after 2h
  message FIRST {
    title "Winter sale"
    body "Everything must go"
  }
  message SECOND {
    title "Last days"
    body "Everything must go"
  }
}
"""

PROMO_USERS = [f"p{i:02d}" for i in range(24)]


def _promo_records(path: Path) -> Path:
    lines = []
    for user in PROMO_USERS:
        lines.append({"type": "profile", "user": user, "ts": "2026-12-01T08:00:00Z", "props": {}})
        lines.append({"type": "subscribe", "user": user, "ts": "2026-12-01T08:00:00Z", "platform": "chrome",
                      "endpoint": f"https://push.example/{user}", "keys": {"p256dh": "P", "auth": "A"}})
    lines.append({"user": "p00", "ts": "2026-12-21T00:00:00Z", "name": "Browsed"})  # the clock past s + 2h
    path.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return path


def _promo_plan(tmp_path: Path, first: tuple[str, int], second: tuple[str, int]) -> plan.Plan:
    """promo with two variants (id, weight in basis points) and a 50% winner test by clicks after 2h, the
    first titled "Winter sale", the second "Last days" (the plan the variant syntax compiles to)."""
    (tmp_path / "promo.push").write_text(PROMO, encoding="utf-8")
    result = compile_paths([str(tmp_path / "promo.push")])
    assert result.plan is not None, result.diagnostics
    (promo,) = result.plan.campaigns
    last = msgspec.structs.replace(promo.message, title=plan.Text((plan.Literal("Last days"),)))
    variants = (plan.Variant(first[0], first[1], promo.message), plan.Variant(second[0], second[1], last))
    promo = msgspec.structs.replace(promo, variants=variants, test=plan.WinnerTest(50.0, "clicks", 7200))
    return msgspec.structs.replace(result.plan, campaigns=(promo,))


def _bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 10000


def _expected_sends(first: tuple[str, int], second: tuple[str, int]) -> dict[str, int]:
    """SPEC §12.3–12.4 by hand: the test half by their buckets, the rest with the winner, which (no
    clicks: every rate 0) is the variant written first."""
    sends = {first[0]: 0, second[0]: 0}
    for user in PROMO_USERS:
        if _bucket(f"promo:test:{user}") < 5000:
            sends[first[0] if _bucket(f"promo:variant:{user}") < first[1] else second[0]] += 1
        else:
            sends[first[0]] += 1
    return sends


def test_sends_per_variant_and_winners(tmp_path: Path) -> None:
    records = _promo_records(tmp_path / "records.jsonl")
    old = _promo_plan(tmp_path, ("a", 5000), ("b", 5000))
    new = _promo_plan(tmp_path, ("b", 3000), ("a", 7000))  # b written first now: the winner of a tie
    report = diff.compare(old, new, diff.record_source(str(records)))
    (c,) = report.campaigns
    assert c.status == "changed" and "variants" in c.changed_fields
    before, after = _expected_sends(("a", 5000), ("b", 5000)), _expected_sends(("b", 3000), ("a", 7000))
    assert {v: (d.old, d.new, d.delta) for v, d in c.sends_per_variant.items()} == {
        v: (before[v], after[v], after[v] - before[v]) for v in ("b", "a")}  # the new version's order
    assert sum(d.new for d in c.sends_per_variant.values()) == c.outcomes["send"].new == len(PROMO_USERS)
    assert c.winners == [diff.Winner("2026-12-20T12:00:00Z", "a", "b")]

    data = json.loads(msgspec.json.encode(report))["campaigns"][0]
    assert data["sends_per_variant"]["a"] == {"old": before["a"], "new": after["a"], "delta": after["a"] - before["a"]}
    assert data["winners"] == [{"at": "2026-12-20T12:00:00Z", "old": "a", "new": "b"}]

    text = render_report(report)
    lines = text.splitlines()
    at = lines.index("    sends per variant")
    assert [line.split() for line in lines[at + 1:at + 3]] == [
        [v, str(before[v]), str(after[v]), f"{after[v] - before[v]:+}" if after[v] != before[v] else "0"]
        for v in ("b", "a")]
    assert "    winner at 2026-12-20T12:00:00Z: a -> b" in lines
    assert lines[lines.index("") + 1] == "~ promo  changed: variants (message ID P%)"


def test_variants_added_to_a_single_message(tmp_path: Path) -> None:
    records = _promo_records(tmp_path / "records.jsonl")
    with_variants = _promo_plan(tmp_path, ("a", 5000), ("b", 5000))
    (promo,) = with_variants.campaigns
    single = msgspec.structs.replace(with_variants, campaigns=(msgspec.structs.replace(promo, variants=(), test=None),))
    report = diff.compare(single, with_variants, diff.record_source(str(records)))
    (c,) = report.campaigns
    sends = _expected_sends(("a", 5000), ("b", 5000))
    assert {v: (d.old, d.new) for v, d in c.sends_per_variant.items()} == {"a": (0, sends["a"]), "b": (0, sends["b"])}
    assert c.winners == [diff.Winner("2026-12-20T12:00:00Z", None, "a")]
    assert "    winner at 2026-12-20T12:00:00Z: no winner record -> a" in render_report(report).splitlines()

    same = diff.compare(with_variants, with_variants, diff.record_source(str(records)))
    (c,) = same.campaigns
    assert c.status == "unchanged" and all(d.delta == 0 and d.old for d in c.sends_per_variant.values())
    assert c.winners == [diff.Winner("2026-12-20T12:00:00Z", "a", "a")]

    plain = diff.compare(single, single, diff.record_source(str(records)))
    assert (plain.campaigns[0].sends_per_variant, plain.campaigns[0].winners) == ({}, [])


def test_variants_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = _promo_records(tmp_path / "records.jsonl")
    for folder, ids in (("old", ("a 50%", "b 50%")), ("new", ("b 30%", "a 70%"))):
        (tmp_path / folder).mkdir()
        text = PROMO_VARIANTS.replace("FIRST", ids[0]).replace("SECOND", ids[1])
        (tmp_path / folder / "promo.push").write_text(text, encoding="utf-8")
    report = diff_json([str(tmp_path / "old"), str(tmp_path / "new"), "--events", str(records)], capsys)
    (c,) = report["campaigns"]
    before, after = _expected_sends(("a", 5000), ("b", 5000)), _expected_sends(("b", 3000), ("a", 7000))
    assert {v: (d["old"], d["new"]) for v, d in c["sends_per_variant"].items()} == {
        v: (before[v], after[v]) for v in ("b", "a")}
    assert c["winners"] == [{"at": "2026-12-20T12:00:00Z", "old": "a", "new": "b"}]
    assert run_diff([str(tmp_path / "old"), str(tmp_path / "new"), "--events", str(records)]) == 0
    assert "    winner at 2026-12-20T12:00:00Z: a -> b" in capsys.readouterr().out.splitlines()
