"""The demo's picture of the fleet is read from statuses, and the view shows what matters."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from gpufleet_demo.snapshot import fleet_snapshot
from gpufleet_demo.view import render


def _inode(name: str, pool: str, devices: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"poolRef": {"name": pool}, "nodeName": f"k8s-{name}"},
        "status": {"devices": devices, "conditions": [], **status},
    }


def _device(
    index: int, *, valid: bool = True, reason: str = "Valid", stake: str | None = "25000"
) -> dict[str, Any]:
    return {
        "index": index,
        "product": "NVIDIA GeForce RTX 4090",
        "vramMiB": 24564,
        "validation": {"valid": valid, "reason": reason, "message": f"GPU {index}: {reason}"},
        "engine": "vllm" if valid else None,
        "vramShare": 0.25 if valid else None,
        "effectiveStake": stake if valid else "0",
        "priorityScore": 3.5 if valid else None,
        "ready": valid,
        "routable": valid,
    }


def _snapshot() -> dict[str, Any]:
    inodes = [
        _inode("b-box", "pool-b", [_device(0, valid=False, reason="VRAMMismatch")], currentVersion="1.0.0"),
        _inode("a-box", "pool-a", [_device(1), _device(0)], currentVersion="1.1.0"),
    ]
    pools = [
        {
            "metadata": {"name": "pool-a"},
            "status": {
                "totalStake": "100000",
                "selfStakeRatio": "0.05",
                "conditions": [{"type": "MinimumSelfStake", "status": "False", "message": "below 0.1"}],
            },
        }
    ]
    releases = [
        {
            "metadata": {"name": "r2"},
            "spec": {"version": "1.2.0"},
            "status": {"halted": True, "failedNodes": ["fleet/a-box"]},
        }
    ]
    events = [
        {
            "involvedObject": {"kind": "InferenceNode", "name": "a-box", "namespace": "other"},
            "reason": "Hidden",
            "lastTimestamp": "2026-01-01T00:00:01Z",
        },
        {
            "involvedObject": {"kind": "InferenceNode", "name": "a-box", "namespace": "fleet"},
            "reason": "RolledBack",
            "type": "Warning",
            "message": "rolled back",
            "lastTimestamp": "2026-01-01T00:00:02Z",
        },
    ]
    return fleet_snapshot(inodes=inodes, pools=pools, releases=releases, events=events, namespace="fleet")


def test_rows_are_ordered_and_blocked_devices_listed() -> None:
    snap = _snapshot()
    assert [(d["inferenceNode"], d["index"]) for d in snap["devices"]] == [
        ("a-box", 0),
        ("a-box", 1),
        ("b-box", 0),
    ]
    assert [d["reason"] for d in snap["blocked"]] == ["VRAMMismatch"]
    assert snap["pools"][0]["minimumSelfStakeMet"] is False
    assert snap["releases"][0]["halted"] is True
    assert [e["reason"] for e in snap["events"]] == ["RolledBack"]


def test_view_shows_shares_blocks_halts_and_events() -> None:
    console = Console(record=True, width=200)
    console.print(render(_snapshot(), phase="final state", progress=("rollout 1.1.0", 2, 3)))
    text = console.export_text()
    assert "25,000" in text
    assert "GeForce RTX 4090" in text
    assert "BLOCKED" in text
    assert "VRAMMismatch" in text
    assert "NOT MET" in text
    assert "HALTED" in text
    assert "RolledBack" in text
    assert "2/3" in text
