"""Loading a set of .push files: directories, imports of the standard library and relative files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pushlang import ast
from pushlang.diagnostics import Sink, codes
from pushlang.diagnostics.sink import did_you_mean
from pushlang.resources import stdlib_dir
from pushlang.source import Source, Span
from pushlang.syntax.parser import parse

STD_PREFIX = "std/"


@dataclass
class LoadedFile:
    source: Source
    module: ast.Module | None  # None: it did not parse
    root: bool  # named on the command line: its campaigns load; imported files give names only


@dataclass
class Program:
    """Every file one command loads, in load order, keyed by resolved path."""

    files: dict[Path, LoadedFile] = field(default_factory=dict)

    @property
    def sources(self) -> dict[str, Source]:
        return {f.source.path: f.source for f in self.files.values()}


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; directories become their .push files, sorted, recursively."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*.push") if f.is_file())
            out.extend(found)
        else:
            out.append(p)
    return out


def display_path(path: Path) -> str:
    """A path as short as it can be for messages: relative to the working directory if below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        std = stdlib_dir().resolve()
        if path.is_relative_to(std):
            return STD_PREFIX + str(path.relative_to(std))
        return str(path)


def _same_as_stdlib(path: Path) -> Path:
    """The installed standard-library module a file is a copy of, else the file itself.

    Linting a checkout's ``stdlib/`` next to files that ``import "std/..."`` must not load the
    same module twice (and report every name in it as a duplicate).
    """
    std = stdlib_dir().resolve() / path.name
    if path.suffix == ".push" and std != path and std.is_file():
        try:
            if std.read_bytes() == path.read_bytes():
                return std
        except OSError:
            pass
    return path


class Loader:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.program = Program()
        self._stack: list[Path] = []

    def load_roots(self, paths: list[str]) -> Program:
        for p in expand_paths(paths):
            resolved = _same_as_stdlib(Path(p).resolve())
            known = self.program.files.get(resolved)
            if known is not None:
                known.root = True
                continue
            self._load(resolved, p, root=True, at=None)
        return self.program

    def load_text(self, path: str, text: str) -> Program:
        """Load one in-memory file (the REPL, tests) and whatever it imports."""
        self._load(Path(path).resolve(), path, root=True, at=None, text=text)
        return self.program

    def _load(self, resolved: Path, shown: str, *, root: bool, at: tuple[str, ast.Import] | None,
              text: str | None = None) -> None:
        if text is None:
            try:
                source = Source.read(resolved)
                source.path = shown
            except OSError as exc:
                where, span = (at[0], at[1].span) if at else (shown, Span(1, 1, 1, 1))
                if at is not None:
                    self.sink.report(codes.IMPORT_NOT_FOUND, where, span,
                                     f"cannot import `{at[1].target}`: {exc.strerror.lower() if exc.strerror else exc}")
                else:
                    self.sink.report(codes.UNREADABLE_FILE, where, span,
                                     f"cannot read `{shown}`: {exc.strerror.lower() if exc.strerror else exc}")
                return
            except UnicodeDecodeError as exc:
                # The text before the bad byte decodes, so it gives the line and column to show.
                before = exc.object[:exc.start].decode("utf-8")
                line, column = Source(shown, before).position(len(before))
                self.sink.report(codes.UNREADABLE_FILE, shown, Span(line, column, line, column + 1),
                                 f"`{shown}` is not UTF-8 text (byte {exc.start})",
                                 help="save the file as UTF-8")
                return
        else:
            source = Source(shown, text)
        module = self.parse_file(source)
        self.program.files[resolved] = LoadedFile(source, module, root)
        if module is None:
            return
        self._stack.append(resolved)
        for item in module.items:
            if isinstance(item, ast.Import):
                self._import(source.path, resolved, item)
        self._stack.pop()

    def parse_file(self, source: Source) -> ast.Module | None:
        """A loaded file's syntax tree (None: it does not parse, and the sink says why). A host that keeps
        files between loads (the language server) gives back what it parsed before from the same text."""
        return parse(source, self.sink)

    def _import(self, importer: str, importer_path: Path, item: ast.Import) -> None:
        target = self._resolve(importer_path, item)
        if target is None:
            return
        if target in self._stack:
            chain = [*self._stack[self._stack.index(target):], target]
            shown = " → ".join(display_path(p) for p in chain)
            self.sink.report(codes.IMPORT_CYCLE, importer, item.span, f"import cycle: {shown}",
                             help="move what both files need into a third file that both import")
            return
        if target in self.program.files:
            return
        self._load(target, display_path(target), root=False, at=(importer, item))

    def _resolve(self, importer_path: Path, item: ast.Import) -> Path | None:
        name = item.target
        if name.startswith(STD_PREFIX):
            module = name[len(STD_PREFIX):].removesuffix(".push")
            candidate = stdlib_dir() / f"{module}.push"
            if candidate.is_file():
                return candidate.resolve()
            known = sorted(STD_PREFIX + p.stem for p in stdlib_dir().glob("*.push"))
            self.sink.report(codes.IMPORT_NOT_FOUND, self._shown(importer_path), item.span,
                             f"the standard library has no module `{name}`",
                             help=did_you_mean(name, known) or "modules: " + ", ".join(known))
            return None
        if not (name.startswith("./") or name.startswith("../") or os.path.isabs(name)):
            self.sink.report(codes.IMPORT_NOT_FOUND, self._shown(importer_path), item.span,
                             f"`{name}` is neither a standard-library module nor a relative path",
                             help=f'write `import "std/{name}"` or `import "./{name}"`')
            return None
        candidate = (importer_path.parent / name).resolve()
        if not candidate.is_file():
            self.sink.report(codes.IMPORT_NOT_FOUND, self._shown(importer_path), item.span,
                             f"no file `{name}` next to this file",
                             help=f"looked for {display_path(candidate)}")
            return None
        return candidate

    def _shown(self, path: Path) -> str:
        return self.program.files[path].source.path
