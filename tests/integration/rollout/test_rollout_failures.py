"""Bad releases, restarts, approvals and driver minimums, with the real operator and emulator."""

from __future__ import annotations

import asyncio
import random

import pytest

from gpufleet_devcluster import Behaviour, DevCluster, KubeletConfig, NodeSpec
from tests.integration.rollout.harness import (
    CRDS,
    NS,
    Operator,
    condition,
    erel,
    fleet_on,
    history,
    image,
    inode,
    inodes,
    patch,
    pod_ready,
    pool,
    quiet_logs,
    release,
    replay,
    rollout_of,
    running,
)

KUBELET = KubeletConfig(start_delay=0.05, ready_delay=0.1, termination_delay=0.02, crash_backoff=0.05)
RESTING = {"Idle", "Succeeded", "RolledBack"}


def events(cluster: DevCluster) -> list[dict[str, object]]:
    return cluster.store.objects(cluster.store.resolve("", "v1", "events"), NS)


def at_rest(cluster: DevCluster) -> bool:
    return all(rollout_of(o).get("phase", "Idle") in RESTING for o in inodes(cluster))


def halted(cluster: DevCluster, name: str) -> bool:
    return bool(((erel(cluster, name) or {}).get("status") or {}).get("halted"))


async def setup(cluster: DevCluster, n: int, *, limit: str | int, **policy: object) -> None:
    cluster.apply(pool(max_unavailable=limit))
    cluster.apply(release("1.0.0"))
    for i in range(n):
        cluster.apply(inode(f"node-{i}", f"gpu-{i}", **policy))


async def test_crash_looping_release_rolls_back_and_halts_after_the_budget_then_resumes() -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(6)]
    async with DevCluster(
        crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, bookmark_interval=0.5
    ) as cluster:
        await setup(cluster, 6, limit=2)
        cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.1.0"))
        async with running(cluster):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            start_rv = cluster.store.history[-1].rv
            cluster.apply(release("1.1.0", budget=2))
            await cluster.wait_for(lambda: halted(cluster, "engine-1-1-0"), within=30)
            await cluster.wait_for(lambda: at_rest(cluster) and fleet_on(cluster, "1.0.0"), within=30)
            await asyncio.sleep(0.3)  # nothing else may start
            assert fleet_on(cluster, "1.0.0")
            status = (erel(cluster, "engine-1-1-0") or {})["status"]
            failed = set(status["failedNodes"])
            assert len(failed) >= 2
            assert (
                condition(erel(cluster, "engine-1-1-0") or {}, "Halted")["reason"] == "FailureBudgetExhausted"
            )
            by_name = {o["metadata"]["name"]: o for o in inodes(cluster)}
            for key in failed:
                obj = by_name[key.split("/")[1]]
                assert rollout_of(obj)["phase"] == "RolledBack"
                assert condition(obj, "RolledBack")["status"] == "True"
                assert condition(obj, "RolledBack")["reason"] == "CrashLoop"
                assert obj["status"]["currentVersion"] == "1.0.0"
            untouched = [
                o
                for o in by_name.values()
                if f"{NS}/{o['metadata']['name']}" not in failed
                and rollout_of(o).get("phase") != "RolledBack"
            ]
            assert untouched, (
                "with a pool limit of 2 devices, some nodes must not have started before the halt"
            )
            names = [o["metadata"]["name"] for o in untouched]

            def untouched_say_halted() -> bool:
                objs = [o for o in inodes(cluster) if o["metadata"]["name"] in names]
                return all(condition(o, "ReleaseSkipped").get("reason") == "ReleaseHalted" for o in objs)

            try:
                await cluster.wait_for(untouched_say_halted, within=5)
            except TimeoutError:
                print(
                    [
                        (o["metadata"]["name"], condition(o, "ReleaseSkipped"), rollout_of(o))
                        for o in inodes(cluster)
                    ]
                )
                raise
            rolled = [o for o in by_name.values() if rollout_of(o).get("phase") == "RolledBack"]
            # Events are posted asynchronously; give them a moment, then count exactly.
            await cluster.wait_for(
                lambda: [e["reason"] for e in events(cluster)].count("RolledBack") >= len(rolled), within=5
            )
            await asyncio.sleep(0.2)
            reasons = [e["reason"] for e in events(cluster)]
            assert reasons.count("ReleaseHalted") == 1
            rolled_events = sorted(
                e["involvedObject"]["name"]
                for e in events(cluster)
                if e["reason"] == "RolledBack"  # type: ignore[index]
            )
            assert rolled_events == sorted(o["metadata"]["name"] for o in rolled)
            result = replay(
                history(cluster),
                dict.fromkeys(by_name, 2),
                dict.fromkeys(by_name, "pool-a"),
                since_rv=start_rv,
            )
            assert all(count == 1 for count in result.rollbacks.values())
            assert result.max_pool_down["pool-a"] <= 2
            # No node started the release after it was halted.
            halt_rv = next(
                e.rv
                for e in cluster.store.history
                if e.resource.plural == "enginereleases" and (e.obj.get("status") or {}).get("halted")
            )
            started_late = [
                e
                for e in cluster.store.history
                if e.rv > halt_rv
                and e.resource.plural == "inferencenodes"
                and rollout_of(e.obj).get("phase") == "PreCheck"
            ]
            assert not started_late

            # The cause is fixed (here: the kubelet); a person resumes the release; everyone updates.
            cluster.kubelet.set_behaviour(Behaviour("ok"), image=image("1.1.0"))
            patch(cluster, "EngineRelease", "engine-1-1-0", {"spec": {"resumeCount": 1}}, namespaced=False)
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0"), within=30)
            assert not halted(cluster, "engine-1-1-0")
            assert condition(erel(cluster, "engine-1-1-0") or {}, "Halted")["status"] == "False"


