"""A blocked GPU stays blocked while its pod crashes or is replaced and has not answered yet.

The operator's verdict comes from the agent's hardware report; the report of the pod that is
gone (or down) is still the truth about the device until a new report says otherwise. Asserted
at every single write to the cluster, not only at the end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from gpufleet_devcluster.kubelet import Behaviour
from gpufleet_devcluster.store import Event
from tests.integration.operator.harness import NS, inode, pool, release, running_operator, status_of

INODE = "box-liar"
POD = f"{INODE}-gpu-0"


def liar_device(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(((obj.get("status") or {}).get("devices") or [{}])[0])


async def test_blocked_device_keeps_its_reason_through_crash_and_replacement() -> None:
    async with DevCluster(
        nodes=[NodeSpec("gpu-liar", profile="bad-rtx4090-48gb")], namespaces=("default", NS)
    ) as cluster:
        cluster.apply(release())
        cluster.apply(pool("op-a"))
        cluster.apply(inode(INODE, "op-a", "gpu-liar"))
        pods = cluster.store.resolve("", "v1", "pods")
        async with running_operator(cluster) as reconciler:
            await cluster.wait_for(
                lambda: (liar_device({"status": status_of(cluster, "InferenceNode", INODE)})
                         .get("validation") or {}).get("reason") == "VRAMMismatch",
                within=20,
            )
            violations: list[str] = []

            def check(event: Event) -> None:
                obj = event.obj
                if event.resource.plural == "inferencenodes" and obj["metadata"]["name"] == INODE:
                    dev = liar_device(obj)
                    validation = dev.get("validation") or {}
                    if validation.get("reason") != "VRAMMismatch" or validation.get("valid"):
                        violations.append(f"rv {event.rv}: validation {validation}")
                    if dev.get("routable") or dev.get("effectiveStake") != "0" or dev.get("vramShare"):
                        violations.append(f"rv {event.rv}: routable/share {dev}")
                if event.resource is pods and event.type != "DELETED" and obj["metadata"]["name"] == POD:
                    labels = obj["metadata"].get("labels") or {}
                    if labels.get("gpufleet.io/routable") != "false":
                        violations.append(f"rv {event.rv}: pod labelled routable={labels}")
                    gate = [c for c in (obj.get("status") or {}).get("conditions") or ()
                            if c.get("type") == "gpufleet.io/engine-ready" and c.get("status") == "True"]
                    if gate:
                        violations.append(f"rv {event.rv}: readiness gate opened")

            cluster.store.listeners.append(check)

            # 1. The container crashes (same pod): the agent cannot answer for a while.
            cluster.kubelet.crash(NS, POD)
            await asyncio.sleep(0.5)

            # 2. The pod is replaced by one that never starts (so it never reports).
            by_label = ("gpufleet.io/inference-node", INODE)
            cluster.kubelet.set_behaviour(Behaviour("image_pull_error"), label=by_label)
            old = cluster.get("v1", "Pod", POD, NS)
            assert old is not None
            passes = reconciler.stats["reconciles"]
            cluster.store.delete(pods, NS, POD, actor="test")

            def replaced() -> bool:
                pod = cluster.get("v1", "Pod", POD, NS)
                return pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]

            await cluster.wait_for(replaced, within=10)
            await asyncio.sleep(0.5)
            assert reconciler.stats["reconciles"] > passes  # the operator did look at it meanwhile
            assert liar_device({"status": status_of(cluster, "InferenceNode", INODE)})["validation"][
                "reason"
            ] == "VRAMMismatch"

        # 3. The operator restarts while the replacement still cannot answer: it starts with no
        #    report in memory; the device stays blocked with the reason its status recorded.
        async with running_operator(cluster) as reconciler:
            passes_before = reconciler.stats["reconciles"]
            await cluster.wait_for(lambda: reconciler.stats["reconciles"] > passes_before, within=10)
            await asyncio.sleep(0.5)
            assert reconciler.stats["reports"] == 0
            assert liar_device({"status": status_of(cluster, "InferenceNode", INODE)})["validation"][
                "reason"
            ] == "VRAMMismatch"

            # 4. The replacement finally runs and reports: still the same verdict, from fresh data.
            cluster.kubelet.set_behaviour(Behaviour("ok"), label=by_label)
            reports = reconciler.stats["reports"]
            cluster.store.delete(pods, NS, POD, actor="test")
            await cluster.wait_for(
                lambda: any(
                    (p.get("status") or {}).get("phase") == "Running"
                    for p in cluster.pods(NS)
                    if p["metadata"]["name"] == POD and not p["metadata"].get("deletionTimestamp")
                ),
                within=10,
            )
            await cluster.wait_for(lambda: reconciler.stats["reports"] > reports, within=10)
            await asyncio.sleep(0.3)
            cluster.store.listeners.remove(check)
        assert violations == []
        status = status_of(cluster, "InferenceNode", INODE)
        assert liar_device({"status": status})["validation"]["reason"] == "VRAMMismatch"
        gv = next(c for c in status["conditions"] if c["type"] == "GPUValidated")
        assert gv["reason"] == "DeviceBlocked"
        assert "VRAMMismatch" in gv["message"]
