"""The diagnostic renderers: text snippets and carets, JSON, GitHub annotations, SARIF, explain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushlang.diagnostics import CODES, Diagnostic, Severity
from pushlang.diagnostics.render import (
    FORMATS,
    render,
    render_explain,
    render_github,
    render_json,
    render_sarif,
    render_summary,
    render_text,
)
from pushlang.source import Source, Span

CAMPAIGN = (
    "campaign welcome {\n"
    '  on "Signed Up"\n'
    "\twho { segment vipp }\n"
    '  title "🛒 @{user.nme}"\n'
    "}"
)


def diag(
    span: Span,
    *,
    code: str = "PL200",
    severity: Severity | None = None,
    message: str = "unknown segment `vipp`",
    path: str = "campaigns/welcome.push",
    help: str | None = None,
    notes: tuple[str, ...] = (),
) -> Diagnostic:
    entry = CODES[code]
    return Diagnostic(
        entry.code, entry.name, severity or entry.severity, message, path, span, help, notes
    )


SOURCES = {"campaigns/welcome.push": Source("campaigns/welcome.push", CAMPAIGN)}
SEGMENT = diag(Span(3, 16, 3, 20), help="did you mean `vip`?", notes=("segments live in std/segments",))
PROPERTY = diag(
    Span(4, 14, 4, 22), code="PL604", message="`user.nme` is not in the schema",
    help="did you mean `user.name`?",
)


def caret_column(caret_line: str) -> int:
    """The 0-based screen column of the first caret."""
    return caret_line.index("^")


# ---- text ----------------------------------------------------------------------------------------


def test_text_header_snippet_and_help() -> None:
    out = render_text([SEGMENT], SOURCES)
    assert out.splitlines() == [
        "campaigns/welcome.push:3:16: error[PL200]: unknown segment `vipp`",
        " 3 |     who { segment vipp }",
        "   |                   ^^^^",
        "   = help: did you mean `vip`?",
        "   = note: segments live in std/segments",
    ]


def test_text_caret_lines_up_after_a_tab() -> None:
    _header, line, carets, *_ = render_text([SEGMENT], SOURCES).splitlines()
    # The tab is shown as four spaces, so `vipp` starts four cells later than its column says.
    assert line[caret_column(carets):].startswith("vipp }")
    assert carets.count("^") == 4


def test_text_caret_lines_up_after_an_emoji() -> None:
    header, line, carets, *rest = render_text([PROPERTY], SOURCES).splitlines()
    assert header == "campaigns/welcome.push:4:14: warning[PL604]: `user.nme` is not in the schema"
    assert line == ' 4 |   title "🛒 @{user.nme}"'
    # Columns count characters (🛒 is one); the emoji takes two terminal cells, so the caret
    # sits one cell further right than the string index of `user`: under its `u` on screen.
    assert caret_column(carets) == line.index("user") + 1
    assert carets == "   |" + " " * 15 + "^" * 8
    assert rest == ["   = help: did you mean `user.name`?"]


def test_text_span_over_an_emoji_gets_two_carets() -> None:
    out = render_text([diag(Span(4, 10, 4, 11), message="emoji")], SOURCES).splitlines()
    assert out[2] == "   |" + " " * 10 + "^^"


def test_text_multiline_span_underlines_to_end_of_first_line() -> None:
    out = render_text([diag(Span(3, 6, 4, 3))], SOURCES).splitlines()
    # `{ segment vipp }` is 16 characters, from column 6 to the end of line 3.
    assert out[2] == "   |" + " " * 9 + "^" * 16


def test_text_empty_or_end_of_line_span_gets_one_caret() -> None:
    empty = render_text([diag(Span(1, 10, 1, 10))], SOURCES).splitlines()
    assert empty[2] == "   |" + " " * 10 + "^"
    past_end = render_text([diag(Span(5, 2, 5, 2), code="PL100", message="expected `}`")], SOURCES)
    assert past_end.splitlines()[1:3] == [" 5 | }", "   |  ^"]


def test_text_without_source_or_line_has_no_snippet() -> None:
    config = diag(
        Span(0, 0, 0, 0), code="PL700", path="pushlang.toml",
        message="timezone 'Berlin' is not a timezone", help="did you mean `Europe/Berlin`?",
    )
    unknown_file = diag(Span(2, 1, 2, 5), path="elsewhere.push")
    out = render_text([config, unknown_file], SOURCES)
    assert out == (
        "pushlang.toml: error[PL700]: timezone 'Berlin' is not a timezone\n"
        "   = help: did you mean `Europe/Berlin`?\n"
        "\n"
        "elsewhere.push:2:1: error[PL200]: unknown segment `vipp`"
    )


def test_text_gutter_widens_for_long_line_numbers() -> None:
    text = "\n" * 11 + "segment vip { user.vip == true }"
    out = render_text([diag(Span(12, 9, 12, 12), path="s.push")], {"s.push": Source("s.push", text)})
    assert out.splitlines()[1:] == [
        " 12 | segment vip { user.vip == true }",
        "    |         ^^^",
    ]


def test_text_blank_line_between_diagnostics_and_none_is_empty() -> None:
    out = render_text([SEGMENT, PROPERTY], SOURCES)
    assert "\n\ncampaigns/welcome.push:4:14: warning[PL604]" in out
    assert render_text([], SOURCES) == ""


def test_text_colour_only_when_asked() -> None:
    plain = render_text([SEGMENT, PROPERTY], SOURCES)
    assert "\x1b[" not in plain
    coloured = render_text([SEGMENT, PROPERTY], SOURCES, color=True)
    assert "\x1b[1;31merror[PL200]\x1b[0m" in coloured
    assert "\x1b[1;33mwarning[PL604]\x1b[0m" in coloured
    assert "\x1b[1m: unknown segment `vipp`\x1b[0m" in coloured
    assert "\x1b[1;34m|\x1b[0m" in coloured
    info = diag(Span(1, 1, 1, 2), severity=Severity.INFO, message="fyi")
    assert "\x1b[1;34minfo[PL200]\x1b[0m" in render_text([info], SOURCES, color=True)


@pytest.mark.parametrize(
    ("severities", "files", "expected"),
    [
        ([], 3, "3 files checked: no problems."),
        ([Severity.ERROR, Severity.ERROR, Severity.WARNING], 3, "3 files checked: 2 errors, 1 warning."),
        ([Severity.WARNING, Severity.WARNING], 1, "1 file checked: 2 warnings."),
        ([Severity.ERROR, Severity.INFO], 2, "2 files checked: 1 error, 1 info."),
    ],
)
def test_summary(severities: list[Severity], files: int, expected: str) -> None:
    diagnostics = [diag(Span(1, 1, 1, 2), severity=s) for s in severities]
    assert render_summary(diagnostics, files) == expected


# ---- JSON ----------------------------------------------------------------------------------------


def test_json_fields_and_values() -> None:
    data = json.loads(render_json([SEGMENT, PROPERTY]))
    assert data[0] == {
        "path": "campaigns/welcome.push",
        "line": 3,
        "column": 16,
        "end_line": 3,
        "end_column": 20,
        "severity": "error",
        "code": "PL200",
        "name": "unknown-segment",
        "message": "unknown segment `vipp`",
        "help": "did you mean `vip`?",
        "notes": ["segments live in std/segments"],
    }
    assert data[1]["severity"] == "warning"
    no_help = json.loads(render_json([diag(Span(1, 1, 1, 2))]))[0]
    assert no_help["help"] is None and no_help["notes"] == []
    assert json.loads(render_json([])) == []


def test_json_keeps_non_ascii_readable() -> None:
    out = render_json([diag(Span(1, 1, 1, 2), message="unknown filter `großschreiben` 🛒")])
    assert "großschreiben` 🛒" in out


# ---- GitHub --------------------------------------------------------------------------------------


def test_github_command() -> None:
    assert render_github([SEGMENT, PROPERTY]).splitlines() == [
        "::error file=campaigns/welcome.push,line=3,col=16,endLine=3,endColumn=20,"
        "title=PL200 unknown-segment::unknown segment `vipp`%0Ahelp: did you mean `vip`?"
        "%0Anote: segments live in std/segments",
        "::warning file=campaigns/welcome.push,line=4,col=14,endLine=4,endColumn=22,"
        "title=PL604 unknown-property::`user.nme` is not in the schema%0Ahelp: did you mean `user.name`?",
    ]


def test_github_escaping() -> None:
    d = diag(
        Span(1, 2, 1, 5), path="odd,dir/a:b%.push",
        message="control group 100%, nobody gets it:\r\nreally", help="use 10%, or less",
    )
    assert render_github([d]) == (
        "::error file=odd%2Cdir/a%3Ab%25.push,line=1,col=2,endLine=1,endColumn=5,"
        "title=PL200 unknown-segment::control group 100%25, nobody gets it:%0D%0Areally"
        "%0Ahelp: use 10%25, or less"
    )


def test_github_severity_commands_and_no_location() -> None:
    info = diag(Span(1, 1, 1, 2), severity=Severity.INFO, message="fyi")
    config = diag(Span(0, 0, 0, 0), code="PL700", path="pushlang.toml", message="bad")
    lines = render_github([info, config]).splitlines()
    assert lines[0].startswith("::notice file=")
    assert lines[1] == "::error file=pushlang.toml,title=PL700 invalid-config::bad"


# ---- SARIF ---------------------------------------------------------------------------------------

# The keys SARIF 2.1.0 requires (or that GitHub code scanning needs) at each level of the log.
REQUIRED = {
    "log": ("version", "runs"),
    "run": ("tool", "results"),
    "driver": ("name", "rules"),
    "rule": ("id", "shortDescription", "defaultConfiguration"),
    "result": ("ruleId", "message", "locations"),
    "physicalLocation": ("artifactLocation",),
    "region": ("startLine", "startColumn", "endLine", "endColumn"),
}


def check_sarif(log: dict[str, Any]) -> None:
    def has(kind: str, obj: dict[str, Any]) -> None:
        missing = [key for key in REQUIRED[kind] if key not in obj]
        assert not missing, f"{kind} lacks {missing}"

    has("log", log)
    assert log["version"] == "2.1.0"
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        has("run", run)
        driver = run["tool"]["driver"]
        has("driver", driver)
        for rule in driver["rules"]:
            has("rule", rule)
            assert isinstance(rule["shortDescription"]["text"], str)
            assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
        ids = [rule["id"] for rule in driver["rules"]]
        assert len(ids) == len(set(ids))
        for result in run["results"]:
            has("result", result)
            assert isinstance(result["message"]["text"], str) and result["message"]["text"]
            assert result["level"] in ("error", "warning", "note")
            if "ruleIndex" in result:
                assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
            for location in result["locations"]:
                physical = location["physicalLocation"]
                has("physicalLocation", physical)
                assert "uri" in physical["artifactLocation"]
                if "region" in physical:
                    has("region", physical["region"])
                    assert physical["region"]["startLine"] >= 1


def test_sarif_structure() -> None:
    info = diag(Span(1, 1, 1, 9), code="PL501", severity=Severity.INFO, message="fyi")
    log = json.loads(render_sarif([SEGMENT, PROPERTY, info], tool_version="1.2.3"))
    check_sarif(log)
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "pushlang"
    assert driver["version"] == "1.2.3"
    assert driver["informationUri"] == "https://github.com/pushlang/pushlang"
    assert [rule["id"] for rule in driver["rules"]] == list(CODES)

    first = run["results"][0]
    assert first["ruleId"] == "PL200"
    rule = driver["rules"][first["ruleIndex"]]
    assert rule["id"] == "PL200"
    assert rule["name"] == "unknown-segment"
    assert rule["shortDescription"]["text"] == CODES["PL200"].summary
    assert rule["fullDescription"]["text"] == CODES["PL200"].why
    assert rule["help"]["text"] == CODES["PL200"].fix
    assert rule["defaultConfiguration"]["level"] == "error"
    assert first["level"] == "error"
    assert first["message"]["text"] == (
        "unknown segment `vipp`\nhelp: did you mean `vip`?\nnote: segments live in std/segments"
    )
    physical = first["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "campaigns/welcome.push", "uriBaseId": "%SRCROOT%"}
    assert physical["region"] == {"startLine": 3, "startColumn": 16, "endLine": 3, "endColumn": 20}

    assert [r["level"] for r in run["results"]] == ["error", "warning", "note"]
    assert driver["rules"][run["results"][1]["ruleIndex"]]["defaultConfiguration"]["level"] == "warning"


def test_sarif_paths_and_missing_location() -> None:
    windows = diag(Span(1, 1, 1, 2), path="campaigns\\cart.push")
    absolute = diag(Span(1, 1, 1, 2), path="/srv/push/cart.push")
    config = diag(Span(0, 0, 0, 0), code="PL700", path="pushlang.toml", message="bad")
    log = json.loads(render_sarif([windows, absolute, config], tool_version="0.1.0"))
    check_sarif(log)
    locations = [r["locations"][0]["physicalLocation"] for r in log["runs"][0]["results"]]
    assert locations[0]["artifactLocation"] == {"uri": "campaigns/cart.push", "uriBaseId": "%SRCROOT%"}
    assert locations[1]["artifactLocation"] == {"uri": "file:///srv/push/cart.push"}
    assert locations[2] == {"artifactLocation": {"uri": "pushlang.toml", "uriBaseId": "%SRCROOT%"}}


def test_sarif_with_no_results_is_still_valid() -> None:
    log = json.loads(render_sarif([], tool_version="0.1.0"))
    check_sarif(log)
    assert log["runs"][0]["results"] == []


# ---- dispatch ------------------------------------------------------------------------------------


def test_render_dispatches_every_format() -> None:
    assert FORMATS == ("text", "json", "github", "sarif")
    for fmt in FORMATS:
        assert render(fmt, [SEGMENT], SOURCES, tool_version="0.1.0")
    assert render("json", [SEGMENT], SOURCES) == render_json([SEGMENT])
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render("xml", [SEGMENT], SOURCES)


# ---- explain -------------------------------------------------------------------------------------


def test_explain_unknown_segment() -> None:
    out = render_explain(CODES["PL200"])
    lines = out.splitlines()
    assert lines[0] == "PL200 unknown-segment (error)"
    assert lines[1] == ""
    assert lines[2] == CODES["PL200"].summary
    assert "\nWhy:\n  An audience built on a missing segment cannot be evaluated.\n" in out
    assert "\nExample:\n\n    who {\n      segment big_spender\n    }\n" in out
    assert "\nFix:\n  Define the segment, import the file that defines it" in out


def test_explain_warning_code() -> None:
    out = render_explain(CODES["PL501"])
    assert out.startswith("PL501 control-group-large (warning)\n\n")
    assert out.index("Why:") < out.index("Example:") < out.index("Fix:")


@pytest.mark.parametrize("code", list(CODES))
def test_every_code_explains(code: str) -> None:
    entry = CODES[code]
    out = render_explain(entry)
    assert entry.code in out and entry.name in out
    assert f"({entry.severity.value})" in out.splitlines()[0]
    for line in entry.example.splitlines():
        if line.strip():
            assert "    " + line in out
    assert not any(line != line.rstrip() for line in out.splitlines())