async def test_never_ready_release_hits_the_progress_deadline_and_rolls_back() -> None:
    quiet_logs()
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(3)]
    # The CRD's floor for progressDeadlineSeconds is 60 s; skipping schema validation lets this test
    # use 1 s. The controller's logic does not depend on the value.
    async with DevCluster(crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, validator=None) as cluster:
        await setup(cluster, 3, limit="100%", progressDeadlineSeconds=1, maxUnavailable=2)
        cluster.kubelet.set_behaviour(Behaviour("never_ready"), image=image("1.1.0"))
        async with running(cluster):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            cluster.apply(release("1.1.0", budget=1))
            await cluster.wait_for(lambda: halted(cluster, "engine-1-1-0"), within=30)
            await cluster.wait_for(lambda: at_rest(cluster) and fleet_on(cluster, "1.0.0"), within=30)
            failed = (erel(cluster, "engine-1-1-0") or {})["status"]["failedNodes"]
            assert failed

            def failed_nodes_report_it() -> bool:
                return all(
                    condition(o, "RolledBack").get("reason") == "ProgressDeadlineExceeded"
                    for o in inodes(cluster)
                    if f"{NS}/{o['metadata']['name']}" in failed
                )

            # Conditions are shared with the core reconciler's writes; they settle right after.
            await cluster.wait_for(failed_nodes_report_it, within=5)
            for obj in inodes(cluster):
                if f"{NS}/{obj['metadata']['name']}" in failed:
                    assert "not ready within 1s" in rollout_of(obj)["failure"]["message"]


@pytest.mark.parametrize(("seed", "bad"), [(1, False), (2, True), (3, False)])
async def test_operator_killed_at_random_points_completes_or_rolls_back_cleanly(seed: int, bad: bool) -> None:
    quiet_logs()
    rng = random.Random(seed)
    nodes = [NodeSpec(f"gpu-{i}", profile="rtx3090-x2") for i in range(6)]
    async with DevCluster(crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET, validator=None) as cluster:
        await setup(cluster, 6, limit=3, progressDeadlineSeconds=3)
        if bad:
            cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.1.0"))
        op = Operator(cluster.kubeconfig_path)
        await op.start()
        try:
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            start_rv = cluster.store.history[-1].rv
            cluster.apply(release("1.1.0", budget=10))
            for _ in range(4):
                await asyncio.sleep(rng.uniform(0.05, 0.6))
                await op.kill()
                await asyncio.sleep(rng.uniform(0.0, 0.2))  # the world moves on while it is down
                op = Operator(cluster.kubeconfig_path)
                await op.start()
            await cluster.wait_for(lambda: settled_cleanly(cluster), within=30)
        finally:
            await op.kill()
        objs = inodes(cluster)
        names = [o["metadata"]["name"] for o in objs]
        result = replay(
            history(cluster), dict.fromkeys(names, 2), dict.fromkeys(names, "pool-a"), since_rv=start_rv
        )
        # A good release completes everywhere, a bad one rolls back everywhere; never a second rollback.
        for obj in objs:
            phase, current = rollout_of(obj)["phase"], obj["status"]["currentVersion"]
            expected = ("RolledBack", "1.0.0") if bad else ("Succeeded", "1.1.0")
            assert (phase, current) == expected, obj["metadata"]["name"]
        assert all(count == 1 for count in result.rollbacks.values())
        reasons = [e["reason"] for e in events(cluster)]
        # Restarts never make the core delete pods for GPUs that did not go anywhere.
        assert "GPURemoved" not in reasons
        if bad:
            assert set(result.rollbacks) == set(names)
            assert len((erel(cluster, "engine-1-1-0") or {})["status"]["failedNodes"]) == 6
        else:
            assert not result.rollbacks
        assert result.max_pool_down["pool-a"] <= 3
        assert max(result.max_node_down.values()) <= 1


