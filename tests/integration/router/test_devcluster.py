"""``run_router`` against the emulated API server: its watches drive Envoy's endpoints and weights."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
from gpufleet.router import envoy
from gpufleet.router.controlplane import run_router
from gpufleet_devcluster import DevCluster
from tests.integration.router.conftest import Device, fleet_bodies, post, router_settings, wait_for

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]
NS = "fleet"


@pytest.fixture
async def api() -> AsyncIterator[KubeClient]:
    dc = DevCluster(
        crd_dir=[ROOT / "crds"], nodes=[], kubelet=False, namespaces=("default", NS), bookmark_interval=0.2
    )
    await dc.start()
    try:
        async with KubeClient(connection_from_kubeconfig(dc.kubeconfig_path)) as client:
            yield client
    finally:
        await dc.stop()


async def apply_fleet(client: KubeClient, devices: list[Device]) -> None:
    pods, inodes, pools = fleet_bodies(devices)
    group = "/apis/gpufleet.io/v1alpha1/namespaces/fleet"
    for pool in pools.values():
        await client.request(
            "POST",
            f"{group}/operatorpools",
            body={
                "apiVersion": "gpufleet.io/v1alpha1",
                "kind": "OperatorPool",
                "metadata": pool["metadata"],
                "spec": pool["spec"],
            },
        )
    for (_, name), inode in inodes.items():
        await client.request(
            "POST",
            f"{group}/inferencenodes",
            body={
                "apiVersion": "gpufleet.io/v1alpha1",
                "kind": "InferenceNode",
                "metadata": inode["metadata"],
                "spec": {**inode["spec"], "nodeName": f"{name}-host"},
            },
        )
        await client.patch_status("inferencenodes", NS, name, inode["status"])
    for (_, name), pod in pods.items():
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod["metadata"],
            "spec": {**pod["spec"], "containers": [{**pod["spec"]["containers"][0], "image": "engine:1"}]},
        }
        await client.request("POST", f"/api/v1/namespaces/{NS}/pods", body=body)
        await client.request(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/{name}/status",
            body={"status": pod["status"]},
            content_type="application/merge-patch+json",
        )


async def test_watches_program_envoy_and_follow_changes(api: KubeClient, stubs: Any, tmp_path: Path) -> None:
    a, b = await stubs(2)
    settings = router_settings(tmp_path / "router", priority_k="0.0001", recompute_debounce_seconds=0.01)
    await apply_fleet(api, [Device("pa", a.port, "0", index=0), Device("pb", b.port, "100000", index=1)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_router(settings, api, stop=stop))
    url = f"http://127.0.0.1:{settings.listen_port}"
    admin = f"http://127.0.0.1:{settings.admin_port}"
    cluster = envoy.cluster_name("m")

    async def weights() -> dict[int, int]:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{admin}/clusters?format=json") as r:
                data = await r.json(content_type=None)
        except aiohttp.ClientError:
            return {}
        for c in data.get("cluster_statuses", []):
            if c["name"] == cluster:
                return {
                    h["address"]["socket_address"]["port_value"]: int(h.get("weight", 1))
                    for h in c.get("host_statuses", [])
                }
        return {}

    try:
        # priorities 1 and 11 -> exact weights 1 : 11
        async def programmed() -> bool:
            return await weights() == {a.port: 1, b.port: 11}

        await wait_for(programmed, 20, "the router to program Envoy from the watches")
        who: Counter[str] = Counter()
        async with aiohttp.ClientSession() as session:
            for _ in range(120):
                status, body, _ = await post(session, url, {"model": "m"})
                assert status == 200
                who[body["who"]] += 1
        assert who == {a.name: 10, b.name: 110}  # EDF round robin: exact over whole cycles
        # the operator re-shares: pa now carries 100,000 INT too -> 1 : 1
        await api.patch_status(
            "inferencenodes",
            NS,
            "node-a",
            {"devices": [{"index": 0, "effectiveStake": "100000"}, {"index": 1, "effectiveStake": "100000"}]},
        )

        async def even() -> bool:
            return await weights() == {a.port: 1, b.port: 1}

        await wait_for(even, 20, "the stake change to reach Envoy")
        # the pod of pa loses its readiness gate -> removed
        await api.request(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/pa/status",
            body={"status": {"conditions": [{"type": "gpufleet.io/engine-ready", "status": "False"}]}},
            content_type="application/merge-patch+json",
        )

        async def only_b() -> bool:
            return await weights() == {b.port: 1}

        await wait_for(only_b, 20, "the closed gate to remove the endpoint")
        # the k controller publishes k = 0 in the RoutingPolicy: applied live, shares become equal
        await api.request(
            "PATCH",
            f"/api/v1/namespaces/{NS}/pods/pa/status",
            body={"status": {"conditions": [{"type": "gpufleet.io/engine-ready", "status": "True"}]}},
            content_type="application/merge-patch+json",
        )

        async def weighted_again() -> bool:
            return await weights() == {a.port: 1, b.port: 1}

        await wait_for(weighted_again, 20, "the endpoint to come back")
        await api.patch_status(
            "inferencenodes",
            NS,
            "node-a",
            {"devices": [{"index": 0, "effectiveStake": "0"}, {"index": 1, "effectiveStake": "100000"}]},
        )

        async def stake_weighted() -> bool:
            return await weights() == {a.port: 1, b.port: 11}

        await wait_for(stake_weighted, 20, "k from the settings")
        await api.request(
            "POST",
            "/apis/gpufleet.io/v1alpha1/routingpolicies",
            body={
                "apiVersion": "gpufleet.io/v1alpha1",
                "kind": "RoutingPolicy",
                "metadata": {"name": "default"},
                "spec": {},
            },
        )
        await api.patch_status("routingpolicies", "", "default", {"k": "0"})

        async def k_zero() -> bool:
            return await weights() == {a.port: 1, b.port: 1}

        await wait_for(k_zero, 20, "the RoutingPolicy's k to be applied live")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
