"""`gpufleet-node probe`: ask the local agent's status port whether it is alive or ready.

The image's HEALTHCHECK uses it so the final stage needs no curl/wget, and plain Docker deployments
(no Kubernetes probes) still see an unhealthy engine.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from gpufleet_node.config import STATUS_PORT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="exit 0 when the local agent answers /readyz (or --path) with HTTP 200, else 1",
        description="Probe the node agent's status port; used by the image's HEALTHCHECK.",
    )
    parser.add_argument("--path", default="/readyz", help="status endpoint to ask (default /readyz)")
    parser.add_argument("--port", type=int, default=STATUS_PORT, help=f"status port (default {STATUS_PORT})")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    path = args.path if args.path.startswith("/") else f"/{args.path}"
    url = f"http://127.0.0.1:{args.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"gpufleet-node probe: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"gpufleet-node probe: {url} answered HTTP {status}", file=sys.stderr)
        return 1
    return 0
