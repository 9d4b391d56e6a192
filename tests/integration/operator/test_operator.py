"""End to end: pools + nodes with mixed GPUs -> pods, statuses, conditions, events; self-healing;
restart without duplicates; stake changes; garbage collection; zero writes after convergence."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from fractions import Fraction

import pytest

from gpufleet.api.quantity import format_int_amount
from gpufleet.shares import INT_BASE
from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.integration.operator.harness import (
    GROUP,
    NS,
    engine_pods,
    events,
    fast_settings,
    inode,
    inode_settled,
    pool,
    quiet,
    release,
    running_operator,
    status_of,
)

RTX_4090 = 24564
A100_80 = 81920

NODES = [
    NodeSpec("gpu-4090", profile="rtx4090-x4"),
    NodeSpec("gpu-a100", profile="a100-80gb-x1"),
    NodeSpec("gpu-liar", profile="bad-rtx4090-48gb"),  # NVML says 48 GB for a 24 GB card
    NodeSpec("gpu-unknown", profile="bad-unknown-gpu"),  # not in the catalog
]


@pytest.fixture
async def cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(nodes=NODES, namespaces=("default", NS)) as c:
        c.apply(release())
        yield c


def mixed_fleet(c: DevCluster) -> None:
    c.apply(pool("op-a", self_stake="5000", delegated="95000"))
    for name, node in (
        ("box-4090", "gpu-4090"),
        ("box-a100", "gpu-a100"),
        ("box-liar", "gpu-liar"),
        ("box-unknown", "gpu-unknown"),
    ):
        c.apply(inode(name, "op-a", node))


async def settle_mixed(c: DevCluster) -> None:
    for name, ready, total in (
        ("box-4090", 4, 4),
        ("box-a100", 1, 1),
        ("box-liar", 0, 1),
        ("box-unknown", 0, 1),
    ):
        await c.wait_for(inode_settled(c, name, ready, total), within=20)


def reshared(c: DevCluster) -> Callable[[], bool]:
    """Shares follow the pool's VRAM once every node of the mixed fleet has reported."""
    pool_vram = 4 * RTX_4090 + A100_80

    def check() -> bool:
        rtx = status_of(c, "InferenceNode", "box-4090")["devices"][0]["vramShare"]
        a100 = status_of(c, "InferenceNode", "box-a100")["devices"][0]["vramShare"]
        return (rtx, a100) == (round(RTX_4090 / pool_vram, 6), round(A100_80 / pool_vram, 6))

    return check


