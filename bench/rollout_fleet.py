"""Benchmark: roll a new engine release over N InferenceNodes x G GPUs with the real operator.

The emulator (API server, simulated kubelet and agents) runs in a child process with its own
GIL; the operator (the one InferenceNode reconciler with its rollout step) runs in this process, as one kopf
operator. After the fleet converged on 1.0.0, release 1.1.0 is published and the wall time until
every node reports ``Succeeded`` on 1.1.0 is measured.

The theoretical minimum is set by the batches: a device is unavailable from its old pod's deletion
until its new pod has been ready for minReadySeconds, so each batch costs at least the simulated
pod start (create -> engine ready) plus minReadySeconds, and the rollout needs

    batches = max(ceil(G / node maxUnavailable), ceil(N*G / pool maxUnavailable))

of them. Target: wall time within 1.1x of batches x (pod start + minReadySeconds).

Run: ``.venv/bin/python bench/rollout_fleet.py --nodes 100 --gpus 8 --json``. Results go to
``bench/results/rollout_fleet_<N>x<G>.json`` with the machine they were measured on. CRD schema
validation in the emulator is off (it measures the emulator, not the operator).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from gpufleet.controllers.handlers import kopf_settings, make_registry
from gpufleet.controllers.reconciler import Reconciler
from gpufleet.settings import OperatorSettings
from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from gpufleet_devcluster.kubelet import KubeletConfig

ROOT = Path(__file__).resolve().parents[1]
GROUP = "gpufleet.io/v1alpha1"
NS = "default"
PROFILE_BY_GPUS = {8: "h100-sxm-x8", 4: "rtx4090-x4", 2: "rtx3090-x2", 1: "a100-80gb-x1"}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def image(version: str) -> str:
    return f"ghcr.io/gpufleet/engine@sha256:{hashlib.sha256(version.encode()).hexdigest()}"


def release(version: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "EngineRelease",
        "metadata": {"name": "engine-" + version.replace(".", "-")},
        "spec": {"version": version, "image": image(version), "channel": "stable"},
    }


def populate(cluster: Any, args: argparse.Namespace) -> None:
    cluster.apply(
        {
            "apiVersion": GROUP,
            "kind": "OperatorPool",
            "metadata": {"name": "pool-a", "namespace": NS},
            "spec": {"selfStake": "100000", "updatePolicy": {"maxUnavailable": args.pool_max_unavailable}},
        }
    )
    cluster.apply(release("1.0.0"))
    for i in range(args.nodes):
        cluster.apply(
            {
                "apiVersion": GROUP,
                "kind": "InferenceNode",
                "metadata": {"name": f"node-{i}", "namespace": NS},
                "spec": {
                    "poolRef": {"name": "pool-a"},
                    "nodeName": f"gpu-{i}",
                    "engine": "vllm",
                    "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
                    "updatePolicy": {
                        "maxUnavailable": args.node_max_unavailable,
                        "minReadySeconds": args.min_ready,
                        "progressDeadlineSeconds": 600,
                    },
                },
            }
        )


def summarize(cluster: Any) -> tuple[int, int, dict[str, int]]:
    """(nodes Succeeded on 1.1.0, nodes stable on 1.0.0, phase counts); runs inside the emulator."""
    done = stable = 0
    phases: dict[str, int] = {}
    for obj in cluster.objects(GROUP, "InferenceNode", NS):
        status = obj.get("status") or {}
        phase = (status.get("rollout") or {}).get("phase", "Idle")
        phases[phase] = phases.get(phase, 0) + 1
        done += phase == "Succeeded" and status.get("currentVersion") == "1.1.0"
        stable += status.get("lastStableVersion") == "1.0.0" and status.get("currentVersion") == "1.0.0"
    return done, stable, phases


def fleet_state(cluster: Any) -> tuple[int, int, dict[str, int]]:
    # Counting in the emulator's process keeps this poll from competing with the operator for CPU.
    result: tuple[int, int, dict[str, int]] = cluster.run(summarize)
    return result


async def wait(predicate: Any, within: float, interval: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.ERROR)
    start_delay, ready_delay = args.pod_start * 0.25, args.pod_start * 0.75
    dc = DevCluster(
        nodes=[NodeSpec(f"gpu-{i}", profile=PROFILE_BY_GPUS[args.gpus]) for i in range(args.nodes)],
        kubelet_config=KubeletConfig(start_delay=start_delay, ready_delay=ready_delay, termination_delay=0.0),
        validator=None,
        keep_history=False,
        bookmark_interval=5.0,
    )
    with dc.run_in_process() as cluster:
        populate(cluster, args)
        settings = OperatorSettings(
            workers=16,
            readiness_recheck_seconds=0.1,
            readiness_recheck_max_seconds=0.1,
            event_batch_seconds=0.05,
            liveness_endpoint=None,
            metrics_port=0,
        )
        reconciler = Reconciler(settings)  # the one reconciler; the rollout is a step of its pass
        kubeconfig = cluster.kubeconfig_path
        registry = make_registry(reconciler, kubeconfig=str(kubeconfig))
        stop = asyncio.Event()
        ks = kopf_settings(settings)
        ks.batching.batch_window = args.batch_window
        operator = asyncio.create_task(
            kopf.operator(registry=registry, settings=ks, clusterwide=True, standalone=True, stop_flag=stop)
        )
        try:
            t_launch = time.monotonic()
            ok = await wait(lambda: fleet_state(cluster)[1] == args.nodes, within=600, interval=0.5)
            if not ok:
                raise RuntimeError(f"the fleet did not converge on 1.0.0: {fleet_state(cluster)}")
            converge_s = time.monotonic() - t_launch
            t0 = time.monotonic()
            cluster.apply(release("1.1.0"))
            ok = await wait(lambda: fleet_state(cluster)[0] == args.nodes, within=1800, interval=0.05)
            wall = time.monotonic() - t0
            if not ok:
                raise RuntimeError(f"the rollout did not finish: {fleet_state(cluster)}")
        finally:
            await reconciler.stop()
            stop.set()
            operator.cancel()
            with contextlib.suppress(BaseException):
                await operator

    devices = args.nodes * args.gpus
    node_limit = min(args.node_max_unavailable, args.gpus)
    pool_limit = _resolve(args.pool_max_unavailable, devices)
    batches = max(math.ceil(args.gpus / node_limit), math.ceil(devices / pool_limit))
    minimum = batches * (args.pod_start + args.min_ready)
    return {
        "benchmark": "rollout_fleet",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": {
            "nodes": args.nodes,
            "gpus_per_node": args.gpus,
            "devices": devices,
            "node_max_unavailable": args.node_max_unavailable,
            "pool_max_unavailable": args.pool_max_unavailable,
            "pool_limit_devices": pool_limit,
            "simulated_pod_start_seconds": args.pod_start,
            "min_ready_seconds": args.min_ready,
            "emulator": "child process, CRD validation off",
        },
        "initial_convergence_seconds": round(converge_s, 2),
        "batches": batches,
        "theoretical_minimum_seconds": round(minimum, 2),
        "rollout_wall_seconds": round(wall, 2),
        "ratio_to_minimum": round(wall / minimum, 3),
        "target_ratio": 1.1,
        "within_target": wall <= 1.1 * minimum,
        "inode_status_writes": reconciler.stats.get("status_writes_inferencenodes", 0),
        "reconciles": reconciler.stats.get("reconciles", 0),
    }


def _resolve(value: str, total: int) -> int:
    if value.endswith("%"):
        return max(1, total * int(value[:-1]) // 100)
    return int(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8, choices=sorted(PROFILE_BY_GPUS))
    parser.add_argument("--node-max-unavailable", type=int, default=2)
    parser.add_argument("--pool-max-unavailable", default="25%")
    parser.add_argument("--pod-start", type=float, default=5.0, help="simulated pod start: create -> ready")
    parser.add_argument("--min-ready", type=int, default=10, help="minReadySeconds of every node")
    parser.add_argument("--batch-window", type=float, default=0.1, help="kopf batching window (seconds)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results/")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if not args.no_record:
        suffix = (
            ""
            if (args.pod_start, args.min_ready) == (5.0, 10)
            else f"_start{args.pod_start:g}_ready{args.min_ready}"
        )
        out = ROOT / "bench" / "results" / f"rollout_fleet_{args.nodes}x{args.gpus}{suffix}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print(
            f"{args.nodes}x{args.gpus}: rollout {result['rollout_wall_seconds']}s, minimum "
            f"{result['theoretical_minimum_seconds']}s ({result['ratio_to_minimum']}x, target 1.1x)"
        )
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
