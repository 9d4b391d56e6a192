from __future__ import annotations

import pytest

from gpufleet.rollout.limits import InvalidLimit, resolve_max_unavailable


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [
        (1, 8, 1),
        (3, 8, 3),
        ("2", 8, 2),
        ("25%", 8, 2),
        ("10%", 800, 80),
        ("10%", 39, 3),  # rounds down like a Deployment
        ("10%", 4, 1),  # but never to zero: that would stall every rollout
        ("100%", 8, 8),
    ],
)
def test_resolve(value: int | str, total: int, expected: int) -> None:
    assert resolve_max_unavailable(value, total) == expected


@pytest.mark.parametrize("value", [0, -1, "0%", "101%", "ten", "10 %", True, 2.5])
def test_bad_limits_name_the_field(value: object) -> None:
    with pytest.raises(InvalidLimit, match=r"spec\.updatePolicy\.maxUnavailable"):
        resolve_max_unavailable(value, 8, field="spec.updatePolicy.maxUnavailable")  # type: ignore[arg-type]
