"""The simulator against theory and against the router: the three validation checks of #18.

1. Job shares equal the router's intended shares (``gpufleet.router.weights``) within
   statistical bounds, for the same weights.
2. A uniform fleet at k = 0 reproduces the M/M/c queueing delay (Erlang C) within 5%.
3. The same seed gives the same output byte for byte (and another seed does not).
"""

from __future__ import annotations

import math

import pytest

from gpufleet.simulate.engine import run
from gpufleet.simulate.metrics import summarise
from gpufleet.simulate.report import to_json

from .conftest import small


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c (Erlang's C formula)."""
    term = 1.0
    total = 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    top = term * offered / servers * servers / (servers - offered)
    return top / (total + top)


def test_erlang_c_formula_known_value() -> None:
    # Textbook value: c = 2, a = 1 -> C = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_uniform_fleet_at_k0_reproduces_erlang_c_within_5_percent() -> None:
    # 2 devices x 2 slots, every slot an exponential server of rate 1/s (100-token mean at 100 tok/s),
    # a router that finds any free slot and queues FIFO: M/M/4 at rho = 0.6.
    scn = small(
        seed=3,
        duration_s=200_000.0,
        warmup_s=200.0,
        sample_interval_s=10_000.0,
        operators__count=2,
        operators__devices_per_operator={1: 1},
        operators__gpus={"h100-sxm": 1},
        models=[{"name": "m", "concurrency": 2, "throughput": {"h100-sxm": 100.0}, "batching_alpha": 0.0}],
        arrivals={"load": 0.6},
    )
    raw = run(scn)
    servers = 4
    lam = raw.fleet.model_capacity_rps[0] * 0.6
    mu = 1.0
    c = erlang_c(servers, lam / mu)
    wq = c / (servers * mu - lam)
    delays = raw.queue_delay
    assert len(delays) > 400_000
    sim_wq = sum(delays) / len(delays)
    sim_wait_share = sum(1 for x in delays if x > 0) / len(delays)
    assert sim_wq == pytest.approx(wq, rel=0.05)
    assert sim_wait_share == pytest.approx(c, rel=0.05)
    # Busy slot-seconds over the measured window: the offered load (Little's law).
    capacity = sum(cap * up for cap, up in zip(raw.fleet.dev_cap, raw.dev_up_s, strict=True))
    assert sum(raw.dev_busy_slot_s) / capacity == pytest.approx(0.6, rel=0.02)
    assert sum(raw.dev_up_s) == pytest.approx(2 * (200_000.0 - 200.0))


@pytest.mark.parametrize("policy", ["edf", "random"])
def test_job_shares_match_router_intended_shares(policy: str) -> None:
    # Caps never bind (64 slots per device at 5% load), so every pick is the router's choice.
    scn = small(
        duration_s=4000.0,
        operators__count=12,
        models=[{"name": "m", "concurrency": 64, "throughput": {"rtx-4090": 50.0, "h100-sxm": 100.0}}],
        arrivals={"load": 0.05},
        router={"policy": policy, "attempts": 3, "overflow": "queue"},
        k={"mode": "static", "value": 0.0005},
    )
    raw = run(scn)
    total = sum(raw.dev_jobs)
    assert total > 15_000
    intended = raw.intended_share
    assert sum(intended) == pytest.approx(1.0)
    assert max(intended) / min(intended) > 5, "the test needs unequal weights"
    for d, share in enumerate(intended):
        expected = share * total
        sigma = math.sqrt(total * share * (1 - share))
        if policy == "edf":
            # EDF is deterministic: every host is within a couple of picks of its share (the
            # jobs still in flight at the end of the run make up the slack).
            assert abs(raw.dev_jobs[d] - expected) <= max(3.0, 0.01 * expected), d
        else:
            assert abs(raw.dev_jobs[d] - expected) <= 4.5 * sigma + 1, d


def test_k0_gives_equal_shares() -> None:
    scn = small(
        duration_s=2000.0,
        models=[{"name": "m", "concurrency": 64, "throughput": {"rtx-4090": 50.0, "h100-sxm": 100.0}}],
        arrivals={"load": 0.05},
        k={"mode": "static", "value": 0.0},
    )
    raw = run(scn)
    assert len(set(raw.intended_share)) == 1
    jobs = raw.dev_jobs
    assert max(jobs) - min(jobs) <= 2


def test_same_seed_same_bytes_other_seed_differs() -> None:
    scn = small(
        duration_s=300.0,
        warmup_s=30.0,
        router={"policy": "random", "attempts": 2, "overflow": "retry"},
        k={"mode": "static", "value": 0.001},
        arrivals={"load": 0.8},
    )
    first = to_json(summarise(run(scn)))
    second = to_json(summarise(run(scn)))
    assert first == second
    other = to_json(
        summarise(
            run(
                small(
                    seed=8,
                    duration_s=300.0,
                    warmup_s=30.0,
                    router={"policy": "random", "attempts": 2, "overflow": "retry"},
                    k={"mode": "static", "value": 0.001},
                    arrivals={"load": 0.8},
                )
            )
        )
    )
    assert other != first
