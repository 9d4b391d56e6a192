"""Build the simulated fleet from a scenario: operators, stake, devices, speeds, caps.

Stake is held in integer base units and each device's effective stake comes from
:func:`gpufleet.shares.vram_share` / :func:`gpufleet.shares.effective_stake`, exactly as the
operator writes it into status. Everything random is drawn from streams derived from the
scenario seed, so the same scenario always builds the same fleet.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from gpufleet.hardware.catalog import load_catalog
from gpufleet.shares import INT_BASE, effective_stake, vram_share
from gpufleet.simulate import adapters
from gpufleet.simulate.scenario import Distribution, Scenario, ScenarioError


def stream(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream for one purpose (``name``)."""
    return random.Random(f"gpufleet-sim:{seed}:{name}")


def draw(rng: random.Random, dist: Distribution) -> float:
    """One draw of a positive quantity; ``maximum`` cuts the tail."""
    d = dist.distribution
    if d == "fixed":
        value = float(dist.value or 0.0)
    elif d == "exponential":
        value = rng.expovariate(1.0 / float(dist.mean or 1.0))
    elif d == "lognormal":
        # Parameterised by the mean: mu = ln(mean) - sigma^2 / 2.
        mu = math.log(float(dist.mean or 1.0)) - dist.sigma**2 / 2
        value = rng.lognormvariate(mu, dist.sigma)
    elif d == "uniform":
        value = rng.uniform(dist.minimum, float(dist.maximum or dist.minimum))
    else:
        value = dist.minimum * rng.paretovariate(dist.alpha)
    if dist.maximum is not None and d != "uniform":
        value = min(value, dist.maximum)
    return value


def sampler(rng: random.Random, dist: Distribution) -> Callable[[], float]:
    """A fast zero-argument drawer equal to ``draw(rng, dist)`` call for call (same stream use)."""
    d = dist.distribution
    cap = dist.maximum if dist.maximum is not None and d != "uniform" else math.inf
    if d == "exponential":
        expo = rng.expovariate
        lam = 1.0 / float(dist.mean or 1.0)
        return lambda: min(expo(lam), cap)
    if d == "lognormal":
        logn = rng.lognormvariate
        mu = math.log(float(dist.mean or 1.0)) - dist.sigma**2 / 2
        sigma = dist.sigma
        return lambda: min(logn(mu, sigma), cap)
    return lambda: draw(rng, dist)


def _choose(rng: random.Random, weights: dict[str, float] | dict[int, float]) -> object:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]  # type: ignore[index]


@dataclass
class Fleet:
    """Per-device and per-operator arrays (index = id) the engine reads."""

    op_stake_base: list[int]
    op_devices: list[list[int]]
    op_failure: list[float]
    op_speed: list[float]
    dev_op: list[int]
    dev_gpu: list[str]
    dev_vram_mib: list[int]
    dev_model: list[int]
    dev_cap: list[int]
    dev_s1: list[float]
    """Single-stream decode tokens/s the device actually achieves (benchmark x speed factor)."""
    dev_bench_s1: list[float]
    dev_alpha: list[float]
    dev_eff_stake_base: list[int]
    model_names: list[str]
    model_devices: list[list[int]]
    model_capacity_rps: list[float]
    model_traffic: list[float]
    mean_work_tokens: list[float]
    notes: list[str] = field(default_factory=list)

    @property
    def n_devices(self) -> int:
        return len(self.dev_op)

    @property
    def n_operators(self) -> int:
        return len(self.op_stake_base)

    @property
    def total_slots(self) -> int:
        return sum(self.dev_cap)

    def aggregate_tps(self, d: int, batch: int | None = None) -> float:
        """Decode tokens/s of device ``d`` with ``batch`` sequences (default: full)."""
        b = self.dev_cap[d] if batch is None else batch
        return b * self.dev_s1[d] / (1 + self.dev_alpha[d] * (b - 1)) if b > 0 else 0.0


def _stakes(scn: Scenario, rng: random.Random) -> list[int]:
    spec = scn.operators.stake
    n = scn.operators.count
    out: list[int] = []
    for i in range(n):
        if spec.distribution == "fixed":
            value = float(spec.values_int[i % len(spec.values_int)])
        elif spec.distribution == "equal":
            value = float(spec.minimum_int)
        elif spec.distribution == "pareto":
            value = spec.minimum_int * rng.paretovariate(spec.alpha)
        else:
            value = spec.median_int * math.exp(spec.sigma * rng.gauss(0.0, 1.0))
        if spec.maximum_int is not None:
            value = min(value, float(spec.maximum_int))
        out.append(int(value) * INT_BASE)
    if spec.distribution != "fixed" and spec.unstaked_fraction > 0:
        unstaked = rng.sample(range(n), round(spec.unstaked_fraction * n))
        for i in unstaked:
            out[i] = 0
    return out


