"""`gpufleet demo --once --json` end to end, as a user runs it: a subprocess on a fresh port."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    kubeconfig = tmp_path_factory.mktemp("demo") / "kubeconfig"
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet", "demo", "--json", "--kubeconfig-out", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, (
        f"demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    result["_kubeconfig"] = kubeconfig
    return result


def _devices(result: dict[str, Any], inode: str) -> list[dict[str, Any]]:
    return [d for d in result["devices"] if d["inferenceNode"] == inode]


def test_phases_as_expected(demo: dict[str, Any]) -> None:
    outcomes = [(p["name"], p["outcome"], p["expected"]) for p in demo["phases"]]
    assert demo["ok"], outcomes
    assert [p["outcome"] for p in demo["phases"]] == ["Converged", "Succeeded", "Halted"]


def test_announcement_vram_normalisation(demo: dict[str, Any]) -> None:
    # Operator A: 100,000 INT over 4x RTX 4090 -> 25,000 each; operator B: one A100 -> 100,000.
    rtx = _devices(demo, "rtx4090-box")
    assert len(rtx) == 4
    assert {Decimal(d["effectiveStake"]) for d in rtx} == {Decimal(25000)}
    assert {d["vramShare"] for d in rtx} == {0.25}
    (a100,) = _devices(demo, "a100-box")
    assert Decimal(a100["effectiveStake"]) == 100000
    assert a100["priorityScore"] > rtx[0]["priorityScore"] > 1


def test_blocked_devices_with_reasons(demo: dict[str, Any]) -> None:
    blocked = {d["inferenceNode"]: d for d in demo["blocked"]}
    assert set(blocked) == {"mystery-box", "liar-box"}
    assert blocked["mystery-box"]["reason"] == "UnknownProduct"
    assert blocked["liar-box"]["reason"] == "VRAMMismatch"
    for dev in blocked.values():
        assert dev["message"]
        assert not dev["routable"]
        assert dev["effectiveStake"] in (None, "0")


def test_pool_minimum_self_stake(demo: dict[str, Any]) -> None:
    pools = {p["name"]: p for p in demo["pools"]}
    assert pools["operator-a"]["minimumSelfStakeMet"] is True
    assert pools["operator-c"]["minimumSelfStakeMet"] is False


def test_good_release_then_bad_release_rolls_back_and_halts(demo: dict[str, Any]) -> None:
    releases = {r["version"]: r for r in demo["releases"]}
    assert releases["1.2.0"]["halted"] is True
    assert releases["1.1.0"]["halted"] is False
    healthy = {"rtx4090-box", "a100-box", "l40s-box"}
    nodes = {n["name"]: n for n in demo["inferenceNodes"]}
    for name in healthy:
        assert nodes[name]["currentVersion"] == "1.1.0", nodes[name]
    rolled_back = {n for n in healthy if nodes[n]["rolledBack"]}
    # The bad release's failure budget is 2: it halts once two nodes have failed and rolled back.
    # Nodes of other pools that had already started it roll back too; none stays on 1.2.0.
    assert len(rolled_back) >= 2
    assert len(releases["1.2.0"]["failedNodes"]) >= 2
    # A node counts against the budget when it failed (crash loop, deadline, regression); one
    # that was mid-rollout when the release halted rolls back for that reason and is not "failed".
    for name in rolled_back:
        failed = f"fleet/{name}" in releases["1.2.0"]["failedNodes"]
        assert failed or nodes[name]["rolledBackReason"] == "ReleaseHalted", nodes[name]
        if failed:
            assert nodes[name]["rolledBackReason"] in {"CrashLoop", "ProgressDeadlineExceeded"}
    for node in nodes.values():
        assert (node["rollout"] or {}).get("phase") not in {
            "PreCheck",
            "Progressing",
            "PostCheck",
            "RollingBack",
        }
    reasons = {e["reason"] for e in demo["events"]}
    assert "RolledBack" in reasons


def test_kubeconfig_written(demo: dict[str, Any]) -> None:
    config = yaml.safe_load(Path(demo["_kubeconfig"]).read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("http://127.0.0.1:")
