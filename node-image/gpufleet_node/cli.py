"""The `gpufleet-node` command: the node agent's entry point (PID 1 of an engine pod).

Sub-commands live in modules ``gpufleet_node/cmd_<name>.py`` exposing ``register(subparsers)``.
The agent imports only the shared kernel (``gpufleet.api``, ``gpufleet.hardware``), so it has its
own few lines of discovery rather than the operator's CLI package.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

import gpufleet_node


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-node",
        description="gpufleet node agent: detect the GPU, pick and supervise the inference engine.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for info in sorted(pkgutil.iter_modules(gpufleet_node.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"gpufleet_node.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        build_parser().print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