def _mean_work(scn: Scenario, prefill_speedup: float) -> float:
    """Mean service work in output-token equivalents: exact without tail cuts, else sampled."""
    out, prompt = scn.requests.output_tokens, scn.requests.prompt_tokens
    if (
        out.maximum is None
        and prompt.maximum is None
        and "uniform" not in (out.distribution, prompt.distribution)
    ):
        return out.expected() + prompt.expected() / prefill_speedup
    rng = stream(scn.seed, "mean-work")
    total = 0.0
    n = 20_000
    for _ in range(n):
        total += (
            draw(rng, scn.requests.output_tokens) + draw(rng, scn.requests.prompt_tokens) / prefill_speedup
        )
    return total / n


def build_fleet(scn: Scenario) -> Fleet:
    catalog = load_catalog()
    rng = stream(scn.seed, "fleet")
    ops = scn.operators
    stakes = _stakes(scn, rng)
    models = scn.models
    fleet_weights = {i: m.fleet_share for i, m in enumerate(models)}
    flaky = set(rng.sample(range(ops.count), round(ops.flaky_fraction * ops.count)))
    slow = set(rng.sample(range(ops.count), round(ops.slow_fraction * ops.count)))
    op_devices: list[list[int]] = []
    op_failure: list[float] = []
    op_speed: list[float] = []
    dev_op: list[int] = []
    dev_gpu: list[str] = []
    dev_vram: list[int] = []
    dev_model: list[int] = []
    dev_cap: list[int] = []
    dev_s1: list[float] = []
    dev_bench: list[float] = []
    dev_alpha: list[float] = []
    notes: list[str] = []
    missing: set[tuple[str, str]] = set()
    for op in range(ops.count):
        count = int(_choose(rng, ops.devices_per_operator))  # type: ignore[call-overload]
        gpu_key = str(_choose(rng, ops.gpus))
        gpu = catalog.by_key(gpu_key)
        assert gpu is not None  # validated by the scenario
        model_index = int(_choose(rng, fleet_weights))  # type: ignore[call-overload]
        model = models[model_index]
        s1 = model.throughput.get(gpu_key)
        if s1 is None:
            s1 = adapters.benchmark_single_stream(model.name, gpu_key)
        if s1 is None:
            missing.add((model.name, gpu_key))
            s1 = 30.0
        speed = ops.slow_factor if op in slow else 1.0
        op_failure.append(ops.flaky_failure_rate if op in flaky else ops.failure_rate)
        op_speed.append(speed)
        ids = []
        for _ in range(count):
            d = len(dev_op)
            ids.append(d)
            dev_op.append(op)
            dev_gpu.append(gpu_key)
            dev_vram.append(gpu.vram_mib)
            dev_model.append(model_index)
            dev_cap.append(model.concurrency_per_gpu.get(gpu_key, model.concurrency))
            dev_bench.append(float(s1))
            dev_s1.append(float(s1) * speed)
            dev_alpha.append(model.batching_alpha)
        op_devices.append(ids)
    for model_name, gpu_key in sorted(missing):
        notes.append(f"no benchmark for {model_name} on {gpu_key}: assumed 30 tok/s single stream")
    eff: list[int] = [0] * len(dev_op)
    for op, ids in enumerate(op_devices):
        pool_vram = sum(dev_vram[d] for d in ids)
        for d in ids:
            eff[d] = effective_stake(vram_share(dev_vram[d], pool_vram), stakes[op])
    model_devices: list[list[int]] = [[] for _ in models]
    for d, m in enumerate(dev_model):
        model_devices[m].append(d)
    for m, devs in enumerate(model_devices):
        if not devs:
            raise ScenarioError(f"models[{m}] ({models[m].name}): no device serves it (raise fleet_share)")
    work = [_mean_work(scn, m.prefill_speedup) for m in models]
    fleet = Fleet(
        op_stake_base=stakes,
        op_devices=op_devices,
        op_failure=op_failure,
        op_speed=op_speed,
        dev_op=dev_op,
        dev_gpu=dev_gpu,
        dev_vram_mib=dev_vram,
        dev_model=dev_model,
        dev_cap=dev_cap,
        dev_s1=dev_s1,
        dev_bench_s1=dev_bench,
        dev_alpha=dev_alpha,
        dev_eff_stake_base=eff,
        model_names=[m.name for m in models],
        model_devices=model_devices,
        model_capacity_rps=[],
        model_traffic=[],
        mean_work_tokens=work,
        notes=notes,
    )
    fleet.model_capacity_rps = [
        sum(fleet.aggregate_tps(d) for d in devs) / work[m] for m, devs in enumerate(model_devices)
    ]
    total_share = sum(m.traffic_share for m in models)
    fleet.model_traffic = [m.traffic_share / total_share for m in models]
    return fleet
