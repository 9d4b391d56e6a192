"""The reputation and k controllers against the emulated API server (CRD schemas and CEL enforced).

What the in-memory fake cannot show: every status, Penalty and ConfigMap the controllers write is
accepted by the generated CRDs; generateName, label selectors, merge patches of metadata and of
the status subresource behave as on a real API server; a restarted controller resumes from what
it wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
from gpufleet.controllers.reputation.controller import PENALTY_ANNOTATION, KubeApi, ReputationController
from gpufleet.controllers.routingpolicy.controller import RoutingPolicyController
from gpufleet.router.stats import RouterStats
from gpufleet_devcluster.cluster import DevCluster
from tests.integration.reputation.test_controller import MODEL, T0, Clock, FakeRouter, settings

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[3]
G = "gpufleet.io/v1alpha1"
NS = "operators"


@pytest.fixture
async def cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(crd_dir=ROOT / "crds", namespaces=("default", NS), kubelet=False) as dc:
        yield dc


async def add_pool(client: KubeClient, dc: DevCluster, name: str) -> None:
    dc.apply(
        {
            "apiVersion": G,
            "kind": "OperatorPool",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selfStake": "1000"},
        }
    )
    dc.apply(
        {
            "apiVersion": G,
            "kind": "InferenceNode",
            "metadata": {"name": f"{name}-node", "namespace": NS},
            "spec": {"nodeName": f"gpu-{name}", "poolRef": {"name": name}, "models": [{"name": MODEL}]},
        }
    )
    status = {
        "devices": [
            {
                "index": 0,
                "uuid": f"GPU-{name}",
                "product": "NVIDIA GeForce RTX 4090",
                "ready": True,
                "routable": True,
                "validation": {"valid": True, "reason": "Valid"},
            }
        ],
        "currentVersion": "1.0.0",
    }
    await client.patch_status("inferencenodes", NS, f"{name}-node", status)


async def test_controllers_write_what_the_crds_accept_and_resume_after_a_restart(cluster: DevCluster) -> None:
    client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
    try:
        for name in ("good", "bad", "p3", "p4", "p5"):
            await add_pool(client, cluster, name)
        router, clock = FakeRouter(), Clock(T0 + timedelta(minutes=5))
        router.devices = {}

        async def fetch() -> list[RouterStats]:
            router.now = clock.now
            return [router.snapshot()]

        def controller() -> ReputationController:
            return ReputationController(settings(), KubeApi(client), fetch, clock=clock, monotonic=clock.mono)

        ctl = controller()
        await ctl.step()
        clock.now = T0 + timedelta(minutes=30)
        router.serve("good", 300, 0)
        router.serve("bad", 300, 60)  # 80%: tier 11 and, once the hour closes, a LowCompletion penalty
        await ctl.step()
        bad = cluster.get(G, "OperatorPool", "bad", NS) or {}
        rep = bad["status"]["reputation"]
        assert (rep["tier"], rep["multiplier"], rep["completionRate"]) == (11, "0", "0.8")
        conds = {c["type"]: c["status"] for c in bad["status"]["conditions"]}
        assert conds["ReputationOverride"] == "False"
        clock.now = T0 + timedelta(hours=1, minutes=1)
        await ctl.step()
        [pen] = cluster.objects(G, "Penalty", NS)
        assert pen["spec"]["pool"] == "bad"
        assert pen["metadata"]["name"].startswith("bad-lowcompletion-")
        assert pen["status"]["enforcement"] == "Enforced"
        assert pen["metadata"]["labels"]["gpufleet.io/pool"] == "bad"
        bad = cluster.get(G, "OperatorPool", "bad", NS) or {}
        assert bad["metadata"]["annotations"][PENALTY_ANNOTATION] == pen["status"]["until"]
        cms = cluster.objects("v1", "ConfigMap", NS)
        assert {c["metadata"]["name"] for c in cms} >= {"gpufleet-reputation-bad", "gpufleet-reputation-good"}
        # restart: a new controller resumes from the ConfigMaps and the Penalty objects
        again = controller()
        clock.now += timedelta(minutes=1)
        await again.step()
        assert len(cluster.objects(G, "Penalty", NS)) == 1
        rep2 = (cluster.get(G, "OperatorPool", "bad", NS) or {})["status"]["reputation"]
        assert (rep2["completed"], rep2["failed"], rep2["tier"]) == (rep["completed"], rep["failed"], 11)
        # the penalty ends: the annotation goes
        clock.now = T0 + timedelta(hours=2, minutes=2)
        await again.step()
        bad = cluster.get(G, "OperatorPool", "bad", NS) or {}
        assert PENALTY_ANNOTATION not in (bad["metadata"].get("annotations") or {})
        assert cluster.objects(G, "Penalty", NS)[0]["status"]["enforcement"] == "Expired"

        k = RoutingPolicyController(settings(), KubeApi(client), fetch, clock=clock)
        await k.step()
        policy = cluster.get(G, "RoutingPolicy", "default") or {}
        assert policy["spec"]["kMax"] == "0.001"  # defaulted by the CRD
        assert policy["status"]["k"] == "0.0001"
    finally:
        await client.close()


async def test_a_manual_penalty_typed_by_a_person(cluster: DevCluster) -> None:
    client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
    try:
        for name in ("a", "b", "c", "d", "e"):
            await add_pool(client, cluster, name)
        created = cluster.apply(
            {
                "apiVersion": G,
                "kind": "Penalty",
                "metadata": {"name": "audit", "namespace": NS},
                "spec": {"pool": "a", "offense": "Manual", "reason": "audit pending"},
            }
        )
        assert created is not None
        clock = Clock(datetime.now(UTC) + timedelta(seconds=1))  # the API server stamps creation in real time
        ctl = ReputationController(settings(), KubeApi(client), None, clock=clock, monotonic=clock.mono)
        await ctl.step()
        pen: dict[str, Any] = cluster.get(G, "Penalty", "audit", NS) or {}
        assert pen["status"]["level"] == 1
        assert pen["status"]["enforcement"] == "Enforced"
        assert (
            PENALTY_ANNOTATION in ((cluster.get(G, "OperatorPool", "a", NS) or {})["metadata"]["annotations"])
        )
        # deleting it lifts it: the annotation goes, an Event says so
        await client.request("DELETE", f"/apis/gpufleet.io/v1alpha1/namespaces/{NS}/penalties/audit")
        await ctl.step()
        assert PENALTY_ANNOTATION not in (
            (cluster.get(G, "OperatorPool", "a", NS) or {})["metadata"].get("annotations") or {}
        )
        reasons = [e.get("reason") for e in cluster.objects("v1", "Event", NS)]
        assert "PenaltyLifted" in reasons
        assert "PenaltyEnforced" in reasons
        assert [c["type"] for c in pen["status"]["conditions"]] == ["Active"]
    finally:
        await client.close()


async def test_the_operator_starts_and_stops_both_controllers(cluster: DevCluster) -> None:
    import asyncio
    import time
    from types import SimpleNamespace

    import kopf

    from gpufleet.controllers.reputation.wiring import register_reputation_controllers
    from gpufleet.settings import OperatorSettings

    client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
    try:
        registry = kopf.OperatorRegistry()
        register_reputation_controllers(
            registry,
            OperatorSettings(reputation_enabled=True, reputation_scrape_seconds=0.2),
            SimpleNamespace(client=client),
        )
        handlers: dict[str, Any] = {
            getattr(h.fn, "__name__", ""): h.fn for h in registry._activities.get_all_handlers()
        }
        assert set(handlers) == {"start_reputation", "stop_reputation"}
        await handlers["start_reputation"]()
        deadline = time.monotonic() + 20
        while cluster.get(G, "RoutingPolicy", "default") is None:  # the k controller's first pass
            assert time.monotonic() < deadline, "the k controller never created the default RoutingPolicy"
            await asyncio.sleep(0.05)
        await handlers["stop_reputation"]()
        tasks = [t for t in asyncio.all_tasks() if t.get_name() in ("gpufleet-reputation", "gpufleet-k")]
        assert all(t.done() for t in tasks)
    finally:
        await client.close()
