"""``gpufleet run``: start the operator (kopf underneath) against the current kubeconfig."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

#: Where kopf's service-account login reads its token (the in-cluster configuration).
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

#: Flags that override a setting, so an error can name the flag the user typed.
FLAG_OF_SETTING = {
    "namespace": "--namespace",
    "liveness_endpoint": "--liveness",
    "metrics_port": "--metrics-port",
    "log_format": "--log-format",
}


def cluster_config_problem(
    kubeconfig: str | None,
    environ: Mapping[str, str],
    *,
    home: Path | None = None,
    token_path: str = SERVICE_ACCOUNT_TOKEN,
) -> str | None:
    """Why the operator could not reach any cluster, in one line; None when a configuration exists.

    Checked in the order the login handler tries them: ``--kubeconfig``, the in-cluster service
    account, ``$KUBECONFIG`` (every path of the list), ``~/.kube/config``.
    """
    if kubeconfig:
        return None if os.path.exists(kubeconfig) else f"kubeconfig {kubeconfig} does not exist"
    if os.path.exists(token_path):
        return None
    listed = [p.strip() for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p.strip()]
    if listed:
        if any(os.path.exists(p) for p in listed):
            return None
        return f"$KUBECONFIG lists {', '.join(listed)}, and none of it exists"
    default = (home if home is not None else Path.home()) / ".kube" / "config"
    if default.exists():
        return None
    return (
        f"no cluster configuration: looked for --kubeconfig (not given), the in-cluster service account "
        f"({token_path}: missing), $KUBECONFIG (unset) and {default} (missing)"
    )


def settings_error_lines(exc: ValidationError, flags: Mapping[str, str] | None = None) -> list[str]:
    """One line per invalid setting, naming the environment variable (and the flag, if one set it)."""
    from gpufleet.settings import OperatorSettings

    prefix = str(OperatorSettings.model_config.get("env_prefix") or "GPUFLEET_")
    lines = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else ""
        where = f"{prefix}{field.upper()}" if field else "settings"
        if flags and field in flags:
            where = f"{flags[field]} ({where})"
        message = str(err.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        shown = err.get("input")
        value = f"={shown!r}" if isinstance(shown, str | int | float) and not isinstance(shown, bool) else ""
        lines.append(f"{where}{value}: {message}")
    return lines


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
    parser.add_argument("--verbose", action="store_true", help="debug logging (kopf's per-handler lines too)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="text for people, json (one object per line) for log pipelines (default: GPUFLEET_LOG_FORMAT "
        "or text)",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import kopf
    from pydantic import ValidationError

    from gpufleet import __version__
    from gpufleet.cli.logformat import configure_logging
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
    if args.log_format is not None:
        overrides["log_format"] = args.log_format
    try:
        settings = OperatorSettings(**overrides)
    except ValidationError as exc:
        lines = settings_error_lines(exc, {f: FLAG_OF_SETTING[f] for f in overrides if f in FLAG_OF_SETTING})
        print("gpufleet run: invalid settings: " + "; ".join(lines), file=sys.stderr)
        return 2
    level_name = settings.log_level.upper()
    level = logging.DEBUG if args.verbose else logging.getLevelName(level_name)
    if not isinstance(level, int):
        print(
            f"gpufleet run: invalid settings: GPUFLEET_LOG_LEVEL={settings.log_level!r}: "
            "use DEBUG, INFO, WARNING or ERROR",
            file=sys.stderr,
        )
        return 2
    kubeconfig = args.kubeconfig or None
    problem = cluster_config_problem(kubeconfig, os.environ)
    if problem is not None:
        print(f"gpufleet run: {problem}", file=sys.stderr)
        return 2
    configure_logging(level, settings.log_format)

    METRICS.set_build_info(__version__)
    if settings.metrics_port:
        METRICS.serve(settings.metrics_port)
    if args.core_only:
        registry = make_registry(Reconciler(settings, rollouts=False), kubeconfig=kubeconfig)
    else:
        from gpufleet.controllers.operator import build_operator

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
