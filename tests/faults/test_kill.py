"""``kill -9`` of the operator process at random points: during convergence and good/bad rollouts,
in both index modes. No kill point may fail a good release or exceed maxUnavailable (#21, F1)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from gpufleet_devcluster.kubelet import Behaviour, KubeletConfig
from tests.faults.fleet import (
    GROUP,
    NS,
    Layout,
    duplicate_gpu_pods,
    events,
    inode,
    pool,
    rig,
    status_of,
    wait_for,
)

LAYOUT = Layout(nodes=6, pools=2)  # 3 nodes x 2 GPUs = 6 devices per pool
POOL_LIMIT = 2
#: Slow enough that a rollout of the fleet lasts several seconds, so kills land in the middle of it.
KUBELET = KubeletConfig(start_delay=0.5, ready_delay=0.5)


def image(version: str) -> str:
    return f"ghcr.io/gpufleet/engine@sha256:{hashlib.sha256(version.encode()).hexdigest()}"


def release(version: str, budget: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "EngineRelease",
        "metadata": {"name": "engine-" + version.replace(".", "-")},
        "spec": {"version": version, "image": image(version), "channel": "stable", "failureBudget": budget},
    }


def objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [release("1.0.0")]
    for p in range(LAYOUT.pools):
        body = pool(f"pool-{p}")
        body["spec"]["updatePolicy"] = {"maxUnavailable": POOL_LIMIT}
        objs.append(body)
    for i in range(LAYOUT.nodes):
        body = inode(f"box-{i}", LAYOUT.pool_of(i), f"gpu-{i}")
        body["spec"]["engine"] = "vllm"
        policy = {"maxUnavailable": 1, "minReadySeconds": 2, "progressDeadlineSeconds": 60}
        body["spec"]["updatePolicy"] = policy
        objs.append(body)
    return objs


def on_version(r: Any, version: str) -> Any:
    def check() -> bool:
        for name in LAYOUT.inode_names():
            st = status_of(r.cluster, "InferenceNode", name)
            if st.get("currentVersion") != version or st.get("readyDevices") != 2:
                return False
        pods = [p for p in r.cluster.pods(NS) if not p["metadata"].get("deletionTimestamp")]
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get("gpufleet.io/inference-node")]
        return len(mine) == 2 * LAYOUT.nodes and all(
            p["spec"]["containers"][0]["image"] == image(version) for p in mine
        )

    check.__name__ = f"every node on {version}, all GPUs ready"
    return check


def _ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or ()
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conds
    )


def max_pool_down(history: Iterable[Any], since_rv: int) -> dict[str, int]:
    """Most devices of each pool not served by a Ready pod, after any single write since ``since_rv``."""
    devices = dict.fromkeys(LAYOUT.inode_names(), 2)
    pools = {f"box-{i}": LAYOUT.pool_of(i) for i in range(LAYOUT.nodes)}
    ready: dict[str, dict[str, tuple[int, bool]]] = {n: {} for n in devices}
    worst: dict[str, int] = {}
    for event in history:
        if event.resource.plural != "pods":
            continue
        labels = event.obj["metadata"].get("labels") or {}
        node = labels.get("gpufleet.io/inference-node")
        if node not in ready:
            continue
        name = event.obj["metadata"]["name"]
        if event.type == "DELETED":
            ready[node].pop(name, None)
        else:
            ready[node][name] = (int(labels.get("gpufleet.io/device-index", -1)), _ready(event.obj))
        if event.rv <= since_rv:
            continue
        down: dict[str, int] = {}
        for n, pods in ready.items():
            up = {index for index, ok in pods.values() if ok}
            down[pools[n]] = down.get(pools[n], 0) + devices[n] - len(up)
        for p, d in down.items():
            worst[p] = max(worst.get(p, 0), d)
    return worst


async def kill_and_restart(r: Any, rng: random.Random, kills: int, window: tuple[float, float]) -> list[str]:
    """``kills`` times: wait a random time in ``window``, kill -9, restart after a short random gap."""
    points = []
    for _ in range(kills):
        delay = rng.uniform(*window)
        await asyncio.sleep(delay)  # a random kill point, not a wait for something
        moving = sum(
            1
            for name in r.layout.inode_names()
            if (status_of(r.cluster, "InferenceNode", name).get("rollout") or {}).get("phase")
            in ("PreCheck", "Progressing", "PostCheck", "RollingBack")
        )
        points.append(f"{delay:.2f} s ({moving} nodes mid-rollout)")
        await r.operator.kill9()
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # the world moves on while it is down
        await r.start_operator()
    return points


INDEX_MODES = [
    pytest.param("kopf", id="kopf-indexes"),
    pytest.param("local", id="local-indexes"),  # F1 was found in this mode
]


@pytest.mark.parametrize("indexes", INDEX_MODES)
async def test_kill9_during_a_good_rollout(tmp_path: Path, record: dict[str, Any], indexes: str) -> None:
    rng = random.Random(21)
    async with rig(
        tmp_path, LAYOUT, objects=objects(), kubelet=KUBELET, env={"GPUFLEET_INDEXES": indexes}
    ) as r:
        await wait_for(on_version(r, "1.0.0"), within=90)
        start_rv = r.cluster.store.history[-1].rv
        r.cluster.apply(release("1.1.0"))
        points = await kill_and_restart(r, rng, kills=3, window=(0.5, 4.0))
        took = await wait_for(on_version(r, "1.1.0"), within=120)
        worst = max_pool_down(list(r.cluster.store.history), start_rv)
        erel = r.cluster.get(GROUP, "EngineRelease", "engine-1-1-0") or {}
        reasons = [e.get("reason") for e in events(r.cluster)]
        record.update(
            indexes=indexes,
            kill_points_s=points,
            complete_after_last_restart_s=round(took, 1),
            max_pool_unavailable=worst,
            pool_limit=POOL_LIMIT,
            failed_nodes=len((erel.get("status") or {}).get("failedNodes") or []),
            rollout_failed_events=reasons.count("RolloutFailed"),
        )
        assert not (erel.get("status") or {}).get("failedNodes"), erel.get("status")
        assert "RolloutFailed" not in reasons
        assert "GPURemoved" not in reasons
        assert max(worst.values()) <= POOL_LIMIT, worst
        assert not duplicate_gpu_pods(r.cluster)


async def test_kill9_during_a_bad_rollout_rolls_back_within_limits(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    rng = random.Random(22)
    async with rig(tmp_path, LAYOUT, objects=objects(), kubelet=KUBELET) as r:
        await wait_for(on_version(r, "1.0.0"), within=90)
        r.cluster.kubelet.set_behaviour(Behaviour("crash_loop"), image=image("1.1.0"))
        start_rv = r.cluster.store.history[-1].rv
        r.cluster.apply(release("1.1.0", budget=1))
        points = await kill_and_restart(r, rng, kills=2, window=(0.5, 3.0))

        def halted() -> bool:
            erel = r.cluster.get(GROUP, "EngineRelease", "engine-1-1-0") or {}
            conds = (erel.get("status") or {}).get("conditions") or []
            return any(c.get("type") == "Halted" and c.get("status") == "True" for c in conds)

        await wait_for(halted, within=120)
        took = await wait_for(on_version(r, "1.0.0"), within=120)
        worst = max_pool_down(list(r.cluster.store.history), start_rv)
        erel = r.cluster.get(GROUP, "EngineRelease", "engine-1-1-0") or {}
        failed = (erel.get("status") or {}).get("failedNodes") or []
        record.update(
            kill_points_s=points,
            back_on_1_0_0_after_halt_s=round(took, 1),
            max_pool_unavailable=worst,
            failed_nodes=len(failed),
            failure_budget=1,
        )
        assert max(worst.values()) <= POOL_LIMIT, worst
        # The budget counts nodes already in flight: parallel batches do not let more nodes fail.
        assert 1 <= len(failed) <= 1, failed
        assert not duplicate_gpu_pods(r.cluster)


async def test_kill9_during_convergence(tmp_path: Path, record: dict[str, Any]) -> None:
    rng = random.Random(23)
    async with rig(tmp_path, Layout(nodes=8, pools=2)) as r:
        points = await kill_and_restart(r, rng, kills=3, window=(0.5, 3.0))
        took = await wait_for(r.converged(), within=90)
        reasons = [e.get("reason") for e in events(r.cluster)]
        record.update(kill_points_s=points, converge_after_last_restart_s=round(took, 1))
        assert not duplicate_gpu_pods(r.cluster)
        assert "GPURemoved" not in reasons
