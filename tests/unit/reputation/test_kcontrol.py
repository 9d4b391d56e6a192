"""k controller: step response, deadband, bounds, asymmetry, no oscillation at steady load."""

from __future__ import annotations

import itertools
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.reputation.kcontrol import (
    DEFAULT_K_POLICY,
    K_QUANTUM,
    KControlError,
    KPolicy,
    KReason,
    KState,
    KStep,
    k_step,
    quantize,
    settling_intervals,
    step_response,
    utilisation,
)

P = DEFAULT_K_POLICY


def ks(steps: list[KStep]) -> list[F]:
    return [s.state.k for s in steps]


def sign_changes(values: list[F]) -> int:
    diffs = [b - a for a, b in itertools.pairwise(values) if b != a]
    return sum(1 for x, y in itertools.pairwise(diffs) if (x > 0) != (y > 0))


def test_defaults() -> None:
    assert (P.k_min, P.k_max, P.target, P.deadband) == (F(0), F(1, 1000), F(7, 10), F(1, 20))
    assert (P.rise_gain, P.fall_gain, P.smoothing, P.interval_seconds) == (F(1, 20), F(1, 4), F(3, 10), 30)
    assert P.fall_gain > P.rise_gain


def test_load_step_up_falls_to_k_min_within_eleven_intervals_monotonically() -> None:
    steps = step_response(P, P.k_max, F(3, 10), F(95, 100), 40)
    k = ks(steps)
    assert settling_intervals(steps) == 11
    assert k[-1] == P.k_min
    assert all(b <= a for a, b in itertools.pairwise(k))
    assert all(P.k_min <= x <= P.k_max for x in k)
    assert steps[-1].reason is KReason.AT_MINIMUM
    assert steps[0].reason is KReason.AT_MAXIMUM  # the EMA has not crossed the target yet


def test_load_step_down_rises_slowly_to_k_max() -> None:
    steps = step_response(P, P.k_min, F(95, 100), F(2, 10), 60)
    k = ks(steps)
    assert settling_intervals(steps) == 33
    assert k[-1] == P.k_max
    assert all(b >= a for a, b in itertools.pairwise(k))
    # rising takes three times as long as falling: asymmetric on purpose
    fall = settling_intervals(step_response(P, P.k_max, F(3, 10), F(95, 100), 60))
    assert fall is not None
    assert 3 * fall <= 33


def test_first_steps_exact() -> None:
    # EMA 0.3 -> 0.3 + 0.3 * (0.1 - 0.3) = 0.24; error -0.46; excess 0.41 / 0.65; rise 0.05 * 0.001 * 41/65
    step = k_step(KState(F(0), F(3, 10)), F(1, 10))
    assert step.state.ema == F(24, 100)
    assert step.state.k == quantize(F(1, 20) * F(1, 1000) * F(41, 65))
    assert step.reason is KReason.BELOW_TARGET
    assert step.change == step.state.k
    # busy: EMA 0.9 exactly; error 0.2; excess 0.15 / 0.25; fall 0.25 * 0.001 * 0.6
    down = k_step(KState(F(1, 1000), F(9, 10)), F(9, 10))
    assert down.state.k == F(1, 1000) - F(1, 4) * F(1, 1000) * F(3, 5)
    assert down.reason is KReason.ABOVE_TARGET
    assert down.changed


def test_deadband_holds_k_at_both_edges() -> None:
    for u in (F(65, 100), F(70, 100), F(75, 100)):
        step = k_step(KState(F(5, 10000), u), u)
        assert (step.state.k, step.reason, step.changed) == (F(5, 10000), KReason.WITHIN_DEADBAND, False)
    just_out = k_step(KState(F(5, 10000), F(75, 100) + F(1, 10**6)), F(75, 100) + F(1, 10**6))
    assert just_out.reason is KReason.ABOVE_TARGET
    assert just_out.state.k < F(5, 10000)
    just_below = k_step(KState(F(5, 10000), F(65, 100) - F(1, 10**4)), F(65, 100) - F(1, 10**4))
    assert just_below.reason is KReason.BELOW_TARGET
    assert just_below.state.k > F(5, 10000)


def test_error_is_capped_so_one_interval_moves_at_most_the_gain() -> None:
    big = k_step(KState(F(1, 1000), F(5)), F(5))  # utilisation 500% (queues)
    assert big.state.k == F(1, 1000) - F(1, 4) * F(1, 1000)
    idle = k_step(KState(F(0), F(0)), F(0))
    assert idle.state.k == F(1, 20) * F(1, 1000)


def test_first_sample_seeds_the_ema() -> None:
    step = k_step(KState(F(1, 10000)), F(7, 10))
    assert step.state.ema == F(7, 10)
    assert step.reason is KReason.WITHIN_DEADBAND


def test_no_capacity_holds_k_and_ema() -> None:
    step = k_step(KState(F(3, 10000), F(1, 2)), None)
    assert (step.state, step.reason, step.utilisation, step.changed) == (
        KState(F(3, 10000), F(1, 2)),
        KReason.NO_CAPACITY,
        None,
        False,
    )


