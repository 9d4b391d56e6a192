"""INT amounts: exact conversion between decimal strings and integer base units."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.api.quantity import (
    BASE_UNITS_PER_INT,
    INT_AMOUNT_PATTERN,
    AmountError,
    format_int_amount,
    format_ratio,
    parse_int_amount,
    parse_unit_ratio,
)

MAX_UNITS = 10**15 * BASE_UNITS_PER_INT - 1


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0", 0),
        ("1", 1_000_000_000),
        ("12.5", 12_500_000_000),
        ("100000", 100_000 * 10**9),
        ("0.000000001", 1),
        ("999999999999999.999999999", MAX_UNITS),
        ("1.10", 1_100_000_000),
    ],
)
def test_parse_is_exact(text: str, units: int) -> None:
    assert parse_int_amount(text) == units


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("-1", "sign"),
        ("+1", "sign"),
        ("1e5", "exponent"),
        ("1.0000000001", "at most 9 decimals"),
        ("0100", "leading zeros"),
        ("1" * 16, "15 integer digits"),
        ("1,000", "decimal string like"),
        ("1.", "decimal string like"),
        (".5", "decimal string like"),
        (" 1", "decimal string like"),
    ],
)
def test_parse_rejects_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(AmountError, match=re.escape(why)):
        parse_int_amount(text)


def test_parse_rejects_floats() -> None:
    with pytest.raises(AmountError, match="decimal string"):
        parse_int_amount(12.5)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=MAX_UNITS))
def test_format_then_parse_round_trips(units: int) -> None:
    text = format_int_amount(units)
    assert re.fullmatch(INT_AMOUNT_PATTERN, text)
    assert parse_int_amount(text) == units


@given(st.from_regex(INT_AMOUNT_PATTERN, fullmatch=True))
def test_everything_the_crd_pattern_accepts_parses(text: str) -> None:
    # The CRD and the parser must agree, or the API server stores stake the operator cannot read.
    units = parse_int_amount(text)
    assert parse_int_amount(format_int_amount(units)) == units


def test_format_rejects_negative_and_non_int() -> None:
    with pytest.raises(AmountError, match="never negative"):
        format_int_amount(-1)
    with pytest.raises(AmountError, match="must be an int"):
        format_int_amount(True)


@pytest.mark.parametrize(
    ("text", "value"), [("0", Fraction(0)), ("1", Fraction(1)), ("0.9", Fraction(9, 10))]
)
def test_unit_ratio(text: str, value: Fraction) -> None:
    assert parse_unit_ratio(text) == value


@pytest.mark.parametrize("text", ["1.5", "-0.1", "2", "0.1234567891", "1.01"])
def test_unit_ratio_out_of_range(text: str) -> None:
    with pytest.raises(AmountError, match="between 0 and 1"):
        parse_unit_ratio(text)


def test_format_ratio_rounds_half_up() -> None:
    assert format_ratio(Fraction(1, 3)) == "0.333333333"
    assert format_ratio(Fraction(2, 3)) == "0.666666667"
    assert format_ratio(Fraction(1, 10)) == "0.1"
    assert format_ratio(Fraction(1)) == "1"
    with pytest.raises(AmountError):
        format_ratio(Fraction(-1, 2))
