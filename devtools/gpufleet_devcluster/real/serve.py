"""`gpufleet devcluster --backend real`: serve the real control plane until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from gpufleet_devcluster.real.cluster import ControlPlaneError, RealCluster, describe


def serve_real(args: argparse.Namespace) -> int:
    """Start, print where it is, wait for a signal, stop every process by PID."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    crds = args.crds if args.crds is not None and args.crds.is_dir() else None
    rc = RealCluster(nodes=args.nodes, crd_dir=crds, kubeconfig_path=args.kubeconfig_out)
    try:
        rc.start()
        for line in describe(rc):
            print(line, flush=True)
        while not stop.wait(1.0):
            dead = [name for name, up in rc.alive().items() if not up]
            if dead:
                print(f"error: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
        print("stopping ...", flush=True)
        return 0
    except (ControlPlaneError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        rc.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
