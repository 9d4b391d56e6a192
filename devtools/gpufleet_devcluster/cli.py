"""`gpufleet devcluster`: run the Kubernetes API emulator with simulated GPU nodes until interrupted.

The same as `python -m gpufleet_devcluster`; arguments are declared here without importing the
emulator so that `gpufleet --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "devcluster",
        help="run the Kubernetes API emulator (simulated GPU nodes, kubelet, agents) until Ctrl-C",
        description="Serve an emulated Kubernetes API on 127.0.0.1 with gpufleet's CRDs and simulated GPU "
        "nodes until Ctrl-C; point KUBECONFIG at --kubeconfig-out.",
    )
    parser.add_argument("--kubeconfig-out", type=Path, required=True, help="where to write the kubeconfig")
    parser.add_argument(
        "--crds", type=Path, default=None, help="directory of CRD YAML files (default: crds/)"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    parser.add_argument(
        "--node",
        dest="nodes",
        action="append",
        metavar="NAME[=PROFILE]",
        help="an emulated node (repeatable); default: the nodes examples/inferencenode*.yaml name "
        "(gpu-node-rtx4090=rtx4090-x4, gpu-node-a100=a100-80gb-x1, gpu-node-h100=h100-sxm-x8, "
        "gpu-node-liar=bad-rtx4090-48gb)",
    )
    parser.add_argument(
        "--backend",
        choices=("emulator", "real"),
        default="emulator",
        help="emulator (default: in-process, instant) or real (kube-apiserver, etcd, controller-manager, "
        "scheduler and kwok built from source with Go on first use; see docs/testing.md)",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="start the emulator in the background, return once it serves (its pid goes to "
        "KUBECONFIG_OUT.pid; stop it with kill)",
    )
    parser.set_defaults(func=handle)


def detach(args: argparse.Namespace, timeout: float | None = None) -> int:
    """Start this command (without ``--detach``) in its own session and wait until it serves.

    So that a shell script (the README's cluster steps) can go on with kubectl at once, without
    racing the kubeconfig being written. Either backend: both print a ``... serving URL`` line
    once their API answers (the real one may first build its binaries: it gets 15 minutes).
    """
    import subprocess
    import time

    backend = getattr(args, "backend", "emulator")
    if timeout is None:
        timeout = 900.0 if backend == "real" else 60.0
    out: Path = args.kubeconfig_out
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "gpufleet",
        "devcluster",
        "--kubeconfig-out",
        str(out),
        "--port",
        str(args.port),
    ]
    cmd += ["--backend", backend]
    if args.crds is not None:
        cmd += ["--crds", str(args.crds)]
    for node in args.nodes or ():
        cmd += ["--node", node]
    log = out.with_name(out.name + ".log")
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            print(
                f"error: the devcluster exited ({proc.returncode}): {log.read_text().strip()}",
                file=sys.stderr,
            )
            return 2
        # Warnings may come first (the real backend reports CRDs its apiserver refused).
        if out.exists() and any(" serving " in line for line in log.read_text().splitlines()):
            break
        if time.monotonic() > deadline:
            proc.kill()
            print(f"error: the devcluster did not start within {timeout:.0f}s (log: {log})", file=sys.stderr)
            return 2
        time.sleep(0.1)
    pid_file = out.with_name(out.name + ".pid")
    pid_file.write_text(f"{proc.pid}\n")
    print(log.read_text().rstrip())
    print(f"  running in the background: pid {proc.pid} (in {pid_file}), log {log}; stop it: kill {proc.pid}")
    return 0


def handle(args: argparse.Namespace) -> int:
    from gpufleet_devcluster.requirements import missing_requirements

    problem = missing_requirements()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.detach:
        return detach(args)
    from gpufleet_devcluster.__main__ import EXAMPLE_NODES, parse_node, run
    from gpufleet_devcluster.cluster import DEFAULT_CRD_DIR

    try:
        # Both backends default to the examples' nodes, so the README's steps work on either.
        args.nodes = [parse_node(n) for n in args.nodes] if args.nodes else list(EXAMPLE_NODES)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}")
        return 2
    if args.crds is None:
        args.crds = DEFAULT_CRD_DIR
    if getattr(args, "backend", "emulator") == "real":
        from gpufleet_devcluster.real.serve import serve_real

        return serve_real(args)
    return run(args)