async def test_mixed_fleet_pods_statuses_conditions_events(cluster: DevCluster) -> None:
    mixed_fleet(cluster)
    async with running_operator(cluster):
        await settle_mixed(cluster)
        await cluster.wait_for(
            lambda: status_of(cluster, "OperatorPool", "op-a").get("readyDevices") == 5, 10
        )

        pods = {p["metadata"]["name"]: p for p in engine_pods(cluster)}
        assert sorted(pods) == sorted(
            [
                *(f"box-4090-gpu-{i}" for i in range(4)),
                "box-a100-gpu-0",
                "box-liar-gpu-0",
                "box-unknown-gpu-0",
            ]
        )
        for name, pod in pods.items():
            labels = pod["metadata"]["labels"]
            assert labels["gpufleet.io/pool"] == "op-a"
            assert labels["gpufleet.io/routable"] == (
                "false" if "liar" in name or "unknown" in name else "true"
            )
            assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "InferenceNode"
            gate = [c for c in pod["status"]["conditions"] if c["type"] == "gpufleet.io/engine-ready"]
            ready = [c["status"] for c in pod["status"]["conditions"] if c["type"] == "Ready"]
            if labels["gpufleet.io/routable"] == "true":
                assert gate[0]["status"] == "True"
                assert ready == ["True"]
            else:
                assert ready == ["False"]  # a blocked GPU never passes its readiness gate

        pool_vram = 4 * RTX_4090 + A100_80
        total = 100_000 * INT_BASE

        await cluster.wait_for(reshared(cluster), within=10)
        rtx = status_of(cluster, "InferenceNode", "box-4090")
        for dev in rtx["devices"]:
            share = Fraction(RTX_4090, pool_vram)
            assert dev["vramShare"] == round(float(share), 6)
            assert dev["effectiveStake"] == format_int_amount(share.numerator * total // share.denominator)
            assert dev["ready"] is True
            assert dev["validation"]["reason"] == "Valid"
        a100 = status_of(cluster, "InferenceNode", "box-a100")["devices"][0]
        assert a100["effectiveStake"] == format_int_amount(A100_80 * total // pool_vram)

        liar = status_of(cluster, "InferenceNode", "box-liar")
        conds = {c["type"]: c for c in liar["conditions"]}
        assert conds["GPUValidated"]["status"] == "False"
        assert "GPU 0: VRAMMismatch" in conds["GPUValidated"]["message"]
        assert liar["devices"][0]["effectiveStake"] == "0"
        assert liar["devices"][0]["routable"] is False
        unknown = status_of(cluster, "InferenceNode", "box-unknown")
        assert "UnknownProduct" in {c["type"]: c for c in unknown["conditions"]}["GPUValidated"]["message"]

        pool_status = status_of(cluster, "OperatorPool", "op-a")
        assert pool_status["validatedVRAMMiB"] == pool_vram
        assert pool_status["devices"] == 5
        assert pool_status["totalStake"] == "100000"
        assert pool_status["selfStakeRatio"] == "0.05"
        min_stake = {c["type"]: c for c in pool_status["conditions"]}["MinimumSelfStake"]
        assert (min_stake["status"], min_stake["reason"]) == ("False", "BelowMinimum")

        reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events(cluster)}
        assert ("box-liar", "DeviceBlocked") in reasons
        assert ("box-4090", "PodCreated") in reasons
        assert ("op-a", "BelowMinimum") in reasons

        assert await quiet(cluster) == []  # converged: no writes while nothing changes


@pytest.mark.parametrize(("pod_watch", "indexes"), [("direct", "local"), ("kopf", "kopf")])
async def test_announcement_example_two_pools(cluster: DevCluster, pod_watch: str, indexes: str) -> None:
    cluster.apply(pool("op-a"))
    cluster.apply(pool("op-b"))
    cluster.apply(inode("a-box", "op-a", "gpu-4090"))
    cluster.apply(inode("b-box", "op-b", "gpu-a100"))
    async with running_operator(cluster, fast_settings(pod_watch=pod_watch, indexes=indexes)):
        await cluster.wait_for(inode_settled(cluster, "a-box", 4, 4), within=20)
        await cluster.wait_for(inode_settled(cluster, "b-box", 1, 1), within=20)
        a = status_of(cluster, "InferenceNode", "a-box")["devices"]
        b = status_of(cluster, "InferenceNode", "b-box")["devices"]
        assert [d["effectiveStake"] for d in a] == ["25000"] * 4
        assert b[0]["effectiveStake"] == "100000"
        assert [d["priorityScore"] for d in a] == [3.5] * 4  # 1 + 0.0001 * 25,000
        assert b[0]["priorityScore"] == 11.0


async def test_self_heal_restart_stake_change_and_gc(cluster: DevCluster) -> None:
    mixed_fleet(cluster)
    pods_rtype = cluster.store.resolve("", "v1", "pods")
    async with running_operator(cluster):
        await cluster.wait_for(lambda: len(engine_pods(cluster)) == 7, within=20)
    # The operator is gone mid-way; a new one must adopt what exists, never duplicate it.
    async with running_operator(cluster) as reconciler:
        await settle_mixed(cluster)
        creates = [e for e in cluster.store.history if e.resource is pods_rtype and e.type == "ADDED"]
        assert len(creates) == 7
        assert reconciler.stats["pods_created"] == 0
        await cluster.wait_for(reshared(cluster), within=10)

        # Delete a pod: it is recreated (a new uid, the same name) and becomes ready again.
        victim = cluster.get("v1", "Pod", "box-4090-gpu-2", NS)
        assert victim is not None
        cluster.store.delete(pods_rtype, NS, "box-4090-gpu-2", actor="test")

        def replaced() -> bool:
            pod = cluster.get("v1", "Pod", "box-4090-gpu-2", NS)
            return pod is not None and pod["metadata"]["uid"] != victim["metadata"]["uid"]

        await cluster.wait_for(replaced, within=20)
        await cluster.wait_for(inode_settled(cluster, "box-4090", 4, 4), within=20)
        assert len(engine_pods(cluster)) == 7

        # Double the pool's stake: every valid device's effective stake and priority follow.
        before = {d["index"]: d for d in status_of(cluster, "InferenceNode", "box-4090")["devices"]}
        pools = cluster.store.type_for(GROUP, "OperatorPool")
        cluster.store.patch(pools, NS, "op-a", "merge", {"spec": {"delegatedStake": "195000"}}, actor="test")

        old_a100 = status_of(cluster, "InferenceNode", "box-a100")["devices"][0]["priorityScore"]

        def restaked() -> bool:
            rtx = status_of(cluster, "InferenceNode", "box-4090")["devices"]
            a100 = status_of(cluster, "InferenceNode", "box-a100")["devices"][0]
            moved = all(d["effectiveStake"] != before[d["index"]]["effectiveStake"] for d in rtx)
            return moved and a100["priorityScore"] != old_a100

        await cluster.wait_for(restaked, within=10)
        after = status_of(cluster, "InferenceNode", "box-4090")["devices"]
        for dev in after:
            old = before[dev["index"]]
            assert int(dev["effectiveStake"].split(".")[0]) in {
                2 * int(old["effectiveStake"].split(".")[0]),
                2 * int(old["effectiveStake"].split(".")[0]) + 1,
            }
            assert dev["priorityScore"] > old["priorityScore"]
        a100 = status_of(cluster, "InferenceNode", "box-a100")["devices"][0]
        assert a100["priorityScore"] == pytest.approx(
            1 + 0.0001 * 200_000 * A100_80 / (4 * RTX_4090 + A100_80), abs=1e-5
        )

        # Delete an InferenceNode: its pods are garbage-collected, the pool shrinks.
        inodes = cluster.store.type_for(GROUP, "InferenceNode")
        cluster.store.delete(inodes, NS, "box-a100", actor="test")
        await cluster.wait_for(lambda: len(engine_pods(cluster)) == 6, within=10)
        await cluster.wait_for(
            lambda: status_of(cluster, "OperatorPool", "op-a").get("validatedVRAMMiB") == 4 * RTX_4090,
            within=10,
        )
        await cluster.wait_for(
            lambda: (
                {d["effectiveStake"] for d in status_of(cluster, "InferenceNode", "box-4090")["devices"]}
                == {"50000"}
            ),
            within=10,
        )
        assert await quiet(cluster) == []


async def test_gpus_disappearing_and_reappearing_scale_pods(cluster: DevCluster) -> None:
    cluster.apply(pool("op-a"))
    cluster.apply(inode("box", "op-a", "gpu-4090"))
    nodes = cluster.store.resolve("", "v1", "nodes")

    def set_gpus(count: int) -> None:
        patch = {
            "metadata": {"labels": {"nvidia.com/gpu.count": str(count)}},
            "status": {
                "capacity": {"nvidia.com/gpu": str(count)},
                "allocatable": {"nvidia.com/gpu": str(count)},
            },
        }
        cluster.store.patch(nodes, None, "gpu-4090", "merge", patch, actor="test")

    def box_pods() -> list[str]:
        return sorted(
            p["metadata"]["name"] for p in engine_pods(cluster) if not p["metadata"].get("deletionTimestamp")
        )

    async with running_operator(cluster):
        await cluster.wait_for(inode_settled(cluster, "box", 4, 4), within=20)
        set_gpus(2)
        await cluster.wait_for(lambda: box_pods() == ["box-gpu-0", "box-gpu-1"], within=10)
        await cluster.wait_for(inode_settled(cluster, "box", 2, 2), within=10)
        assert status_of(cluster, "InferenceNode", "box")["devices"][0]["effectiveStake"] == "50000"
        set_gpus(4)
        await cluster.wait_for(lambda: len(box_pods()) == 4, within=10)
        await cluster.wait_for(inode_settled(cluster, "box", 4, 4), within=20)
        await cluster.wait_for(
            lambda: status_of(cluster, "InferenceNode", "box")["devices"][3]["effectiveStake"] == "25000",
            within=10,
        )
        reasons = {e["reason"] for e in events(cluster, "box")}
        assert "GPURemoved" in reasons


async def test_namespaced_mode_with_local_indexes_ignores_other_namespaces(cluster: DevCluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    cluster.apply(pool("op-a"))
    cluster.apply(inode("box", "op-a", "gpu-a100"))
    other = inode("foreign", "op-a", "gpu-4090")
    other["metadata"]["namespace"] = "elsewhere"
    cluster.apply(other)
    async with running_operator(cluster, fast_settings(namespace=NS, indexes="local")):
        await cluster.wait_for(inode_settled(cluster, "box", 1, 1), within=20)
        assert status_of(cluster, "InferenceNode", "box")["devices"][0]["effectiveStake"] == "100000"
        assert cluster.pods("elsewhere") == []
        assert await quiet(cluster) == []
