"""The VS Code extension (editors/vscode): its TextMate grammar is what pushlang.editors.textmate
generates from the keyword list; its client starts the configured command; the .vsix builds.

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
from pathlib import Path
from typing import Any

import pytest

from pushlang.editors import textmate
from pushlang.resources import grammar_file
from pushlang.syntax.keywords import KEYWORDS, WORDS

ROOT = Path(__file__).resolve().parent.parent
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = VSCODE / "syntaxes" / "pushlang.tmLanguage.json"


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


# ---- Node: the client, the .vsix ---------------------------------------------------------------

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
