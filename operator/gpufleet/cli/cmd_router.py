"""``gpufleet router``: the stake-weighted router (Envoy data plane, Python control plane)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "router",
        help="run the stake-weighted router (Envoy programmed from the fleet; OpenAI-compatible front)",
        description="Watch engine pods, InferenceNodes and OperatorPools (read-only), compute each "
        "device's share of its model's requests (priority / sum of priorities) and program an Envoy "
        "proxy with it. Every setting is also a GPUFLEET_ROUTER_* environment variable "
        "(docs/router.md).",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("--namespace", help="watch only this namespace (default: all)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="OpenAI front (default 127.0.0.1:8090)")
    parser.add_argument("--admin-port", type=int, help="Envoy admin port on 127.0.0.1 (default 9901)")
    parser.add_argument("--metrics-port", type=int, help="/metrics port (default 9090; 0 = off)")
    parser.add_argument("--metrics-host", help="/metrics address (default 127.0.0.1)")
    parser.add_argument("--state-dir", help="Envoy config, EDS files, access log, counter checkpoint")
    parser.add_argument("--k", dest="priority_k", help="k (1/INT) until the k controller provides it")
    parser.add_argument(
        "--no-envoy", action="store_true", help="only write the xDS files (Envoy runs as another process)"
    )
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> object:
    from gpufleet.router.settings import RouterSettings

    overrides: dict[str, object] = {}
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        overrides["listen_host"], overrides["listen_port"] = host or "127.0.0.1", int(port)
    for name in ("admin_port", "metrics_port", "metrics_host", "state_dir", "priority_k", "namespace"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return RouterSettings(**overrides)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from pydantic import ValidationError

    from gpufleet.controllers.handlers import connection
    from gpufleet.controllers.kube import KubeClient
    from gpufleet.router.controlplane import run_router
    from gpufleet.router.settings import RouterSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = _settings(args)
    except (ValidationError, ValueError) as exc:
        print(f"gpufleet router: invalid setting: {exc}", file=sys.stderr)
        return 2
    assert isinstance(settings, RouterSettings)
    try:
        info = connection(args.kubeconfig)
    except Exception as exc:
        print(f"gpufleet router: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with KubeClient(info, user_agent="gpufleet-router") as client:
            await run_router(settings, client, start_envoy=not args.no_envoy, stop=stop)

    asyncio.run(main())
    return 0
