"""Operator restarts never act on cold caches: no pod is deleted for a GPU "gone" (GPURemoved).

The API server is made slow to list/watch Nodes, so after each restart the engine pods (own
informer) and InferenceNodes are known well before the Nodes' GPU labels: exactly the window in
which a pass planned too early would see every GPU as gone and delete serving pods.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec
from gpufleet_devcluster.store import Event
from tests.integration.rollout.harness import CRDS, Operator, fleet_on, inode, pool, quiet_logs, release

KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)


def slow_node_listing(cluster: DevCluster, rng: random.Random) -> None:
    """Delay every list/watch of Nodes by 0.1-0.4 s (test-side fault injection)."""
    server = cluster.server
    dispatch = server._dispatch

    async def slow(request: Any, target: Any, verb: str) -> Any:
        if verb in ("list", "watch") and target.rtype.plural == "nodes" and target.name is None:
            await asyncio.sleep(rng.uniform(0.1, 0.4))
        return await dispatch(request, target, verb)

    server._dispatch = slow  # type: ignore[method-assign]


def pod_deletion(event: Event) -> bool:
    """An API client (the operator) deleted an engine pod: removed, or marked terminating."""
    if event.resource.plural != "pods" or event.actor != "api":
        return False
    if event.type == "DELETED":
        return True
    old = event.old.obj if event.old is not None else {}
    return bool(event.obj["metadata"].get("deletionTimestamp")) and not old.get("metadata", {}).get(
        "deletionTimestamp"
    )


async def test_restarts_with_slow_node_listing_never_delete_pods() -> None:
    quiet_logs()
    rng = random.Random(7)
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(4)]
    async with DevCluster(crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET) as cluster:
        cluster.apply(pool())
        cluster.apply(release("1.0.0"))
        for i in range(4):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}"))
        op = Operator(cluster.kubeconfig_path)
        await op.start()
        try:
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            since = cluster.store.history[-1].rv
            bad_writes: list[str] = []

            def watch(event: Event) -> None:
                # At every write: a deleted pod, or a status that lost its node's GPUs.
                if pod_deletion(event):
                    bad_writes.append(f"pod {event.obj['metadata']['name']} deleted")
                if event.resource.plural == "events" and event.obj.get("reason") == "GPURemoved":
                    bad_writes.append(f"Event GPURemoved: {event.obj.get('message')}")
                if event.resource.plural == "inferencenodes" and event.type != "DELETED":
                    total = (event.obj.get("status") or {}).get("totalDevices")
                    if total != 2:
                        bad_writes.append(f"{event.obj['metadata']['name']} totalDevices={total}")

            cluster.store.listeners.append(watch)
            slow_node_listing(cluster, rng)
            mark = cluster.requests.mark()
            for _ in range(5):
                await asyncio.sleep(rng.uniform(0.1, 0.5))
                await op.kill()
                op = Operator(cluster.kubeconfig_path)
                await op.start()
            await asyncio.sleep(1.0)  # the last operator sees its Nodes and settles
            assert fleet_on(cluster, "1.0.0")
        finally:
            await op.kill()
        assert bad_writes == []
        later = [e for e in cluster.store.history if e.rv > since]
        assert not [e for e in later if pod_deletion(e)]
        assert cluster.requests.count("delete", "pods", since=mark) == 0
        reasons = [e.obj.get("reason") for e in later if e.resource.plural == "events"]
        assert "GPURemoved" not in reasons
        # The node objects (and so their GPUs) were never changed by anyone but the kubelet.
        assert not [e for e in later if e.resource.plural == "nodes" and e.actor == "api"]
