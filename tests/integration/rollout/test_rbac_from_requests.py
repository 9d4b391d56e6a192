"""RBAC from the requests: the chart's rules are exactly what the operator uses (issue #14 item 5).

The whole demo scenario runs against the emulator (converge, a good rollout, a bad one that
rolls back and halts the release, a resume), and the emulator's request log is compared with
``gpufleet.rbac.RULES`` both ways: nothing the operator did is unpermitted, and nothing
permitted went unused (a rule nobody needs any more is a permission to remove).
"""

from __future__ import annotations

import pytest

from gpufleet import rbac
from gpufleet_devcluster import Behaviour, DevCluster, KubeletConfig, NodeSpec
from tests.integration.rollout.harness import (
    CRDS,
    Operator,
    erel,
    fleet_on,
    image,
    inode,
    patch,
    pool,
    quiet_logs,
    release,
)
from tests.integration.rollout.harness import test_settings as fast_settings

GOOD = ["node-0", "node-1", "node-2"]
KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)


def resource_requests(cluster: DevCluster) -> set[tuple[str, str]]:
    """(verb, resource) of every API request; discovery and other non-resource URLs left out
    (every authenticated user may read them: the system:discovery ClusterRole)."""
    return {(verb, res) for (verb, res) in cluster.requests.counts if not res.startswith("/")}


@pytest.mark.parametrize("indexes", ["kopf", "local"])
async def test_requests_and_rules_match_both_ways(indexes: str) -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(3)]
    nodes.append(NodeSpec("gpu-liar", profile="bad-rtx4090-48gb"))  # a blocked GPU: pod relabelled
    async with DevCluster(
        crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, bookmark_interval=0.5
    ) as cluster:
        cluster.apply(pool(max_unavailable=2))
        cluster.apply(release("1.0.0"))
        for i in range(3):
            cluster.apply(inode(f"node-{i}", f"gpu-{i}"))
        cluster.apply(inode("liar", "gpu-liar"))
        cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.2.0"))
        op = Operator(
            cluster.kubeconfig_path, settings=fast_settings().model_copy(update={"indexes": indexes})
        )
        await op.start()
        try:
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0", GOOD), within=30)  # converge
            cluster.apply(release("1.1.0"))
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0", GOOD), within=30)  # rollout
            cluster.apply(release("1.2.0", budget=1))

            def halted() -> bool:
                return bool(((erel(cluster, "engine-1-2-0") or {}).get("status") or {}).get("halted"))

            await cluster.wait_for(halted, within=30)  # rollback + halt
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0", GOOD), within=30)
            patch(cluster, "EngineRelease", "engine-1-2-0", {"spec": {"resumeCount": 1}}, namespaced=False)

            def resumed() -> bool:
                status = (erel(cluster, "engine-1-2-0") or {}).get("status") or {}
                return int(status.get("observedResumeCount") or 0) == 1

            await cluster.wait_for(resumed, within=30)  # resume
        finally:
            await op.kill()
        used = resource_requests(cluster)
        assert rbac.unpermitted(used) == [], "the chart's RBAC would refuse these requests"
        granted = {
            (v, r.resource)
            for r in rbac.RULES
            if r.only_in in (None, "cluster") and r.controller == "core"  # others have their own test
            for v in r.verbs
        }
        assert granted - used == set(), "permitted but never used: remove them from gpufleet.rbac.RULES"
