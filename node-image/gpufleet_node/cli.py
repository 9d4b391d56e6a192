"""The `gpufleet-node` command: the node agent's entry point (PID 1 of an engine pod).

Sub-commands live in modules ``gpufleet_node/cmd_<name>.py`` exposing ``register(subparsers)``,
discovered like the `gpufleet` command's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import gpufleet_node
from gpufleet.cli import register_commands, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufleet-node",
        description="gpufleet node agent: detect the GPU, pick and supervise the inference engine.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    register_commands(sub, gpufleet_node)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
