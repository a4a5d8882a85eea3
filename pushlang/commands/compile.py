"""`pushlang compile`: print the checked execution plan as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from pushlang.commands import common


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "compile", help="print the checked execution plan as JSON",
        description="Compile campaign files and print the checked execution plan (JSON) that the runtime reads.",
    )
    common.add_paths(p)
    p.add_argument("--output", "-o", metavar="FILE", help="write the plan here instead of stdout")
    common.add_config(p)
    common.add_schema(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pushlang import plan

    compiled, _ = common.compile_checked(args.paths, config_path=args.config, schema_path=args.schema)
    data = plan.to_json(compiled).decode()
    if args.output:
        Path(args.output).write_text(data + "\n", encoding="utf-8")
    else:
        print(data)
    return common.EXIT_OK
