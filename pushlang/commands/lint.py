"""`pushlang lint`: parse and check campaign files, and print the diagnostics."""

from __future__ import annotations

import argparse
import sys

from pushlang import __version__
from pushlang.commands import common

# diagnostics.render.FORMATS, written out so that building the parser imports no renderer (a test
# checks that the two agree)
FORMATS = ("text", "json", "github", "sarif")


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "lint", help="parse and check campaign files",
        description="Parse and check .push files (directories are searched for *.push). "
                    "Errors make a campaign unusable; warnings never change what it does.",
    )
    common.add_paths(p)
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), json, github (workflow annotations) or sarif (2.1.0)")
    common.add_config(p)
    common.add_schema(p)
    p.add_argument("--deny-warnings", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--quiet", "-q", action="store_true", help="text format: print nothing when clean")
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang.compiler import compile_paths
    from pushlang.diagnostics.render import render, render_summary, render_text, use_color

    files = common.check_paths(args.paths)
    result = compile_paths(args.paths, config_path=args.config, schema_path=args.schema)
    diagnostics = result.diagnostics
    if args.format == "text":
        text = render_text(diagnostics, result.sources, color=use_color(sys.stdout))
        if text:
            print(text + "\n")
        if diagnostics or not args.quiet:
            print(render_summary(diagnostics, len(files)))
    else:
        print(render(args.format, diagnostics, result.sources, tool_version=__version__))
    if result.has_errors or (args.deny_warnings and diagnostics):
        return common.EXIT_FINDINGS
    return common.EXIT_OK
