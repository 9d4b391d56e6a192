"""``gpufleet simulate sweep``: the optimal static k per load level, and whether the controller tracks it.

1. **Grid**: for every load level and every k of the grid, one static-k run of the same fleet.
   The *objective* picks, per load level, the largest k (the most stake-aligned routing) whose
   run keeps the metric under the SLO (default: p99 queueing delay < 1 s).
2. **Controller at steady load**: one run per load level with the project's k controller; its
   settled k (mean over the last third) and the SLO metric it achieved, next to the optimum.
3. **Controller after load steps**: one run whose load steps through ``step_loads``; per step,
   the settling time (until k stays within ``settle_band`` of the phase's final k) and the
   overshoot (beyond the final k, as a share of the change).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.simulate.engine import run
from gpufleet.simulate.fleet import build_fleet
from gpufleet.simulate.metrics import r6, summarise
from gpufleet.simulate.scenario import Scenario, with_overrides

DEFAULT_K_GRID: tuple[float, ...] = (0.0, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
DEFAULT_LOADS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
METRICS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "p99_queue_delay_s": lambda s: s["queue_delay_s"]["p99"],
    "p90_queue_delay_s": lambda s: s["queue_delay_s"]["p90"],
    "p99_latency_s": lambda s: s["latency_s"]["p99"],
    "rejected_share": lambda s: s["requests"]["rejected"] / max(1, s["requests"]["measured_arrivals"]),
}


@dataclass(frozen=True)
class SweepPlan:
    k_grid: Sequence[float] = DEFAULT_K_GRID
    loads: Sequence[float] = DEFAULT_LOADS
    metric: str = "p99_queue_delay_s"
    slo: float = 1.0
    duration_s: float = 240.0
    warmup_s: float = 60.0
    controller: bool = True
    controller_duration_s: float = 900.0
    step_loads: Sequence[float] = (0.3, 0.9, 0.5)
    step_phase_s: float = 900.0
    settle_band: float = 0.1
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown objective metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not self.k_grid or not self.loads:
            raise ValueError("the k grid and the load levels must not be empty")


def _value(summary: dict[str, Any], metric: str) -> float:
    v = METRICS[metric](summary)
    return math.inf if v is None else float(v)


def _cell(summary: dict[str, Any], k: float, metric: str, slo: float) -> dict[str, Any]:
    top = summary["by_stake_decile"][-1]
    value = _value(summary, metric)
    return {
        "k": k,
        "objective_value": r6(value),
        "meets_slo": value < slo,
        "p99_queue_delay_s": summary["queue_delay_s"]["p99"],
        "p50_queue_delay_s": summary["queue_delay_s"]["p50"],
        "p99_latency_s": summary["latency_s"]["p99"],
        "p50_latency_s": summary["latency_s"]["p50"],
        "utilisation": summary["utilisation"]["mean"],
        "gini_jobs": summary["stake_alignment"]["gini_jobs"],
        "tv_jobs_vs_stake": summary["stake_alignment"]["total_variation_jobs_vs_stake"],
        "top_decile_job_share": top["job_share"],
        "unstaked_idle_share": summary["unstaked"]["idle_capacity_share"],
        "overflow_retries": summary["requests"]["overflow_retries"],
        "rejected": summary["requests"]["rejected"],
    }


def settle_and_overshoot(
    ts: Sequence[float], ks: Sequence[float], t0: float, t1: float, k_before: float, band: float
) -> dict[str, Any]:
    """Settling time and overshoot of k in [t0, t1) after a step (k_before = k at t0)."""
    idx = [i for i, t in enumerate(ts) if t0 <= t < t1]
    if not idx:
        return {"settling_s": None, "overshoot": None, "k_final": None}
    final = ks[idx[-1]]
    tol = max(band * abs(final), 1e-9)
    settled_at = None
    for i in reversed(idx):
        if abs(ks[i] - final) > tol:
            break
        settled_at = ts[i]
    change = final - k_before
    overshoot = 0.0
    if change:
        beyond = [(k - final) / change for k in (ks[i] for i in idx)]
        overshoot = max(0.0, max(beyond))
    return {
        "k_before": k_before,
        "k_final": final,
        "settling_s": None if settled_at is None else r6(settled_at - t0),
        "overshoot": r6(overshoot),
    }


def run_sweep(
    base: Scenario, plan: SweepPlan, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    common = {"duration_s": plan.duration_s, "warmup_s": plan.warmup_s, **plan.overrides}
    scn0 = with_overrides(base, common)
    fleet = build_fleet(scn0)  # the same fleet for every cell (arrivals depend on load only)
    levels = []
    for load in plan.loads:
        cells = []
        for k in plan.k_grid:
            scn = with_overrides(
                scn0, {"arrivals.load": load, "arrivals.steps": [], "k.mode": "static", "k.value": k}
            )
            summary = summarise(run(scn, fleet))
            cells.append(_cell(summary, k, plan.metric, plan.slo))
            say(f"load {load:.2f} k {k:g}: {plan.metric} = {cells[-1]['objective_value']}")
        meeting = [c["k"] for c in cells if c["meets_slo"]]
        best = max(meeting) if meeting else None
        monotone = best is None or all(c["meets_slo"] for c in cells if c["k"] <= best)
        levels.append({"load": load, "optimal_k": best, "monotone": monotone, "cells": cells})
    result: dict[str, Any] = {
        "scenario": base.name,
        "seed": base.seed,
        "objective": {
            "metric": plan.metric,
            "slo_s": plan.slo,
            "rule": "largest k of the grid whose run keeps the metric under the SLO",
        },
        "k_grid": list(plan.k_grid),
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "fleet": {"devices": fleet.n_devices, "operators": fleet.n_operators, "slots": fleet.total_slots},
        "levels": levels,
    }
    if plan.controller:
        result["controller"] = _controller_runs(scn0, fleet, plan, levels, say)
    return result


def _controller_runs(
    scn0: Scenario, fleet: Any, plan: SweepPlan, levels: list[dict[str, Any]], say: Callable[[str], None]
) -> dict[str, Any]:
    steady = []
    policy: dict[str, float] = {}
    for level in levels:
        load = level["load"]
        scn = with_overrides(
            scn0,
            {
                "arrivals.load": load,
                "arrivals.steps": [],
                "k.mode": "controller",
                "duration_s": plan.controller_duration_s,
                "warmup_s": plan.controller_duration_s * 2 / 3,
            },
        )
        summary = summarise(run(scn, fleet))
        tail = [s["k"] for s in summary["series"] if s["t"] >= plan.controller_duration_s * 2 / 3]
        k_mean = sum(tail) / len(tail) if tail else summary["k"]["final"]
        value = _value(summary, plan.metric)
        steady.append(
            {
                "load": load,
                "k": r6(k_mean),
                "objective_value": r6(value),
                "meets_slo": value < plan.slo,
                "optimal_k": level["optimal_k"],
                "utilisation": summary["utilisation"]["mean"],
            }
        )
        say(f"controller at load {load:.2f}: k {k_mean:g}, {plan.metric} = {r6(value)}")
    # Load steps.
    phase = plan.step_phase_s
    steps = [{"at_s": i * phase, "load": load} for i, load in enumerate(plan.step_loads)][1:]
    scn = with_overrides(
        scn0,
        {
            "arrivals.load": plan.step_loads[0],
            "arrivals.steps": steps,
            "k.mode": "controller",
            "duration_s": phase * len(plan.step_loads),
            "warmup_s": 0.0,
        },
    )
    raw = run(scn, fleet)
    summary = summarise(raw)
    from gpufleet.simulate import adapters

    settings = scn.k.controller.model_dump()
    policy = adapters.KController.create(settings, settings.pop("k_initial", None)).describe()
    ts = [s["t"] for s in summary["series"]]
    ks = [s["k"] for s in summary["series"]]
    responses = []
    for i, load in enumerate(plan.step_loads):
        t0, t1 = i * phase, (i + 1) * phase
        before = ks[max(0, next((j for j, t in enumerate(ts) if t >= t0), 0) - 1)] if i else ks[0]
        resp = settle_and_overshoot(ts, ks, t0, t1, before, plan.settle_band)
        resp.update({"load": load, "from_s": t0})
        responses.append(resp)
    say("controller step response done")
    return {
        "policy": policy,
        "steady_k_by_load": steady,
        "steps": responses,
        "step_series": [
            {"t": s["t"], "k": s["k"], "utilisation": s["utilisation"], "offered_load": s["offered_load"]}
            for s in summary["series"]
        ],
        "step_p99_queue_delay_s": summary["queue_delay_s"]["p99"],
    }
