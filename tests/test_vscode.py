"""The VS Code extension (editors/vscode): its TextMate grammar is what pushlang.editors.textmate
generates from the keyword list, and tokenizes every example and stdlib file in vscode-textmate (with
vscode-oniguruma, as VS Code does) like the Pygments lexer; its client starts the configured
command; the .vsix builds.

VS Code itself is not run. The tests that need Node and editors/vscode's node_modules (`npm ci`
there; .ci/run does it) are `slow`; without them they skip and say why, except in CI (CI=true),
where they fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pygments.token import (
    Comment,
    Error,
    Keyword,
    Literal,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
)

from pushlang.editors import textmate
from pushlang.highlight import lexer
from pushlang.resources import grammar_file
from pushlang.syntax.keywords import KEYWORDS, WORDS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "pushlang.tmLanguage.json"
SOURCES = sorted([*(ROOT / "examples").glob("*.push"), *(ROOT / "stdlib").glob("*.push")])

# ---- the grammar, generated --------------------------------------------------------------------

def test_the_committed_grammar_is_a_fresh_generation() -> None:
    fresh = subprocess.run([sys.executable, "-m", "pushlang.editors.textmate"], capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert fresh.stdout == textmate.text()
    assert GRAMMAR.read_text(encoding="utf-8") == fresh.stdout, (
        "regenerate it: python -m pushlang.editors.textmate > editors/vscode/syntaxes/pushlang.tmLanguage.json")


def _keyword_patterns() -> dict[str, str]:
    """The expression's one-word rules: scope → the words of its regex."""
    rules = json.loads(GRAMMAR.read_text(encoding="utf-8"))["repository"]["expression"]["patterns"]
    found = {}
    for rule in rules:
        match = re.fullmatch(r"\(\?<!\[A-Za-z0-9_\]\)\(\?:([a-z|]+)\)\(\?!\[A-Za-z0-9_\]\)", rule.get("match", ""))
        if match:
            found[rule["name"]] = match.group(1)
    return found


def test_every_keyword_of_the_list_is_in_exactly_one_keyword_rule() -> None:
    assert set(textmate.CONDITIONAL) <= set(WORDS) and set(textmate.OPERATOR_WORDS) <= set(WORDS)
    rules = _keyword_patterns()
    assert all(scope.startswith(("keyword.", "constant.language.")) for scope in rules)
    words = [word for alternatives in rules.values() for word in alternatives.split("|")]
    assert sorted(words) == sorted(KEYWORDS)


# ---- the extension's manifest ------------------------------------------------------------------

