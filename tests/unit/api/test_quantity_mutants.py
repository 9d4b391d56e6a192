"""INT amounts and ratios at their edges: exact messages, exact digits, rounding both ways.

Written against mutation survivors (bench/results/mutation.md): money is parsed and printed here,
so every digit and every rule's message is pinned.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from pydantic import TypeAdapter, ValidationError

from gpufleet.api.quantity import (
    INT_AMOUNT_MAX_LENGTH,
    AmountError,
    IntAmount,
    UnitRatio,
    format_int_amount,
    format_ratio,
    parse_int_amount,
    parse_unit_ratio,
)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("0", 0),
        ("1", 10**9),
        ("0.000000001", 1),
        ("12.5", 12_500_000_000),
        ("1.10", 1_100_000_000),
        ("999999999999999.999999999", 999_999_999_999_999_999_999_999),
        ("100000", 100_000 * 10**9),
    ],
)
def test_parse_exact_units(text: str, units: int) -> None:
    assert parse_int_amount(text) == units


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "INT amount must not be empty"),
        ("-1", "INT amount must be a non-negative decimal without a sign, got '-1'"),
        ("+1", "INT amount must be a non-negative decimal without a sign, got '+1'"),
        ("1e5", "INT amount must be a plain decimal, exponents are not allowed, got '1e5'"),
        ("1E5", "INT amount must be a plain decimal, exponents are not allowed, got '1E5'"),
        ("1.0000000001", "INT amount has at most 9 decimals, got 10 in '1.0000000001'"),
        ("1234567890123456", "INT amount has at most 15 integer digits, got '1234567890123456'"),
        ("01", "INT amount must not have leading zeros, got '01'"),
        ("00.5", "INT amount must not have leading zeros, got '00.5'"),
        ("1.", "INT amount must be a decimal string like '100000' or '12.5', got '1.'"),
        ("abc", "INT amount must be a decimal string like '100000' or '12.5', got 'abc'"),
        ("1X", "INT amount must be a decimal string like '100000' or '12.5', got '1X'"),
        ("0.", "INT amount must be a decimal string like '100000' or '12.5', got '0.'"),
        # Each rule is checked at its own bound: 9 decimals, 15 integer digits are fine in themselves.
        ("01.123456789", "INT amount must not have leading zeros, got '01.123456789'"),
        ("012345678901234", "INT amount must not have leading zeros, got '012345678901234'"),
    ],
)
def test_each_rule_has_its_own_message(text: str, message: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_int_amount(text)
    assert str(info.value) == message


def test_non_strings_are_named_by_type() -> None:
    with pytest.raises(AmountError) as info:
        parse_int_amount(1.5)  # type: ignore[arg-type]
    assert str(info.value) == "INT amount must be a decimal string, got float 1.5"


@pytest.mark.parametrize(
    ("units", "text"),
    [(0, "0"), (1, "0.000000001"), (123, "0.000000123"), (10**9, "1"), (1_500_000_000, "1.5"),
     (10**9 + 1, "1.000000001"), (25 * 10**8, "2.5")],
)  # fmt: skip
def test_format_exact_text(units: int, text: str) -> None:
    assert format_int_amount(units) == text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "base units must be an int, got bool"),
        (1.0, "base units must be an int, got float"),
        (-1, "INT amounts are never negative, got -1 base units"),
    ],
)
def test_format_refusals(value: object, message: str) -> None:
    with pytest.raises(AmountError) as info:
        format_int_amount(value)  # type: ignore[arg-type]
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", Fraction(0)), ("1", Fraction(1)), ("0.5", Fraction(1, 2)), ("1.000000000", Fraction(1)),
     ("0.000000001", Fraction(1, 10**9))],
)  # fmt: skip
def test_ratio_parse(text: str, value: Fraction) -> None:
    assert parse_unit_ratio(text) == value


@pytest.mark.parametrize("text", ["1.1", "2", "0.1234567891", "-0.5", "", ".5"])
def test_ratio_refusal_message(text: str) -> None:
    with pytest.raises(AmountError) as info:
        parse_unit_ratio(text)
    assert str(info.value) == (
        f"ratio must be a decimal string between 0 and 1 with at most 9 decimals, got {text!r}"
    )
    with pytest.raises(AmountError):
        parse_unit_ratio(0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "decimals", "half_up", "down"),
    [
        (Fraction(1, 3), 9, "0.333333333", "0.333333333"),
        (Fraction(2, 3), 9, "0.666666667", "0.666666666"),
        (Fraction(1, 2), 0, "1", "0"),
        (Fraction(1, 4), 1, "0.3", "0.2"),
        (Fraction(3, 20), 1, "0.2", "0.1"),
        (Fraction(5), 9, "5", "5"),
        (Fraction(5, 10**10), 9, "0.000000001", "0"),
        (Fraction(4, 10**10), 9, "0", "0"),
        (Fraction(21, 10), 3, "2.1", "2.1"),
        (Fraction(0), 9, "0", "0"),
    ],
)
def test_format_ratio_rounds_half_up_or_down(value: Fraction, decimals: int, half_up: str, down: str) -> None:
    assert format_ratio(value, decimals) == half_up
    assert format_ratio(value, decimals, round_down=True) == down


def test_format_ratio_default_is_nine_decimals_half_up() -> None:
    assert format_ratio(Fraction(2, 3)) == "0.666666667"
    assert format_ratio(Fraction(1, 8)) == "0.125"


def test_format_ratio_refuses_negatives() -> None:
    with pytest.raises(AmountError) as info:
        format_ratio(Fraction(-1, 2))
    assert str(info.value) == "ratio must not be negative, got -1/2"


def test_model_fields_check_and_keep_the_text() -> None:
    amount = TypeAdapter(IntAmount)
    assert amount.validate_python("12.5") == "12.5"
    with pytest.raises(ValidationError, match="leading zeros"):
        amount.validate_python("012")
    with pytest.raises(ValidationError):
        amount.validate_python("1" * (INT_AMOUNT_MAX_LENGTH + 1))
    ratio = TypeAdapter(UnitRatio)
    assert ratio.validate_python("0.25") == "0.25"
    with pytest.raises(ValidationError, match="between 0 and 1"):
        ratio.validate_python("1.5")
    assert INT_AMOUNT_MAX_LENGTH == 25
