"""Summaries of one run: delays, utilisation, who got the jobs, and how that compares with stake.

All numbers are rounded to fixed decimals and every mapping is built in a fixed order, so the
same raw result always serialises to the same bytes (the determinism test compares JSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gpufleet.shares import INT_BASE
from gpufleet.simulate.engine import RawResult

DIGITS = 6


def r6(x: float) -> float | None:
    """Round for output; infinities and NaN become None (JSON has neither)."""
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, DIGITS)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted data (``q`` in [0, 1]); NaN when empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = max(1, math.ceil(q * n))
    return float(sorted_values[min(n, rank) - 1])


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative values (0 = equal, -> 1 = one holds everything)."""
    xs = sorted(values)
    n = len(xs)
    total = sum(xs)
    if n == 0 or total <= 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return 2 * weighted / (n * total) - (n + 1) / n


def hhi(values: Sequence[float]) -> float:
    """Herfindahl-Hirschman index of the shares (sum of squared shares, in [1/n, 1])."""
    total = sum(values)
    if total <= 0:
        return 0.0
    return sum((v / total) ** 2 for v in values)


def deciles(order: Sequence[int]) -> list[list[int]]:
    """Split ``order`` (ids sorted by stake, ascending) into 10 near-equal contiguous groups."""
    n = len(order)
    return [list(order[(i * n) // 10 : ((i + 1) * n) // 10]) for i in range(10)]


def delay_stats(values: Sequence[float], extra_inf: int = 0) -> dict[str, float | None]:
    data = sorted(values)
    if extra_inf:
        data = data + [math.inf] * extra_inf
    finite = [v for v in data if not math.isinf(v)]
    return {
        "count": len(data),
        "mean": r6(sum(finite) / len(finite)) if finite else None,
        "p50": r6(percentile(data, 0.50)),
        "p90": r6(percentile(data, 0.90)),
        "p99": r6(percentile(data, 0.99)),
        "max": r6(data[-1]) if data else None,
        "share_waiting": r6(sum(1 for v in data if v > 0) / len(data)) if data else None,
    }


def summarise(raw: RawResult) -> dict[str, Any]:
    """The machine-readable result of one run."""
    scn = raw.scenario
    fl = raw.fleet
    n_ops = fl.n_operators
    op_jobs = [0] * n_ops
    op_tokens = [0] * n_ops
    op_fail = [0] * n_ops
    for d in range(fl.n_devices):
        op = fl.dev_op[d]
        op_jobs[op] += raw.dev_jobs[d]
        op_tokens[op] += raw.dev_tokens[d]
        op_fail[op] += raw.dev_failures[d]
    stake = fl.op_stake_base
    total_stake = sum(stake)
    total_jobs = sum(op_jobs)
    total_tokens = sum(op_tokens)
    order = sorted(range(n_ops), key=lambda i: (stake[i], i))
    by_decile = []
    for i, group in enumerate(deciles(order)):
        g_stake = sum(stake[o] for o in group)
        g_jobs = sum(op_jobs[o] for o in group)
        g_tokens = sum(op_tokens[o] for o in group)
        by_decile.append(
            {
                "decile": i + 1,
                "operators": len(group),
                "devices": sum(len(fl.op_devices[o]) for o in group),
                "stake_int": g_stake // INT_BASE,
                "stake_share": r6(g_stake / total_stake) if total_stake else 0.0,
                "job_share": r6(g_jobs / total_jobs) if total_jobs else 0.0,
                "reward_share": r6(g_tokens / total_tokens) if total_tokens else 0.0,
                "jobs_per_kint_staked": r6(g_jobs / (g_stake / INT_BASE) * 1000) if g_stake else None,
            }
        )
    staked = [o for o in range(n_ops) if stake[o] > 0]
    unstaked_devs = [d for d in range(fl.n_devices) if stake[fl.dev_op[d]] == 0]
    span = raw.measured_span_s

    def idle_share(devs: Sequence[int]) -> float:
        capacity = sum(fl.dev_cap[d] * raw.dev_up_s[d] for d in devs)
        if capacity <= 0:
            return math.nan
        return 1 - sum(raw.dev_busy_slot_s[d] for d in devs) / capacity

    tv = 0.0
    if total_jobs and total_stake:
        tv = 0.5 * sum(abs(op_jobs[o] / total_jobs - stake[o] / total_stake) for o in range(n_ops))
    measured_series = [s for s in raw.series if s["t"] > scn.warmup_s]
    mean_util = (
        sum(s["utilisation"] for s in measured_series) / len(measured_series) if measured_series else math.nan
    )
    ks = [k for _, k, _ in raw.k_changes]
    return {
        "scenario": scn.name,
        "seed": scn.seed,
        "sources": raw.sources,
        "fleet": {
            "operators": n_ops,
            "staked_operators": len(staked),
            "devices": fl.n_devices,
            "slots": fl.total_slots,
            "capacity_rps": r6(sum(fl.model_capacity_rps)),
            "models": fl.model_names,
            "gpus": {g: fl.dev_gpu.count(g) for g in sorted(set(fl.dev_gpu))},
            "total_stake_int": total_stake // INT_BASE,
            "notes": fl.notes,
        },
        "requests": {
            "measured_arrivals": raw.measured_arrivals,
            "completed": len(raw.latency),
            "failed": raw.failed,
            "rejected": raw.rejected,
            "overflow_retries": raw.retries_503,
            "device_failures": sum(raw.dev_failures),
        },
        "queue_delay_s": delay_stats(raw.queue_delay, raw.rejected),
        "latency_s": delay_stats(raw.latency),
        "utilisation": {
            "mean": r6(mean_util),
            "busy_slot_share": r6(
                sum(raw.dev_busy_slot_s)
                / max(1e-9, sum(c * u for c, u in zip(fl.dev_cap, raw.dev_up_s, strict=True)))
            ),
        },
        "stake_alignment": {
            "gini_jobs": r6(gini(op_jobs)),
            "gini_stake": r6(gini(stake)),
            "hhi_jobs": r6(hhi(op_jobs)),
            "hhi_stake": r6(hhi(stake)),
            "total_variation_jobs_vs_stake": r6(tv),
            "jobs_per_kint_staked": r6(sum(op_jobs[o] for o in staked) / (total_stake / INT_BASE) * 1000)
            if total_stake
            else None,
        },
        "by_stake_decile": by_decile,
        "unstaked": {
            "devices": len(unstaked_devs),
            "idle_capacity_share": r6(idle_share(unstaked_devs)) if unstaked_devs else None,
            "job_share": r6(sum(raw.dev_jobs[d] for d in unstaked_devs) / total_jobs) if total_jobs else None,
        },
        "idle_capacity_share_fleet": r6(idle_share(range(fl.n_devices))),
        "k": {
            "initial": ks[0],
            "final": ks[-1],
            "min": min(ks),
            "max": max(ks),
            "changes": len(raw.k_changes) - 1,
        },
        "penalties": {"count": len(raw.penalties), "events": raw.penalties[:100]},
        "series": raw.series,
        "k_changes": [{"t": t, "k": k, "reason": why} for t, k, why in raw.k_changes],
        "events": raw.events,
        "measured_span_s": r6(span),
        "simulated_end_s": r6(raw.sim_end_s),
        "intended_shares_exact": raw.share_exact,
    }