def settled_cleanly(cluster: DevCluster) -> bool:
    """Every node at rest, all its pods ready and on its current version."""
    pods = cluster.pods(NS)
    for obj in inodes(cluster):
        name, status = obj["metadata"]["name"], obj.get("status") or {}
        if rollout_of(obj).get("phase") not in ("Succeeded", "RolledBack"):
            return False
        mine = [p for p in pods if p["metadata"]["labels"].get("gpufleet.io/inference-node") == name]
        current = status.get("currentVersion") or ""
        if len(mine) != 2 or not all(
            p["spec"]["containers"][0]["image"] == image(current) and pod_ready(p) for p in mine
        ):
            return False
    return True


async def test_major_version_waits_for_approval_and_old_drivers_are_skipped() -> None:
    quiet_logs()
    nodes = [
        NodeSpec("gpu-0", profile="gh200-x1"),  # driver 560.35.03
        NodeSpec("gpu-1", profile="gh200-x1"),
        NodeSpec("gpu-2", profile="rtx3090-x2"),  # driver 550.120
    ]
    async with DevCluster(crd_dir=CRDS, nodes=nodes, kubelet_config=KUBELET) as cluster:
        await setup(cluster, 3, limit="100%")
        async with running(cluster):
            await cluster.wait_for(lambda: fleet_on(cluster, "1.0.0"), within=30)
            cluster.apply(release("1.1.0", minDriverVersion="560.28.03"))
            # Minor update: taken by the two nodes whose driver is new enough, skipped by the other.
            await cluster.wait_for(lambda: fleet_on(cluster, "1.1.0", ["node-0", "node-1"]), within=30)

            def skipped(name: str, reason: str) -> bool:
                obj = next(o for o in inodes(cluster) if o["metadata"]["name"] == name)
                cond = condition(obj, "ReleaseSkipped")
                return cond.get("status") == "True" and cond.get("reason") == reason

            # Conditions are shared with the core reconciler's status writes, so they settle, not jump.
            await cluster.wait_for(lambda: skipped("node-2", "DriverTooOld"), within=5)
            old = next(o for o in inodes(cluster) if o["metadata"]["name"] == "node-2")
            assert old["status"]["currentVersion"] == "1.0.0"
            message = condition(old, "ReleaseSkipped")["message"]
            assert "560.28.03" in message
            assert "node has 550.120" in message
            # Major update: nobody moves without approval, and says why.
            cluster.apply(release("2.0.0"))
            await cluster.wait_for(lambda: skipped("node-0", "AwaitingMajorVersionApproval"), within=5)
            await cluster.wait_for(lambda: skipped("node-1", "AwaitingMajorVersionApproval"), within=5)
            assert fleet_on(cluster, "1.1.0", ["node-0", "node-1"])
            # Approve on one node only.
            patch(cluster, "InferenceNode", "node-1", {"spec": {"updatePolicy": {"approvedMajorVersion": 2}}})
            await cluster.wait_for(lambda: fleet_on(cluster, "2.0.0", ["node-1"]), within=30)
            await asyncio.sleep(0.3)
            assert fleet_on(cluster, "1.1.0", ["node-0"])
            # Approve on the pool: the rest follows (the old-driver node has no minimum on 2.0.0).
            patch(cluster, "OperatorPool", "pool-a", {"spec": {"updatePolicy": {"approvedMajorVersion": 2}}})
            await cluster.wait_for(lambda: fleet_on(cluster, "2.0.0"), within=30)
