"""The protocol side of `pushlang lsp`: pygls serves the workspace's answers as LSP messages, converting
spans (1-based, columns in characters) to the client's positions (0-based, in its code units)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace.position_codec import PositionCodec

from pushlang import __version__, ast
from pushlang.diagnostics import Diagnostic, Severity, Sink, lookup
from pushlang.diagnostics.render import render_explain
from pushlang.lsp.complete import Kind, complete, known
from pushlang.lsp.fixes import Fix, quick_fix
from pushlang.lsp.hover import hover
from pushlang.lsp.locate import Named, named_at
from pushlang.lsp.workspace import Checked, Workspace
from pushlang.source import Source, Span
from pushlang.syntax.formatter import format_source

DEFAULT_DEBOUNCE = 0.2  # seconds from the last change of a file to its check
EXPLAIN = "pushlang.explain"  # the command that shows what a diagnostic code means

_SEVERITY = {Severity.ERROR: lsp.DiagnosticSeverity.Error, Severity.WARNING: lsp.DiagnosticSeverity.Warning,
             Severity.INFO: lsp.DiagnosticSeverity.Information}
_ITEM_KIND: dict[Kind, lsp.CompletionItemKind] = {
    "keyword": lsp.CompletionItemKind.Keyword, "segment": lsp.CompletionItemKind.Variable,
    "template": lsp.CompletionItemKind.Struct,
    "event": lsp.CompletionItemKind.Event, "property": lsp.CompletionItemKind.Field,
    "filter": lsp.CompletionItemKind.Function, "function": lsp.CompletionItemKind.Function,
    "value": lsp.CompletionItemKind.EnumMember, "timezone": lsp.CompletionItemKind.Constant,
    "module": lsp.CompletionItemKind.Module,
}
_SYMBOL_KIND = {ast.CampaignDef: lsp.SymbolKind.Event, ast.SegmentDef: lsp.SymbolKind.Variable,
                ast.TemplateDef: lsp.SymbolKind.Struct, ast.Import: lsp.SymbolKind.Module}
_TRIGGERS = [".", "|", '"', " ", "/"]  # after these a completion is asked for without the user asking


class PushServer(LanguageServer):
    """The server: the workspace of .push files, the checks waiting for a pause in typing, the quick fixes
    of the diagnostics last published."""

    def __init__(self, *, debounce: float = DEFAULT_DEBOUNCE, config_path: str | None = None,
                 schema_path: str | None = None) -> None:
        super().__init__("pushlang", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.project = Workspace(config_path=config_path, schema_path=schema_path)
        self.debounce = debounce
        self._pending: dict[Path, asyncio.Task[None]] = {}
        self._fixes: dict[Path, list[tuple[lsp.Diagnostic, Fix]]] = {}

    # ---- positions -------------------------------------------------------------------------------

    def lines(self, path: Path) -> list[str]:
        """A file's lines as the client sees them: the open buffer's, else the disk's."""
        text = self.project.text(path)
        return (text or "").splitlines(keepends=True)

    @property
    def codec(self) -> PositionCodec:
        return self.workspace.position_codec

    def range(self, span: Span, lines: list[str]) -> lsp.Range:
        start = lsp.Position(max(span.line - 1, 0), max(span.column - 1, 0))
        end = lsp.Position(max(span.end_line - 1, 0), max(span.end_column - 1, 0))
        return lsp.Range(self.codec.position_to_client_units(lines, start),
                         self.codec.position_to_client_units(lines, end))

    def location(self, path: Path, span: Span) -> lsp.Location:
        return lsp.Location(uri_of(path), self.range(span, self.lines(path)))

    def point(self, uri: str, position: lsp.Position) -> tuple[Path, int, int]:
        """A client position as a file and a 1-based line and column (in characters)."""
        document = self.workspace.get_text_document(uri)
        at = document.position_codec.position_from_client_units(document.lines, position)
        return path_of(uri), at.line + 1, at.character + 1

    # ---- diagnostics -----------------------------------------------------------------------------

    def schedule(self, path: Path, delay: float) -> None:
        """Check ``path`` (and the open files that import it) after ``delay`` seconds without a change."""
        waiting = self._pending.pop(path, None)
        if waiting is not None:
            waiting.cancel()
        self._pending[path] = asyncio.get_running_loop().create_task(self._check_later(path, delay))

    async def _check_later(self, path: Path, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        self._pending.pop(path, None)
        for each in [path, *self.project.dependents(path)]:
            if each in self.project.buffers:
                self.publish(each)

    def publish(self, path: Path) -> None:
        try:
            checked = self.project.check(path)
        except Exception as exc:  # a bug: said in the client's log, the server goes on
            self.window_log_message(lsp.LogMessageParams(lsp.MessageType.Error, f"pushlang: checking {path}: {exc!r}"))
            return
        lines = self.lines(path)
        published: list[lsp.Diagnostic] = []
        fixes: list[tuple[lsp.Diagnostic, Fix]] = []
        imported: dict[Path, list[Diagnostic]] = {}
        text = "".join(lines)
        for d in checked.diagnostics:
            if d.path == checked.shown:
                item = self.diagnostic(d, self.range(d.span, lines))
                published.append(item)
                fix = quick_fix(d, text)
                if fix is not None:
                    fixes.append((item, fix))
            elif (other := checked.paths.get(d.path)) is not None and other in checked.via:
                imported.setdefault(other, []).append(d)
            else:  # the config or the schema: said at the top of the file
                top = lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0))
                published.append(self.diagnostic(d, top, prefix=f"{d.path}:{d.span.line}: "))
        for other, found in imported.items():
            published.append(self.import_diagnostic(checked, other, found, lines))
        self._fixes[path] = fixes
        document = self.workspace.get_text_document(uri_of(path))
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri_of(path), published, version=document.version))

    def diagnostic(self, d: Diagnostic, where: lsp.Range, prefix: str = "") -> lsp.Diagnostic:
        message = prefix + d.message + (f"\nhelp: {d.help}" if d.help else "") + "".join(f"\nnote: {n}" for n in d.notes)
        return lsp.Diagnostic(where, message, severity=_SEVERITY[d.severity], code=d.code, source="pushlang",
                              data={"name": d.name})

    def import_diagnostic(self, checked: Checked, other: Path, found: list[Diagnostic],
                          lines: list[str]) -> lsp.Diagnostic:
        """The problems of an imported file, said on the import line that brings it in."""
        worst = min(found, key=lambda d: _SEVERITY[d.severity])
        counts = {s: sum(d.severity is s for d in found) for s in Severity}
        said = ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
        shown = found[0].path
        message = f"{shown} has {said}:" + "".join(
            f"\n{shown}:{d.span.line}:{d.span.column}: {d.severity.value}[{d.code}]: {d.message}" for d in found)
        other_lines = self.lines(other)
        related = [lsp.DiagnosticRelatedInformation(lsp.Location(uri_of(other), self.range(d.span, other_lines)),
                                                    f"{d.code}: {d.message}") for d in found]
        return lsp.Diagnostic(self.range(checked.via[other].span, lines), message, severity=_SEVERITY[worst.severity],
                              code=worst.code, source="pushlang", related_information=related,
                              data={"name": worst.name})

    def clear(self, path: Path) -> None:
        self._fixes.pop(path, None)
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri_of(path), []))

    # ---- answers ---------------------------------------------------------------------------------

    def named(self, uri: str, position: lsp.Position) -> tuple[Checked, Named] | None:
        path, line, column = self.point(uri, position)
        module = self.project.module(path)
        found = named_at(module, line, column) if module is not None else None
        return (self.project.scope(path), found) if found is not None else None

    def definitions(self, checked: Checked, named: Named) -> list[lsp.Location]:
        if named.kind in ("segment", "template"):
            where = checked.definition(named.kind, named.name)
            return [self.location(*where)] if where is not None else []
        if named.kind == "import":
            target = self._import_target(checked, named)
            return [lsp.Location(uri_of(target), lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)))] if target else []
        if named.kind == "campaign":
            return [self.location(checked.path, named.span)]
        return []

    def references(self, checked: Checked, named: Named, declaration: bool) -> list[lsp.Location]:
        if named.kind in ("segment", "template"):
            where = checked.definition(named.kind, named.name)
            if where is None:
                return []
            found = list(self.project.references(named.kind, named.name, where))
            return [self.location(*w) for w in ([where] if declaration else []) + found]
        if named.kind == "import":
            target = self._import_target(checked, named)
            return [self.location(*w) for w in self.project.importers(target)] if target else []
        return []

    def _import_target(self, checked: Checked, named: Named) -> Path | None:
        return self.project.import_target(checked.path, ast.Import(named.name, named.span))

    def symbols(self, path: Path) -> list[lsp.DocumentSymbol]:
        module = self.project.module(path)
        if module is None:
            return []
        lines = self.lines(path)
        out = []
        for item in module.items:
            name, detail, selection = _symbol(item)
            out.append(lsp.DocumentSymbol(name, _SYMBOL_KIND[type(item)], self.range(item.span, lines),
                                          self.range(selection, lines), detail=detail))
        return out

    def workspace_symbols(self, query: str) -> list[lsp.SymbolInformation]:
        wanted = query.lower()
        out = []
        for path in self.project.files():
            module = self.project.module(path)
            for item in module.items if module is not None else ():
                if isinstance(item, ast.Import):
                    continue
                name, _, selection = _symbol(item)
                if _matches(wanted, name.lower()):
                    out.append(lsp.SymbolInformation(location=self.location(path, selection), name=name,
                                                     kind=_SYMBOL_KIND[type(item)],
                                                     container_name=self.project.shown(path)))
        return out

    def formatting(self, uri: str) -> list[lsp.TextEdit] | None:
        path = path_of(uri)
        document = self.workspace.get_text_document(uri)
        text = document.source
        formatted = format_source(Source(self.project.shown(path), text), Sink())
        if formatted is None or formatted == text:
            return None if formatted is None else []
        end = lsp.Position(text.count("\n"), self.codec.client_num_units(text.rsplit("\n", 1)[-1]))
        return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), formatted)]

    def code_actions(self, params: lsp.CodeActionParams) -> list[lsp.CodeAction | lsp.Command]:
        """The quick fixes of the "did you mean" diagnostics in the range, and a command that explains each
        code there."""
        path = path_of(params.text_document.uri)
        actions: list[lsp.CodeAction | lsp.Command] = []
        for item, fix in self._fixes.get(path, []):
            if _overlap(item.range, params.range):
                edit = lsp.TextEdit(self.range(fix.span, self.lines(path)), fix.text)
                actions.append(lsp.CodeAction(fix.title, kind=lsp.CodeActionKind.QuickFix, diagnostics=[item],
                                              is_preferred=True,
                                              edit=lsp.WorkspaceEdit(changes={params.text_document.uri: [edit]})))
        codes = dict.fromkeys(str(d.code) for d in params.context.diagnostics if d.source == "pushlang" and d.code)
        for code in codes:
            entry = lookup(code)
            if entry is not None:
                actions.append(lsp.Command(title=f"Explain {entry.code} ({entry.name})", command=EXPLAIN,
                                           arguments=[entry.code]))
        return actions

    def explain(self, code: str) -> str | None:
        """What `pushlang explain CODE` says, shown in the client and returned."""
        entry = lookup(code)
        if entry is None:
            return None
        text = render_explain(entry)
        self.window_show_message(lsp.ShowMessageParams(lsp.MessageType.Info, text))
        return text


