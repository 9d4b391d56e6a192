"""`gpufleet-node run`: the engine pod's main process (detect, select, launch, supervise, serve status)."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="detect the GPU, start and supervise vLLM or SGLang, serve /livez /readyz /v1/hardware /metrics",
        description=(
            "Run the node agent. Configuration comes from GPUFLEET_* environment variables "
            "(see docs/node-agent.md); the options below override them."
        ),
    )
    parser.add_argument("--model", help="model to serve (GPUFLEET_MODEL)")
    parser.add_argument("--engine", choices=["auto", "vllm", "sglang"], help="engine (GPUFLEET_ENGINE)")
    parser.add_argument("--device-index", type=int, help="GPU index (GPUFLEET_DEVICE_INDEX)")
    parser.add_argument("--status-port", type=int, help="status port (GPUFLEET_STATUS_PORT, default 8080)")
    parser.add_argument("--engine-port", type=int, help="engine port (GPUFLEET_ENGINE_PORT, default 8000)")
    parser.add_argument("--status-host", help="status bind address (default 0.0.0.0)")
    parser.add_argument(
        "--hardware-profile",
        metavar="NAME_OR_FILE",
        help="replay a recorded hardware profile instead of NVML (GPUFLEET_HARDWARE_PROFILE)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import asyncio

    from gpufleet_node.agent import run_agent
    from gpufleet_node.config import ConfigError, load_config

    env = dict(os.environ)
    if args.model:
        env["GPUFLEET_MODEL"] = args.model
    if args.engine:
        env["GPUFLEET_ENGINE"] = args.engine
    if args.hardware_profile:
        env["GPUFLEET_HARDWARE_PROFILE"] = args.hardware_profile
    overrides = {
        "device_index": args.device_index,
        "status_port": args.status_port,
        "engine_port": args.engine_port,
        "status_host": args.status_host,
    }
    try:
        config = load_config(env, overrides)
    except ConfigError as exc:
        print(f"gpufleet-node run: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_agent(config, env))
