"""The whole operator as `gpufleet run` assembles it works in both index modes (GPUFLEET_INDEXES).

With local indexes the rollout controller reads the core's caches from the memo instead of kopf
index arguments; this once failed at start-up with a KeyError.
"""

from __future__ import annotations

import pytest

from gpufleet.controllers.operator import running_operator
from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec
from tests.integration.rollout.harness import CRDS, fleet_on, inode, pool, quiet_logs, release
from tests.integration.rollout.harness import test_settings as fast_settings

KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)


@pytest.mark.parametrize("indexes", ["kopf", "local"])
async def test_full_operator_installs_and_updates_in_both_index_modes(indexes: str) -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(2)]
    async with DevCluster(crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET) as cluster:
        cluster.apply(pool(max_unavailable="100%"))
        cluster.apply(release("1.0.0"))
        for i in range(2):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}"))
        settings = fast_settings().model_copy(update={"indexes": indexes})
        async with running_operator(settings, kubeconfig=str(cluster.kubeconfig_path)):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            cluster.apply(release("1.1.0"))
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0"), within=30)
