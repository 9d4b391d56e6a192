"""Integer money parsing: exact, refusing floats and excess precision with a reason."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.units import (
    format_fraction,
    format_int,
    format_usdc,
    parse_int,
    parse_usdc,
)


def test_int_and_usdc_parse_exactly() -> None:
    assert parse_int("12.5") == 12_500_000_000
    assert parse_int("0.000000001") == 1
    assert parse_int(3) == 3 * 10**9
    assert parse_int("1_000") == 1000 * 10**9
    assert parse_usdc("12.5") == 12_500_000
    assert parse_usdc("0.000001") == 1
    assert format_int(12_500_000_000) == "12.5"
    assert format_usdc(12_500_000) == "12.5"
    assert format_fraction(Fraction(1200, 1090)) == "1.100917431"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "float"),
        ("1.0000000001", "at most 9 decimals"),
        ("-1", "sign"),
        (True, "bool"),
        (None, "decimal"),
    ],
)
def test_bad_int_amounts_say_why(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_int(value)


def test_bad_usdc_amounts_say_why() -> None:
    with pytest.raises(InvalidInput, match="at most 6 decimals"):
        parse_usdc("0.0000001")
    with pytest.raises(InvalidInput, match="non-negative decimal"):
        parse_usdc("1e3")
