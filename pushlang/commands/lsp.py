"""`pushlang lsp`: the language server for editors, on stdio (or a TCP port, for debugging)."""

from __future__ import annotations

import argparse
import sys

from pushlang.commands import common

DEFAULT_DEBOUNCE_MS = 200  # lsp.server.DEFAULT_DEBOUNCE, written out so that building the parser imports no pygls


def add_parser(commands: common.Subparsers) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add_parser(
        "lsp", help="the language server for editors (stdio)",
        description="Serve the Language Server Protocol on stdin/stdout: diagnostics as you type, completion, "
                    "hover, go to definition, references, symbols, formatting and quick fixes for .push files. "
                    "Needs the lsp extra: pip install 'pushlang[lsp]'.",
    )
    p.add_argument("--tcp", metavar="HOST:PORT", type=address,
                   help="listen on a TCP port instead of stdio (to debug the server; one client)")
    p.add_argument("--debounce", metavar="MS", type=common.non_negative, default=DEFAULT_DEBOUNCE_MS,
                   help=f"check a file this long after its last change (default {DEFAULT_DEBOUNCE_MS}; "
                        "the client's initializationOptions.debounce wins)")
    common.add_config(p)
    common.add_schema(p)
    return p


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (argparse type)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:2087)")
    return host.strip("[]"), common.port(port)


def run(args: argparse.Namespace) -> int:
    # without the extra, a ModuleNotFoundError: the CLI's error boundary says what to install
    from pushlang.lsp.server import serve

    if args.tcp is not None:
        common.check_listen(*args.tcp)
        print(f"pushlang lsp: listening on {args.tcp[0]}:{args.tcp[1]}", file=sys.stderr, flush=True)
    shut_down = serve(tcp=args.tcp, debounce=args.debounce / 1000, config_path=args.config, schema_path=args.schema)
    return common.EXIT_OK if shut_down else common.EXIT_FINDINGS  # LSP: exit 1 when exit came without shutdown
