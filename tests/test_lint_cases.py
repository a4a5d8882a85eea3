"""Bad snippets with their expected diagnostics written inline, starlark-go style.

Each ``*.push`` file directly in ``tests/lint_cases/`` is one case, compiled alone; each
sub-folder is one case compiled as a whole (duplicates across files, imports). Expectations
are comments:

    who { segment big_spender }   ### PL200:17 ~big_spenders

``### CODE:COL`` is a diagnostic on this line at that column (1-based); ``CODE:LINE:COL`` gives
the line too (for positions a comment cannot reach: inside an unclosed string, the end of the
file); ``@FILE`` after it names the file the diagnostic is in (the schema or config beside the
case) instead of the file holding the comment. An expectation may be followed by checks on that
diagnostic: ``"text"`` (its message contains text), ``~text`` (its help does) and ``+text``
(one of its notes does); text with spaces is quoted, ``~"did you mean"``.

The produced diagnostics must be exactly the expected ones: no missing, no extra, warnings too.
Beside a case ``NAME.push``, ``NAME.schema.toml`` (or ``.json``) is passed as the schema and
``NAME.pushlang.toml`` as the config; a folder case may hold ``schema.toml`` and
``pushlang.toml``. Cases compile in their own folder, so no stray pushlang.toml is found.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pushlang.compiler import CompileResult, compile_paths
from pushlang.diagnostics import CODES, Diagnostic, Severity

CASES_DIR = Path(__file__).resolve().parent / "lint_cases"
MIN_CASES = 45

_MARK = "###"
_EXPECTATION = re.compile(r"(PL\d{3}):(\d+)(?::(\d+))?(?:@(\S+))?")

Key = tuple[str, str, int, int]  # (file relative to the case folder, code, line, column)


@dataclass
class Expectation:
    path: str
    code: str
    line: int
    column: int
    message: list[str] = field(default_factory=list)
    help: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.path, self.code, self.line, self.column)


@dataclass
class Case:
    id: str
    folder: Path  # where the case compiles; paths in keys are relative to it
    files: list[Path]
    config: Path | None
    schema: Path | None


def discover() -> list[Case]:
    cases: list[Case] = []
    for entry in sorted(CASES_DIR.iterdir()):
        if entry.is_file() and entry.suffix == ".push":
            stem = entry.name.removesuffix(".push")
            cases.append(Case(stem, CASES_DIR, [entry], _beside(f"{stem}.pushlang.toml"),
                              _beside(f"{stem}.schema.toml", f"{stem}.schema.json")))
        elif entry.is_dir() and not entry.name.startswith((".", "__")):
            files = sorted(entry.rglob("*.push"))
            schema = next((p for p in (entry / "schema.toml", entry / "schema.json") if p.is_file()), None)
            cases.append(Case(f"{entry.name}/", entry, files, None, schema))
    return cases


def _beside(*names: str) -> Path | None:
    return next((CASES_DIR / n for n in names if (CASES_DIR / n).is_file()), None)


def expectations(case: Case) -> list[Expectation]:
    found: list[Expectation] = []
    for file in case.files:
        shown = file.relative_to(case.folder).as_posix()
        for number, text in enumerate(file.read_text(encoding="utf-8").split("\n"), start=1):
            if _MARK in text:
                found += _parse_line(text.split(_MARK, 1)[1], shown, number, f"{shown}:{number}")
    return found


def _parse_line(comment: str, path: str, line: int, where: str) -> list[Expectation]:
    out: list[Expectation] = []
    for word in shlex.split(comment):
        if word[0] in "~+" and out:
            (out[-1].help if word[0] == "~" else out[-1].notes).append(word[1:])
            continue
        m = _EXPECTATION.fullmatch(word)
        if m is None:
            if out and not re.match(r"PL\d", word):
                out[-1].message.append(word)
                continue
            raise AssertionError(f"{where}: cannot read the expectation {word!r}")
        code, first, second, file = m.groups()
        assert code in CODES, f"{where}: {code} is not in the catalogue"
        if second is None:
            out.append(Expectation(file or path, code, line, int(first)))
        else:
            out.append(Expectation(file or path, code, int(first), int(second)))
    return out


def compile_case(case: Case, monkeypatch: pytest.MonkeyPatch) -> CompileResult:
    monkeypatch.chdir(case.folder)
    return compile_paths(
        [f.relative_to(case.folder).as_posix() for f in case.files],
        config_path=str(case.config) if case.config else None,
        schema_path=str(case.schema) if case.schema else None,
    )


def key_of(d: Diagnostic, folder: Path) -> Key:
    path = Path(d.path)
    resolved = path if path.is_absolute() else folder / path
    try:
        shown = resolved.resolve().relative_to(folder).as_posix()
    except ValueError:
        shown = d.path  # outside the case (the standard library): never expected
    return (shown, d.code, d.span.line, d.span.column)


def describe(d: Diagnostic) -> str:
    return f"{d.path}:{d.span.line}:{d.span.column}: {d.code} {d.severity.value}: {d.message} (help: {d.help})"


CASES = discover()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = expectations(case)
    assert expected, f"{case.id}: a case expects at least one diagnostic"
    result = compile_case(case, monkeypatch)  # an exception escaping here fails the case

    produced = {key_of(d, case.folder): d for d in result.diagnostics}
    listing = "\n".join(describe(d) for d in result.diagnostics)
    missing = Counter(e.key for e in expected) - Counter(key_of(d, case.folder) for d in result.diagnostics)
    extra = Counter(key_of(d, case.folder) for d in result.diagnostics) - Counter(e.key for e in expected)
    assert not missing and not extra, (
        f"missing: {sorted(missing.elements())}\nextra: {sorted(extra.elements())}\nproduced:\n{listing}"
    )

    for e in expected:
        d = produced[e.key]
        for text in e.message:
            assert text in d.message, f"{e.key}: message {d.message!r} lacks {text!r}"
        for text in e.help:
            assert d.help is not None and text in d.help, f"{e.key}: help {d.help!r} lacks {text!r}"
        for text in e.notes:
            assert any(text in n for n in d.notes), f"{e.key}: notes {d.notes!r} lack {text!r}"

    for d in result.diagnostics:
        assert d.span.line >= 1 and d.span.column >= 1, describe(d)
        assert d.message and d.name == CODES[d.code].name and d.severity is CODES[d.code].severity, describe(d)

    if any(CODES[e.code].severity is Severity.ERROR for e in expected):
        assert result.plan is None, "a case with errors must not produce a plan"
    else:
        assert result.plan is not None, "warnings never make a campaign unusable"


def test_unreadable_file_is_a_diagnostic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Latin-1 bytes, not UTF-8: the é of café on line 3 (committed as text it would be re-encoded).
    (tmp_path / "latin1.push").write_bytes(b'# Saved as Latin-1.\ncampaign cafe {\n  on "Caf\xe9 Visit"\n}\n')
    monkeypatch.chdir(tmp_path)
    result = compile_paths(["latin1.push"])
    assert [(d.path, d.code, d.span.line, d.span.column) for d in result.diagnostics] == [
        ("latin1.push", "PL211", 3, 10)
    ]
    assert "UTF-8" in result.diagnostics[0].message
    assert result.plan is None


def test_missing_file_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = compile_paths(["nowhere.push"])
    assert [(d.path, d.code, d.span.line, d.span.column) for d in result.diagnostics] == [
        ("nowhere.push", "PL211", 1, 1)
    ]
    assert result.plan is None


# Codes the plain tests above cover, because their input cannot be a committed text file.
PLAIN_TESTS_COVER = {"PL211"}


def test_every_code_has_a_case() -> None:
    covered = {e.code for case in CASES for e in expectations(case)} | PLAIN_TESTS_COVER
    assert sorted(set(CODES) - covered) == []


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES
    assert len({c.id for c in CASES}) == len(CASES)
