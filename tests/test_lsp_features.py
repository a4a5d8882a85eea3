"""The language server's answers without the protocol: the workspace's cache, completion by context, hover
texts, quick fixes (tests/test_lsp.py drives the real server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pushlang.cli import main
from pushlang.compiler import compile_text
from pushlang.lsp.complete import Known, complete, known
from pushlang.lsp.fixes import quick_fix
from pushlang.lsp.hover import KEYWORD_DOCS, duration_words
from pushlang.lsp.locate import line_state, word_at
from pushlang.lsp.workspace import Workspace
from pushlang.syntax.keywords import KEYWORDS, WHEN_ITEMS

ROOT = Path(__file__).resolve().parent.parent
CART = (ROOT / "examples" / "abandoned_cart.push").read_text(encoding="utf-8")


def test_every_keyword_says_what_it_does_in_one_line() -> None:
    assert set(KEYWORD_DOCS) == set(KEYWORDS)
    assert all(doc and "\n" not in doc for doc in KEYWORD_DOCS.values())


@pytest.mark.parametrize(("seconds", "words"), [
    (129600, "1 day 12 hours"), (90, "1 minute 30 seconds"), (1209600, "2 weeks"), (86400, "1 day"), (0, "0 seconds"),
])
def test_a_duration_in_words(seconds: int, words: str) -> None:
    assert duration_words(seconds) == words


def test_a_change_parses_the_changed_file_again_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "shared.push").write_text('segment loyal {\n  did "Charged" in last 90d\n}\n', encoding="utf-8")
    user = 'import "./shared.push"\n\ncampaign {id} {{\n  platforms chrome\n  on "A"\n  who {{\n    segment loyal\n  }}\n' \
           '  message {{\n    title "t"\n    body "b"\n  }}\n}}\n'
    a, b = tmp_path / "a.push", tmp_path / "b.push"
    workspace = Workspace()
    workspace.open(a, user.format(id="a"))
    workspace.open(b, user.format(id="b"))
    assert workspace.check(a).diagnostics == [] and workspace.parses == 2  # a.push and shared.push
    assert workspace.check(b).diagnostics == [] and workspace.parses == 3  # shared.push from the cache
    workspace.change(a, user.format(id="a2"))
    assert workspace.check(a).diagnostics == [] and workspace.parses == 4
    assert workspace.dependents(tmp_path / "shared.push") == [a, b]
    assert workspace.dependents(a) == []

    shared = (tmp_path / "shared.push").resolve()
    workspace.open(shared, 'segment loyalists {\n  did "Charged" in last 90d\n}\n')  # unsaved in the editor
    assert [d.code for d in workspace.check(b).diagnostics] == ["PL200"]


def test_a_file_being_typed_keeps_its_imports_in_scope(tmp_path: Path) -> None:
    path = tmp_path / "typing.push"
    workspace = Workspace()
    workspace.open(path, 'import "std/segments"\n\nsegment mine {\n  user.vip == true\n}\n')
    workspace.check(path)
    workspace.change(path, 'import "std/segments"\n\nsegment mine {\n  user.vip == true\n}\n\ncampaign c {\n  who {\n'
                           '    segment \n')
    checked = workspace.check(path)
    assert [d.code for d in checked.diagnostics] == ["PL100"]
    assert {"mine", "new_users", "big_spenders"} <= set(checked.definitions.segments)


def _known(text: str = CART) -> Known:
    path = (ROOT / "examples" / "abandoned_cart.push").resolve()
    workspace = Workspace(schema_path=str(ROOT / "examples" / "schema.toml"))
    workspace.open(path, text)
    return known(workspace.check(path))


def _labels(text: str, needle: str, offset: int | None = None, names: Known | None = None) -> list[str]:
    """What completes at ``needle`` (its end, or ``offset`` characters into it) of ``text``."""
    at = text.index(needle) + (len(needle) if offset is None else offset)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    found = complete(text, line, column, names or _known())
    return [c.label for c in found.candidates] if found else []


def test_completion_by_context() -> None:
    names = _known()
    when = CART.replace("    limit 1 per day\n", "    limit 1 per day\n    \n")
    assert _labels(when, "limit 1 per day\n    ", names=names) == list(WHEN_ITEMS)
    assert _labels(CART.replace("per day", "per "), "limit 1 per ", names=names) == ["day", "week", "campaign"]
    assert {"big_spenders", "new_users"} <= set(_labels(CART, "not segment ", names=names))
    assert "cart_reminder" in _labels(CART, "message use ", names=names)
    assert {"urlencode", "default"} <= set(_labels(CART, "event.product_id | ", names=names))
    # the trigger's event: "Added To Cart" has a cart_id, "Charged" (unless … where) an order_id
    assert "cart_id" in _labels(CART, 'on "Added To Cart" where event.', names=names)
    assert "order_id" in _labels(CART, 'unless "Charged" where event.', names=names)
    assert "country" in _labels(CART, "    user.", names=names)
    assert "Europe/Berlin" in _labels(CART, 'timezone "Europe/', names=names)
    assert "Charged" in _labels(CART, 'unless "', names=names)
    assert "std/templates" in _labels(CART, 'import "', names=names)
    assert _labels("seg", "seg", names=names) == ["segment"]
    assert _labels(CART, "# Someone adds", names=names) == []  # in a comment
    assert "cart" in _labels(CART, "icon default ", names=names)
    assert _labels(CART.replace("urgency high", "urgency "), "urgency ", names=names) == ["very-low", "low", "normal",
                                                                                           "high"]


def test_where_the_end_of_a_line_is() -> None:
    assert line_state('  title "Hi @{user.name | def').where == "template"
    assert line_state('  title "Hi @{user.name | default: \'x\'} and ').where == "string"
    assert line_state('  title "Hi @@{x').where == "string"
    assert line_state('  on "A" # a "quote').where == "comment"
    assert line_state('  on "A" where').where == "code"
    assert word_at("  limit 1 per day", 10) == (8, "1") and word_at("  dnd", 6) == (2, "dnd")


@pytest.mark.parametrize(("before", "after", "title"), [
    ("not segment big_spenders", "not segment big_spender", "Change `big_spender` to `big_spenders`"),
    ('timezone "Europe/Berlin"', 'timezone "Europe/Berln"', "Change `Europe/Berln` to `Europe/Berlin`"),
    ("platforms chrome, firefox, edge", "platforms chrome, firefx, edge", "Change `firefx` to `firefox`"),
    ('import "std/segments"', 'import "std/segmnts"', "Change `std/segmnts` to `std/segments`"),
])
def test_a_did_you_mean_diagnostic_has_a_quick_fix(before: str, after: str, title: str) -> None:
    text = CART.replace(before, after)
    result = compile_text(str(ROOT / "examples" / "abandoned_cart.push"), text)
    fixes = [f for d in result.diagnostics if (f := quick_fix(d, text)) is not None]
    assert [f.title for f in fixes] == [title]
    fix = fixes[0]
    lines = text.split("\n")
    line = lines[fix.span.line - 1]
    lines[fix.span.line - 1] = line[:fix.span.column - 1] + fix.text + line[fix.span.end_column - 1:]
    assert "\n".join(lines) == CART


def test_a_property_quick_fix_changes_the_name_not_the_root() -> None:
    text = CART.replace("user.country in", "user.countyr in")
    result = compile_text(str(ROOT / "examples" / "abandoned_cart.push"), text,
                          schema_path=str(ROOT / "examples" / "schema.toml"))
    fixes = [f for d in result.diagnostics if (f := quick_fix(d, text)) is not None]
    assert [(f.title, f.text) for f in fixes] == [("Change `countyr` to `country`", "country")]


def test_without_the_extra_the_server_says_what_to_install(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    for name in [m for m in sys.modules if m.startswith(("pygls", "lsprotocol", "pushlang.lsp.server"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lsprotocol", None)
    monkeypatch.setitem(sys.modules, "pygls", None)
    assert main(["lsp"]) == 2
    assert "pip install 'pushlang[lsp]'" in capsys.readouterr().err
