"""The k controller: k rises slowly while the network is idle and falls fast while it is busy.

Every ``interval`` the controller reads the fleet's utilisation u (in-flight requests over the
summed concurrency caps of routable devices, from the router) and

    ema   <- ema + smoothing * (u - ema)                       (EMA, smoothing in (0, 1])
    e     =  ema - target
    |e| <= deadband          -> k unchanged                    (no flapping around the target)
    e < -deadband (idle)     -> k += rise_gain * span * (|e| - deadband) / (target - deadband)
    e > +deadband (busy)     -> k -= fall_gain * span * (|e| - deadband) / (1 - target - deadband)

clamped to [k_min, k_max]; ``span = k_max - k_min`` and the normalised error is capped at 1, so
one interval moves k by at most ``rise_gain`` (resp. ``fall_gain``) of the span. ``fall_gain >
rise_gain`` by default: under load the fleet needs every device at once, when idle there is no
hurry to favour stake. k is kept on a 10^-9 grid so the value written to the status is the value
computed with.

Why it cannot oscillate at steady load: utilisation is demand over capacity, which k does not
change (k only moves *which* devices serve), so at constant u the EMA converges monotonically to
u, the error keeps one sign once the EMA is on one side of the band, and k moves monotonically to
a bound or stops inside the deadband. ``step_response`` simulates this for tests and docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

ONE = Fraction(1)
ZERO = Fraction(0)
#: k is held on this grid (k is per INT; 10^-9 = the smallest step written to the status).
K_QUANTUM = Fraction(1, 10**9)


class KControlError(ValueError):
    """A k policy that cannot control anything (bounds reversed, gains out of range)."""


class KReason(StrEnum):
    """Why k has its value (``RoutingPolicy.status.reason``)."""

    BELOW_TARGET = "UtilisationBelowTarget"
    ABOVE_TARGET = "UtilisationAboveTarget"
    WITHIN_DEADBAND = "WithinDeadband"
    AT_MAXIMUM = "AtMaximum"
    AT_MINIMUM = "AtMinimum"
    NO_CAPACITY = "NoCapacity"


@dataclass(frozen=True)
class KPolicy:
    """The RoutingPolicy spec as exact numbers."""

    k_min: Fraction = ZERO
    k_max: Fraction = Fraction(1, 1000)
    target: Fraction = Fraction(70, 100)
    deadband: Fraction = Fraction(5, 100)
    rise_gain: Fraction = Fraction(5, 100)
    fall_gain: Fraction = Fraction(25, 100)
    smoothing: Fraction = Fraction(30, 100)
    interval_seconds: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.k_min <= self.k_max:
            raise KControlError(f"need 0 <= kMin ({self.k_min}) <= kMax ({self.k_max})")
        if not (0 <= self.deadband < self.target and self.target + self.deadband < 1):
            raise KControlError(
                f"need 0 <= deadband ({self.deadband}) < target ({self.target}) and target + deadband < 1"
            )
        if not 0 < self.rise_gain <= 1 or not 0 < self.fall_gain <= 1:
            raise KControlError("gains are fractions of the k range per interval, in (0, 1]")
        if not 0 < self.smoothing <= 1:
            raise KControlError(f"smoothing {self.smoothing} is outside (0, 1]")
        if self.interval_seconds < 1:
            raise KControlError("the interval is at least one second")

    @property
    def span(self) -> Fraction:
        return self.k_max - self.k_min

    def clamp(self, k: Fraction) -> Fraction:
        return min(self.k_max, max(self.k_min, k))


DEFAULT_K_POLICY = KPolicy()


@dataclass(frozen=True)
class KState:
    """The controller's memory: current k and the smoothed utilisation (None before any sample)."""

    k: Fraction
    ema: Fraction | None = None


@dataclass(frozen=True)
class KStep:
    """One interval's result."""

    state: KState
    utilisation: Fraction | None
    change: Fraction
    reason: KReason

    @property
    def changed(self) -> bool:
        return self.change != 0


def quantize(k: Fraction) -> Fraction:
    """Round k half-up onto the 10^-9 grid."""
    steps = (k / K_QUANTUM * 2 + 1) // 2
    return Fraction(steps) * K_QUANTUM


def utilisation(in_flight: int, capacity: int) -> Fraction | None:
    """In-flight requests over capacity; None without capacity (nothing routable)."""
    if in_flight < 0 or capacity < 0:
        raise KControlError(f"in-flight {in_flight} and capacity {capacity} are never negative")
    if capacity == 0:
        return None
    return Fraction(in_flight, capacity)


def k_step(state: KState, measured: Fraction | None, policy: KPolicy = DEFAULT_K_POLICY) -> KStep:
    """Advance the controller by one interval with this interval's utilisation."""
    k = quantize(policy.clamp(state.k))
    if measured is None:
        return KStep(KState(k, state.ema), None, k - state.k, KReason.NO_CAPACITY)
    if measured < 0:
        raise KControlError(f"utilisation {measured} is negative")
    ema = measured if state.ema is None else state.ema + policy.smoothing * (measured - state.ema)
    error = ema - policy.target
    if abs(error) <= policy.deadband:
        return KStep(KState(k, ema), measured, k - state.k, KReason.WITHIN_DEADBAND)
    excess = abs(error) - policy.deadband
    if error < 0:
        scale = min(ONE, excess / (policy.target - policy.deadband))
        new = quantize(policy.clamp(k + policy.rise_gain * policy.span * scale))
        reason = KReason.AT_MAXIMUM if new == policy.k_max else KReason.BELOW_TARGET
    else:
        scale = min(ONE, excess / (ONE - policy.target - policy.deadband))
        new = quantize(policy.clamp(k - policy.fall_gain * policy.span * scale))
        reason = KReason.AT_MINIMUM if new == policy.k_min else KReason.ABOVE_TARGET
    return KStep(KState(new, ema), measured, new - state.k, reason)


def step_response(
    policy: KPolicy,
    k0: Fraction,
    before: Fraction,
    after: Fraction,
    intervals: int,
) -> list[KStep]:
    """k over ``intervals`` after utilisation steps from ``before`` (steady, EMA settled) to ``after``."""
    state = KState(quantize(policy.clamp(k0)), before)
    out = []
    for _ in range(intervals):
        step = k_step(state, after, policy)
        out.append(step)
        state = step.state
    return out


def settling_intervals(steps: list[KStep]) -> int | None:
    """Intervals until k stops changing for good (index after the last change); None if it never stops."""
    if not steps:
        return 0
    if steps[-1].changed:
        return None
    last = max((i for i, s in enumerate(steps) if s.changed), default=-1)
    return last + 1
