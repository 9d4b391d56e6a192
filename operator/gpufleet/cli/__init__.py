"""The `gpufleet` command line.

Each sub-command lives in its own module ``gpufleet/cli/cmd_<name>.py`` exposing
``register(subparsers) -> None``; modules are discovered here so that new commands
never need to edit a shared file. Register functions must stay cheap: import heavy
dependencies (kopf, the emulator) inside the command's handler, not at module level.
The node agent's `gpufleet-node` discovers its commands the same way.
"""

from __future__ import annotations

import argparse
import importlib
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet",
        description="gpufleet: run a fleet of GPU inference machines on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"gpufleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    register_commands(sub, sys.modules[__name__])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
