"""The ``pushlang`` command line: ``main(argv) -> int`` (0 clean, 1 findings, 2 usage or internal error)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pushlang import __version__, plan, repl, scaleout, scaleout_dispatch
from pushlang.compiler import compile_paths
from pushlang.diagnostics import CODES, Sink, lookup
from pushlang.diagnostics.render import FORMATS, render, render_explain, render_summary, render_text
from pushlang.dispatch import keys, send_test
from pushlang.loader import expand_paths
from pushlang.runtime import diff, preview, reach, stats
from pushlang.source import Source

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: printed as `pushlang: error: ...`, exit 2."""


def _parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pushlang",
        description="Campaigns-as-code for web push notifications: check, format and compile .push files.",
        epilog="Run `pushlang COMMAND --help` for a command's options. "
               "Exit codes: 0 clean, 1 problems found, 2 usage or internal error.",
    )
    root.add_argument("--version", action="version", version=f"pushlang {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND")

    lint = commands.add_parser(
        "lint", help="parse and check campaign files",
        description="Parse and check .push files (directories are searched for *.push). "
                    "Errors make a campaign unusable; warnings never change what it does.",
    )
    lint.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    lint.add_argument("--format", choices=FORMATS, default="text",
                      help="text (default), json, github (workflow annotations) or sarif (2.1.0)")
    _add_project_options(lint)
    lint.add_argument("--deny-warnings", action="store_true", help="exit 1 on warnings too")
    lint.add_argument("--quiet", "-q", action="store_true", help="text format: print nothing when clean")

    fmt = commands.add_parser(
        "fmt", help="format campaign files in the canonical layout",
        description="Rewrite .push files in the one canonical layout, keeping every comment.",
    )
    fmt.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    fmt.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    fmt.add_argument("--diff", action="store_true", help="change nothing; print what would change")

    comp = commands.add_parser(
        "compile", help="print the checked execution plan as JSON",
        description="Compile campaign files and print the checked execution plan (JSON) that the runtime reads.",
    )
    comp.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    comp.add_argument("--output", "-o", metavar="FILE", help="write the plan here instead of stdout")
    _add_project_options(comp)

    rep = commands.add_parser(
        "replay", help="run campaigns over a stream of records on the virtual clock",
        description="Replay campaigns over JSON Lines records (SPEC §9.1) on a virtual clock: decisions "
                    "go to --out (default stdout), a summary table per campaign to stderr. Dry run: "
                    "nothing is delivered.",
    )
    rep.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    rep.add_argument("--events", required=True, metavar="FILE", help="records as JSON Lines, or - for stdin")
    rep.add_argument("--out", metavar="FILE", help="write decisions here (JSON Lines) instead of stdout")
    rep.add_argument("--until", metavar="DATETIME",
                     help="fire timers due up to this instant at the end (default: the last record's time)")
    rep.add_argument("--rejects", metavar="FILE", help="write each rejected line here with its number and reason")
    rep.add_argument("--store", metavar="URL",
                     help="state store: memory (default) or sqlite:///file.db (a later replay continues it)")
    rep.add_argument("--config", metavar="FILE", help="pushlang.toml to use")
    rep.add_argument("--dispatch", choices=("dry-run", "live"), default="dry-run",
                     help="dry-run (default) decides only; live really delivers every send with the "
                          "credentials of pushlang.toml ([vapid], [apns]) and records each delivery")

    preview.add_parser(commands)
    stats.add_parser(commands)
    diff.add_parser(commands)
    reach.add_parser(commands)
    keys.add_parser(commands)
    send_test.add_parser(commands)
    repl.add_parser(commands)
    scaleout.add_parser(commands)
    scaleout_dispatch.add_parser(commands)

    srv = commands.add_parser(
        "serve", help="the live service: ingest API, wall-clock timers, real delivery, stats",
        description="Run campaigns live: records in over HTTP (POST /v1/records with a bearer token from "
                    "PUSHLANG_API_TOKEN), timers on the wall clock, sends delivered with the credentials of "
                    "pushlang.toml, everything durable in one SQLite file. GET /healthz, /v1/campaigns, "
                    "/v1/stats, /dashboard; the browser SDK at /sdk/sw.js and /sdk/subscribe.js. SIGHUP or "
                    "POST /v1/reload reloads the campaign files when they compile.",
    )
    srv.add_argument("paths", nargs="+", metavar="PATH", help=".push files or directories")
    srv.add_argument("--config", metavar="FILE", help="pushlang.toml to use")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    srv.add_argument("--store", default="pushlang.db", metavar="FILE",
                     help="the SQLite file (default pushlang.db; sqlite:///file.db works too)")
    srv.add_argument("--redis", metavar="URL",
                     help="scale-out: only take records in and append them to the partition streams of this "
                          "Redis, for `pushlang worker` processes")
    srv.add_argument("--partitions", type=int, default=256, help="with --redis: the number of partitions")

    explain = commands.add_parser(
        "explain", help="what a diagnostic code means and how to fix it",
        description="Explain a diagnostic code (PL200) or name (unknown-segment); without one, list all codes.",
    )
    explain.add_argument("code", nargs="?", help="a code such as PL200 or a name such as unknown-segment")
    return root


