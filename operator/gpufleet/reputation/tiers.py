"""Completion score: completion rate over the window -> a tier and its reputation multiplier.

The announcement gives three tiers (> 99.5% -> 1.0, 98-99.5% -> 0.9, 96-98% -> 0.8, "and so
forth"); we continue them at 0.1 less per further 2 points down to 0, so with the defaults
94-96% -> 0.7, ..., 82-84% -> 0.1 and below 82% -> 0. Boundaries belong to the *higher* tier
except the top one, which the announcement writes as strictly greater: exactly 99.5% is tier 2,
exactly 98% is tier 2, exactly 96% is tier 3.

    completion rate = completed / (completed + attributable failures)

Until the window holds ``minimum_sample`` such requests (default 200) the multiplier is 1.0: a
handful of unlucky requests must not cost a new pool a tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

ONE = Fraction(1)
HUNDRED = Fraction(100)


class TierError(ValueError):
    """A tier policy that cannot describe tiers (thresholds out of order, steps <= 0)."""


class CompletionReason(StrEnum):
    """Why a pool has the completion multiplier it has (``status.reputation.completion.reason``)."""

    MEASURED = "Measured"
    BELOW_MINIMUM_SAMPLE = "BelowMinimumSample"
    NO_DATA = "NoData"


@dataclass(frozen=True)
class Tier:
    """One completion tier: rates at or above ``lower_pct`` (strictly above for tier 1)."""

    number: int
    lower_pct: Fraction
    strict: bool
    multiplier: Fraction

    def admits(self, pct: Fraction) -> bool:
        return pct > self.lower_pct if self.strict else pct >= self.lower_pct


@dataclass(frozen=True)
class TierPolicy:
    """Tier thresholds in percent; every constant is a setting (``GPUFLEET_REPUTATION_TIER_*``)."""

    top_pct: Fraction = Fraction(995, 10)
    second_pct: Fraction = Fraction(98)
    step_pct: Fraction = Fraction(2)
    step_multiplier: Fraction = Fraction(1, 10)
    minimum_sample: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.second_pct < self.top_pct <= HUNDRED:
            raise TierError(f"need 0 < second ({self.second_pct}) < top ({self.top_pct}) <= 100")
        if self.step_pct <= 0 or not 0 < self.step_multiplier <= 1:
            raise TierError(f"steps must be > 0: {self.step_pct} pts, multiplier {self.step_multiplier}")
        if self.minimum_sample < 0:
            raise TierError(f"minimum sample {self.minimum_sample} is negative")

    def tiers(self) -> tuple[Tier, ...]:
        """Every tier, best first; the last one (multiplier 0) admits every rate."""
        out = [Tier(1, self.top_pct, True, ONE)]
        number, lower, multiplier = 2, self.second_pct, ONE - self.step_multiplier
        while multiplier > 0 and lower > 0:
            out.append(Tier(number, lower, False, multiplier))
            number, lower, multiplier = number + 1, lower - self.step_pct, multiplier - self.step_multiplier
        # The rest: 0 when the multipliers ran out, else (the thresholds reached 0%) the next one.
        out.append(Tier(number, Fraction(0), False, max(multiplier, Fraction(0))))
        return tuple(out)


DEFAULT_TIERS = TierPolicy()


def tier_for(rate: Fraction, policy: TierPolicy = DEFAULT_TIERS) -> Tier:
    """The tier of a completion rate in [0, 1]."""
    if not 0 <= rate <= 1:
        raise TierError(f"completion rate {rate} is outside [0, 1]")
    pct = rate * HUNDRED
    tiers = policy.tiers()
    for tier in tiers[:-1]:
        if tier.admits(pct):
            return tier
    return tiers[-1]  # admits every rate from 0%


@dataclass(frozen=True)
class CompletionScore:
    """A pool's completion part of its reputation."""

    completed: int
    failed: int
    excused: int
    rate: Fraction | None
    tier: int
    multiplier: Fraction
    reason: CompletionReason

    @property
    def sample(self) -> int:
        """Requests the rate is computed over: completed plus attributable failures."""
        return self.completed + self.failed


def completion_score(
    completed: int, failed: int, policy: TierPolicy = DEFAULT_TIERS, excused: int = 0
) -> CompletionScore:
    """Completed and attributable-failed requests of the window -> rate, tier and multiplier."""
    if completed < 0 or failed < 0 or excused < 0:
        raise TierError(f"negative counts: completed={completed} failed={failed} excused={excused}")
    sample = completed + failed
    if sample == 0:
        return CompletionScore(completed, failed, excused, None, 1, ONE, CompletionReason.NO_DATA)
    rate = Fraction(completed, sample)
    if sample < policy.minimum_sample:
        reason = CompletionReason.BELOW_MINIMUM_SAMPLE
        return CompletionScore(completed, failed, excused, rate, 1, ONE, reason)
    tier = tier_for(rate, policy)
    reason = CompletionReason.MEASURED
    return CompletionScore(completed, failed, excused, rate, tier.number, tier.multiplier, reason)
