"""`pushlang compile`: print the checked execution plan as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from pushlang import plan
from pushlang.commands.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    Subparsers,
    add_config,
    add_paths,
    add_schema,
    compile_shown,
)


def add_parser(commands: Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "compile", help="print the checked execution plan as JSON",
        description="Compile campaign files and print the checked execution plan (JSON) that the runtime reads.",
    )
    add_paths(p)
    p.add_argument("--output", "-o", metavar="FILE", help="write the plan here instead of stdout")
    add_config(p)
    add_schema(p)
    return p


def run(args: argparse.Namespace) -> int:
    result = compile_shown(args.paths, config_path=args.config, schema_path=args.schema)
    if result.plan is None:
        return EXIT_FINDINGS
    data = plan.to_json(result.plan).decode()
    if args.output:
        Path(args.output).write_text(data + "\n", encoding="utf-8")
    else:
        print(data)
    return EXIT_OK
