"""``gpufleet run``: start the operator (kopf underneath) against the current kubeconfig."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the operator against the current kubeconfig (or in-cluster service account)",
        description="Run the gpufleet operator. Settings come from GPUFLEET_* environment variables "
        "(see docs/operator-settings.md); the flags below override the most common ones.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; default: GPUFLEET_NAMESPACE or all)",
    )
    parser.add_argument("--liveness", help="liveness endpoint URL, e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0 disables)")
    parser.add_argument(
        "--core-only",
        action="store_true",
        help="run the core reconciler without the rollout controller (benchmarks)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import kopf
    from pydantic import ValidationError

    from gpufleet import __version__
    from gpufleet.controllers.handlers import kopf_settings, make_registry
    from gpufleet.controllers.reconciler import Reconciler
    from gpufleet.metrics import METRICS
    from gpufleet.settings import OperatorSettings

    overrides: dict[str, Any] = {}
    if args.namespace:
        overrides["namespace"] = ",".join(args.namespace)
    if args.liveness is not None:
        overrides["liveness_endpoint"] = args.liveness
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    try:
        settings = OperatorSettings(**overrides)
    except ValidationError as exc:
        print(f"gpufleet run: invalid settings:\n{exc}")
        return 2
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kubeconfig = args.kubeconfig or None
    if kubeconfig and not os.path.exists(kubeconfig):
        print(f"gpufleet run: kubeconfig {kubeconfig} does not exist")
        return 2

    METRICS.set_build_info(__version__)
    if settings.metrics_port:
        METRICS.serve(settings.metrics_port)
    if args.core_only:
        registry = make_registry(Reconciler(settings), kubeconfig=kubeconfig)
    else:
        from gpufleet.controllers.runtime import build_operator

        registry = build_operator(settings, kubeconfig=kubeconfig).registry
    namespaces = settings.namespaces
    kopf.run(
        registry=registry,
        settings=kopf_settings(settings),
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=settings.liveness_endpoint,
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
    )
    return 0
