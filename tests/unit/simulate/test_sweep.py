"""Sweep helpers: settling time and overshoot of k after a load step."""

from __future__ import annotations

import pytest

from gpufleet.simulate.sweep import SweepPlan, settle_and_overshoot


def test_settling_and_overshoot_of_a_falling_k() -> None:
    ts = [0, 10, 20, 30, 40, 50, 60]
    ks = [1.0, 0.5, 0.0, 0.1, 0.2, 0.2, 0.2]  # falls from 1.0, undershoots to 0, settles at 0.2
    r = settle_and_overshoot(ts, ks, 0, 70, 1.0, 0.1)
    assert r["k_final"] == 0.2
    assert r["settling_s"] == 40
    # beyond the final value in the direction of the change: (0 - 0.2) / (0.2 - 1.0) = 0.25
    assert r["overshoot"] == pytest.approx(0.25)


def test_no_overshoot_when_monotone() -> None:
    r = settle_and_overshoot([0, 1, 2], [0.0, 0.5, 1.0], 0, 3, 0.0, 0.05)
    assert r["overshoot"] == 0
    assert r["settling_s"] == 2


def test_plan_validates_metric() -> None:
    with pytest.raises(ValueError, match="unknown objective metric"):
        SweepPlan(metric="nope")
