"""The command line through ``main(argv)``: formats, exit codes, explain, compile, fmt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pushlang import plan
from pushlang.cli import main
from pushlang.diagnostics import CODES

ROOT = Path(__file__).resolve().parent.parent

BAD = '''campaign welcome {
  on "Signed Up"
  who {
    segment big_spender
  }
  message {
    title "Hi"
    body "Welcome"
    url "https://shop.example.com"
  }
}
'''

WARN = '''campaign welcome_back {
  on "Signed Up"
  message {
    title "Hi"
    body "Welcome"
  }
}
'''


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.push").write_text(BAD, encoding="utf-8")
    (tmp_path / "warn.push").write_text(WARN, encoding="utf-8")
    return tmp_path


def test_lint_text_reports_location_caret_and_did_you_mean(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "bad.push"]) == 1
    out = capsys.readouterr().out
    assert "bad.push:4:13: error[PL200]: unknown segment `big_spender`" in out
    assert "    segment big_spender" in out
    assert "^^^^^^^^^^^" in out
    assert "did you mean `big_spenders`?" not in out  # not imported: nothing close is in scope
    assert "1 file checked: 1 error." in out


def test_lint_did_you_mean_for_imported_segment(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "bad.push").write_text('import "std/segments"\n' + BAD, encoding="utf-8")
    assert main(["lint", "bad.push"]) == 1
    assert "help: did you mean `big_spenders`?" in capsys.readouterr().out


def test_warnings_exit_0_unless_denied(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "warn.push"]) == 0
    assert "warning[PL600]" in capsys.readouterr().out
    assert main(["lint", "--deny-warnings", "warn.push"]) == 1


def test_lint_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "json", "bad.push", "warn.push"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert {(d["path"], d["line"], d["column"], d["severity"], d["code"]) for d in found} == {
        ("bad.push", 4, 13, "error", "PL200"),
        ("warn.push", 3, 3, "warning", "PL600"),
    }
    assert all({"path", "line", "column", "severity", "code", "message"} <= d.keys() for d in found)


def test_lint_github_and_sarif(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--format", "github", "bad.push"]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("::error file=bad.push,line=4,col=13,")
    assert main(["lint", "--format", "sarif", "bad.push"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "PL200"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_usage_errors_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "missing.push"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["lint", "--format", "xml", "bad.push"]) == 2
    assert main([]) == 2
    (project / "empty").mkdir()
    assert main(["lint", "empty"]) == 2
    assert main(["explain", "PL999"]) == 2


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "pl200"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PL200 unknown-segment (error)")
    assert "Fix:" in out
    assert main(["explain", "safari-without-url"]) == 0
    assert capsys.readouterr().out.startswith("PL600 safari-without-url (warning)")
    assert main(["explain"]) == 0
    listing = capsys.readouterr().out
    assert all(code in listing for code in CODES)


def test_compile_prints_the_plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["compile", "examples/abandoned_cart.push"]) == 0
    compiled = plan.from_json(capsys.readouterr().out)
    (campaign,) = compiled.campaigns
    assert isinstance(campaign.trigger, plan.InactionWithin)
    assert campaign.trigger.within == 600
    assert compiled.settings.global_per_user_per_day == 3  # examples/pushlang.toml, found beside the file


def test_compile_with_errors_prints_diagnostics_to_stderr(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "bad.push"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "PL200" in captured.err


def test_fmt_check_diff_and_write(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    messy = 'campaign welcome {\n on "Signed Up"\n   message {   title "Hi"\nbody   "Welcome"\n url "https://x" }\n}\n'
    (project / "messy.push").write_text(messy, encoding="utf-8")
    assert main(["fmt", "--check", "messy.push"]) == 1
    assert "would reformat messy.push" in capsys.readouterr().out
    assert main(["fmt", "--diff", "messy.push"]) == 1
    assert "+  message {" in capsys.readouterr().out
    assert (project / "messy.push").read_text(encoding="utf-8") == messy  # --check/--diff change nothing
    assert main(["fmt", "messy.push"]) == 0
    formatted = (project / "messy.push").read_text(encoding="utf-8")
    assert formatted != messy
    assert main(["fmt", "--check", "messy.push"]) == 0


def test_fmt_check_examples_and_stdlib(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["fmt", "--check", "examples/", "stdlib/"]) == 0


def test_fmt_reports_syntax_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "broken.push").write_text("campaign x {\n", encoding="utf-8")
    assert main(["fmt", "broken.push"]) == 1
    assert "error[PL100]" in capsys.readouterr().err


def test_lint_a_copied_project_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "shop")
    monkeypatch.chdir(tmp_path)
    assert main(["lint", "shop"]) == 0
    assert "no problems" in capsys.readouterr().out


def test_redis_commands_say_when_the_server_is_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis", reason="the scale-out commands need the redis package")
    (tmp_path / "records.jsonl").write_text('{"user":"u1","ts":"2026-12-01T08:00:00Z","name":"A"}\n',
                                            encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "--to", "redis://127.0.0.1:1", "records.jsonl"]) == 2
    assert "pushlang: error: Redis: " in capsys.readouterr().err


def test_version_names_the_runtime_this_install_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """`pushlang --version` says whether the runtime is compiled; where the compiled build's test runs
    the quick suite (PUSHLANG_EXPECT_COMPILED, tests/test_compiled.py), it must be, or that run proves nothing."""
    import os

    from pushlang import __version__, compiled

    assert main(["--version"]) == 0
    runtime = "compiled runtime" if compiled() else "pure Python"
    assert capsys.readouterr().out == f"pushlang {__version__} ({runtime})\n"
    assert compiled() == bool(os.environ.get("PUSHLANG_EXPECT_COMPILED"))
