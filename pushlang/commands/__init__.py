"""The commands of `pushlang`: one module each, argparse and terminal output only.

Each module has ``add_parser(subparsers) -> ArgumentParser`` and ``run(args) -> int`` (an exit code);
``pushlang.cli`` lists them. The work is in the libraries below (compiler, runtime, dispatch) and the
hosts (service, scaleout, repl); what the commands share is in :mod:`.common`.
"""
