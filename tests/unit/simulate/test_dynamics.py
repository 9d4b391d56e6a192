"""Controllers, penalties, outages and overflow inside a run (each a small, fast scenario)."""

from __future__ import annotations

import pytest

from gpufleet.simulate.engine import run
from gpufleet.simulate.metrics import summarise

from .conftest import small

GPUS = {"rtx-4090": 50.0, "h100-sxm": 100.0}


def test_k_controller_lowers_k_after_a_load_step_up() -> None:
    scn = small(
        duration_s=1200.0,
        operators__count=30,
        models=[{"name": "m", "concurrency": 4, "throughput": GPUS}],
        arrivals={"load": 0.2, "steps": [{"at_s": 600.0, "load": 0.95}]},
        router={"policy": "edf", "attempts": 3, "overflow": "retry"},
        k={"mode": "controller", "controller": {"k_max": 0.001, "interval_seconds": 15}},
    )
    summary = summarise(run(scn))
    before = [s["k"] for s in summary["series"] if 400 <= s["t"] < 600]
    after = [s["k"] for s in summary["series"] if s["t"] >= 1000]
    assert before
    assert after
    assert min(before) == pytest.approx(0.001)  # idle: k at its maximum
    assert max(after) < 0.0005  # busy: k fell
    assert summary["k"]["changes"] > 0
    assert "kcontrol" in summary["sources"]["k_controller"]


def test_flaky_operator_is_penalised_and_gets_no_jobs_while_out() -> None:
    scn = small(
        duration_s=600.0,
        operators__count=10,
        operators__flaky_fraction=0.1,
        operators__flaky_failure_rate=0.5,
        models=[{"name": "m", "concurrency": 4, "throughput": GPUS}],
        arrivals={"load": 0.5},
        reputation={
            "enabled": True,
            "hour_s": 60.0,
            "update_interval_s": 10.0,
            "min_sample": 50,
            "penalty_min_requests": 20,
        },
    )
    raw = run(scn)
    assert raw.penalties, "a 50% failure rate must cost a penalty"
    first = raw.penalties[0]
    flaky = first["pool"]
    assert raw.fleet.op_failure[flaky] == 0.5
    assert first["level"] == 1
    # The first rung is 1 h = 60 s on this compressed clock: the pool is out in between.
    assert first["until"] == pytest.approx(first["t"] + 60.0)
    assert all(p["pool"] == flaky for p in raw.penalties)
    # Its reputation dropped (completion tier) before the penalty decision, too.
    assert max(raw.reputation_final[d] for d in raw.fleet.op_devices[flaky]) < 1
    series = [s for s in raw.series if first["t"] < s["t"] < first["until"]]
    assert series
    assert all(s["penalised_pools"] == 1 for s in series)


def test_scheduled_outage_fails_in_flight_and_retries_elsewhere() -> None:
    scn = small(
        duration_s=300.0,
        operators__count=10,
        models=[{"name": "m", "concurrency": 4, "throughput": GPUS}],
        arrivals={"load": 0.5},
        outages={"scheduled": [{"at_s": 100.0, "duration_s": 50.0, "fraction": 0.3}]},
    )
    raw = run(scn)
    down = [s["devices_down"] for s in raw.series]
    assert max(down) == round(0.3 * raw.fleet.n_devices)
    assert down[-1] == 0
    assert sum(raw.dev_failures) > 0  # in-flight requests on the downed devices
    # Each was retried once on another device; only a retry that landed on a device going down
    # in the same instant can fail twice.
    assert raw.failed <= sum(raw.dev_failures) // 10


def test_overflow_retry_costs_queueing_delay_and_high_k_concentrates_jobs() -> None:
    base = {
        "duration_s": 400.0,
        "warmup_s": 50.0,
        "operators__count": 40,
        "models": [{"name": "m", "concurrency": 2, "throughput": GPUS}],
        "arrivals": {"load": 0.8},
        "router": {"policy": "edf", "attempts": 2, "overflow": "retry", "retry_after_s": 1.0},
    }
    low = summarise(run(small(k={"mode": "static", "value": 0.0}, **base)))
    high = summarise(run(small(k={"mode": "static", "value": 0.01}, **base)))
    assert high["stake_alignment"]["gini_jobs"] > low["stake_alignment"]["gini_jobs"]
    assert high["by_stake_decile"][-1]["job_share"] > low["by_stake_decile"][-1]["job_share"]
    assert high["requests"]["overflow_retries"] > low["requests"]["overflow_retries"]
    # A retried request waited at least Retry-After (None: beyond the retry limit, i.e. infinite).
    p99 = high["queue_delay_s"]["p99"]
    assert p99 is None or p99 >= 1.0
    low_p99 = low["queue_delay_s"]["p99"]
    assert low_p99 is not None
    assert p99 is None or low_p99 < p99


def test_reject_overflow_counts_rejections() -> None:
    scn = small(
        duration_s=200.0,
        models=[{"name": "m", "concurrency": 1, "throughput": GPUS}],
        arrivals={"load": 1.5},
        router={"policy": "random", "attempts": 1, "overflow": "reject"},
    )
    summary = summarise(run(scn))
    assert summary["requests"]["rejected"] > 0
    assert summary["queue_delay_s"]["p99"] is None or summary["queue_delay_s"]["max"] is None


def test_host_queue_mode_waits_behind_the_picked_host() -> None:
    # Envoy with a per-host connection limit: round robin (k = 0) over one fast and one slow GPU
    # sends each half the requests; at 80% of the fleet's capacity the slow one (1/3 of it) gets
    # 1.2x what it can serve and its pending queue grows by ~0.2 requests/s.
    scn = small(
        duration_s=600.0,
        warmup_s=100.0,
        operators__count=2,
        operators__devices_per_operator={1: 1},
        operators__gpus={"h100-sxm": 1},
        operators__slow_fraction=0.5,
        operators__slow_factor=0.5,
        models=[{"name": "m", "concurrency": 2, "throughput": {"h100-sxm": 100.0}}],
        arrivals={"load": 0.8},
        router={"policy": "edf", "overflow": "host"},
    )
    raw = run(scn)
    summary = summarise(raw)
    assert summary["requests"]["overflow_retries"] == 0
    assert summary["queue_delay_s"]["p99"] > 30  # the slow host's backlog
    assert raw.series[-1]["queued"] > 50
    # Round robin still gave both the same number of requests (all drain after arrivals stop).
    assert abs(raw.dev_jobs[0] - raw.dev_jobs[1]) <= 1


def test_host_queue_requests_can_still_fail_when_they_start() -> None:
    # Every request of a saturated flaky host waits in its queue first; failures must still be
    # charged when they finally start (not only to requests that found a free slot at once).
    scn = small(
        duration_s=300.0,
        operators__count=2,
        operators__devices_per_operator={1: 1},
        operators__gpus={"h100-sxm": 1},
        operators__flaky_fraction=0.5,
        operators__flaky_failure_rate=0.3,
        models=[{"name": "m", "concurrency": 1, "throughput": {"h100-sxm": 100.0}}],
        arrivals={"load": 0.95},
        router={"policy": "edf", "overflow": "host"},
    )
    raw = run(scn)
    flaky = 0 if raw.fleet.op_failure[0] == 0.3 else 1
    d = raw.fleet.op_devices[flaky][0]
    tried = raw.dev_jobs[d] + raw.dev_failures[d]
    assert raw.dev_failures[d] == pytest.approx(0.3 * tried, rel=0.2)