def _add_project_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="pushlang.toml to use (default: ./pushlang.toml, else one beside the given paths)")
    p.add_argument("--schema", metavar="FILE",
                   help="event schema (TOML or JSON) that enables the property checks "
                        "(default: [lint] schema in the config)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 for --help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(_COMMANDS[args.command](args))
    except (UsageError, ValueError) as exc:
        print(f"pushlang: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name != "redis":
            raise
        print("pushlang: error: this command needs Redis support: pip install 'pushlang[redis]'", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not type(exc).__module__.startswith("redis"):
            raise
        print(f"pushlang: error: Redis: {exc} (is the server running and the URL right?)", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


def _color(stream: object) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


def _check_paths(paths: list[str]) -> list[str]:
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    files = expand_paths(paths)
    if not files:
        raise UsageError(f"no .push files in {', '.join(paths)}")
    return files


def cmd_lint(args: argparse.Namespace) -> int:
    files = _check_paths(args.paths)
    result = compile_paths(args.paths, config_path=args.config, schema_path=args.schema)
    diagnostics = result.diagnostics
    if args.format == "text":
        text = render_text(diagnostics, result.sources, color=_color(sys.stdout))
        if text:
            print(text + "\n")
        if diagnostics or not args.quiet:
            print(render_summary(diagnostics, len(files)))
    else:
        print(render(args.format, diagnostics, result.sources, tool_version=__version__))
    if result.has_errors or (args.deny_warnings and diagnostics):
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    _check_paths(args.paths)
    result = compile_paths(args.paths, config_path=args.config, schema_path=args.schema)
    result.report()
    if result.plan is None:
        return EXIT_FINDINGS
    data = plan.to_json(result.plan).decode()
    if args.output:
        Path(args.output).write_text(data + "\n", encoding="utf-8")
    else:
        print(data)
    return EXIT_OK


def cmd_fmt(args: argparse.Namespace) -> int:
    from pushlang.syntax.formatter import fmt_diff, format_source

    files = _check_paths(args.paths)
    sink = Sink()
    sources: dict[str, Source] = {}
    changed: list[str] = []
    for path in files:
        try:
            source = Source.read(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
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
        print(render_text(sink.sorted(), sources, color=_color(sys.stderr)) + "\n", file=sys.stderr)
    verb = "would be reformatted" if (args.check or args.diff) else "reformatted"
    print(f"{len(changed)} of {len(files)} files {verb}"
          + (f", {len({d.path for d in sink.items})} could not be parsed" if sink.items else "") + ".",
          file=sys.stderr)
    if sink.has_errors or ((args.check or args.diff) and changed):
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    if args.code is None:
        width = max(len(c.name) for c in CODES.values())
        for c in CODES.values():
            print(f"{c.code}  {c.name:<{width}}  {c.severity.value:<7}  {c.summary}")
        return EXIT_OK
    code = lookup(args.code)
    if code is None:
        raise UsageError(f"unknown code `{args.code}`; `pushlang explain` lists them all")
    print(render_explain(code))
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from pushlang.runtime.hosts import run_replay

    _check_paths(args.paths)
    result = compile_paths(args.paths, config_path=args.config)
    result.report()
    if result.plan is None:
        return EXIT_FINDINGS
    try:
        return run_replay(result.plan, events=args.events, out=args.out, until=args.until,
                          rejects=args.rejects, store_url=args.store,
                          live=result.config if args.dispatch == "live" else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from pushlang.service.app import serve

    _check_paths(args.paths)
    store = args.store.removeprefix("sqlite:///")
    return serve(args.paths, host=args.host, port=args.port, config_path=args.config, store_path=store,
                 redis_url=args.redis, partitions=args.partitions)


_COMMANDS = {"lint": cmd_lint, "compile": cmd_compile, "fmt": cmd_fmt, "explain": cmd_explain,
             "replay": cmd_replay, "preview": preview.run, "stats": stats.run,
             "diff": diff.run, "reach": reach.run,
             "keys": keys.run, "send-test": send_test.run,
             "repl": repl.run, "serve": cmd_serve, "worker": scaleout.run, "ingest": scaleout.run,
             "dispatch": scaleout_dispatch.run}
