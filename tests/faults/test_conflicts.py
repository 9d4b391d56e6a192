"""Conflicting objects: two InferenceNodes naming one node, a foreign pod holding a GPU, a missing
pool, a Kubernetes node deleted under a running InferenceNode (#21: F2, F3, F12)."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.faults.fleet import Layout, Rig, inode, rig, status_of, wait_for
from tests.faults.test_hostile_agents import device, nodes_ready, uuid_claims

LAYOUT = Layout(nodes=3, pools=2)


def pods_created(r: Rig, owner: str) -> int:
    """Engine pods ever created for InferenceNode ``owner`` (from the store's history)."""
    return sum(
        1
        for e in r.cluster.store.history
        if e.resource.plural == "pods"
        and e.type == "ADDED"
        and (e.obj["metadata"].get("labels") or {}).get("gpufleet.io/inference-node") == owner
    )


def says(r: Rig, box: str, *words: str) -> bool:
    """Some condition or device message of ``box`` contains all ``words`` (case-insensitive)."""
    st = status_of(r.cluster, "InferenceNode", box)
    texts = [f"{c.get('reason', '')} {c.get('message', '')}" for c in st.get("conditions") or []]
    texts += [str((d.get("validation") or {}).get("message", "")) for d in st.get("devices") or []]
    return any(all(w.lower() in t.lower() for w in words) for t in texts)


def stake_of(r: Rig, box: str) -> Decimal:
    devices = status_of(r.cluster, "InferenceNode", box).get("devices") or []
    return sum((Decimal(str(d.get("effectiveStake") or 0)) for d in devices), Decimal(0))


def ready_on(r: Rig, box: str) -> int:
    return int(status_of(r.cluster, "InferenceNode", box).get("readyDevices") or 0)


def with_duplicate() -> list[dict[str, Any]]:
    return [*LAYOUT.objects(), inode("box-dup", "pool-1", "gpu-0")]  # pool-1 claims pool-0's node


async def test_two_inference_nodes_on_one_node_never_both_count_it(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    async with rig(tmp_path, LAYOUT, objects=with_duplicate()) as r:
        await wait_for(nodes_ready(r, ["box-1", "box-2"]), within=90)
        await wait_for(lambda: any(ready_on(r, b) == 2 for b in ("box-0", "box-dup")), within=60)
        await wait_for(lambda: pods_created(r, "box-dup") >= 1 and pods_created(r, "box-0") >= 1, within=30)
        claims = uuid_claims(r)
        record.update(
            box_dup_reasons=[(device(r, "box-dup", i).get("validation") or {}).get("reason") for i in (0, 1)],
            box_dup_stake=str(stake_of(r, "box-dup")),
            pool_1_vram=status_of(r.cluster, "OperatorPool", "pool-1").get("validatedVRAMMiB"),
        )
        assert min(stake_of(r, "box-dup"), stake_of(r, "box-0")) == 0, record
        assert all(len(n) == 1 for n in claims.values()), claims


async def test_admission_rejections_back_off_and_are_named(tmp_path: Path, record: dict[str, Any]) -> None:
    async with rig(tmp_path, LAYOUT, objects=with_duplicate()) as r:
        await wait_for(nodes_ready(r, ["box-1", "box-2"]), within=90)
        await wait_for(lambda: any(ready_on(r, b) == 2 for b in ("box-0", "box-dup")), within=60)
        loser = "box-dup" if ready_on(r, "box-0") == 2 else "box-0"
        winner = "box-0" if loser == "box-dup" else "box-dup"
        start, before = r.proxy.mark(), pods_created(r, loser)

        def named() -> bool:
            return says(r, loser, "OutOf") or says(r, loser, winner)

        with contextlib.suppress(TimeoutError):
            await wait_for(named, within=20)
        seconds = r.proxy.mark() - start
        recreated = pods_created(r, loser) - before
        conds = status_of(r.cluster, "InferenceNode", loser).get("conditions") or []
        record.update(
            loser=loser,
            pods_before=before,
            pods_recreated=recreated,
            over_s=round(seconds, 1),
            conditions={c["type"]: f"{c.get('reason')}: {c.get('message', '')[:120]}" for c in conds},
        )
        assert named(), record  # the conflict (admission rejection or the other claimant) is named
        assert recreated <= 2 + seconds / 5, record  # backs off instead of a tight loop


async def test_a_foreign_pod_holding_a_gpu(tmp_path: Path, record: dict[str, Any]) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "someone-elses-job", "namespace": "default"},
        "spec": {
            "nodeName": "gpu-1",
            "containers": [
                {"name": "job", "image": "busybox", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
            ],
        },
    }
    async with rig(tmp_path, LAYOUT, objects=[*LAYOUT.objects(), foreign]) as r:
        await wait_for(nodes_ready(r, ["box-0", "box-2"]), within=90)
        start, before = r.proxy.mark(), pods_created(r, "box-1")
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: says(r, "box-1", "OutOf"), within=20)
        seconds = r.proxy.mark() - start
        recreated = pods_created(r, "box-1") - before
        record.update(
            pods_recreated=recreated,
            over_s=round(seconds, 1),
            ready=status_of(r.cluster, "InferenceNode", "box-1").get("readyDevices"),
        )
        assert status_of(r.cluster, "InferenceNode", "box-1").get("readyDevices") == 1
        assert says(r, "box-1", "OutOf"), record
        assert recreated <= 2 + seconds / 5, record


async def test_missing_pool_runs_nothing_and_says_so(tmp_path: Path, record: dict[str, Any]) -> None:
    objs = [*LAYOUT.objects(), inode("box-orphan", "ghost-pool", "gpu-2")]
    async with rig(tmp_path, Layout(nodes=2, pools=2), objects=objs) as r:
        await wait_for(nodes_ready(r, ["box-0", "box-1"]), within=90)
        named = await wait_for(lambda: says(r, "box-orphan", "ghost-pool"), within=30)
        record.update(named_after_s=round(named, 1), pods=pods_created(r, "box-orphan"))
        assert stake_of(r, "box-orphan") == 0
        assert pods_created(r, "box-orphan") == 0


async def test_deleted_node_is_reported_missing_and_stops_counting(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    async with rig(tmp_path, LAYOUT) as r:
        await wait_for(r.converged(), within=90)
        nodes = r.cluster.store.resolve("", "v1", "nodes")
        r.cluster.store.delete(nodes, None, "gpu-2", actor="test")
        try:
            took = await wait_for(lambda: stake_of(r, "box-2") == 0, within=30)
        except TimeoutError:
            took = -1.0
        conds = status_of(r.cluster, "InferenceNode", "box-2").get("conditions") or []
        record.update(
            stake_zero_after_s=round(took, 1), conditions={c["type"]: c.get("reason") for c in conds}
        )
        assert took >= 0, record
        assert says(r, "box-2", "gpu-2", "not found") or says(r, "box-2", "NodeNotFound"), record
