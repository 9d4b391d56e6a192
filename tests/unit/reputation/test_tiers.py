"""Completion tiers at every boundary, the minimum sample, configurable policies."""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.reputation.tiers import (
    DEFAULT_TIERS,
    CompletionReason,
    TierError,
    TierPolicy,
    completion_score,
    tier_for,
)

EPS = F(1, 10**12)


def pct(x: F | int | str) -> F:
    return F(x) / 100


def test_default_table_is_the_announcements_then_minus_tenth_per_two_points() -> None:
    rows = [(t.number, t.lower_pct, t.strict, t.multiplier) for t in DEFAULT_TIERS.tiers()]
    assert rows == [
        (1, F(995, 10), True, F(1)),
        (2, F(98), False, F(9, 10)),
        (3, F(96), False, F(8, 10)),
        (4, F(94), False, F(7, 10)),
        (5, F(92), False, F(6, 10)),
        (6, F(90), False, F(5, 10)),
        (7, F(88), False, F(4, 10)),
        (8, F(86), False, F(3, 10)),
        (9, F(84), False, F(2, 10)),
        (10, F(82), False, F(1, 10)),
        (11, F(0), False, F(0)),
    ]


@pytest.mark.parametrize(
    ("rate_pct", "tier", "multiplier"),
    [
        (F(100), 1, F(1)),
        (F(995, 10) + EPS, 1, F(1)),
        (F(995, 10), 2, F(9, 10)),  # the announcement's "> 99.5%" is strict
        (F(99), 2, F(9, 10)),
        (F(98), 2, F(9, 10)),  # lower bounds belong to the higher tier
        (F(98) - EPS, 3, F(8, 10)),
        (F(96), 3, F(8, 10)),
        (F(96) - EPS, 4, F(7, 10)),
        (F(94), 4, F(7, 10)),
        (F(94) - EPS, 5, F(6, 10)),
        (F(90), 6, F(5, 10)),
        (F(82), 10, F(1, 10)),
        (F(82) - EPS, 11, F(0)),
        (F(50), 11, F(0)),
        (F(0), 11, F(0)),
    ],
)
def test_tier_boundaries(rate_pct: F, tier: int, multiplier: F) -> None:
    got = tier_for(pct(rate_pct))
    assert (got.number, got.multiplier) == (tier, multiplier)


def test_every_lower_bound_is_inclusive_except_the_top() -> None:
    tiers = DEFAULT_TIERS.tiers()
    for above, below in itertools.pairwise(tiers):
        at = tier_for(pct(below.lower_pct)) if below.lower_pct > 0 else None
        if above.strict:
            assert tier_for(pct(above.lower_pct)).number == below.number
        if at is not None:
            assert at.number == below.number
            assert tier_for(pct(below.lower_pct) - EPS).number == below.number + 1


def test_the_issues_failure_rates_give_the_issues_tiers() -> None:
    # fake engines failing at 0.1%, 1.5%, 3% and 10% over 10,000 requests
    assert completion_score(9990, 10).multiplier == F(1)
    assert completion_score(9850, 150).multiplier == F(9, 10)
    assert completion_score(9700, 300).multiplier == F(8, 10)
    assert completion_score(9000, 1000).multiplier == F(5, 10)


def test_minimum_sample_keeps_tier_one() -> None:
    below = completion_score(100, 99)
    assert below.sample == 199
    assert (below.tier, below.multiplier, below.reason) == (1, F(1), CompletionReason.BELOW_MINIMUM_SAMPLE)
    assert below.rate == F(100, 199)
    at = completion_score(101, 99)
    assert at.sample == 200
    assert (at.tier, at.multiplier, at.reason) == (11, F(0), CompletionReason.MEASURED)
    assert at.rate == F(101, 200)


def test_new_pool_without_data_is_tier_one() -> None:
    score = completion_score(0, 0)
    assert (score.rate, score.tier, score.multiplier, score.reason) == (
        None,
        1,
        F(1),
        CompletionReason.NO_DATA,
    )
    assert score.sample == 0


def test_minimum_sample_zero_measures_from_the_first_request() -> None:
    policy = TierPolicy(minimum_sample=0)
    assert completion_score(0, 1, policy).multiplier == 0
    assert completion_score(1, 0, policy).reason is CompletionReason.MEASURED


def test_excused_failures_are_reported_not_counted() -> None:
    score = completion_score(1000, 0, excused=500)
    assert (score.excused, score.failed, score.rate, score.multiplier) == (500, 0, F(1), F(1))


def test_perfect_and_zero_at_minimum() -> None:
    assert completion_score(200, 0).multiplier == 1
    assert completion_score(0, 200).multiplier == 0
    assert completion_score(0, 200).rate == 0


def test_configurable_policy() -> None:
    policy = TierPolicy(
        top_pct=F(99), second_pct=F(97), step_pct=F(1), step_multiplier=F(2, 10), minimum_sample=10
    )
    rows = [(t.lower_pct, t.multiplier) for t in policy.tiers()]
    assert rows == [
        (F(99), F(1)),
        (F(97), F(8, 10)),
        (F(96), F(6, 10)),
        (F(95), F(4, 10)),
        (F(94), F(2, 10)),
        (F(0), F(0)),
    ]
    assert tier_for(pct(99), policy).multiplier == F(8, 10)
    assert tier_for(pct(F(99) + EPS), policy).multiplier == 1
    assert tier_for(pct(96), policy).multiplier == F(6, 10)
    assert tier_for(pct(F(94) - EPS), policy).multiplier == 0


