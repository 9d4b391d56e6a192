"""A pool's reputation: completion multiplier (per pool) * throughput score (per device).

    device weight = completion multiplier of its pool * throughput score of the device

Why a product: both parts are already in [0, 1] and mean "share of the ideal" (of requests
completed, of benchmark speed), so the product is the expected share of ideal *useful work* a
request routed there gets; either part at 0 zeroes the device, and neither can compensate for the
other (a fast device that drops requests is not a good device). The pool's own number (shown in
its status, used for devices without measurements yet) is its multiplier * the mean of its
devices' throughput scores.

``spec.reputationWeight`` on an OperatorPool, when set, overrides every device's weight (the
measured parts are still computed and shown, and a condition says the override is set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from gpufleet.reputation.throughput import (
    DEFAULT_THROUGHPUT,
    BenchmarkTable,
    ThroughputPolicy,
    ThroughputScore,
    throughput_score,
)
from gpufleet.reputation.tiers import DEFAULT_TIERS, CompletionScore, TierPolicy, completion_score
from gpufleet.reputation.window import DeviceKey, Window

ONE = Fraction(1)


@dataclass(frozen=True)
class DeviceIdentity:
    """What a device serves on what: the benchmark key."""

    model: str
    gpu: str


@dataclass(frozen=True)
class DeviceReputation:
    throughput: ThroughputScore
    weight: Fraction


@dataclass(frozen=True)
class PoolReputation:
    """Everything ``OperatorPool.status.reputation`` shows, exactly."""

    window_hours: int
    first_hour: int | None
    completion: CompletionScore
    not_attributable: int
    devices: Mapping[DeviceKey, DeviceReputation]
    weight: Fraction
    override: Fraction | None = None

    @property
    def effective_weight(self) -> Fraction:
        """What routing uses for the pool: the override when set, else the measured weight."""
        return self.weight if self.override is None else self.override

    def device_weight(self, device: DeviceKey) -> Fraction:
        """What routing uses for one device (the pool's weight for a device not measured yet)."""
        if self.override is not None:
            return self.override
        rep = self.devices.get(device)
        return self.weight if rep is None else rep.weight


def pool_reputation(
    window: Window,
    devices: Mapping[DeviceKey, DeviceIdentity],
    benchmarks: BenchmarkTable,
    excused_releases: frozenset[str] = frozenset(),
    tiers: TierPolicy = DEFAULT_TIERS,
    throughput: ThroughputPolicy = DEFAULT_THROUGHPUT,
    override: Fraction | None = None,
) -> PoolReputation:
    """The reputation of the pool whose devices are ``devices``, from its window.

    Completion counts every device of the window that belongs to the pool (also devices gone
    since: their failures still happened); throughput is scored for the current ``devices``.
    """
    pools = {d.pool_key for d in devices}
    in_pool = [d for d in window.devices() if d.pool_key in pools]
    total = window.total(in_pool)
    failed = total.attributable(excused_releases)
    completion = completion_score(total.completed, failed, tiers, excused=total.excused(excused_releases))
    scores: dict[DeviceKey, DeviceReputation] = {}
    for key, ident in sorted(devices.items(), key=lambda kv: str(kv[0])):
        benchmark = benchmarks.lookup(ident.model, ident.gpu)
        score = throughput_score(window.device_buckets(key), benchmark, throughput)
        scores[key] = DeviceReputation(score, completion.multiplier * score.score)
    mean = sum((r.throughput.score for r in scores.values()), Fraction(0)) / len(scores) if scores else ONE
    first = None if window.current_hour is None else window.first_hour(window.current_hour)
    return PoolReputation(
        window_hours=window.hours,
        first_hour=first,
        completion=completion,
        not_attributable=total.not_attributable,
        devices=scores,
        weight=completion.multiplier * mean,
        override=override,
    )
