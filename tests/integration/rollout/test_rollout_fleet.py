"""Rollouts driven by the real operator against the emulator and its simulated kubelet."""

from __future__ import annotations

import asyncio

from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec
from tests.integration.rollout.harness import (
    CRDS,
    NS,
    condition,
    erel,
    fleet_on,
    history,
    inode,
    inodes,
    pool,
    quiet_logs,
    release,
    replay,
    rollout_of,
    running,
)

KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)


async def test_good_release_rolls_out_over_20_nodes_within_the_limits() -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(20)]  # 40 GPUs
    async with DevCluster(
        crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, bookmark_interval=0.5
    ) as cluster:
        cluster.apply(pool(max_unavailable="10%"))  # 4 of 40 devices at once
        cluster.apply(release("1.0.0"))
        for i in range(20):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}", maxUnavailable=1, minReadySeconds=0))
        async with running(cluster):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=60)
            start_rv = cluster.store.history[-1].rv
            cluster.apply(release("1.1.0"))
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0"), within=120, interval=0.05)
            await asyncio.sleep(0.2)
        objs = inodes(cluster)
        assert {rollout_of(o)["phase"] for o in objs} == {"Succeeded"}
        assert all(condition(o, "RolledBack").get("status") == "False" for o in objs)
        assert all(condition(o, "Updating").get("status") == "False" for o in objs)
        # Every single write since the release appeared, replayed: never more than 1 device per node
        # and 4 per pool were without a ready pod.
        result = replay(
            history(cluster),
            {f"node-{i}": 2 for i in range(20)},
            {f"node-{i}": "pool-a" for i in range(20)},
            since_rv=start_rv,
        )
        assert result.writes > 200
        assert max(result.max_node_down.values()) == 1
        assert result.max_pool_down["pool-a"] == 4
        assert not result.rollbacks
        reasons = [e["reason"] for e in cluster.store.objects(cluster.store.resolve("", "v1", "events"), NS)]
        assert reasons.count("RolloutStarted") == 20
        assert reasons.count("RolloutSucceeded") == 20
        assert reasons.count("RolloutBatchCompleted") == 40
        status = (erel(cluster, "engine-1-1-0") or {}).get("status") or {}
        assert status.get("halted") is False
