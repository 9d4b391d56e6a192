"""The project code the simulator runs, behind small adapters so the event loop stays fast.

The simulator must not re-implement the rules it evaluates, so every rule comes from its owner:

* weights: :func:`gpufleet.router.weights.compute_group` (eligibility-filtered endpoints ->
  exact shares and the integer Envoy ``load_balancing_weight``), which itself uses
  :func:`gpufleet.shares.priority_score`; effective stake from :func:`gpufleet.shares.effective_stake`;
* k controller: :func:`gpufleet.reputation.kcontrol.k_step` with a ``KPolicy``;
* completion tiers: :func:`gpufleet.reputation.tiers.completion_score`;
* throughput score: :func:`gpufleet.reputation.throughput.throughput_score` over window buckets;
* penalties: :mod:`gpufleet.reputation.ladder` (``is_low_completion_hour``, ``decide_penalty``,
  ``enforcement`` with the safety cap);
* benchmarks: ``gpufleet/hardware/benchmarks.yaml`` via ``load_benchmarks``.

The reputation package is optional at import time (it may be absent in an older install): when it
is missing, ``sources()`` says so and the scenario features that need it fail with a clear error
instead of silently using a copy.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from types import ModuleType
from typing import Any

from gpufleet.router.weights import Endpoint, compute_group

SIM_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Simulated time 0 on the reputation clock (the ladder works on datetimes)."""


def _optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def reputation_modules() -> dict[str, ModuleType | None]:
    return {
        n: _optional(f"gpufleet.reputation.{n}")
        for n in ("kcontrol", "tiers", "throughput", "ladder", "window")
    }


def reputation_available() -> bool:
    """True when every reputation module the simulator runs is importable."""
    return all(m is not None for m in reputation_modules().values())


def sources() -> dict[str, str]:
    """Which implementation each rule comes from (written into every result)."""
    mods = reputation_modules()
    out = {
        "priority": "gpufleet.shares.priority_score (via gpufleet.router.weights.compute_group)",
        "weights": "gpufleet.router.weights.compute_group (integer Envoy weights; exact shares)",
        "selection": "gpufleet.simulate.select (model of Envoy EDF weighted round robin / weighted random)",
    }
    out["k_controller"] = "gpufleet.reputation.kcontrol.k_step" if mods["kcontrol"] else "unavailable"
    out["tiers"] = "gpufleet.reputation.tiers.completion_score" if mods["tiers"] else "unavailable"
    out["throughput"] = (
        "gpufleet.reputation.throughput.throughput_score" if mods["throughput"] else "unavailable"
    )
    out["ladder"] = (
        "gpufleet.reputation.ladder.decide_penalty/enforcement" if mods["ladder"] else "unavailable"
    )
    return out


class MissingRule(RuntimeError):
    """A scenario needs a rule whose module is not installed."""


def _require(name: str) -> Any:
    mod = _optional(f"gpufleet.reputation.{name}")
    if mod is None:
        raise MissingRule(f"gpufleet.reputation.{name} is not available; disable the feature in the scenario")
    return mod


# ---------------------------------------------------------------- weights


def pod_name(device: int) -> str:
    return f"d{device:07d}"


def group_weights(
    model: str,
    devices: Sequence[int],
    effective_stake_base: Sequence[int],
    reputation: Sequence[Fraction],
    k: float,
    max_concurrency: Sequence[int],
    pools: Sequence[int],
) -> tuple[dict[int, int], dict[int, float], bool]:
    """Router weights of one model group: device -> Envoy integer weight, device -> exact share.

    Only eligible devices are given (the engine filters outages and penalties, as the router's
    eligibility plan does).
    """
    kd = decimal_k(k)
    endpoints = [
        Endpoint(
            namespace="sim",
            pool=f"pool-{pools[d]}",
            inference_node=f"node-{d}",
            device=0,
            pod=pod_name(d),
            models=(model,),
            ip="10.0.0.1",
            port=8000,
            effective_stake_base=effective_stake_base[d],
            reputation_weight=_decimal_fraction(reputation[d]),
            max_concurrency=max_concurrency[d],
        )
        for d in devices
    ]
    group = compute_group(model, endpoints, kd)
    by_pod = {pod_name(d): d for d in devices}
    weights: dict[int, int] = {}
    shares: dict[int, float] = {}
    for member in group.endpoints:
        d = by_pod[member.endpoint.pod]
        weights[d] = member.weight
        shares[d] = float(member.share)
    return weights, shares, group.exact


def decimal_k(k: float) -> Decimal:
    """k as the Decimal the project's functions take (shortest repr of the float, exactly)."""
    return Decimal(repr(float(k)))


def _decimal_fraction(value: Fraction) -> Decimal:
    if value.denominator == 1:
        return Decimal(value.numerator)
    # Reputation weights are products of tier multipliers (tenths) and throughput scores; 12
    # significant digits are far below any share difference the router can express.
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal("1e-12"))


# ---------------------------------------------------------------- k controller


