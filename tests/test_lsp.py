"""`pushlang lsp` as an editor sees it: the real server process, driven by pytest-lsp's client over stdio.

One server for the module, on a project folder of its own (a config with the examples' schema, a file of
shared segments others import); each test opens files of its own, so that what one test changes does not
reach another. Diagnostics are waited for by document version, so an earlier check cannot pass for a later.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from pushlang.syntax.formatter import format_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parent.parent
DEBOUNCE_MS = 50
WAIT = 20.0  # seconds: the longest a test waits for the server

COMMON = """\
# What every campaign of the shop shares.
segment vip_buyers {
  did "Charged" where event.amount >= 100 at least 2 times in last 90d
}

template gentle_nudge {
  title "Still there, @{user.first_name | default: 'friend'}?"
  body "We kept your cart for you."
}
"""

CART = """\
import "std/segments"
import "./common.push"

campaign cart_nudge "Cart nudge" {
  on "Added To Cart" where event.price > 20
  unless "Charged" within 36h

  who {
    user.country in ["DE", "AT"]
    not segment vip_buyers
  }

  when {
    timezone "Europe/Berlin"
    dnd 21:00 to 09:00 delay
    limit 1 per day
  }

  message use gentle_nudge {
    url "https://shop.example.com/cart?item=@{event.product_id | urlencode}"
  }
}
"""


class Published:
    """Every publishDiagnostics the client received, in order (pytest-lsp keeps only the last per file)."""

    def __init__(self) -> None:
        self.items: list[lsp.PublishDiagnosticsParams] = []

    async def of(self, uri: str, version: int | None = None, after: int = 0) -> list[lsp.Diagnostic]:
        """The diagnostics of the first publication for ``uri`` (at ``version``) among those received (or
        still to come) from the ``after``-th on."""
        async def wait() -> list[lsp.Diagnostic]:
            while True:
                for params in self.items[after:]:
                    if params.uri == uri and (version is None or params.version == version):
                        return list(params.diagnostics)
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(wait(), WAIT)


PUBLISHED = Published()
REGISTERED: list[str] = []  # what the server asked the client to watch for it


def _client() -> LanguageClient:
    client = LanguageClient(converter_factory=default_converter)

    def publish(client: LanguageClient, params: lsp.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        PUBLISHED.items.append(params)

    def register(client: LanguageClient, params: lsp.RegistrationParams) -> None:
        REGISTERED.extend(r.method for r in params.registrations)

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish,
                                   lsp.CLIENT_REGISTER_CAPABILITY: register})
    return client


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shop")
    shutil.copy(ROOT / "examples" / "schema.toml", folder / "schema.toml")
    (folder / "pushlang.toml").write_text('timezone = "Europe/Berlin"\n[lint]\nschema = "schema.toml"\n',
                                          encoding="utf-8")
    (folder / "common.push").write_text(COMMON, encoding="utf-8")
    (folder / "cart.push").write_text(CART, encoding="utf-8")
    return folder


@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=[sys.executable, "-m", "pushlang", "lsp", "--debounce", str(DEBOUNCE_MS)], client_factory=_client))
async def client(lsp_client: LanguageClient, project: Path):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"), root_uri=project.as_uri(),
        workspace_folders=[lsp.WorkspaceFolder(project.as_uri(), "shop")]))
    yield
    await lsp_client.shutdown_session()


# ---- helpers ---------------------------------------------------------------------------------------


async def open_file(client: LanguageClient, path: Path, text: str) -> list[lsp.Diagnostic]:
    """Write ``text`` to ``path``, open it in the client, and return its first diagnostics."""
    path.write_text(text, encoding="utf-8")
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(path.as_uri(), "pushlang", 1, text)))
    return await PUBLISHED.of(path.as_uri(), 1)


def change(client: LanguageClient, path: Path, version: int, text: str) -> None:
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(version, path.as_uri()),
        [lsp.TextDocumentContentChangeWholeDocument(text)]))


def position(text: str, needle: str, offset: int = 0) -> lsp.Position:
    """Where ``needle`` (its first occurrence) starts in ``text``, moved ``offset`` characters on."""
    before = text[:text.index(needle) + offset]
    return lsp.Position(before.count("\n"), len(before) - before.rfind("\n") - 1)


def apply(text: str, edits: list[lsp.TextEdit]) -> str:
    """``text`` with non-overlapping edits applied (the texts here are ASCII: UTF-16 units are characters)."""
    lines = text.split("\n")

    def offset(p: lsp.Position) -> int:
        return sum(len(line) + 1 for line in lines[:p.line]) + p.character

    for edit in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[:offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end):]
    return text


def doc(path: Path) -> lsp.TextDocumentIdentifier:
    return lsp.TextDocumentIdentifier(path.as_uri())


# ---- diagnostics -----------------------------------------------------------------------------------


async def test_an_error_is_reported_on_open_and_cleared_when_fixed(client: LanguageClient, project: Path) -> None:
    path = project / "typo.push"
    text = CART.replace("campaign cart_nudge", "campaign typo").replace("not segment vip_buyers",
                                                                      "not segment vip_buyer")
    found = await open_file(client, path, text)
    assert [(d.code, d.severity) for d in found] == [("PL200", lsp.DiagnosticSeverity.Error)]
    at = position(text, "vip_buyer")
    assert found[0].range == lsp.Range(at, lsp.Position(at.line, at.character + len("vip_buyer")))
    assert "unknown segment `vip_buyer`" in found[0].message and "did you mean `vip_buyers`?" in found[0].message
    assert found[0].source == "pushlang"
    assert lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES in REGISTERED  # .push, config and schema changes on disk

    change(client, path, 2, text.replace("vip_buyer\n", "vip_buyers\n"))
    assert await PUBLISHED.of(path.as_uri(), 2) == []


async def test_columns_are_counted_in_the_client_s_code_units(client: LanguageClient, project: Path) -> None:
    path = project / "emoji.push"
    text = CART.replace("campaign cart_nudge", "campaign emoji").replace(
        '    url "', '    title "🛒🛒 @{user.first_name | defualt: \'you\'}"\n    url "')
    found = [d for d in await open_file(client, path, text) if d.code == "PL203"]  # unknown filter
    line = text.split("\n")[found[0].range.start.line]
    # VS Code counts UTF-16 code units: each 🛒 is two of them (one character to Python)
    assert found[0].range.start.character == line.index("defualt") + 2


async def test_changes_in_a_burst_are_checked_once_after_the_pause(client: LanguageClient, project: Path) -> None:
    path = project / "burst.push"
    text = CART.replace("campaign cart_nudge", "campaign burst")
    assert await open_file(client, path, text) == []
    for version, word in enumerate(["limit 1 per d", "limit 1 per da", "limit 0 per day"], start=2):
        change(client, path, version, text.replace("limit 1 per day", word))
    found = await PUBLISHED.of(path.as_uri(), 4)
    assert [d.code for d in found] == ["PL404"]  # `limit 0`
    await asyncio.sleep(3 * DEBOUNCE_MS / 1000)
    # one check after the burst, of its last text: the earlier ones waited and were replaced
    assert [p.version for p in PUBLISHED.items if p.uri == path.as_uri()] == [1, 4]


async def test_an_imported_file_s_errors_are_said_on_its_import_line(client: LanguageClient, project: Path) -> None:
    (project / "broken_common.push").write_text(COMMON.replace("did \"Charged\"", "segment no_such_thing\n  did \"Charged\""),
                                                encoding="utf-8")
    path = project / "uses_broken.push"
    text = CART.replace("./common.push", "./broken_common.push").replace("campaign cart_nudge", "campaign uses_broken")
    found = await open_file(client, path, text)
    assert len(found) == 1
    assert found[0].range.start.line == 1 and found[0].code == "PL200"  # line 2: import "./broken_common.push"
    assert "broken_common.push has 1 error" in found[0].message and "no_such_thing" in found[0].message
    assert found[0].related_information and found[0].related_information[0].location.uri.endswith("broken_common.push")


async def test_a_change_in_an_imported_file_checks_the_open_files_that_import_it(client: LanguageClient,
                                                                                 project: Path) -> None:
    shared = project / "shared.push"
    user = project / "uses_shared.push"
    assert await open_file(client, shared, COMMON.replace("vip_buyers", "loyal").replace("gentle_nudge", "hello")) == []
    text = CART.replace("./common.push", "./shared.push").replace("vip_buyers", "loyal") \
        .replace("gentle_nudge", "hello").replace("campaign cart_nudge", "campaign uses_shared")
    assert await open_file(client, user, text) == []
    count = len(PUBLISHED.items)
    change(client, shared, 2, COMMON.replace("vip_buyers", "loyalists").replace("gentle_nudge", "hello"))
    found = await PUBLISHED.of(user.as_uri(), after=count)  # checked again, with shared.push's unsaved text
    assert [d.code for d in found] == ["PL200"] and "unknown segment `loyal`" in found[0].message
    assert {p.uri for p in PUBLISHED.items[count:]} <= {shared.as_uri(), user.as_uri()}


# ---- completion, hover, navigation ---------------------------------------------------------------


async def test_completion_inside_when_offers_its_items(client: LanguageClient, project: Path) -> None:
    path = project / "complete_when.push"
    text = CART.replace("campaign cart_nudge", "campaign complete_when").replace("    limit 1 per day\n",
                                                                               "    limit 1 per day\n    \n")
    await open_file(client, path, text)
    at = position(text, "    limit 1 per day\n    \n", len("    limit 1 per day\n    "))
    found = await client.text_document_completion_async(lsp.CompletionParams(doc(path), at))
    assert found is not None
    labels = [i.label for i in (found.items if isinstance(found, lsp.CompletionList) else found)]
    assert {"dnd", "limit", "throttle", "priority", "cutoff", "start", "end", "timezone"} <= set(labels)
    assert "title" not in labels and "segment" not in labels


async def test_completion_after_segment_offers_the_segments_in_scope(client: LanguageClient, project: Path) -> None:
    path = project / "complete_segment.push"
    text = CART.replace("campaign cart_nudge", "campaign complete_segment").replace("not segment vip_buyers",
                                                                                  "not segment ")
    await open_file(client, path, text)
    found = await client.text_document_completion_async(
        lsp.CompletionParams(doc(path), position(text, "not segment ", len("not segment "))))
    assert isinstance(found, lsp.CompletionList)
    segments = {i.label: i for i in found.items}
    assert {"vip_buyers", "new_users", "big_spenders"} <= set(segments)  # ./common.push and std/segments
    assert segments["vip_buyers"].kind == lsp.CompletionItemKind.Variable
    assert "common.push" in (segments["vip_buyers"].detail or "")

    filters = await client.text_document_completion_async(lsp.CompletionParams(
        doc(path), position(text, "| urlencode", 2)))
    assert isinstance(filters, lsp.CompletionList)
    assert {"default", "urlencode", "truncate"} <= {i.label for i in filters.items}


async def test_hover_says_what_a_keyword_does_and_shows_a_segment(client: LanguageClient, project: Path) -> None:
    path = project / "hover.push"
    text = CART.replace("campaign cart_nudge", "campaign hover")
    await open_file(client, path, text)

    keyword = await client.text_document_hover_async(lsp.HoverParams(doc(path), position(text, "dnd 21", 1)))
    assert keyword is not None and isinstance(keyword.contents, lsp.MarkupContent)
    assert "quiet hours" in keyword.contents.value and "\n" not in keyword.contents.value

    segment = await client.text_document_hover_async(lsp.HoverParams(doc(path), position(text, "vip_buyers", 3)))
    assert segment is not None and isinstance(segment.contents, lsp.MarkupContent)
    assert 'did "Charged" where event.amount >= 100' in segment.contents.value
    assert "common.push" in segment.contents.value and "# What every campaign" in segment.contents.value

    duration = await client.text_document_hover_async(lsp.HoverParams(doc(path), position(text, "36h", 1)))
    assert duration is not None and isinstance(duration.contents, lsp.MarkupContent)
    assert "1 day 12 hours" in duration.contents.value

    campaign = await client.text_document_hover_async(lsp.HoverParams(doc(path), position(text, "hover \"", 1)))
    assert campaign is not None and isinstance(campaign.contents, lsp.MarkupContent)
    assert "inaction within time" in campaign.contents.value and '"Charged"' in campaign.contents.value


async def test_hover_on_a_diagnostic_explains_its_code(client: LanguageClient, project: Path) -> None:
    path = project / "hover_error.push"
    text = CART.replace("campaign cart_nudge", "campaign hover_error").replace("limit 1 per day", "limit 0 per day")
    found = await open_file(client, path, text)
    assert found
    code = str(found[0].code)
    shown = await client.text_document_hover_async(lsp.HoverParams(doc(path), found[0].range.start))
    assert shown is not None and isinstance(shown.contents, lsp.MarkupContent)
    assert code in shown.contents.value and "*Why:*" in shown.contents.value and "*Fix:*" in shown.contents.value


async def test_go_to_a_segment_in_an_imported_file_and_find_its_uses(client: LanguageClient, project: Path) -> None:
    path = project / "navigate.push"
    text = CART.replace("campaign cart_nudge", "campaign navigate")
    await open_file(client, path, text)
    found = await client.text_document_definition_async(lsp.DefinitionParams(doc(path), position(text, "vip_buyers", 2)))
    assert isinstance(found, list) and len(found) == 1
    assert isinstance(found[0], lsp.Location)
    assert found[0].uri == (project / "common.push").as_uri()
    assert found[0].range.start == position(COMMON, "vip_buyers")

    template = await client.text_document_definition_async(lsp.DefinitionParams(doc(path), position(text, "gentle_nudge")))
    assert isinstance(template, list) and template[0].uri == (project / "common.push").as_uri()
    module = await client.text_document_definition_async(lsp.DefinitionParams(doc(path), position(text, "./common")))
    assert isinstance(module, list) and module[0].uri == (project / "common.push").as_uri()

    uses = await client.text_document_references_async(lsp.ReferenceParams(
        text_document=doc(path), position=position(text, "vip_buyers"),
        context=lsp.ReferenceContext(include_declaration=True)))
    assert uses is not None
    files = {Path(u.uri).name for u in uses}
    assert {"common.push", "cart.push", "navigate.push"} <= files  # the definition and uses in files on disk

    importers = await client.text_document_references_async(lsp.ReferenceParams(
        text_document=doc(path), position=position(text, "./common"),
        context=lsp.ReferenceContext(include_declaration=False)))
    assert importers is not None and {"cart.push", "navigate.push"} <= {Path(u.uri).name for u in importers}
    assert all(u.range.start.line == 1 for u in importers)  # each file's `import "./common.push"`


async def test_document_and_workspace_symbols(client: LanguageClient, project: Path) -> None:
    path = project / "symbols.push"
    text = CART.replace("campaign cart_nudge", "campaign symbols")
    await open_file(client, path, text)
    symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(doc(path)))
    assert symbols is not None
    assert [(s.name, s.kind) for s in symbols] == [("std/segments", lsp.SymbolKind.Module),
                                                    ("./common.push", lsp.SymbolKind.Module),
                                                    ("symbols", lsp.SymbolKind.Event)]
    found = await client.workspace_symbol_async(lsp.WorkspaceSymbolParams("vip"))
    assert found is not None
    named = {(s.name, Path(s.location.uri).name) for s in found}
    assert ("vip_buyers", "common.push") in named and all(name == "vip_buyers" for name, _ in named)
    fuzzy = await client.workspace_symbol_async(lsp.WorkspaceSymbolParams("crtndg"))
    assert fuzzy is not None and ("cart_nudge", "cart.push") in {(s.name, Path(s.location.uri).name) for s in fuzzy}


# ---- formatting and quick fixes --------------------------------------------------------------------


async def test_formatting_lays_a_file_out_as_fmt_does(client: LanguageClient, project: Path) -> None:
    path = project / "messy.push"
    text = CART.replace("campaign cart_nudge", "campaign messy").replace("  who {\n", "  who   {  # the audience\n") \
        .replace("    limit 1 per day", "        limit   1 per day")
    await open_file(client, path, text)
    edits = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        doc(path), lsp.FormattingOptions(tab_size=2, insert_spaces=True)))
    assert edits
    formatted = apply(text, list(edits))
    assert formatted == format_text(text) and "who {  # the audience" in formatted


async def test_a_quick_fix_writes_the_name_the_diagnostic_suggests(client: LanguageClient, project: Path) -> None:
    path = project / "fix.push"
    text = CART.replace("campaign cart_nudge", "campaign fix").replace("message use gentle_nudge",
                                                                     "message use gentle_nudg")
    found = await open_file(client, path, text)
    assert [d.code for d in found] == ["PL201"]
    actions = await client.text_document_code_action_async(lsp.CodeActionParams(
        doc(path), found[0].range, lsp.CodeActionContext(found)))
    assert actions
    fixes = [a for a in actions if isinstance(a, lsp.CodeAction) and a.kind == lsp.CodeActionKind.QuickFix]
    assert [a.title for a in fixes] == ["Change `gentle_nudg` to `gentle_nudge`"]
    assert fixes[0].edit is not None and fixes[0].edit.changes is not None
    fixed = apply(text, list(fixes[0].edit.changes[path.as_uri()]))
    assert fixed == text.replace("gentle_nudg {", "gentle_nudge {")
    explain = [a for a in actions if isinstance(a, lsp.Command)]
    assert [list(c.arguments or ()) for c in explain] == [["PL201"]]
    said = await client.workspace_execute_command_async(lsp.ExecuteCommandParams(explain[0].command, explain[0].arguments))
    assert "unknown-template" in said

    change(client, path, 2, fixed)
    assert await PUBLISHED.of(path.as_uri(), 2) == []


# ---- debugging on TCP ------------------------------------------------------------------------------


async def test_on_tcp_one_client_is_served_and_exit_ends_the_process_quietly(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pushlang", "lsp", "--tcp", f"127.0.0.1:{port}", cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert server.stderr is not None
        assert (await asyncio.wait_for(server.stderr.readline(), WAIT)).decode().strip() == \
            f"pushlang lsp: listening on 127.0.0.1:{port}"
        for _ in range(100):  # the message comes just before the socket listens
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)

        async def call(message: dict[str, object]) -> dict[str, object] | None:
            body = json.dumps({"jsonrpc": "2.0", **message}).encode()
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            if "id" not in message:
                return None
            length = int((await reader.readuntil(b"\r\n\r\n")).split(b"Content-Length: ")[1].split(b"\r\n")[0])
            answer: dict[str, object] = json.loads(await reader.readexactly(length))
            return answer

        answer = await call({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None,
                                                                          "capabilities": {}}})
        assert answer is not None and "hoverProvider" in str(answer["result"])
        await call({"id": 2, "method": "shutdown"})
        await call({"method": "exit"})
        assert await asyncio.wait_for(server.wait(), WAIT) == 0
        rest = (await server.stderr.read()).decode()
        assert "Traceback" not in rest, rest
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