def _symbol(item: ast.TopLevel) -> tuple[str, str | None, Span]:
    if isinstance(item, ast.CampaignDef):
        return item.id, item.display_name, item.id_span
    if isinstance(item, ast.SegmentDef):
        return item.name, "segment", item.name_span
    if isinstance(item, ast.TemplateDef):
        return item.name, "template", item.name_span
    return item.target, "import", item.span


def _matches(query: str, name: str) -> bool:
    """Whether the letters of ``query`` occur in ``name`` in order (`abcart` finds `abandoned_cart`)."""
    rest = iter(name)
    return all(ch in rest for ch in query)


def _overlap(a: lsp.Range, b: lsp.Range) -> bool:
    def key(p: lsp.Position) -> tuple[int, int]:
        return p.line, p.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


def _exit_quietly(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """On TCP, pygls ends the process at `exit` from inside the connection's task: not an error to print."""
    if isinstance(context.get("exception"), SystemExit):
        return
    loop.default_exception_handler(context)


def uri_of(path: Path) -> str:
    return str(from_fs_path(str(path)))


def path_of(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri).resolve()


def build(*, debounce: float = DEFAULT_DEBOUNCE, config_path: str | None = None,
          schema_path: str | None = None) -> PushServer:
    """The server with every feature registered."""
    server = PushServer(debounce=debounce, config_path=config_path, schema_path=schema_path)

    @server.feature(lsp.INITIALIZE)
    def initialize(params: lsp.InitializeParams) -> None:
        folders = [path_of(f.uri) for f in params.workspace_folders or []]
        if not folders and params.root_uri:
            folders = [path_of(params.root_uri)]
        server.project.folders = [f for f in folders if f.is_dir()]
        if server.project.folders:  # config and paths as `pushlang lint` run at the project's root finds them
            os.chdir(server.project.folders[0])
        asyncio.get_running_loop().set_exception_handler(_exit_quietly)
        options = params.initialization_options
        if isinstance(options, dict) and isinstance(options.get("debounce"), (int, float)):
            server.debounce = max(float(options["debounce"]), 0.0) / 1000

    @server.feature(lsp.INITIALIZED)
    def initialized(params: lsp.InitializedParams) -> None:
        watched = server.client_capabilities.workspace and server.client_capabilities.workspace.did_change_watched_files
        if watched and watched.dynamic_registration:
            watchers = [lsp.FileSystemWatcher(glob) for glob in ("**/*.push", "**/*.toml", "**/*.json")]
            server.client_register_capability(lsp.RegistrationParams([lsp.Registration(
                "pushlang-files", lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                lsp.DidChangeWatchedFilesRegistrationOptions(watchers))]))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(params: lsp.DidOpenTextDocumentParams) -> None:
        path = path_of(params.text_document.uri)
        server.project.open(path, params.text_document.text)
        server.schedule(path, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(params: lsp.DidChangeTextDocumentParams) -> None:
        path = path_of(params.text_document.uri)
        server.project.change(path, server.workspace.get_text_document(params.text_document.uri).source)
        server.schedule(path, server.debounce)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(params: lsp.DidCloseTextDocumentParams) -> None:
        path = path_of(params.text_document.uri)
        waiting = server._pending.pop(path, None)
        if waiting is not None:
            waiting.cancel()
        dependents = server.project.dependents(path)
        server.project.close(path)
        server.clear(path)
        for other in dependents:  # they now read the file from the disk
            server.schedule(other, server.debounce)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    async def did_change_files(params: lsp.DidChangeWatchedFilesParams) -> None:
        for path in list(server.project.buffers):
            server.schedule(path, server.debounce)

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions(trigger_characters=_TRIGGERS))
    def completion(params: lsp.CompletionParams) -> lsp.CompletionList | None:
        path, line, column = server.point(params.text_document.uri, params.position)
        text = server.project.text(path) or ""
        found = complete(text, line, column, known(server.project.scope(path)))
        if found is None:
            return None
        lines = server.lines(path)
        start = server.range(Span(line, found.start, line, column), lines)
        items = [lsp.CompletionItem(c.label, kind=_ITEM_KIND[c.kind], detail=c.detail,
                                    text_edit=lsp.TextEdit(start, c.label)) for c in found.candidates]
        return lsp.CompletionList(is_incomplete=False, items=items)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def on_hover(params: lsp.HoverParams) -> lsp.Hover | None:
        path, line, column = server.point(params.text_document.uri, params.position)
        found = hover(server.project, server.project.scope(path), server.project.module(path),
                      server.project.text(path) or "", line, column)
        if found is None:
            return None
        where = server.range(found.span, server.lines(path)) if found.span is not None else None
        return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, found.markdown), where)

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    def definition(params: lsp.DefinitionParams) -> list[lsp.Location] | None:
        found = server.named(params.text_document.uri, params.position)
        return server.definitions(*found) if found is not None else None

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    def references(params: lsp.ReferenceParams) -> list[lsp.Location] | None:
        found = server.named(params.text_document.uri, params.position)
        return server.references(*found, params.context.include_declaration) if found is not None else None

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbols(params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        return server.symbols(path_of(params.text_document.uri))

    @server.feature(lsp.WORKSPACE_SYMBOL)
    def workspace_symbols(params: lsp.WorkspaceSymbolParams) -> list[lsp.SymbolInformation]:
        return server.workspace_symbols(params.query)

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    def formatting(params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit] | None:
        return server.formatting(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    def code_action(params: lsp.CodeActionParams) -> list[lsp.CodeAction | lsp.Command]:
        return server.code_actions(params)

    @server.command(EXPLAIN)
    def explain(code: str) -> str | None:
        return server.explain(code)

    return server


def serve(*, tcp: tuple[str, int] | None = None, debounce: float = DEFAULT_DEBOUNCE, config_path: str | None = None,
          schema_path: str | None = None) -> bool:
    """Serve one client on stdio (or, for debugging, on a TCP port) until it says exit; whether it asked
    for a shutdown first (the exit code is 1 otherwise)."""
    server = build(debounce=debounce, config_path=config_path, schema_path=schema_path)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # SystemExit: on TCP, the client said exit
        if tcp is None:
            # The protocol gets standard output to itself (and closes it at the end); anything else that
            # prints goes to standard error instead of into the stream of messages.
            protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
            sys.stdout.flush()
            sys.stdout = sys.stderr
            server.start_io(sys.stdin.buffer, protocol_out)
        else:
            server.start_tcp(*tcp)
    return bool(getattr(server.protocol, "_shutdown", True))
