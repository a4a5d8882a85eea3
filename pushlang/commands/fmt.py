"""`pushlang fmt`: rewrite campaign files in the one canonical layout, comments kept."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "fmt", help="format campaign files in the canonical layout",
        description="Rewrite .push files in the one canonical layout, keeping every comment.",
    )
    common.add_paths(p)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    p.add_argument("--diff", action="store_true", help="change nothing; print what would change")
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.diagnostics import Sink, codes
    from pushlang.diagnostics.render import render_text, use_color
    from pushlang.source import Source, Span
    from pushlang.syntax.formatter import fmt_diff, format_source

    files = common.check_paths(args.paths)
    sink = Sink()
    sources: dict[str, Source] = {}
    changed: list[str] = []
    for path in files:
        try:
            source = Source.read(path)
        except OSError as exc:
            raise common.UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:  # said as lint says it
            before = exc.object[:exc.start].decode("utf-8")
            line, column = Source(path, before).position(len(before))
            sink.report(codes.UNREADABLE_FILE, path, Span(line, column, line, column + 1),
                        f"`{path}` is not UTF-8 text (byte {exc.start})", help="save the file as UTF-8")
            sources[path] = Source(path, before)
            continue
        sources[path] = source
        formatted = format_source(source, sink)
        if formatted is None or formatted == source.text:
            continue
        changed.append(path)
        if args.diff:
            sys.stdout.write(fmt_diff(path, source.text, formatted))
        elif args.check:
            print(f"would reformat {path}")
        else:
            Path(path).write_text(formatted, encoding="utf-8")
    if sink.items:
        print(render_text(sink.sorted(), sources, color=use_color(sys.stderr)) + "\n", file=sys.stderr)
    verb = "would be reformatted" if (args.check or args.diff) else "reformatted"
    print(f"{len(changed)} of {len(files)} files {verb}"
          + (f", {len({d.path for d in sink.items})} could not be parsed" if sink.items else "") + ".",
          file=sys.stderr)
    if sink.has_errors or ((args.check or args.diff) and changed):
        return common.EXIT_FINDINGS
    return common.EXIT_OK
