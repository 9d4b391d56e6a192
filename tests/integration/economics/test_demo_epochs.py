"""``gpufleet demo --epochs``: the demo closes two short epochs after its rollouts (subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import pytest

from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.units import INT

pytestmark = pytest.mark.timeout(300)


def test_demo_closes_two_epochs_with_rewards_following_traffic() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet", "demo", "--json", "--epochs"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, (
        f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    result = json.loads(proc.stdout)
    phase = result["phases"][-1]
    assert (phase["name"], phase["outcome"]) == ("two epochs close (rewards and points)", "EpochsClosed")
    epochs = result["epochs"]
    assert [e["number"] for e in epochs] == [1, 2]
    for e in epochs:
        rewards = sum(int(Decimal(p["reward"]) * INT) for p in e["pools"])
        assert rewards == expected_reward_emissions(e["number"])
        # equal stake: rewards follow the jobs each pool served (times eligible time)
        by_pool = {p["pool"]: p for p in e["pools"]}
        ranked_jobs = sorted(
            by_pool, key=lambda k: by_pool[k]["completedJobs"] * Decimal(by_pool[k]["eligibility"])
        )
        ranked_reward = sorted(by_pool, key=lambda k: Decimal(by_pool[k]["reward"]))
        assert ranked_jobs == ranked_reward
    last = {p["pool"]: p for p in epochs[1]["pools"]}
    penalised = [p for p, line in last.items() if line["eligibility"] != "1"]
    assert len(penalised) == 1


def test_epochs_from_the_real_router_of_the_traffic_phase() -> None:
    """``--traffic --epochs``: Envoy + fake engines serve; the epochs count that router's completions."""
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet", "demo", "--json", "--traffic", "--epochs"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, (
        f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    result = json.loads(proc.stdout)
    names = [p["name"] for p in result["phases"]]
    assert names.index("requests through the stake-weighted router (Envoy)") < names.index(
        "two epochs close (rewards and points)"
    )
    phase = result["phases"][-1]
    assert phase["outcome"] == "EpochsClosed"
    assert "the traffic phase's router" in phase["detail"]
    epochs = result["epochs"]
    for e in epochs:
        assert sum(int(Decimal(p["reward"]) * INT) for p in e["pools"]) == expected_reward_emissions(
            e["number"]
        )
        jobs = sum(p["completedJobs"] for p in e["pools"])
        assert jobs > 0
    # every request of each k step was counted once, in its epoch (the phase checks all were routed)
    assert sum(p["completedJobs"] for p in epochs[0]["pools"]) == sum(
        p["completedJobs"] for p in epochs[1]["pools"]
    )
