"""Emulator throughput: create, list and watch N pods through the HTTP API (not the store directly).

Wall times on a shared 2-core machine are noisy (other processes compete); the *_cpu_seconds
figures are this process's CPU time for the phase (client and server together).

    python bench/emulator_watch.py --pods 10000 --json

Writes bench/results/emulator_watch.json with the machine noted. Client and server share one
event loop and one core's worth of Python, which is how the operator benchmark runs them too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from gpufleet_devcluster import DevCluster, NodeSpec

RESULTS = Path(__file__).resolve().parent / "results"


def pod(i: int, nodes: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"engine-{i:05d}", "labels": {
            "app.kubernetes.io/name": "gpufleet-engine", "gpufleet.io/inference-node": f"inode-{i // 8:04d}",
            "gpufleet.io/device-index": str(i % 8), "shard": str(i % 10)}},
        "spec": {"nodeName": f"gpu-{(i // 8) % nodes:04d}", "containers": [{
            "name": "engine", "image": "registry.example/engine@sha256:" + "0" * 64,
            "env": [{"name": "GPUFLEET_DEVICE_INDEX", "value": str(i % 8)}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }


async def timed(coro: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - start


async def run(pods: int, concurrency: int, kubelet: bool) -> dict[str, Any]:
    nodes = max(1, pods // 8)
    specs = [NodeSpec(f"gpu-{i:04d}") for i in range(nodes)] if kubelet else []
    out: dict[str, Any] = {"pods": pods, "concurrency": concurrency, "kubelet": kubelet, "nodes": len(specs)}
    async with DevCluster(crd_dir=None, nodes=specs, bookmark_interval=5.0) as cluster:
        base = f"{cluster.url}/api/v1/namespaces/default/pods"
        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as http:
            # Create all pods with `concurrency` requests in flight.
            queue = list(range(pods))

            async def creator() -> None:
                while queue:
                    i = queue.pop()
                    async with http.post(base, json=pod(i, nodes)) as resp:
                        assert resp.status == 201, await resp.text()
                        await resp.read()

            cpu = time.process_time()
            _, secs = await timed(asyncio.gather(*(creator() for _ in range(concurrency))))
            out["create_seconds"] = round(secs, 3)
            out["create_cpu_seconds"] = round(time.process_time() - cpu, 3)
            out["creates_per_second"] = round(pods / secs)
            if kubelet:
                ready_start = time.perf_counter()
                pods_type = cluster.store.resolve("", "v1", "pods")

                def all_running() -> bool:
                    return all(p.get("status", {}).get("phase") == "Running"
                               for p in cluster.store.objects(pods_type))

                await cluster.wait_for(all_running, within=300, interval=0.2)
                out["all_running_after_create_seconds"] = round(time.perf_counter() - ready_start, 3)
                out["kubelet_writes"] = sum(1 for e in cluster.store.history if e.actor == "kubelet")

            async def get_list(query: str) -> tuple[int, int]:
                async with http.get(f"{base}?{query}") as resp:
                    body = await resp.read()
                    return len(json.loads(body)["items"]), len(body)

            # Server side alone (no HTTP, no client decoding): select and join the cached encodings.
            from gpufleet_devcluster.selectors import parse_field_selector, parse_label_selector

            pods_rt = cluster.store.resolve("", "v1", "pods")
            for label, sel in [("label_all", "app.kubernetes.io/name=gpufleet-engine"),
                               ("label_10pct", "shard=3")]:
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    result = cluster.store.list_entries(pods_rt, "default", parse_label_selector(sel),
                                                        parse_field_selector(None, (), "Pod"))
                    payload = b",".join(e.raw for e in result.items)
                    best = min(best, time.perf_counter() - t0)
                out[f"server_list_{label}"] = {"items": len(result.items), "bytes": len(payload),
                                               "best_seconds": round(best, 4)}

            for label, query in [("all", ""), ("label_10pct", "labelSelector=shard%3D3"),
                                 ("label_all", "labelSelector=app.kubernetes.io%2Fname%3Dgpufleet-engine"),
                                 ("label_8", "labelSelector=gpufleet.io%2Finference-node%3Dinode-0007"),
                                 ("field_node", "fieldSelector=spec.nodeName%3Dgpu-0003")]:
                best = float("inf")
                count = size = 0
                for _ in range(3):
                    (count, size), secs = await timed(get_list(query))
                    best = min(best, secs)
                out[f"list_{label}"] = {"items": count, "bytes": size, "best_seconds": round(best, 4)}

            # Watch with a label selector from the current version while N events are written.
            async with http.get(f"{base}?limit=1") as resp:
                rv = (await resp.json())["metadata"]["resourceVersion"]
            target = pods
            received = 0
            selector = "app.kubernetes.io%2Fname%3Dgpufleet-engine"
            watch_url = f"{base}?watch=true&resourceVersion={rv}&labelSelector={selector}"

            async def watcher() -> None:
                nonlocal received
                async with http.get(watch_url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                    async for line in resp.content:
                        if json.loads(line)["type"] == "MODIFIED":
                            received += 1
                            if received >= target:
                                return

            watch_task = asyncio.create_task(watcher())
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            cpu = time.process_time()
            queue = list(range(pods))

            async def patcher() -> None:
                while queue:
                    i = queue.pop()
                    async with http.patch(f"{base}/engine-{i:05d}", data=json.dumps(
                            {"metadata": {"annotations": {"bench": "1"}}}),
                            headers={"Content-Type": "application/merge-patch+json"}) as resp:
                        assert resp.status == 200, await resp.text()
                        await resp.read()

            await asyncio.gather(*(patcher() for _ in range(concurrency)))
            patch_secs = time.perf_counter() - start
            await asyncio.wait_for(watch_task, 120)
            watch_secs = time.perf_counter() - start
            out["patch_seconds"] = round(patch_secs, 3)
            out["patch_and_watch_cpu_seconds"] = round(time.process_time() - cpu, 3)
            out["patches_per_second"] = round(pods / patch_secs)
            out["watch_events_received"] = received
            out["watch_all_events_seconds"] = round(watch_secs, 3)

            # A fresh watch with a label selector that replays the current state (no resourceVersion).
            async def replay() -> int:
                n = 0
                async with http.get(f"{base}?watch=true&labelSelector=shard%3D3&timeoutSeconds=1") as resp:
                    async for line in resp.content:
                        if json.loads(line)["type"] == "ADDED":
                            n += 1
                            if n >= pods // 10:
                                return n
                return n

            n, secs = await timed(replay())
            out["watch_initial_label_10pct"] = {"events": n, "seconds": round(secs, 4)}
        out["requests"] = cluster.requests.by_verb()
    return out


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kubelet", action="store_true", help="bind pods to emulated nodes (kubelet writes)")
    parser.add_argument("--json", action="store_true", help="print JSON and write it to bench/results/")
    args = parser.parse_args()
    result = {"benchmark": "emulator_watch", "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), **asyncio.run(run(args.pods, args.concurrency, args.kubelet))}
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        name = "emulator_watch_kubelet.json" if args.kubelet else "emulator_watch.json"
        (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
