"""Conflicting objects (#21 F2, F3): two InferenceNodes naming one Kubernetes node.

Only one engine pod per GPU can be admitted; the other InferenceNode's pod is rejected by the
kubelet (``OutOfnvidia.com/gpu``). Before: that pod was deleted and recreated in a tight loop,
and the loser showed the winner's GPU as ``Valid`` with stake (validation carried over by
(node, device index)). Now: one InferenceNode counts the GPU, the other says why it does not, and
the rejected pod is replaced with back-off.
"""

from __future__ import annotations

import asyncio

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.integration.operator.harness import (
    NS,
    engine_pods,
    inode,
    pool,
    release,
    running_operator,
    status_of,
)


def devices(cluster: DevCluster, name: str) -> list[dict[str, object]]:
    return list(status_of(cluster, "InferenceNode", name).get("devices") or [])


def ready_condition(cluster: DevCluster, name: str) -> dict[str, object]:
    conds = status_of(cluster, "InferenceNode", name).get("conditions") or []
    return next((c for c in conds if c.get("type") == "Ready"), {})


async def test_two_inference_nodes_on_one_gpu_count_it_once_and_back_off() -> None:
    async with DevCluster(
        nodes=[NodeSpec("gpu-a", profile="a100-80gb-x1")], namespaces=("default", NS)
    ) as cluster:
        cluster.apply(release())
        cluster.apply(pool("op-a"))
        cluster.apply(pool("op-b"))
        cluster.apply(inode("box-a", "op-a", "gpu-a"))
        pods = cluster.store.resolve("", "v1", "pods")
        async with running_operator(cluster):

            def one_serves_one_rejected() -> bool:
                valid = [n for n in ("box-a", "box-b") if any(d.get("ready") for d in devices(cluster, n))]
                rejected = [
                    n
                    for n in ("box-a", "box-b")
                    if ready_condition(cluster, n).get("reason") == "PodRejected"
                ]
                return len(valid) == 1 and len(rejected) == 1

            await cluster.wait_for(lambda: any(d.get("ready") for d in devices(cluster, "box-a")), within=20)
            cluster.apply(inode("box-b", "op-b", "gpu-a"))  # names the same node
            await cluster.wait_for(one_serves_one_rejected, within=20)
            assert "OutOfnvidia.com/gpu" in str(ready_condition(cluster, "box-b").get("message"))
            # The loser never counts the GPU: no stake, no VRAM in its pool.
            for dev in devices(cluster, "box-b"):
                assert dev.get("effectiveStake") in (None, "0")
                assert not (dev.get("validation") or {}).get("valid")
            assert (status_of(cluster, "OperatorPool", "op-b").get("validatedVRAMMiB") or 0) == 0
            # Rejected pods are replaced with back-off, not in a tight loop.
            mark = len(cluster.store.history)
            await asyncio.sleep(3.0)
            created = [
                e
                for e in cluster.store.history[mark:]
                if e.resource is pods and e.type == "ADDED" and e.obj["metadata"]["name"].startswith("box-b")
            ]
            assert len(created) <= 3, f"{len(created)} pods created for box-b in 3 s"
            assert len([p for p in engine_pods(cluster) if p["metadata"]["name"].startswith("box-a")]) == 1
