"""InferenceNode and OperatorPool status: shares, conditions, and write-skipping."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gpufleet.api.quantity import parse_int_amount
from gpufleet.devices import observe, plan_devices
from gpufleet.objects import InodeView, NodeView, PodView, PoolView
from gpufleet.status import (
    INODE_KEYS,
    PoolContext,
    ReleaseInfo,
    inode_status,
    inode_validated_vram,
    pool_status,
    share_events,
    status_patch,
)
from tests.unit.operator.bodies import CATALOG, device_json, hardware_json, inode_body, node_body, pool_body
from tests.unit.operator.test_fleet import created

NOW = datetime(2026, 3, 1, tzinfo=UTC)
REL = ReleaseInfo("1.0.0", "img@sha256:" + "c" * 64, "EngineRelease stable-1-0-0")


def clock() -> datetime:
    return NOW


def ctx(other: int = 0, stake: str = "100000") -> PoolContext:
    return PoolContext(True, other, parse_int_amount(stake), Decimal(1), Decimal("0.0001"))


def compute(
    obs_vram: dict[int, int],
    pods: list[dict[str, Any]] | None = None,
    pool: PoolContext | None = None,
    status: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    node = NodeView.from_body(node_body(count=4))
    inode = InodeView.from_body(inode_body(status=status))
    obs = {
        i: observe(hardware_json(device_json(0, vram=v)), i, CATALOG, node, None) for i, v in obs_vram.items()
    }
    views = [PodView.from_body(p) for p in pods or []]
    return inode_status(inode, plan_devices(inode, node, CATALOG), views, obs, REL, pool or ctx(), now=clock)


def test_four_4090s_get_a_quarter_each() -> None:
    status, own = compute(dict.fromkeys(range(4), 24564))
    assert own == 4 * 24564
    assert [d["effectiveStake"] for d in status["devices"]] == ["25000"] * 4
    assert [d["vramShare"] for d in status["devices"]] == [0.25] * 4
    assert [d["priorityScore"] for d in status["devices"]] == [3.5] * 4
    gpu = {c["type"]: c for c in status["conditions"]}["GPUValidated"]
    assert (gpu["status"], gpu["reason"]) == ("True", "AllValid")


def test_other_nodes_of_the_pool_dilute_the_share() -> None:
    status, _ = compute(dict.fromkeys(range(4), 24564), pool=ctx(other=4 * 24564))
    assert [d["effectiveStake"] for d in status["devices"]] == ["12500"] * 4


def test_blocked_and_pending_devices_get_no_share_and_are_named() -> None:
    status, own = compute({0: 24564, 1: 49152})
    devs = status["devices"]
    assert own == 24564
    assert devs[0]["effectiveStake"] == "100000"  # the only validated GPU holds the whole stake
    assert devs[1]["validation"]["reason"] == "VRAMMismatch"
    assert devs[1]["effectiveStake"] == "0"
    assert devs[2]["validation"]["reason"] == "AwaitingHardwareReport"
    gpu = {c["type"]: c for c in status["conditions"]}["GPUValidated"]
    assert gpu["status"] == "False"
    assert "GPU 1: VRAMMismatch" in gpu["message"]


def test_ready_needs_gate_and_pod_ready() -> None:
    from tests.unit.operator.bodies import pod_body

    pods = created()
    pods[0] = pod_body(pods[0], ready=True, gate="True")
    status, _ = compute(dict.fromkeys(range(4), 24564), pods=pods)
    assert status["readyDevices"] == 1
    assert [d["ready"] for d in status["devices"]] == [True, False, False, False]
    assert status["devices"][0]["podName"] == "box1-gpu-0"
    assert status["currentVersion"] == "1.0.0"
    assert status["targetVersion"] == "1.0.0"


def test_recomputing_a_written_status_patches_nothing() -> None:
    first, _ = compute(dict.fromkeys(range(4), 24564))
    second, _ = compute(dict.fromkeys(range(4), 24564), status={**first, "rollout": {"phase": "Idle"}})
    assert status_patch({**first, "rollout": {"phase": "Idle"}}, second, INODE_KEYS) is None
    moved, _ = compute(dict.fromkeys(range(4), 24564), pool=ctx(stake="200000"), status=first)
    patch = status_patch(first, moved, INODE_KEYS)
    assert patch is not None
    assert set(patch) == {"devices"}


def test_inode_vram_read_back_matches_computed() -> None:
    status, own = compute({0: 24210, 1: 24564, 2: 49152})
    assert inode_validated_vram(status, CATALOG) == (own, 2, 0)


def test_pool_status_and_minimum_self_stake() -> None:
    ok = pool_status(
        PoolView.from_body(pool_body(self_stake="10", delegated="90")), 98256, 4, 2, 1000, now=clock
    )
    assert ok["totalStake"] == "100"
    assert ok["selfStakeRatio"] == "0.1"
    assert ok["validatedVRAMMiB"] == 98256
    conds = {c["type"]: c for c in ok["conditions"]}
    assert conds["MinimumSelfStake"]["status"] == "True"
    assert conds["Ready"]["status"] == "True"
    low = pool_status(
        PoolView.from_body(pool_body(self_stake="9.99", delegated="90.01")), 0, 0, 0, 1000, now=clock
    )
    conds = {c["type"]: c for c in low["conditions"]}
    assert conds["MinimumSelfStake"]["reason"] == "BelowMinimum"
    assert conds["Ready"]["status"] == "False"


def test_events_for_blocks_and_large_share_moves() -> None:
    before, _ = compute({0: 24564})
    after, _ = compute({0: 24564, 1: 24564, 2: 49152})
    events = share_events(before["devices"], after["devices"], Decimal("0.05"))
    reasons = [(e[1], e[2].split(":")[0]) for e in events]
    assert ("ShareChanged", "GPU 0") in reasons
    assert ("DeviceValidated", "GPU 1") in reasons
    assert ("DeviceBlocked", "GPU 2 blocked (VRAMMismatch)") in reasons
    assert share_events(after["devices"], after["devices"], Decimal("0.05")) == []
