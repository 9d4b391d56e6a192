"""Benchmark: converge N InferenceNodes x G GPUs with the real operator against the API emulator.

The emulator (API server, simulated kubelet and agents) runs on a thread of this process, which
also measures; the operator runs as ``gpufleet run`` in its own process, as in production, so its
CPU time and peak memory are its own. Reported:

- seconds from operator launch to convergence (every engine pod Ready, every InferenceNode and
  OperatorPool status complete), and the operator's own startup time;
- API requests per node during convergence, by verb/resource;
- writes during a quiet period after convergence (the target is zero);
- the operator process's peak RSS.

Run: ``.venv/bin/python bench/reconcile_fleet.py --nodes 1000 --gpus 8 --json``. Results go to
``bench/results/reconcile_fleet_<N>x<G>.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from gpufleet_devcluster.kubelet import KubeletConfig

ROOT = Path(__file__).resolve().parents[1]
GROUP = "gpufleet.io/v1alpha1"
NS = "fleet"
IMAGE = "ghcr.io/gpufleet/engine@sha256:" + "b" * 64
PROFILE_BY_GPUS = {8: "h100-sxm-x8", 4: "rtx4090-x4", 2: "rtx3090-x2", 1: "a100-80gb-x1"}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def peak_rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return None


def populate(cluster: Any, nodes: int, nodes_per_pool: int) -> None:
    cluster.apply(
        {
            "apiVersion": GROUP,
            "kind": "EngineRelease",
            "metadata": {"name": "engine-1-0-0"},
            "spec": {
                "version": "1.0.0",
                "image": IMAGE,
                "channel": "stable",
                "minDriverVersion": "550.54.15",
                "minCUDAVersion": "12.4",
                "engines": ["vllm"],
            },
        }
    )
    pools = (nodes + nodes_per_pool - 1) // nodes_per_pool
    for p in range(pools):
        cluster.apply(
            {
                "apiVersion": GROUP,
                "kind": "OperatorPool",
                "metadata": {"name": f"pool-{p}", "namespace": NS},
                "spec": {"selfStake": "20000", "delegatedStake": "80000", "commissionBps": 500},
            }
        )
    for i in range(nodes):
        cluster.apply(
            {
                "apiVersion": GROUP,
                "kind": "InferenceNode",
                "metadata": {"name": f"box-{i}", "namespace": NS},
                "spec": {
                    "poolRef": {"name": f"pool-{i // nodes_per_pool}"},
                    "nodeName": f"gpu-{i}",
                    "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
                },
            }
        )


def progress(cluster: Any, nodes: int, gpus: int, pools: int) -> dict[str, int]:
    """Counts on the cluster's own loop (the store is single-threaded)."""
    store = cluster.store
    pods = store.objects(store.resolve("", "v1", "pods"), NS)
    ready = sum(
        1
        for p in pods
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or ()
        )
    )
    inodes = store.objects(store.type_for(GROUP, "InferenceNode"), NS)
    done = sum(1 for o in inodes if (o.get("status") or {}).get("readyDevices") == gpus)
    # Every GPU is the same model, so each one's share is 1 / (GPUs in its pool), once re-shared.
    members: Counter[str] = Counter(o["spec"]["poolRef"]["name"] for o in inodes)
    shared = sum(
        1
        for o in inodes
        if all(
            d.get("vramShare") == round(1 / (members[o["spec"]["poolRef"]["name"]] * gpus), 6)
            for d in (o.get("status") or {}).get("devices") or [{}]
        )
    )
    pool_objs = store.objects(store.type_for(GROUP, "OperatorPool"), NS)
    pool_total = sum(int((o.get("status") or {}).get("readyDevices") or 0) for o in pool_objs)
    return {
        "pods": len(pods),
        "ready_pods": ready,
        "ready_nodes": done,
        "shared_nodes": shared,
        "pool_ready_devices": pool_total,
    }