def test_ladder_that_reaches_zero_percent_first_keeps_its_next_multiplier() -> None:
    policy = TierPolicy(top_pct=F(99), second_pct=F(60), step_pct=F(50), step_multiplier=F(1, 10))
    rows = [(t.number, t.lower_pct, t.multiplier) for t in policy.tiers()]
    assert rows == [(1, F(99), F(1)), (2, F(60), F(9, 10)), (3, F(10), F(8, 10)), (4, F(0), F(7, 10))]
    assert tier_for(F(0), policy).multiplier == F(7, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_pct": F(98)}, r"need 0 < second \(98\) < top \(98\) <= 100"),  # second == top
        ({"second_pct": F(0)}, r"need 0 < second \(0\)"),
        ({"top_pct": F(101)}, r"top \(101\) <= 100"),
        ({"step_pct": F(0)}, r"steps must be > 0: 0 pts, multiplier 1/10"),
        ({"step_multiplier": F(0)}, r"steps must be > 0: 2 pts, multiplier 0"),
        ({"step_multiplier": F(11, 10)}, r"multiplier 11/10"),
        ({"minimum_sample": -1}, r"minimum sample -1 is negative"),
    ],
)
def test_invalid_policies_say_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TierError, match=message):
        TierPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"top_pct": F(98)},  # second == top
        {"second_pct": F(0)},
        {"top_pct": F(101)},
        {"step_pct": F(0)},
        {"step_multiplier": F(0)},
        {"step_multiplier": F(11, 10)},
        {"minimum_sample": -1},
    ],
)
def test_invalid_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(TierError):
        TierPolicy(**kwargs)  # type: ignore[arg-type]


def test_edge_policies_are_valid() -> None:
    TierPolicy(top_pct=F(100))
    TierPolicy(second_pct=F(1, 2), top_pct=F(1))  # thresholds below 1% are fine
    TierPolicy(step_multiplier=F(1))
    TierPolicy(minimum_sample=0)


@pytest.mark.parametrize("rate", [F(-1, 10**9), F(1) + F(1, 10**9)])
def test_rate_outside_unit_interval(rate: F) -> None:
    with pytest.raises(TierError, match=r"completion rate .* is outside \[0, 1\]"):
        tier_for(rate)


@pytest.mark.parametrize("args", [(-1, 0, 0), (0, -1, 0), (0, 0, -1)])
def test_negative_counts(args: tuple[int, int, int]) -> None:
    c, f, e = args
    with pytest.raises(TierError, match=rf"negative counts: completed={c} failed={f} excused={e}"):
        completion_score(c, f, excused=e)


def test_excused_is_carried_in_every_case_and_defaults_to_zero() -> None:
    assert completion_score(1, 0).excused == 0
    assert completion_score(0, 0, excused=5).excused == 5  # no data
    assert completion_score(10, 0, excused=3).excused == 3  # below the minimum sample
    assert completion_score(300, 0, excused=4).excused == 4  # measured


def test_completion_score_uses_the_given_policy() -> None:
    policy = TierPolicy(
        top_pct=F(99), second_pct=F(97), step_pct=F(1), step_multiplier=F(2, 10), minimum_sample=10
    )
    score = completion_score(970, 30, policy)
    assert (score.tier, score.multiplier) == (2, F(8, 10))  # default policy would say tier 3, 0.8
    assert completion_score(955, 45, policy).multiplier == F(4, 10)  # default: 0.7


def test_thresholds_that_reach_exactly_one_and_zero_percent() -> None:
    one = TierPolicy(top_pct=F(99), second_pct=F(61), step_pct=F(30))
    assert [(t.lower_pct, t.multiplier) for t in one.tiers()] == [
        (F(99), F(1)),
        (F(61), F(9, 10)),
        (F(31), F(8, 10)),
        (F(1), F(7, 10)),
        (F(0), F(6, 10)),
    ]
    assert tier_for(F(1, 100), one).multiplier == F(7, 10)
    assert tier_for(F(1, 200), one).multiplier == F(6, 10)
    zero = TierPolicy(top_pct=F(99), second_pct=F(60), step_pct=F(30))
    assert [(t.lower_pct, t.multiplier) for t in zero.tiers()] == [
        (F(99), F(1)),
        (F(60), F(9, 10)),
        (F(30), F(8, 10)),
        (F(0), F(7, 10)),
    ]


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_more_completions_never_lower_the_multiplier(completed: int, failed: int, extra: int) -> None:
    base = completion_score(completed, failed)
    better = completion_score(completed + extra, failed)
    if base.reason is CompletionReason.MEASURED:
        assert better.multiplier >= base.multiplier
    assert 0 <= base.multiplier <= 1
    assert base.multiplier in {t.multiplier for t in DEFAULT_TIERS.tiers()}


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(st.fractions(min_value=0, max_value=1), st.fractions(min_value=0, max_value=1))
def test_tier_is_monotone_in_rate(a: F, b: F) -> None:
    lo, hi = sorted((a, b))
    assert tier_for(lo).number >= tier_for(hi).number
    assert tier_for(lo).multiplier <= tier_for(hi).multiplier
    assert tier_for(lo).admits(lo * 100)
