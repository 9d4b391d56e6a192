"""A ledger-sourced pool's device priority follows the ledger: delegation, unstake, slash.

The whole operator core (reconciler) runs against the emulator beside the epoch controller; the
controller writes ``status.ledgerStake`` from the ledger ConfigMap and the reconciler computes
the device's effective stake and priority from it (``gpufleet.objects.PoolView``).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.controllers.epoch.controller import EpochController
from gpufleet.controllers.epoch.metrics import EpochMetrics
from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.integration.operator.harness import (
    GROUP,
    NS,
    fast_settings,
    inode,
    inode_settled,
    release,
    running_operator,
    status_of,
)

LEDGER = """
settings: {enforce_emission_schedule: false, delegator_unstake_delay_seconds: 600}
mint: {carol: "50000", dave: "200000"}
steps:
  - {at: 0, op: create_pool, pool: carol-pool, admin: carol, reward_commission_bps: 700}
  - {op: stake, owner: carol, pool: carol-pool, amount: "30000"}
"""
DELEGATE = '  - {op: stake, owner: dave, pool: carol-pool, amount: "120000"}\n'
UNSTAKE = '  - {op: unstake, owner: dave, pool: carol-pool, shares: "100000"}\n'
SLASH = (
    "  - {op: set_halt, pool: carol-pool, halted: true}\n"
    '  - {at: 86400, op: slash, pool: carol-pool, shares: "10000"}\n'
)


@pytest.fixture
async def cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(
        nodes=[NodeSpec("gpu-a100", profile="a100-80gb-x1")], namespaces=("default", NS)
    ) as c:
        c.apply(release())
        yield c


def priority_is(cluster: DevCluster, value: float) -> Callable[[], bool]:
    def check() -> bool:
        devices = status_of(cluster, "InferenceNode", "carol-box").get("devices") or []
        return bool(devices) and devices[0].get("priorityScore") == value

    check.__name__ = f"carol-box priority is {value}"
    return check


def set_ledger(cluster: DevCluster, text: str) -> None:
    cm = copy.deepcopy(cluster.get("v1", "ConfigMap", "ledger", NS))
    assert cm is not None
    cm["data"]["scenario.yaml"] = text
    rtype = cluster.store.type_for("v1", "ConfigMap")
    cluster.store.update(rtype, NS, "ledger", cm, actor="test")


async def test_priority_follows_delegation_unstake_and_slash(cluster: DevCluster) -> None:
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ledger", "namespace": NS},
            "data": {"scenario.yaml": LEDGER},
        }
    )
    pool: dict[str, Any] = {
        "apiVersion": GROUP,
        "kind": "OperatorPool",
        "metadata": {"name": "carol", "namespace": NS},
        "spec": {"stakeSource": {"ledger": {"configMapRef": {"name": "ledger"}, "poolId": "carol-pool"}}},
    }
    cluster.apply(pool)
    cluster.apply(inode("carol-box", "carol", "gpu-a100"))
    settings = fast_settings(operator_namespace=NS, namespace=NS)
    client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
    controller = EpochController(settings, client, metrics=EpochMetrics(CollectorRegistry()))
    try:
        async with running_operator(cluster, settings):
            await cluster.wait_for(inode_settled(cluster, "carol-box", 1, 1), within=20)
            # k = 0.0001 per INT; one A100 carries the whole pool: priority = 1 + stake / 10,000
            for text, priority in (
                (LEDGER, 4.0),  # carol's 30,000
                (LEDGER + DELEGATE, 16.0),  # + dave's 120,000
                (LEDGER + DELEGATE + UNSTAKE, 6.0),  # dave unstakes 100,000: out at once
                (LEDGER + DELEGATE + SLASH, 15.0),  # carol slashed by 10,000
            ):
                set_ledger(cluster, text)
                await controller.step()
                await cluster.wait_for(priority_is(cluster, priority), within=20)
            status = status_of(cluster, "OperatorPool", "carol")
            assert status["totalStake"] == "140000"
            assert status["ledgerStake"]["halted"] is True
            conds = {c["type"]: c for c in status["conditions"]}
            assert conds["MinimumSelfStake"]["status"] == "True"  # 20,000 of 140,000
    finally:
        await controller.close()
        await controller.drain_events()
        await client.close()
