"""Hostile node agents: garbage, huge, slow, trickling, wrong types, unknown engine, identity flips,
cloned uuids. None may crash or freeze the operator, raise its memory by more than 20 MB, stall
healthy nodes by more than 20%, or make one GPU count twice (#21: F3, F4, F5, F8, F10)."""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.faults import agents as hostile
from tests.faults.fleet import GPUS_PER_NODE, NS, Layout, Rig, rig, status_of, wait_for

AWAITING = "AwaitingHardwareReport"
GENERIC_WAIT = "waiting for the node agent's hardware report"
POOL_STAKE = Decimal(100_000)  # fleet.pool(): 10000 self + 90000 delegated INT


def device(r: Rig, box: str, index: int) -> dict[str, Any]:
    for d in status_of(r.cluster, "InferenceNode", box).get("devices") or []:
        if d.get("index") == index:
            return dict(d)
    return {}


def reason(r: Rig, box: str, index: int) -> str:
    return str((device(r, box, index).get("validation") or {}).get("reason", ""))


def nodes_ready(r: Rig, boxes: list[str]) -> Any:
    def check() -> bool:
        return all(
            status_of(r.cluster, "InferenceNode", b).get("readyDevices") == GPUS_PER_NODE for b in boxes
        )

    check.__name__ = f"{', '.join(boxes)} all GPUs ready"
    return check


def message(r: Rig, box: str, index: int) -> str:
    return str((device(r, box, index).get("validation") or {}).get("message", ""))


def ready_of(r: Rig, box: str) -> int:
    return int(status_of(r.cluster, "InferenceNode", box).get("readyDevices") or 0)


def pool_stake(r: Rig, pool_name: str) -> Decimal:
    """Effective stake the pool's InferenceNodes report over all their devices."""
    total = Decimal(0)
    for obj in r.cluster.objects("gpufleet.io/v1alpha1", "InferenceNode", NS):
        if obj["spec"]["poolRef"]["name"] != pool_name:
            continue
        for d in (obj.get("status") or {}).get("devices") or []:
            total += Decimal(str(d.get("effectiveStake") or 0))
    return total


def uuid_claims(r: Rig) -> dict[str, list[str]]:
    """GPU uuid -> the InferenceNodes whose status counts it (valid, with stake)."""
    claims: dict[str, list[str]] = {}
    for obj in r.cluster.objects("gpufleet.io/v1alpha1", "InferenceNode", NS):
        for d in (obj.get("status") or {}).get("devices") or []:
            valid = (d.get("validation") or {}).get("valid")
            if d.get("uuid") and valid and Decimal(str(d.get("effectiveStake") or 0)) > 0:
                claims.setdefault(d["uuid"], []).append(obj["metadata"]["name"])
    return claims


def rejected_status_writes(r: Rig) -> int:
    return sum(1 for e in r.proxy.log if e.method == "PATCH" and e.status == 422)


