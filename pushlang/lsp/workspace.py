"""The language server's workspace: open buffers over the files on disk, each text parsed once, and an open
file checked with everything it imports by the compiler the CLI uses (`compile_program`).

A check of a file loads it as `pushlang lint FILE` would (its config and schema found the same way), but
an imported file whose text has not changed since it was last parsed is not parsed again, and only the
files that load a changed file are checked again (`dependents`)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pushlang import ast
from pushlang.check import CheckContext
from pushlang.compiler import compile_program
from pushlang.config import Config, find_config, load_config
from pushlang.diagnostics import Diagnostic, Sink
from pushlang.loader import LoadedFile, Loader, Program, display_path
from pushlang.lsp.locate import names
from pushlang.schema import Schema, load_schema
from pushlang.source import Source, Span
from pushlang.syntax.parser import parse

_IMPORT_LINE = re.compile(r"""\s*import\s+("[^"\n]*"|'[^'\n]*')\s*(#.*)?$""")

# Folders a search of the workspace for .push files does not enter.
SKIPPED_FOLDERS = frozenset({"node_modules", "__pycache__", "site-packages"})


@dataclass
class _Parsed:
    text: str
    module: ast.Module | None
    diagnostics: list[Diagnostic]


@dataclass
class Checked:
    """One file checked with what it imports: the program the compiler saw and what it said."""

    path: Path
    program: Program
    diagnostics: list[Diagnostic]
    config: Config
    schema: Schema | None
    via: dict[Path, ast.Import]  # each imported file → the import line of this file that brings it in
    targets: dict[tuple[Path, Span], Path]  # an import line (its file, its span) → the file it names
    definitions: CheckContext  # the names in scope, a file that does not parse as it last did
    paths: dict[str, Path] = field(default_factory=dict)  # the name a diagnostic gives a file → the file

    def __post_init__(self) -> None:
        self.paths = {f.source.path: resolved for resolved, f in self.program.files.items()}

    @property
    def shown(self) -> str:
        """The name diagnostics give this file."""
        return self.program.files[self.path].source.path

    def definition(self, kind: str, name: str) -> tuple[Path, Span] | None:
        """Where a segment or template in scope here is defined (the first definition, as the checks take it)."""
        table = self.definitions.segments if kind == "segment" else self.definitions.templates
        found = table.get(name)
        if found is None:
            return None
        path = self.paths.get(found.path)
        return (path, found.node.name_span) if path is not None else None

    def source(self, path: Path) -> Source | None:
        loaded = self.program.files.get(path)
        return loaded.source if loaded is not None else None


class _Loader(Loader):
    """The CLI's loader, reading open buffers before the disk, parsing through the workspace's cache, and
    noting which import line brings each file in."""

    def __init__(self, sink: Sink, workspace: Workspace, root: Path, *, uncached: str | None = None) -> None:
        super().__init__(sink)
        self.workspace = workspace
        self.root = root
        self.uncached = uncached  # a file parsed without the cache: a stand-in for one that does not parse
        self.via: dict[Path, ast.Import] = {}
        self.targets: dict[tuple[Path, Span], Path] = {}

    def _load(self, resolved: Path, shown: str, *, root: bool, at: tuple[str, ast.Import] | None,
              text: str | None = None) -> None:
        if text is None:
            text = self.workspace.buffers.get(resolved)
        if at is not None and self._stack:
            importer = self._stack[-1]
            self.via[resolved] = at[1] if importer == self.root else self.via.get(importer, at[1])
        super()._load(resolved, shown, root=root, at=at, text=text)

    def _resolve(self, importer_path: Path, item: ast.Import) -> Path | None:
        target = super()._resolve(importer_path, item)
        if target is not None:
            self.targets[(importer_path, item.span)] = target
        return target

    def parse_file(self, source: Source) -> ast.Module | None:
        if source.path == self.uncached:
            return parse(source, self.sink)
        return self.workspace.parse(source, self.sink)


