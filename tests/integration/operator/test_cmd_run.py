"""`gpufleet run` as a real process: liveness endpoint up, pods created from the kubeconfig's cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.integration.operator.harness import NS, inode, pool, release


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gpufleet_run_serves_liveness_and_reconciles(tmp_path: Path) -> None:
    port = free_port()
    with DevCluster(
        nodes=[NodeSpec("gpu-a100", profile="a100-80gb-x1")], namespaces=("default", NS)
    ).run_in_thread() as c:
        for obj in (release(), pool("op-a"), inode("box", "op-a", "gpu-a100")):
            c.call(c.apply, obj)
        env = {**os.environ, "GPUFLEET_WORKERS": "2", "GPUFLEET_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gpufleet",
                "run",
                "--kubeconfig",
                str(c.kubeconfig_path),
                "--liveness",
                f"http://127.0.0.1:{port}/healthz",
                "--metrics-port",
                "0",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            alive = ready = False
            while time.monotonic() < deadline and not (alive and ready):
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                        alive = resp.status == 200 and isinstance(json.loads(resp.read() or b"{}"), dict)
                except OSError:
                    pass
                status = (c.call(c.get, "gpufleet.io/v1alpha1", "InferenceNode", "box", NS) or {}).get(
                    "status"
                ) or {}
                ready = status.get("readyDevices") == 1
                time.sleep(0.1)
            assert alive, "liveness endpoint never answered 200"
            assert ready, "the operator process never made the GPU ready"
            assert [p["metadata"]["name"] for p in c.call(c.pods, NS)] == ["box-gpu-0"]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