async def test_unknown_engine_blocks_one_device_and_flips_count_once(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    """F4: an unknown engine is a blocked device with a reason, never a failed status write; an agent
    whose GPU uuid changes on every answer still counts one GPU, and the pool's stake is not exceeded."""
    layout = Layout(nodes=4, pools=1)
    async with rig(tmp_path, layout, start=False) as r:
        r.proxy.agents["box-1-gpu-0"] = {"/v1/hardware": hostile.unknown_engine("trtllm")}
        r.proxy.agents["box-2-gpu-0"] = {"/v1/hardware": hostile.identity_flip()}
        await r.start_operator()
        took = await wait_for(nodes_ready(r, ["box-0", "box-2", "box-3"]), within=90)

        def blocked() -> bool:
            return reason(r, "box-1", 0) == "UnknownEngine" and bool(device(r, "box-1", 1).get("ready"))

        await wait_for(blocked, within=30)

        def pool_settled() -> bool:  # 7 valid GPUs; node statuses catch up with the pool's VRAM
            return status_of(r.cluster, "OperatorPool", "pool-0").get("devices") == 7 and (
                pool_stake(r, "pool-0") <= POOL_STAKE
            )

        try:
            settle = await wait_for(pool_settled, within=30)
        except TimeoutError:
            settle = -1.0
        message = (device(r, "box-1", 0).get("validation") or {}).get("message", "")
        stake = pool_stake(r, "pool-0")
        record.update(
            healthy_converge_s=round(took, 1),
            pool_settled_s=round(settle, 1),
            unknown_engine_message=message,
            rejected_status_writes=rejected_status_writes(r),
            pool_stake_reported=str(stake),
            device_stakes={
                f"{o['metadata']['name']}/{d.get('index')}": d.get("effectiveStake")
                for o in r.cluster.objects("gpufleet.io/v1alpha1", "InferenceNode", NS)
                for d in (o.get("status") or {}).get("devices") or []
            },
            pool_status={
                k: v
                for k, v in status_of(r.cluster, "OperatorPool", "pool-0").items()
                if k not in ("conditions", "reputation")
            },
        )
        assert "trtllm" in message
        assert rejected_status_writes(r) == 0
        assert not device(r, "box-1", 0).get("ready")
        assert Decimal(str(device(r, "box-1", 0).get("effectiveStake") or 0)) == 0
        assert settle >= 0, record
        assert stake <= POOL_STAKE
        assert r.operator.alive()


async def test_malformed_and_hanging_agents_are_named_in_status(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    layout = Layout(nodes=4, pools=1)
    async with rig(tmp_path, layout, start=False) as r:
        r.proxy.agents["box-1-gpu-0"] = {"/v1/hardware": hostile.garbage()}
        r.proxy.agents["box-2-gpu-0"] = {"/v1/hardware": hostile.wrong_types()}
        r.proxy.agents["box-3-gpu-0"] = {"/v1/hardware": hostile.slow(60)}
        r.proxy.agents["box-3-gpu-1"] = {"/v1/hardware": hostile.trickle(20)}
        await r.start_operator()
        await wait_for(nodes_ready(r, ["box-0"]), within=90)
        bad = [("box-1", 0), ("box-2", 0), ("box-3", 0), ("box-3", 1)]

        def message(b: str, i: int) -> str:
            return str((device(r, b, i).get("validation") or {}).get("message", ""))

        def explained() -> bool:  # a reason of its own, or the pending message names the agent's error
            return all(
                reason(r, b, i) not in ("", AWAITING) or message(b, i) not in ("", GENERIC_WAIT)
                for b, i in bad
            )

        try:
            await wait_for(explained, within=30)
        finally:
            record.update(reasons={f"{b}/{i}": f"{reason(r, b, i)}: {message(b, i)}" for b, i in bad})
            record.update(operator_alive=r.operator.alive())
        for b, i in bad:
            assert not device(r, b, i).get("ready")


async def test_a_huge_report_does_not_raise_operator_memory(tmp_path: Path, record: dict[str, Any]) -> None:
    layout = Layout(nodes=3, pools=1)
    async with rig(tmp_path, layout) as r:
        await wait_for(r.converged(), within=90)
        before = r.operator.rss_mib()
        peak_before = r.operator.peak_rss_mib()
        served: list[float] = []
        inner = hostile.huge(100)

        async def counting(request: Any, upstream: Any) -> Any:
            try:
                return await inner(request, upstream)
            finally:
                served.append(time.monotonic())

        r.proxy.agents["box-0-gpu-0"] = {"/v1/hardware": counting}
        pods = r.cluster.store.resolve("", "v1", "pods")
        r.cluster.store.delete(pods, NS, "box-0-gpu-0", actor="test")  # a new pod: its report is fetched
        await wait_for(lambda: bool(served), within=90)
        await wait_for(nodes_ready(r, ["box-1", "box-2"]), within=30)
        after, peak = r.operator.rss_mib(), r.operator.peak_rss_mib()
        record.update(
            rss_before_mib=round(before, 1),
            rss_after_mib=round(after, 1),
            peak_before_mib=round(peak_before, 1),
            peak_after_mib=round(peak, 1),
            report_mib=100,
        )
        assert r.operator.alive()
        assert after - before <= 20, record
        assert peak - max(before, peak_before) <= 20, record


async def test_cloned_uuids_count_once(tmp_path: Path, record: dict[str, Any]) -> None:
    layout = Layout(nodes=3, pools=2)
    async with rig(tmp_path, layout, start=False) as r:
        clone = {i: hostile.node_uuid(0, i) for i in range(GPUS_PER_NODE)}  # box-0's GPUs
        for g in range(GPUS_PER_NODE):
            r.proxy.agents[f"box-1-gpu-{g}"] = {"/v1/hardware": hostile.cloned_uuids(clone)}
        await r.start_operator()
        await wait_for(nodes_ready(r, ["box-2"]), within=90)
        # box-0 and box-1 claim the same two GPUs: whichever validates first serves, the other waits.
        await wait_for(lambda: any(ready_of(r, b) == GPUS_PER_NODE for b in ("box-0", "box-1")), within=60)
        winner = "box-0" if ready_of(r, "box-0") == GPUS_PER_NODE else "box-1"
        loser = "box-1" if winner == "box-0" else "box-0"

        def reported() -> bool:
            return all(reason(r, loser, g) not in ("", AWAITING) for g in range(GPUS_PER_NODE))

        with contextlib.suppress(TimeoutError):
            await wait_for(reported, within=30)
        claims = uuid_claims(r)
        record.update(
            winner=winner,
            loser_reasons=[f"{reason(r, loser, g)}: {message(r, loser, g)}" for g in range(GPUS_PER_NODE)],
            double_claims={u: n for u, n in claims.items() if len(n) > 1},
        )
        assert reported(), record
        assert all(winner in message(r, loser, g) for g in range(GPUS_PER_NODE)), record  # names the conflict
        assert all(len(names) == 1 for names in claims.values()), claims


async def test_hanging_agents_do_not_stall_healthy_nodes(tmp_path: Path, record: dict[str, Any]) -> None:
    healthy = [f"box-{i}" for i in range(4)]
    (tmp_path / "alone").mkdir()
    (tmp_path / "hanging").mkdir()
    async with rig(tmp_path / "alone", Layout(nodes=8, pools=1)) as r:  # the same fleet, all honest
        alone = await wait_for(nodes_ready(r, healthy), within=120)
    async with rig(tmp_path / "hanging", Layout(nodes=8, pools=1), start=False) as r:
        for i in range(4, 8):
            for g in range(GPUS_PER_NODE):
                r.proxy.agents[f"box-{i}-gpu-{g}"] = {"/v1/hardware": hostile.slow(60)}
        await r.start_operator()
        beside = await wait_for(nodes_ready(r, healthy), within=120)
    record.update(healthy_alone_s=round(alone, 1), healthy_beside_8_hanging_agents_s=round(beside, 1))
    record.update(slowdown=round(beside / alone, 2))
    assert beside <= 1.2 * alone + 1.0, record