def run(
    nodes: int,
    gpus: int,
    nodes_per_pool: int,
    quiet_seconds: float,
    timeout: float,
    workers: int,
    profile: str | None = None,
    indexes: str = "local",
    full: bool = False,
) -> dict[str, Any]:
    hardware = PROFILE_BY_GPUS.get(gpus)
    if hardware is None:
        raise SystemExit(f"--gpus must be one of {sorted(PROFILE_BY_GPUS)} (recorded profiles), got {gpus}")
    specs = [NodeSpec(f"gpu-{i}", profile=hardware) for i in range(nodes)]
    pools = (nodes + nodes_per_pool - 1) // nodes_per_pool
    target = nodes * gpus
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    cluster = DevCluster(
        nodes=specs,
        namespaces=("default", NS),
        keep_history=False,
        kubelet_config=KubeletConfig(start_delay=0.5, ready_delay=0.5),
    )
    with cluster.run_in_thread() as tc:
        tc.call(populate, tc.cluster, nodes, nodes_per_pool)
        env = {
            **os.environ,
            "GPUFLEET_LIVENESS_ENDPOINT": "",
            "GPUFLEET_METRICS_PORT": "0",
            "GPUFLEET_LOG_LEVEL": "WARNING",
            "GPUFLEET_WORKERS": str(workers),
            "GPUFLEET_INDEXES": indexes,
        }
        log = open(Path(tempfile.gettempdir()) / f"reconcile_fleet_{nodes}x{gpus}.log", "w")  # noqa: SIM115
        start_mark = tc.call(tc.requests.mark)
        emulator_cpu0 = sum(os.times()[:2])
        started = time.monotonic()
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen(
            [
                sys.executable,
                *prof,
                "-m",
                "gpufleet",
                "run",
                "--core-only",
                "--kubeconfig",
                str(tc.kubeconfig_path),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        first_pod = None
        converged = None
        samples: list[tuple[float, dict[str, int]]] = []
        try:
            while time.monotonic() - started < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"the operator exited with {proc.returncode}; see {log.name}")
                state = tc.call(progress, tc.cluster, nodes, gpus, pools)
                now = time.monotonic() - started
                samples.append((round(now, 2), state))
                if first_pod is None and state["pods"]:
                    first_pod = now
                if (
                    state["ready_pods"] == target
                    and state["ready_nodes"] == nodes
                    and state["shared_nodes"] == nodes
                    and state["pool_ready_devices"] == target
                ):
                    converged = now
                    break
                time.sleep(0.5)
            converge_mark = tc.call(tc.requests.mark)
            conv_records = tc.call(lambda: list(tc.requests.records[start_mark:converge_mark]))
            time.sleep(quiet_seconds)
            after = tc.call(tc.requests.writes, since=converge_mark)
            reads_after = tc.call(lambda: tc.requests.count(since=converge_mark))
            rss = peak_rss_mib(proc.pid)
            cpu = cpu_seconds(proc.pid)
            emulator_cpu = round(sum(os.times()[:2]) - emulator_cpu0, 2)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    by_call = Counter(f"{r.verb} {r.resource}" for r in conv_records)
    non_watch = sum(n for k, n in by_call.items() if not k.startswith("watch"))
    writes = sum(n for k, n in by_call.items() if k.split()[0] in {"create", "update", "patch", "delete"})
    return {
        "benchmark": "reconcile_fleet",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "nodes": nodes,
        "gpus_per_node": gpus,
        "pods": target,
        "pools": pools,
        "operator_workers": workers,
        "operator_indexes": indexes,
        "operator": "core + rollouts" if full else "core (--core-only)",
        "kubelet": {"start_delay_s": 0.5, "ready_delay_s": 0.5},
        "converged": converged is not None,
        "seconds_to_converge": None if converged is None else round(converged, 2),
        "seconds_to_first_pod": None if first_pod is None else round(first_pod, 2),
        "api_requests_during_convergence": non_watch,
        "api_requests_per_node": round(non_watch / nodes, 2),
        "api_requests_per_pod": round(non_watch / target, 2),
        "api_writes_per_pod": round(writes / target, 2),
        "requests_by_call": dict(by_call.most_common()),
        "quiet_seconds": quiet_seconds,
        "writes_after_convergence": len(after),
        "writes_after_convergence_sample": [f"{w.verb} {w.resource} {w.name}" for w in after[:10]],
        "requests_after_convergence": reads_after,
        "operator_peak_rss_mib": rss,
        "load_average_at_start": load_at_start,  # the machine is shared: other work skews timings
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "operator_cpu_seconds": cpu,
        "emulator_cpu_seconds": emulator_cpu,
        "timeline": samples[:: max(1, len(samples) // 40)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--nodes-per-pool", type=int, default=10, help="InferenceNodes per OperatorPool")
    parser.add_argument("--quiet-seconds", type=float, default=10.0, help="pause after convergence")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--workers", type=int, default=16, help="GPUFLEET_WORKERS of the operator")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument("--indexes", choices=["local", "kopf"], default="local", help="GPUFLEET_INDEXES")
    parser.add_argument("--full", action="store_true", help="run the whole operator (core + rollouts)")
    parser.add_argument("--out", help="result file (default bench/results/reconcile_fleet_<N>x<G>.json)")
    parser.add_argument("--profile", help="write a cProfile of the operator process to this file")
    parser.add_argument(
        "--backend",
        choices=["emulator", "real"],
        default="emulator",
        help="real: kube-apiserver + etcd + kwok (built from source), then the same fleet on the emulator "
        "for the ratio (bench/reconcile_fleet_real.py)",
    )
    args = parser.parse_args()
    if args.nodes <= 0:
        parser.error("--nodes must be positive")
    if args.backend == "real":
        return main_real(args)
    result = run(
        args.nodes,
        args.gpus,
        args.nodes_per_pool,
        args.quiet_seconds,
        args.timeout,
        args.workers,
        args.profile,
        args.indexes,
        args.full,
    )
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / "results" / f"reconcile_fleet_{args.nodes}x{args.gpus}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.nodes} nodes x {args.gpus} GPUs: converged={result['converged']} in "
            f"{result['seconds_to_converge']} s, {result['api_requests_per_node']} requests/node, "
            f"{result['writes_after_convergence']} writes after convergence, "
            f"peak RSS {result['operator_peak_rss_mib']} MiB -> {out}"
        )
    return 0 if result["converged"] and result["writes_after_convergence"] == 0 else 1


def main_real(args: argparse.Namespace) -> int:
    """The fleet on the real control plane, then on the emulator in the same run; both and the ratio."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reconcile_fleet_real import run_real

    hardware = PROFILE_BY_GPUS.get(args.gpus)
    if hardware is None:
        raise SystemExit(f"--gpus must be one of {sorted(PROFILE_BY_GPUS)}")
    real = run_real(
        args.nodes, args.gpus, args.nodes_per_pool, args.quiet_seconds, args.timeout, args.workers,
        args.indexes, hardware, populate, machine(),
    )
    emulator = run(
        args.nodes, args.gpus, args.nodes_per_pool, args.quiet_seconds, args.timeout, args.workers,
        None, args.indexes, False,
    )
    ratio = (
        round(real["seconds_to_converge"] / emulator["seconds_to_converge"], 2)
        if real["seconds_to_converge"] and emulator["seconds_to_converge"]
        else None
    )
    result = {"benchmark": "reconcile_fleet --backend real", "real": real, "emulator": emulator,
              "converge_time_ratio_real_over_emulator": ratio}
    default = ROOT / "bench" / "results" / f"reconcile_fleet_real_{args.nodes}x{args.gpus}.json"
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    print(
        f"{args.nodes}x{args.gpus}: real converged={real['converged']} in {real['seconds_to_converge']} s "
        f"({real['api_requests_per_pod']} req/pod, {real['writes_after_convergence']} writes after, "
        f"{real['forbidden_answers']} x 403); emulator {emulator['seconds_to_converge']} s "
        f"({emulator['api_requests_per_pod']} req/pod); ratio {ratio} -> {out}"
    )
    ok = real["converged"] and emulator["converged"] and real["writes_after_convergence"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
