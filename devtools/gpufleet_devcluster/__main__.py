"""`python -m gpufleet_devcluster --kubeconfig-out FILE`: run the emulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from gpufleet_devcluster.cluster import DEFAULT_CRD_DIR, DevCluster, NodeSpec
from gpufleet_devcluster.process import tune_gc

#: The default nodes are the ones examples/inferencenode*.yaml name, so the README's cluster steps
#: (`kubectl apply -f examples/...`) find their GPUs on `gpufleet devcluster` as written.
EXAMPLE_NODES = (
    NodeSpec("gpu-node-rtx4090", "rtx4090-x4"),
    NodeSpec("gpu-node-a100", "a100-80gb-x1"),
    NodeSpec("gpu-node-h100", "h100-sxm-x8"),
    NodeSpec("gpu-node-liar", "bad-rtx4090-48gb"),  # examples/inferencenode-blocked.yaml: blocked
)


def parse_node(text: str) -> NodeSpec:
    """`name` or `name=profile`."""
    name, _, profile = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"node {text!r}: expected NAME or NAME=PROFILE")
    return NodeSpec(name, profile) if profile else NodeSpec(name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig-out", type=Path, required=True, help="where to write the kubeconfig")
    parser.add_argument("--crds", type=Path, default=DEFAULT_CRD_DIR, help="directory of CRD YAML files")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    parser.add_argument(
        "--node",
        dest="nodes",
        type=parse_node,
        action="append",
        help="NAME[=PROFILE] (repeatable); default: the three nodes examples/inferencenodes.yaml names",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpufleet_devcluster",
        description="Run the gpufleet Kubernetes API emulator with simulated GPU nodes until interrupted.",
    )
    add_arguments(parser)
    return parser


async def serve(args: argparse.Namespace) -> None:
    nodes = args.nodes or list(EXAMPLE_NODES)
    crds = args.crds if args.crds.is_dir() else None
    async with DevCluster(
        crd_dir=crds, nodes=nodes, port=args.port, kubeconfig_path=args.kubeconfig_out
    ) as c:
        tune_gc()
        print(f"devcluster serving {c.url}; kubeconfig: {c.kubeconfig_path}", flush=True)
        print(f"  nodes: {', '.join(f'{n.name} ({n.profile})' for n in nodes)}", flush=True)
        print(f"  try: KUBECONFIG={c.kubeconfig_path} kubectl get nodes", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(serve(args))
    except ValueError as exc:  # e.g. an unknown hardware profile
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
