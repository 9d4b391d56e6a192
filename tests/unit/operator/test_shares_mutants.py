"""Shares and priority at their edges, and "the shares of a pool sum to at most its stake".

Written against mutation survivors (bench/results/mutation.md): boundaries of every check, exact
messages, floor rather than round, the pool's VRAM as the sum of its devices.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.shares import (
    INT_BASE,
    PRIORITY_DECIMALS,
    DeviceShare,
    ShareError,
    device_share,
    distribute,
    effective_stake,
    priority_number,
    priority_score,
    self_stake_ratio,
    vram_share,
)


def _message(fn: object, *args: object) -> str:
    with pytest.raises(ShareError) as info:
        fn(*args)  # type: ignore[operator]
    return str(info.value)


def test_vram_share_bounds_and_messages() -> None:
    assert vram_share(0, 1) == 0
    assert vram_share(1, 1) == 1
    assert vram_share(1, 3) == Fraction(1, 3)
    assert _message(vram_share, -1, 10) == "device VRAM -1 MiB is negative"
    assert _message(vram_share, 0, 0) == "pool validated VRAM 0 MiB leaves nothing to share"
    assert _message(vram_share, 1, -1) == "pool validated VRAM -1 MiB leaves nothing to share"
    assert _message(vram_share, 11, 10) == "device VRAM 11 MiB exceeds the pool's validated VRAM 10 MiB"


def test_effective_stake_floors_and_checks() -> None:
    assert effective_stake(Fraction(1, 3), 10) == 3
    assert effective_stake(Fraction(2, 3), 10) == 6  # floor, never rounded up
    assert effective_stake(Fraction(1), 7) == 7
    assert effective_stake(Fraction(0), 7) == 0
    assert effective_stake(Fraction(1, 2), 0) == 0
    assert _message(effective_stake, Fraction(1, 2), -1) == "pool stake -1 base units is negative"
    assert _message(effective_stake, Fraction(3, 2), 10) == "share 3/2 is outside [0, 1]"
    assert _message(effective_stake, Fraction(-1, 2), 10) == "share -1/2 is outside [0, 1]"


def test_priority_score_exact_and_bounds() -> None:
    assert priority_score(100_000 * INT_BASE, Decimal("0.0001"), Decimal(1)) == 11
    assert priority_score(INT_BASE, Decimal("0.5"), Decimal("0.5")) == Fraction(5, 4)
    assert priority_score(3 * INT_BASE, Decimal(0), Decimal(1)) == 1
    assert priority_score(INT_BASE // 2, Decimal(1), Decimal(1)) == Fraction(3, 2)
    assert priority_score(INT_BASE, Decimal(2), Decimal(0)) == 1
    assert _message(priority_score, 1, Decimal("-0.1"), Decimal(1)) == "k = -0.1 is negative"
    assert (
        _message(priority_score, 1, Decimal(1), Decimal("1.1")) == "reputation weight 1.1 is outside [0, 1]"
    )
    assert (
        _message(priority_score, 1, Decimal(1), Decimal("-0.1")) == "reputation weight -0.1 is outside [0, 1]"
    )


def test_priority_number_rounds_to_six_decimals() -> None:
    assert PRIORITY_DECIMALS == 6
    assert priority_number(Fraction(1, 3)) == 0.333333
    assert priority_number(Fraction(2, 3)) == 0.666667
    assert priority_number(Fraction(11)) == 11.0


def test_self_stake_ratio() -> None:
    assert self_stake_ratio(0, 0) == 0
    assert self_stake_ratio(5, 5) == 1
    assert self_stake_ratio(1, 4) == Fraction(1, 4)
    assert self_stake_ratio(0, 4) == 0
    message = "self stake {} and total stake {} base units are inconsistent"
    assert _message(self_stake_ratio, -1, 4) == message.format(-1, 4)
    assert _message(self_stake_ratio, 1, -4) == message.format(1, -4)
    assert _message(self_stake_ratio, 5, 4) == message.format(5, 4)


def test_device_share_and_its_status_texts() -> None:
    share = device_share(24_564, 4 * 24_564 + 81_920, 100_000 * INT_BASE, Decimal("0.0001"), Decimal("0.5"))
    expected = Fraction(24_564, 4 * 24_564 + 81_920)
    stake = expected.numerator * 100_000 * INT_BASE // expected.denominator
    assert share == DeviceShare(
        24_564, expected, stake, 1 + Fraction(1, 10_000) * Fraction(stake, INT_BASE) / 2
    )
    assert share.share_number == round(float(expected), 6)
    assert share.effective_stake_text == "13633.336293402"  # 24564 / 180176 of 100000 INT, floored
    assert share.priority_number == round(float(share.priority), 6)


def test_distribute_uses_the_sum_of_the_devices() -> None:
    assert distribute({}, 10, Decimal(0), Decimal(1)) == {}
    shares = distribute({"a": 1, "b": 2, "c": 0}, 10 * INT_BASE, Decimal("0.1"), Decimal(1))
    assert {k: v.share for k, v in shares.items()} == {"a": Fraction(1, 3), "b": Fraction(2, 3), "c": 0}
    assert {k: v.effective_stake_base for k, v in shares.items()} == {
        "a": 3_333_333_333,
        "b": 6_666_666_666,
        "c": 0,
    }
    assert shares["b"].priority == 1 + Fraction(1, 10) * Fraction(6_666_666_666, INT_BASE)
    assert shares["c"].vram_mib == 0


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    st.dictionaries(st.integers(0, 63), st.integers(0, 200_000), min_size=1, max_size=16).filter(
        lambda d: sum(d.values()) > 0
    ),
    st.integers(0, 10**24),
    st.decimals(min_value=0, max_value=1, places=4),
)
def test_shares_of_a_pool_sum_to_at_most_its_stake(vram: dict[int, int], stake: int, weight: Decimal) -> None:
    shares = distribute(vram, stake, Decimal("0.0001"), weight)
    total = sum(s.effective_stake_base for s in shares.values())
    assert total <= stake
    assert stake - total < len(vram)  # floor loses less than one base unit per device
    assert sum(s.share for s in shares.values()) == 1
    for key, s in shares.items():
        assert s.effective_stake_base == Fraction(vram[key], sum(vram.values())) * stake // 1
        assert 1 <= s.priority <= 1 + Fraction(1, 10_000) * Fraction(stake, INT_BASE)
