"""One release selector decides every engine pod's version (issue #14's two regressions).

Before: a node created after a fleet-wide halt got its pods on the halted release from a second,
halt-blind selector and stayed there crash-looping; a node whose GPUs are all blocked "succeeded"
the bad rollout (nothing to wait for) and sat on the halted release.
"""

from __future__ import annotations

from typing import Any

from gpufleet_devcluster import Behaviour, DevCluster, KubeletConfig, NodeSpec
from tests.integration.rollout.harness import (
    CRDS,
    NS,
    erel,
    fleet_on,
    image,
    inode,
    inodes,
    pool,
    quiet_logs,
    release,
    rollout_of,
    running,
)

KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)
RESTING = {"Idle", "Succeeded", "RolledBack"}


def halted(cluster: DevCluster, name: str) -> bool:
    return bool(((erel(cluster, name) or {}).get("status") or {}).get("halted"))


def pods_of(cluster: DevCluster, node: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.pods(NS)
        if p["metadata"]["labels"].get("gpufleet.io/inference-node") == node
        and not p["metadata"].get("deletionTimestamp")
    ]


def images_ever_created(cluster: DevCluster, node: str) -> set[str]:
    pods = cluster.store.resolve("", "v1", "pods")
    return {
        e.obj["spec"]["containers"][0]["image"]
        for e in cluster.store.history
        if e.resource is pods
        and e.type == "ADDED"
        and e.obj["metadata"]["labels"].get("gpufleet.io/inference-node") == node
    }


def nothing_on(cluster: DevCluster, version: str) -> bool:
    """No InferenceNode reports ``version`` and no engine pod runs its image."""
    if any((o.get("status") or {}).get("currentVersion") == version for o in inodes(cluster)):
        return False
    return all(p["spec"]["containers"][0]["image"] != image(version) for p in cluster.pods(NS))


async def test_node_created_after_a_halt_starts_on_the_last_good_release() -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(4)]
    async with DevCluster(
        crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, bookmark_interval=0.5
    ) as cluster:
        cluster.apply(pool(max_unavailable=2))
        cluster.apply(release("1.0.0"))
        for i in range(3):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}"))
        cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.1.0"))
        async with running(cluster):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            cluster.apply(release("1.1.0", budget=1))
            await cluster.wait_for(lambda: halted(cluster, "engine-1-1-0"), within=30)
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            cluster.apply(inode("node-3", "gpu-3"))
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0", ["node-3"]), within=30)
            assert images_ever_created(cluster, "node-3") == {image("1.0.0")}
            assert all(
                int(cs.get("restartCount") or 0) == 0
                for p in pods_of(cluster, "node-3")
                for cs in (p.get("status") or {}).get("containerStatuses") or ()
            )
            assert nothing_on(cluster, "1.1.0")


async def test_blocked_gpus_never_sit_on_a_halted_release() -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(3)]
    nodes.append(NodeSpec("gpu-liar", profile="bad-rtx4090-48gb"))
    async with DevCluster(
        crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, bookmark_interval=0.5
    ) as cluster:
        cluster.apply(pool(max_unavailable=2))
        cluster.apply(release("1.0.0"))
        for i in range(3):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}"))
        cluster.apply(inode("liar", "gpu-liar"))
        cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.1.0"))
        async with running(cluster):

            def liar_blocked() -> bool:
                obj = next(o for o in inodes(cluster) if o["metadata"]["name"] == "liar")
                devices = (obj.get("status") or {}).get("devices") or []
                return bool(devices) and all(
                    (d.get("validation") or {}).get("reason") == "VRAMMismatch" for d in devices
                )

            await cluster.wait_for(
                lambda: fleet_on(cluster, "1.0.0", ["node-0", "node-1", "node-2"]), within=30
            )
            await cluster.wait_for(liar_blocked, within=30)
            cluster.apply(release("1.1.0", budget=1))
            await cluster.wait_for(lambda: halted(cluster, "engine-1-1-0"), within=30)

            def settled() -> bool:
                resting = all(rollout_of(o).get("phase", "Idle") in RESTING for o in inodes(cluster))
                return resting and nothing_on(cluster, "1.1.0")

            await cluster.wait_for(settled, within=30)
            liar = next(o for o in inodes(cluster) if o["metadata"]["name"] == "liar")
            assert liar["status"]["currentVersion"] == "1.0.0"
            assert {p["spec"]["containers"][0]["image"] for p in pods_of(cluster, "liar")} == {image("1.0.0")}
            assert liar_blocked()  # still blocked, with its reason
            # It did take the bad release (nothing to wait for on blocked GPUs), and left it.
            assert image("1.1.0") in images_ever_created(cluster, "liar")
