"""The `gpufleet` command line.

Each sub-command lives in its own module ``gpufleet/cli/cmd_<name>.py`` exposing
``register(subparsers) -> None``; modules are discovered here so that new commands
never need to edit a shared file. Register functions must stay cheap: import heavy
dependencies (kopf, the router's proxy) inside the command's handler, not at module level.

Commands of other distributions (the `gpufleet-devtools` distribution's `demo` and
`devcluster`) plug in through the entry-point group ``gpufleet.commands``: the product never
imports the emulator or the demo, they import the product.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from gpufleet import __version__


def register_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], package: ModuleType) -> None:
    """Add every ``cmd_*`` module of ``package`` as a sub-command, in name order."""
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{package.__name__}.{info.name}").register(sub)


ENTRY_POINT_GROUP = "gpufleet.commands"


def register_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands other installed distributions declare in ``gpufleet.commands``."""
    taken = set(sub.choices)
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if entry.name not in taken:
            entry.load()(sub)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command's handler; help and 2 when none was chosen."""
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gpufleet gpus | head`: the reader left; no traceback, and none at exit either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet",
        description="gpufleet: run a fleet of GPU inference machines on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"gpufleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    register_commands(sub, sys.modules[__name__])
    register_plugin_commands(sub)
    return parser


DEVTOOLS_COMMANDS = ("demo", "devcluster")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    sub_choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if args and args[0] in DEVTOOLS_COMMANDS and args[0] not in sub_choices:
        print(
            f"gpufleet: '{args[0]}' comes with the gpufleet-devtools distribution (the API emulator and "
            "the demo); install it from a source checkout with: pip install -e ./devtools",
            file=sys.stderr,
        )
        return 2
    return run_command(parser, args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
