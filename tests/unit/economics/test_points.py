"""Off-chain points: compute points by model weight, bonus points, per operator, over time."""

from __future__ import annotations

import pytest

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.points import PointsLedger, format_points


def test_compute_and_bonus_points_accrue_per_operator() -> None:
    pts = PointsLedger.from_weights({"llama-3.1-8b": "1", "deepseek-r1": "2.5"})
    pts.record_work("ann", "llama-3.1-8b", 1000, at=10)
    pts.record_work("ann", "deepseek-r1", 3, at=20)
    pts.record_work("ben", "deepseek-r1", 400, at=15)
    pts.award_bonus("ben", "50.25", "wrote the vLLM tuning guide", at=30)
    assert format_points(pts.total("ann")) == "1007.5"
    assert format_points(pts.total("ben")) == "1050.25"
    assert pts.total("ann", as_of=15) == 1000 * 10**6
    assert pts.total("ann", as_of=5) == 0
    assert pts.breakdown("ben") == {"compute": 1000 * 10**6, "bonus": 50_250_000}
    assert [name for name, _ in pts.leaderboard()] == ["ben", "ann"]


def test_unknown_model_and_bad_input() -> None:
    pts = PointsLedger.from_weights({"m": "1"})
    with pytest.raises(InvalidInput, match="no points weight"):
        pts.record_work("a", "other", 1, at=0)
    with pytest.raises(InvalidInput, match="reason"):
        pts.award_bonus("a", "1", " ", at=0)
    with pytest.raises(InvalidInput, match="float"):
        pts.award_bonus("a", 1.5, "x", at=0)
    pts.record_work("a", "m", 1, at=10)
    with pytest.raises(InvalidInput, match="time order"):
        pts.record_work("a", "m", 1, at=9)
    assert PointsLedger.from_weights({}, default="0.5").weight("any") == 500_000