class Workspace:
    def __init__(self, *, config_path: str | None = None, schema_path: str | None = None) -> None:
        self.config_path = config_path
        self.schema_path = schema_path
        self.folders: list[Path] = []
        self.buffers: dict[Path, str] = {}  # open files: their text in the editor
        self.checked: dict[Path, Checked] = {}  # open files: their last check
        self.parses = 0  # texts parsed (not taken from the cache)
        self._parsed: dict[str, _Parsed] = {}  # by the name a file is shown as: the last text parsed
        self._good: dict[str, ast.Module] = {}  # by that name: the last text that parsed
        self._configs: dict[str | None, tuple[int, Config, list[Diagnostic]]] = {}
        self._schemas: dict[str, tuple[int, Schema | None, list[Diagnostic]]] = {}

    # ---- files -----------------------------------------------------------------------------------

    def open(self, path: Path, text: str) -> None:
        self.buffers[path] = text

    change = open

    def close(self, path: Path) -> None:
        self.buffers.pop(path, None)
        self.checked.pop(path, None)

    def text(self, path: Path) -> str | None:
        """A file's text: the editor's if it is open, else the disk's (None: it cannot be read)."""
        if path in self.buffers:
            return self.buffers[path]
        try:
            return Source.read(path).text
        except (OSError, UnicodeDecodeError):
            return None

    def files(self) -> list[Path]:
        """Every .push file of the workspace's folders (hidden folders and dependencies left out), and every
        open one."""
        found: dict[Path, None] = dict.fromkeys(self.buffers)
        for folder in self.folders:
            for top, dirs, entries in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS)
                found.update((Path(top, n).resolve(), None) for n in sorted(entries) if n.endswith(".push"))
        return list(found)

    @staticmethod
    def shown(path: Path) -> str:
        """The name a file is shown as, as the CLI shows it (relative to the working directory)."""
        shown = display_path(path)
        return shown if Path(shown).resolve() == path else str(path)

    # ---- parsing ---------------------------------------------------------------------------------

    def parse(self, source: Source, sink: Sink) -> ast.Module | None:
        """A file's syntax tree, parsed again only when its text changed; its syntax errors go to ``sink``."""
        cached = self._parsed.get(source.path)
        if cached is None or cached.text != source.text:
            own = Sink()
            self.parses += 1
            cached = _Parsed(source.text, parse(source, own), own.items)
            self._parsed[source.path] = cached
            if cached.module is not None:
                self._good[source.path] = cached.module
        sink.items.extend(cached.diagnostics)
        return cached.module

    def module(self, path: Path) -> ast.Module | None:
        """A file's syntax tree; while it does not parse (being typed), the last one that did."""
        text = self.text(path)
        shown = self.shown(path)
        if text is not None:
            module = self.parse(Source(shown, text), Sink())
            if module is not None:
                return module
        return self._good.get(shown)

    # ---- checking --------------------------------------------------------------------------------

    def load(self, path: Path, sink: Sink | None = None) -> tuple[Program, _Loader]:
        """A file and what it imports, as `pushlang lint FILE` loads them."""
        loader = _Loader(sink or Sink(), self, path)
        text = self.text(path)
        if text is None:
            loader.load_roots([str(path)])  # says why it cannot be read
        else:
            loader.load_text(self.shown(path), text)
        return loader.program, loader

    def check(self, path: Path) -> Checked:
        """Check a file with what it imports; an open file's check is kept (`dependents` reads it)."""
        sink = Sink()
        config = self._config(path, sink)
        schema_path = self.schema_path or config.schema
        schema = self._schema(schema_path, sink) if schema_path else None
        program, loader = self.load(path, sink)
        compile_program(program, config, schema, sink)
        root = program.files.get(path)
        if root is not None and root.module is None:  # being typed: its names as far as they can be known
            program, loader = self._imports_only(path, root.source)
        checked = Checked(path, program, sink.sorted(), config, schema, loader.via, loader.targets,
                          self._definitions(program, config, schema))
        if path in self.buffers:
            self.checked[path] = checked
        return checked

    def _imports_only(self, path: Path, source: Source) -> tuple[Program, _Loader]:
        """A file that does not parse, loaded for the names in scope: its import lines (each where it is
        written) with what they import, its own definitions as it last parsed."""
        kept = [line if _IMPORT_LINE.match(line) else "" for line in source.text.split("\n")]
        loader = _Loader(Sink(), self, path, uncached=source.path)
        loader.load_text(source.path, "\n".join(kept))
        last = self._good.get(source.path)
        root = loader.program.files.get(path)
        if root is not None and last is not None:
            root.module = last
        return loader.program, loader

    def scope(self, path: Path) -> Checked:
        """An open file's last check, else a new one."""
        return self.checked.get(path) or self.check(path)

    def dependents(self, path: Path) -> list[Path]:
        """The open files, other than ``path``, whose last check loaded it (they import it, directly or not)."""
        return [root for root, checked in self.checked.items() if root != path and path in checked.program.files]

    def _definitions(self, program: Program, config: Config, schema: Schema | None) -> CheckContext:
        """The checks' own view of the names in scope, a file that does not parse taken as it last did."""
        files = {resolved: LoadedFile(f.source, f.module or self._good.get(f.source.path), f.root)
                 for resolved, f in program.files.items()}
        return CheckContext(Program(files), config, schema, Sink())

    def _config(self, path: Path, sink: Sink) -> Config:
        found = find_config(self.config_path, [str(path)])
        stamp = _stamp(found)
        cached = self._configs.get(found)
        if cached is None or cached[0] != stamp:
            own = Sink()
            cached = (stamp, load_config(found, own), own.items)
            self._configs[found] = cached
        sink.items.extend(cached[2])
        return cached[1]

    def _schema(self, path: str, sink: Sink) -> Schema | None:
        stamp = _stamp(path)
        cached = self._schemas.get(path)
        if cached is None or cached[0] != stamp:
            own = Sink()
            cached = (stamp, load_schema(path, own), own.items)
            self._schemas[path] = cached
        sink.items.extend(cached[2])
        return cached[1]

    # ---- names across files ----------------------------------------------------------------------

    def references(self, kind: str, name: str, defined: tuple[Path, Span]) -> Iterator[tuple[Path, Span]]:
        """Every use of the segment or template defined at ``defined``, in the workspace's files: the uses
        of that name in a file whose imports resolve it to that definition."""
        for path in self.files():
            module = self.module(path)
            if module is None:
                continue
            uses = [n.span for n in names(module) if n.kind == kind and n.name == name and not n.definition]
            if not uses:
                continue
            program, _ = self.load(path)
            if self._names_of(path, program).definition(kind, name) == defined:
                yield from ((path, span) for span in uses)

    def _names_of(self, path: Path, program: Program) -> Checked:
        """A file loaded (not checked) with the names in scope, for a search across files."""
        config = self._config(path, Sink())
        return Checked(path, program, [], config, None, {}, {}, self._definitions(program, config, None))

    def importers(self, target: Path) -> Iterator[tuple[Path, Span]]:
        """Every import line of the workspace's files that names ``target``."""
        for path in self.files():
            module = self.module(path)
            imports = [item for item in module.items if isinstance(item, ast.Import)] if module is not None else []
            if not imports:
                continue
            checked = self.checked.get(path)
            targets = checked.targets if checked is not None else self.load(path)[1].targets
            yield from ((path, item.span) for item in imports if targets.get((path, item.span)) == target)

    def import_target(self, path: Path, item: ast.Import) -> Path | None:
        """The file an import line of ``path`` names (None: none it can find)."""
        checked = self.checked.get(path)
        if checked is not None and (path, item.span) in checked.targets:
            return checked.targets[(path, item.span)]
        _, loader = self.load(path)
        return loader.targets.get((path, item.span))


def _stamp(path: str | None) -> int:
    """When a file last changed (0: there is none), so a cached config or schema is read again after."""
    if path is None:
        return 0
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