def test_k_outside_bounds_is_clamped_first() -> None:
    step = k_step(KState(F(1, 100), F(7, 10)), F(7, 10))
    assert step.state.k == P.k_max
    assert step.change == P.k_max - F(1, 100)
    assert step.changed


def test_negative_utilisation_is_refused() -> None:
    with pytest.raises(KControlError):
        k_step(KState(F(0)), F(-1, 10))


def test_utilisation() -> None:
    assert utilisation(3, 4) == F(3, 4)
    assert utilisation(0, 4) == 0
    assert utilisation(9, 4) == F(9, 4)
    assert utilisation(0, 0) is None
    with pytest.raises(KControlError):
        utilisation(-1, 4)
    with pytest.raises(KControlError):
        utilisation(1, -4)


def test_quantize() -> None:
    assert quantize(F(1, 3 * 10**9)) == 0
    assert quantize(F(1, 2 * 10**9)) == K_QUANTUM  # half rounds up
    assert quantize(F(2, 3 * 10**9)) == K_QUANTUM
    assert quantize(F(1, 10000)) == F(1, 10000)


def test_settling_intervals() -> None:
    assert settling_intervals([]) == 0
    still = step_response(P, F(1, 10000), F(7, 10), F(7, 10), 5)
    assert settling_intervals(still) == 0
    moving = step_response(P, P.k_min, F(1, 10), F(1, 10), 3)
    assert settling_intervals(moving) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k_min": F(2), "k_max": F(1)},
        {"k_min": F(-1)},
        {"deadband": F(-1, 10)},
        {"deadband": F(7, 10)},
        {"target": F(96, 100)},
        {"target": F(0)},
        {"rise_gain": F(0)},
        {"fall_gain": F(11, 10)},
        {"rise_gain": F(11, 10)},
        {"fall_gain": F(0)},
        {"smoothing": F(0)},
        {"smoothing": F(11, 10)},
        {"interval_seconds": 0},
    ],
)
def test_invalid_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(KControlError):
        KPolicy(**kwargs)  # type: ignore[arg-type]


def test_edge_policies_are_valid() -> None:
    KPolicy(
        k_min=F(1),
        k_max=F(1),
        deadband=F(0),
        rise_gain=F(1),
        fall_gain=F(1),
        smoothing=F(1),
        interval_seconds=1,
    )
    assert KPolicy(k_min=F(1), k_max=F(1)).span == 0


loads = st.fractions(min_value=0, max_value=2, max_denominator=1000)


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(loads, loads, st.fractions(min_value=0, max_value=F(1, 1000), max_denominator=10**6))
def test_constant_load_never_oscillates(before: F, after: F, k0: F) -> None:
    steps = step_response(P, k0, before, after, 80)
    k = [quantize(k0), *ks(steps)]
    assert sign_changes(k) <= 1  # at most the one reversal of the EMA crossing the band
    assert all(P.k_min <= x <= P.k_max for x in k)
    if before == after:
        assert sign_changes(k) == 0


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(loads, st.fractions(min_value=0, max_value=F(1, 1000), max_denominator=10**6))
def test_steady_state_direction_follows_the_error(u: F, k0: F) -> None:
    steps = step_response(P, k0, u, u, 5)
    k = [quantize(k0), *ks(steps)]
    if u < P.target - P.deadband:
        assert k[-1] >= k[0]
    elif u > P.target + P.deadband:
        assert k[-1] <= k[0]
    else:
        assert k[-1] == k[0]


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(st.lists(st.one_of(st.none(), loads), max_size=60))
def test_k_stays_in_bounds_whatever_the_load(series: list[F | None]) -> None:
    state = KState(F(1, 2000))
    for u in series:
        step = k_step(state, u)
        assert P.k_min <= step.state.k <= P.k_max
        assert abs(step.change) <= max(P.rise_gain, P.fall_gain) * P.span + K_QUANTUM
        state = step.state


def test_steps_report_the_utilisation_they_used() -> None:
    held = k_step(KState(F(1, 10000), F(7, 10)), F(7, 10))
    assert held.utilisation == F(7, 10)
    moved = k_step(KState(F(1, 10000), F(1, 10)), F(1, 10))
    assert moved.utilisation == F(1, 10)
    assert moved.changed


def test_settling_needs_the_last_step_still() -> None:
    still = k_step(KState(F(1, 10000), F(7, 10)), F(7, 10))
    moving = k_step(KState(F(0), F(0)), F(0))
    assert settling_intervals([still, moving]) is None
    assert settling_intervals([moving, still]) == 1
    assert settling_intervals([still, still]) == 0


def test_step_response_uses_the_given_policy() -> None:
    fast = KPolicy(fall_gain=F(1))
    assert settling_intervals(step_response(fast, fast.k_max, F(3, 10), F(95, 100), 40)) == 6
    assert settling_intervals(step_response(P, P.k_max, F(3, 10), F(95, 100), 40)) == 11