@dataclass
class KController:
    """The project's k controller, stepped once per ``interval_s`` with the measured utilisation."""

    policy: Any
    state: Any
    interval_s: float

    @classmethod
    def create(cls, settings: dict[str, Any], k_initial: float | None) -> KController:
        kc = _require("kcontrol")
        defaults = kc.KPolicy()
        fields: dict[str, Any] = {}
        for name in ("k_min", "k_max", "target", "deadband", "rise_gain", "fall_gain", "smoothing"):
            value = settings.get(name)
            fields[name] = getattr(defaults, name) if value is None else Fraction(Decimal(repr(float(value))))
        interval = settings.get("interval_seconds")
        fields["interval_seconds"] = defaults.interval_seconds if interval is None else int(interval)
        policy = kc.KPolicy(**fields)
        k0 = policy.k_max if k_initial is None else Fraction(Decimal(repr(float(k_initial))))
        return cls(
            policy=policy,
            state=kc.KState(kc.quantize(policy.clamp(k0))),
            interval_s=float(fields["interval_seconds"]),
        )

    @property
    def k(self) -> float:
        return float(self.state.k)

    def step(self, in_flight: int, capacity: int) -> tuple[float, str]:
        kc = _require("kcontrol")
        measured = kc.utilisation(in_flight, capacity)
        result = kc.k_step(self.state, measured, self.policy)
        self.state = result.state
        return float(result.state.k), str(result.reason)

    def describe(self) -> dict[str, float]:
        p = self.policy
        return {
            "k_min": float(p.k_min),
            "k_max": float(p.k_max),
            "target": float(p.target),
            "deadband": float(p.deadband),
            "rise_gain": float(p.rise_gain),
            "fall_gain": float(p.fall_gain),
            "smoothing": float(p.smoothing),
            "interval_seconds": float(p.interval_seconds),
        }


# ---------------------------------------------------------------- reputation


class Reputation:
    """Completion tiers, throughput scores and the penalty ladder, from the reputation package."""

    def __init__(self, *, min_sample: int, floor: float, min_requests: int, hour_s: float) -> None:
        self.tiers = _require("tiers")
        self.tput = _require("throughput")
        self.ladder = _require("ladder")
        self.window = _require("window")
        self.tier_policy = self.tiers.TierPolicy(minimum_sample=min_sample)
        self.ladder_policy = self.ladder.LadderPolicy(
            low_completion_floor=Fraction(Decimal(repr(floor))), low_completion_min_requests=min_requests
        )
        self.scale = 3600.0 / hour_s  # reputation seconds per simulated second
        self.records: dict[int, list[Any]] = {}
        self.benchmarks = _benchmarks()

    def when(self, t: float) -> datetime:
        return SIM_EPOCH + timedelta(seconds=t * self.scale)

    def sim_seconds(self, delta: timedelta) -> float:
        return delta.total_seconds() / self.scale

    def completion_multiplier(self, completed: int, failed: int) -> tuple[Fraction, int]:
        score = self.tiers.completion_score(completed, failed, self.tier_policy)
        return Fraction(score.multiplier), int(score.tier)

    def throughput(self, model: str, gpu: str, buckets: list[tuple[int, int, int]]) -> Fraction:
        """Score from (completed, tokens, decode ms) per reputation hour, via the project's function."""
        bench = self.benchmarks.lookup(model, gpu)
        dev_buckets = [self.window.DeviceBucket(completed=c, tokens=t, decode_ms=d) for c, t, d in buckets]
        return Fraction(self.tput.throughput_score(dev_buckets, bench).score)

    def low_completion_hour(self, completed: int, failed: int) -> bool:
        return bool(self.ladder.is_low_completion_hour(completed, failed, self.ladder_policy))

    def offend(self, pool: int, t: float) -> tuple[int, float | None]:
        """Record a LowCompletion offense at sim time ``t``: (level, until in sim seconds or None)."""
        lad = self.ladder
        now = self.when(t)
        records = self.records.setdefault(pool, [])
        decision = lad.decide_penalty(records, lad.Offense.LOW_COMPLETION, now, self.ladder_policy)
        rec = lad.PenaltyRecord(
            name=f"pool-{pool}-{len(records)}",
            namespace="sim",
            pool=f"pool-{pool}",
            offense=lad.Offense.LOW_COMPLETION,
            level=decision.level,
            start=now,
            until=decision.until,
        )
        records.append(rec)
        until = None if decision.until is None else t + self.sim_seconds(decision.until - now)
        return int(decision.level), until

    def enforced(self, t: float, pool_devices: dict[int, int]) -> set[int]:
        """Pools whose penalties keep them out of routing at ``t`` (the safety cap applied)."""
        lad = self.ladder
        records = [r for recs in self.records.values() for r in recs]
        if not records:
            return set()
        plan = lad.enforcement(
            records,
            self.when(t),
            {("sim", f"pool-{p}"): n for p, n in pool_devices.items()},
            self.ladder_policy,
        )
        return {int(name.removeprefix("pool-")) for _, name in plan.penalised_pools}


@functools.cache
def _benchmarks() -> Any:
    """The bundled benchmark table, parsed once per process (None without the reputation package)."""
    tput = _optional("gpufleet.reputation.throughput")
    return None if tput is None else tput.load_benchmarks()


def benchmark_single_stream(model: str, gpu: str) -> float | None:
    """Single-stream decode tokens/s for (model, GPU) from the benchmarks file, if both exist."""
    table = _benchmarks()
    bench = None if table is None else table.lookup(model, gpu)
    return None if bench is None else float(bench.decode_tokens_per_second)