def test_the_manifest_contributes_the_language_the_grammar_and_the_server_setting() -> None:
    manifest = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    (language,) = manifest["contributes"]["languages"]
    assert language["id"] == "pushlang" and language["extensions"] == [".push"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["language"] == "pushlang" and grammar["scopeName"] == textmate.SCOPE
    assert (VSCODE / grammar["path"]).resolve() == GRAMMAR
    assert (VSCODE / manifest["main"]).is_file()
    setting = manifest["contributes"]["configuration"]["properties"]["pushlang.server.command"]
    assert setting["default"] == ["pushlang", "lsp"]
    assert manifest["devDependencies"]["@vscode/vsce"].startswith("^3.")
    assert {"vscode-textmate", "vscode-oniguruma"} <= set(manifest["devDependencies"])
    assert set(manifest["dependencies"]) == {"vscode-languageclient"}
    assert (VSCODE / "package-lock.json").is_file() and (VSCODE / "LICENSE").is_file()
    config = json.loads((VSCODE / language["configuration"]).read_text(encoding="utf-8"))
    assert re.search(r"^COMMENT: /#", grammar_file().read_text(encoding="utf-8"), re.MULTILINE)
    assert config["comments"] == {"lineComment": "#"}
    assert ["{", "}"] in config["brackets"]
    assert re.match(config["indentationRules"]["increaseIndentPattern"], "campaign x {  # a comment")
    assert not re.match(config["indentationRules"]["increaseIndentPattern"], '  body "@{user.x}"')
    assert re.match(config["indentationRules"]["decreaseIndentPattern"], "  }")


# ---- Node: the client, the .vsix, the grammar in vscode-textmate ---------------------------

@pytest.fixture(scope="module")
def node() -> str:
    """Node, with editors/vscode's node_modules installed (outside CI, a test skips without them)."""
    reason = None
    node = shutil.which("node")
    if node is None:
        reason = "no `node` on the PATH (the VS Code extension's tests need Node 20)"
    elif not (VSCODE / "node_modules" / "vscode-textmate").is_dir():
        reason = "editors/vscode has no node_modules: run `cd editors/vscode && npm ci` (.ci/run does)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


# ---- the client, with stand-ins for VS Code ----------------------------------------------------

def client(node: str, *setting: Any) -> dict[str, Any]:
    run = subprocess.run([node, "test/client.cjs", *(json.dumps(s) for s in setting)], cwd=VSCODE,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


@pytest.mark.slow
def test_the_client_starts_the_configured_command_over_stdio(node: str) -> None:
    default = client(node)
    (started,) = default["clients"]
    # No `transport`: stdio, and no `--stdio` added to the command.
    assert started["serverOptions"] == {"command": "pushlang", "args": ["lsp"]}
    assert {"scheme": "file", "language": "pushlang"} in started["documentSelector"]
    assert default["started"] == 1 and default["errors"] == []
    assert default["commands"] == ["pushlang.restartServer"]
    (configured,) = client(node, ["/srv/venv/bin/pushlang", "lsp", "--tcp", "127.0.0.1:2087"])["clients"]
    assert configured["serverOptions"] == {"command": "/srv/venv/bin/pushlang", "args": ["lsp", "--tcp", "127.0.0.1:2087"]}
    broken = client(node, [])
    assert broken["clients"] == [] and "pushlang.server.command" in broken["errors"][0]


# ---- the .vsix ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_vsix_builds_with_the_extension_its_grammar_and_its_client_library(node: str, tmp_path: Path) -> None:
    vsix = tmp_path / "pushlang.vsix"
    vsce = VSCODE / "node_modules" / ".bin" / "vsce"
    run = subprocess.run([str(vsce), "package", "--allow-missing-repository", "--out", str(vsix)], cwd=VSCODE,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        assert {"extension.vsixmanifest", "extension/extension.js", "extension/package.json",
                "extension/language-configuration.json", "extension/syntaxes/pushlang.tmLanguage.json",
                "extension/LICENSE.txt", "extension/node_modules/vscode-languageclient/lib/node/main.js"} <= names
        assert archive.read("extension/syntaxes/pushlang.tmLanguage.json") == GRAMMAR.read_bytes()
        manifest = json.loads(archive.read("extension/package.json"))
        assert manifest["contributes"]["languages"][0]["id"] == "pushlang"
    # Neither the tests nor the development dependencies ship.
    assert not any(n.startswith(("extension/test/", "extension/node_modules/vscode-textmate/",
                                 "extension/node_modules/@vscode/")) for n in names)
    assert vsix.stat().st_size < 2_000_000


# ---- the grammar in vscode-textmate ------------------------------------------------------------

# Constructs the examples do not all have: variants, weekdays, nested strings in a personalisation,
# escapes, `per campaign`, a conditional, a built-in icon.
SNIPPET = """\
import "std/segments"  # the standard segments

segment loyal {
  did "Charged" where event.amount >= 100 at least 2 times in last 90d
  exists user.email and not (user.plan starts with "free")
}

template hello {
  title 'Hi @{user.name | default: "friend"}, write to help@example.com'
}

campaign cart_10m "Cart, 10 minutes" {
  platforms chrome, firefox
  send every monday, thursday at 09:00, 18:00
  who {
    user.country in ["IN", "US"] and lower(user["First Name"]) != null
    not segment loyal
  }
  when {
    start 2026-12-01T09:00
    dnd 21:00 to 09:00:30 delay
    limit 1 per campaign
    priority -5
    deliver at best time between 09:00 and 21:00 by "Opened App"
  }
  message a 50% use hello {
    body "Hey @user.first_name, @{event.price * 1.2 | round: 2} @{if user.vip then 'VIP' else \\"you\\"} @@ \\u{1F6D2}\\n"
    icon default cart
    urgency very-low
    button "Buy" -> "https://x.example/b"
  }
  message b 50% {
    title "Your @event.product_name."
  }
  control group 2.5%
  test 20% then winner by clicks after 36h
}
"""



Line = list[tuple[str, list[str]]]


def tokenize(node: str, texts: dict[str, str]) -> dict[str, list[Line]]:
    """Each text's lines, each a list of (text, scopes) as VS Code would highlight them."""
    run = subprocess.run([node, "test/tokenize.mjs"], cwd=VSCODE, input=json.dumps(texts), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert {name: result["stopped"] for name, result in out.items()} == {name: [] for name in texts}
    return {name: [[(value, scopes) for value, scopes in line] for line in result["lines"]]
            for name, result in out.items()}


@pytest.fixture(scope="module")
def tokenized(node: str) -> dict[str, list[Line]]:
    texts = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in SOURCES}
    texts["SNIPPET"] = SNIPPET
    texts.update({f"keyword {word}": f"{word} " for word in KEYWORDS})
    return tokenize(node, texts)


def name_of(path: Path) -> str:
    return str(path.relative_to(ROOT))


def tokens_of(lines: list[Line]) -> Iterator[tuple[int, str, list[str]]]:
    for number, line in enumerate(lines, 1):
        for value, scopes in line:
            yield number, value, scopes


def scopes_of(lines: list[Line], value: str, nth: int = 0, line: int | None = None) -> list[str]:
    """The scopes of the ``nth`` token whose text is ``value`` (on line ``line``)."""
    found = [scopes for number, v, scopes in tokens_of(lines) if v == value and line in (None, number)]
    assert len(found) > nth, f"no token {value!r} (#{nth})"
    return found[nth]


def inner(scopes: list[str]) -> str:
    return scopes[-1]


def in_text(scopes: list[str]) -> bool:
    """Whether a token is text of a string or a comment (not code inside a string's `@{ … }`)."""
    for scope in reversed(scopes):
        if scope.startswith("meta.embedded."):
            return False
        if scope.startswith(("string.", "comment.")):
            return True
    return False


@pytest.mark.slow
def test_there_are_sources(tokenized: dict[str, list[Line]]) -> None:
    assert len(SOURCES) >= 20 and {p.parent.name for p in SOURCES} == {"examples", "stdlib"}
    assert set(tokenized) >= {name_of(p) for p in SOURCES}


@pytest.mark.slow
@pytest.mark.parametrize("name", [*(name_of(p) for p in SOURCES), "SNIPPET"])
def test_every_file_is_tokenized_completely_and_validly(tokenized: dict[str, list[Line]], name: str) -> None:
    text = SNIPPET if name == "SNIPPET" else (ROOT / name).read_text(encoding="utf-8")
    lines = tokenized[name]
    assert ["".join(value for value, _ in line) for line in lines] == text.split("\n")
    for number, value, scopes in tokens_of(lines):
        where = (name, number, value, scopes)
        assert scopes[0] == textmate.SCOPE, where
        assert not any(".invalid." in f".{s}" for s in scopes), where
        if value.strip():
            # Every character but white space is matched by some rule, not left to its block.
            assert inner(scopes) != textmate.SCOPE and not inner(scopes).startswith("meta."), where
        # Every keyword outside strings and comments, and not a name (`event.url`, `| default`), is one.
        if value in KEYWORDS and not in_text(scopes) and not any(
                s.startswith(("variable.", "support.", "entity.name.")) for s in scopes):
            assert inner(scopes).startswith(("keyword.", "constant.language.")), where
    campaigns = [scopes for _, value, scopes in tokens_of(lines) if value == "campaign"]
    declared = len(re.findall(r"^campaign ", text, re.MULTILINE))
    assert sum(inner(s) == "keyword.other.declaration.pushlang" for s in campaigns) >= declared


@pytest.mark.slow
def test_every_keyword_alone_is_a_keyword(tokenized: dict[str, list[Line]]) -> None:
    for word in KEYWORDS:
        ((value, scopes), *_) = tokenized[f"keyword {word}"][0]
        assert value == word and inner(scopes).startswith(("keyword.", "constant.language.")), (word, scopes)


@pytest.mark.slow
def test_known_lines_of_the_examples(tokenized: dict[str, list[Line]]) -> None:
    cart = tokenized["examples/abandoned_cart.push"]
    assert scopes_of(cart, "#")[1:] == ["comment.line.number-sign.pushlang", "punctuation.definition.comment.pushlang"]
    assert inner(scopes_of(cart, " Inaction within time (live): the abandoned cart.")) == "comment.line.number-sign.pushlang"
    assert inner(scopes_of(cart, "campaign")) == "keyword.other.declaration.pushlang"
    assert inner(scopes_of(cart, "cart_abandoned_10m")) == "entity.name.type.campaign.pushlang"
    assert inner(scopes_of(cart, "Abandoned cart, 10 minute window")) == "string.quoted.double.pushlang"
    assert inner(scopes_of(cart, "unless")) == "keyword.other.pushlang"
    assert inner(scopes_of(cart, "10m")) == "constant.numeric.duration.pushlang"
    assert inner(scopes_of(cart, "2d")) == "constant.numeric.duration.pushlang"
    assert inner(scopes_of(cart, "10%")) == "constant.numeric.percent.pushlang"
    assert inner(scopes_of(cart, "21:00")) == "constant.numeric.time.pushlang"
    assert inner(scopes_of(cart, "2026-12-01 00:00")) == "constant.numeric.datetime.pushlang"
    assert inner(scopes_of(cart, "chrome")) == "support.constant.platform.pushlang"
    assert inner(scopes_of(cart, "big_spenders")) == "entity.name.type.segment.pushlang"
    assert inner(scopes_of(cart, "cart_reminder")) == "entity.name.type.template.pushlang"
    assert inner(scopes_of(cart, "->")) == "keyword.operator.arrow.pushlang"
    assert inner(scopes_of(cart, "@{")) == "punctuation.section.interpolation.begin.pushlang"
    assert inner(scopes_of(cart, "urlencode")) == "support.function.filter.pushlang"
    assert "meta.embedded.line.pushlang" in scopes_of(cart, "product_id")
    assert inner(scopes_of(tokenized["examples/rolling_limit.push"], "36h")) == "constant.numeric.duration.pushlang"
    segments = tokenized["stdlib/segments.push"]
    assert inner(scopes_of(segments, "90d")) == "constant.numeric.duration.pushlang"
    assert inner(scopes_of(segments, "least")) == "keyword.other.pushlang"
    templates = tokenized["stdlib/templates.push"]
    product = scopes_of(templates, "event.product_name")  # `@event.product_name`: `@`, then the path
    assert product[1:] == ["string.quoted.double.pushlang", "variable.other.personalisation.pushlang"]
    assert scopes_of(templates, "@")[1:] == [
        "string.quoted.double.pushlang", "variable.other.personalisation.pushlang",
        "punctuation.definition.personalisation.pushlang"]
    assert inner(scopes_of(templates, "'")) == "punctuation.definition.string.begin.pushlang"
    assert inner(scopes_of(templates, "friend")) == "string.quoted.single.pushlang"
    ab = tokenized["examples/ab_test_winner.push"]
    assert inner(scopes_of(ab, "discount")) == "entity.name.label.variant.pushlang"
    assert inner(scopes_of(ab, "50%")) == "constant.numeric.percent.pushlang"
    assert inner(scopes_of(ab, "winner")) == "keyword.other.pushlang"


@pytest.mark.slow
def test_the_snippet(tokenized: dict[str, list[Line]]) -> None:
    lines = tokenized["SNIPPET"]
    assert inner(scopes_of(lines, " the standard segments")) == "comment.line.number-sign.pushlang"
    assert inner(scopes_of(lines, "import")) == "keyword.control.import.pushlang"
    assert inner(scopes_of(lines, "segment")) == "keyword.other.declaration.pushlang"
    assert inner(scopes_of(lines, "segment", 1)) == "keyword.other.pushlang"  # a reference in `who`
    assert inner(scopes_of(lines, "loyal", 1)) == "entity.name.type.segment.pushlang"
    assert inner(scopes_of(lines, "campaign", 1)) == "keyword.other.pushlang"  # `limit 1 per campaign`
    assert inner(scopes_of(lines, "monday")) == "support.constant.weekday.pushlang"
    assert inner(scopes_of(lines, "thursday")) == "support.constant.weekday.pushlang"
    assert inner(scopes_of(lines, "at", line=14)) == "keyword.other.pushlang"
    assert inner(scopes_of(lines, "2026-12-01T09:00")) == "constant.numeric.datetime.pushlang"
    assert inner(scopes_of(lines, "09:00:30")) == "constant.numeric.time.pushlang"
    assert inner(scopes_of(lines, "1.2")) == "constant.numeric.float.pushlang"
    assert inner(scopes_of(lines, "2.5%")) == "constant.numeric.percent.pushlang"
    assert inner(scopes_of(lines, "36h")) == "constant.numeric.duration.pushlang"
    assert inner(scopes_of(lines, "-", line=23)) == "keyword.operator.arithmetic.pushlang"
    assert inner(scopes_of(lines, "null")) == "constant.language.pushlang"
    assert inner(scopes_of(lines, "and")) == "keyword.operator.word.pushlang"
    assert inner(scopes_of(lines, "starts")) == "keyword.operator.word.pushlang"
    assert inner(scopes_of(lines, "if")) == "keyword.control.conditional.pushlang"
    assert inner(scopes_of(lines, "user")) == "variable.language.pushlang"
    assert inner(scopes_of(lines, "email")) == "variable.other.property.pushlang"
    assert inner(scopes_of(lines, "lower")) == "support.function.pushlang"
    assert inner(scopes_of(lines, "a", line=26)) == "entity.name.label.variant.pushlang"
    assert inner(scopes_of(lines, "cart", line=28)) == "support.constant.icon.pushlang"
    assert inner(scopes_of(lines, "very-low")) == "support.constant.urgency.pushlang"
    # Personalisations: a dotted path, `@{ … }` with strings of the other quote (or \"…\") inside,
    # `@@` and escapes; a final `.` and any other `@` are text.
    first_name = scopes_of(lines, "@")
    assert inner(first_name) == "punctuation.definition.personalisation.pushlang"
    assert inner(scopes_of(lines, "user.first_name")) == "variable.other.personalisation.pushlang"
    assert inner(scopes_of(lines, "event.product_name")) == "variable.other.personalisation.pushlang"
    assert scopes_of(lines, ".", line=33)[1:] == ["string.quoted.double.pushlang"]
    assert inner(scopes_of(lines, ", write to help@example.com")) == "string.quoted.single.pushlang"
    assert inner(scopes_of(lines, "friend")) == "string.quoted.double.pushlang"
    assert inner(scopes_of(lines, "VIP")) == "string.quoted.single.pushlang"
    assert inner(scopes_of(lines, '\\"you\\"')) == "string.quoted.double.pushlang"
    assert inner(scopes_of(lines, "round")) == "support.function.filter.pushlang"
    for escape in ("@@", "\\u{1F6D2}", "\\n"):
        assert inner(scopes_of(lines, escape)) == "constant.character.escape.pushlang", escape
    assert scopes_of(lines, "}", line=27)[1:] == [
        "string.quoted.double.pushlang", "meta.interpolation.pushlang", "punctuation.section.interpolation.end.pushlang"]


@pytest.mark.slow
def test_mistakes_are_invalid_and_an_unclosed_string_ends_with_its_line(node: str) -> None:
    lines = tokenize(node, {"bad": 'on "x" where $ 1x\n  title "\\q open\nwho {'})["bad"]
    assert inner(scopes_of(lines, "$")) == "invalid.illegal.character.pushlang"
    assert inner(scopes_of(lines, "1x")) == "invalid.illegal.number.pushlang"
    assert inner(scopes_of(lines, "\\")) == "invalid.illegal.escape.pushlang"
    assert scopes_of(lines, "who") == [textmate.SCOPE, "keyword.other.block.pushlang"]


# What the Pygments lexer and the grammar agree on, character by character: a class of token each.
_PYGMENTS_CLASSES = [
    (Comment, "comment"), (Keyword.Constant, "constant"), (Keyword, "keyword"), (String.Escape, "escape"),
    (String.Interpol, "interpolation"), (String, "string"), (Number, "number"), (Literal.Date, "number"),
    (Name.Variable, "variable"), (Name.Function, "filter"), (Name.Builtin, "function"), (Name.Class, "entity"),
    (Name.Entity, "entity"), (Name.Label, "entity"), (Name.Constant, "fixed"), (Name, "name"),
    (Operator, "operator"), (Punctuation, "punctuation"), (Error, "invalid"),
]
_GRAMMAR_CLASSES = [
    ("comment.", "comment"), ("punctuation.definition.comment.", "comment"), ("constant.language.", "constant"),
    ("keyword.operator.word.", "keyword"), ("keyword.operator.", "operator"), ("keyword.", "keyword"),
    ("constant.character.escape.", "escape"), ("punctuation.section.interpolation.", "interpolation"),
    ("string.", "string"), ("punctuation.definition.string.", "string"), ("constant.numeric.", "number"),
    ("punctuation.definition.personalisation.", "variable"), ("variable.other.pushlang", "name"),
    ("variable.", "variable"), ("support.function.filter.", "filter"), ("support.function.", "function"),
    ("entity.name.", "entity"), ("support.constant.", "fixed"), ("punctuation.", "punctuation"),
    ("invalid.", "invalid"),
]


def _pygments_classes(text: str) -> list[str | None]:
    classes: list[str | None] = [None] * len(text)
    for start, kind, value in lexer().get_tokens_unprocessed(text):
        cls = next((c for t, c in _PYGMENTS_CLASSES if kind in t), None)
        if kind in Name.Variable and value[:1] in "\"'":
            cls = "string"  # user["First Name"]: the grammar scopes the key as the string it is
        for i in range(start, start + len(value)):
            classes[i] = cls
    return classes


def _grammar_classes(lines: list[Line]) -> list[str | None]:
    classes: list[str | None] = []
    for line in lines:
        for value, scopes in line:
            cls = next((c for prefix, c in _GRAMMAR_CLASSES if inner(scopes).startswith(prefix)), inner(scopes))
            classes.extend([cls] * len(value))
        classes.append(None)  # the newline
    return classes[:-1]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*(name_of(p) for p in SOURCES), "SNIPPET"])
def test_the_grammar_highlights_as_the_pygments_lexer(tokenized: dict[str, list[Line]], name: str) -> None:
    text = SNIPPET if name == "SNIPPET" else (ROOT / name).read_text(encoding="utf-8")
    theirs, ours = _pygments_classes(text), _grammar_classes(tokenized[name])
    assert len(theirs) == len(ours) == len(text)
    differences = [(text.count("\n", 0, i) + 1, text[i], theirs[i], ours[i])
                   for i in range(len(text)) if not text[i].isspace() and theirs[i] != ours[i]]
    assert differences == []
