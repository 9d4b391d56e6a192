"""VRAM share, effective stake and priority: exact integer/Fraction arithmetic."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.api.quantity import AmountError, format_int_amount, format_ratio, parse_int_amount
from gpufleet.shares import (
    INT_BASE,
    ShareError,
    device_share,
    distribute,
    effective_stake,
    priority_score,
    self_stake_ratio,
    vram_share,
)
from tests.unit.operator.bodies import model

K = Decimal("0.0001")


def test_announcement_worked_example() -> None:
    """100,000 INT: 4x RTX 4090 get 25,000 each; a single A100 80GB gets all 100,000."""
    stake = parse_int_amount("100000")
    rtx = model("rtx-4090").vram_mib
    four = distribute(dict.fromkeys(range(4), rtx), stake, K, Decimal(1))
    assert {s.share for s in four.values()} == {Fraction(1, 4)}
    assert [s.effective_stake_text for s in four.values()] == ["25000"] * 4
    one = distribute({0: model("a100-sxm4-80gb").vram_mib}, stake, K, Decimal(1))
    assert one[0].share == 1
    assert one[0].effective_stake_text == "100000"
    # k is per INT: 1 + 0.0001 * 25,000 = 3.5 and 1 + 0.0001 * 100,000 = 11.
    assert four[0].priority_number == 3.5
    assert one[0].priority_number == 11.0


def test_mixed_pool_shares_by_vram() -> None:
    shares = distribute({"a100": 81920, "4090": 24564}, parse_int_amount("1000"), K, Decimal(1))
    assert shares["a100"].share == Fraction(81920, 81920 + 24564)
    assert shares["a100"].effective_stake_base > shares["4090"].effective_stake_base


def test_effective_stake_floors_never_creates_stake() -> None:
    shares = distribute(dict.fromkeys(range(3), 1), 10, K, Decimal(1))
    assert [s.effective_stake_base for s in shares.values()] == [3, 3, 3]


@given(
    st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=64),
    st.integers(min_value=0, max_value=10**18),
)
def test_distribution_sums_to_at_most_the_pool(vrams: list[int], stake: int) -> None:
    shares = distribute(dict(enumerate(vrams)), stake, K, Decimal(1))
    total = sum(s.effective_stake_base for s in shares.values())
    assert stake - len(vrams) < total <= stake
    assert sum(s.share for s in shares.values()) == 1


def test_reputation_and_k_scale_priority() -> None:
    base = 50_000 * INT_BASE
    assert priority_score(base, Decimal(0), Decimal(1)) == 1  # k = 0: round-robin
    assert priority_score(base, K, Decimal("0.5")) == 1 + Fraction(5, 2)
    assert priority_score(base, K, Decimal(0)) == 1


@pytest.mark.parametrize(
    ("text", "base"), [("0", 0), ("12.5", 12_500_000_000), ("0.000000001", 1), ("100000", 100_000 * INT_BASE)]
)
def test_amount_round_trip(text: str, base: int) -> None:
    assert parse_int_amount(text) == base
    assert format_int_amount(base) == text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1.0000000001", "9 decimals"),
        ("-1", "non-negative"),
        ("abc", "decimal string"),
        ("NaN", "decimal string"),
        ("1e3", "exponents"),  # the second parser that accepted these is gone (#14)
        ("007", "leading zeros"),
    ],
)
def test_bad_amounts_are_rejected_with_reason(text: str, needle: str) -> None:
    with pytest.raises(AmountError, match=needle):
        parse_int_amount(text)


def test_share_errors_name_the_problem() -> None:
    with pytest.raises(ShareError, match="leaves nothing to share"):
        vram_share(10, 0)
    with pytest.raises(ShareError, match="exceeds"):
        vram_share(20, 10)
    with pytest.raises(ShareError, match="outside"):
        effective_stake(Fraction(3, 2), 10)
    with pytest.raises(ShareError, match="reputation"):
        device_share(1, 1, 1, K, Decimal(2))
    with pytest.raises(ShareError, match="inconsistent"):
        self_stake_ratio(11, 10)


def test_ratio_formatting_rounds_down() -> None:
    assert format_ratio(Fraction(1, 10), 6, round_down=True) == "0.1"
    assert format_ratio(Fraction(2, 3), 6, round_down=True) == "0.666666"
    assert format_ratio(Fraction(2, 3), 6) == "0.666667"
    assert format_ratio(Fraction(1), 6, round_down=True) == "1"
    assert self_stake_ratio(0, 0) == 0
