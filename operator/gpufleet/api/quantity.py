"""INT token amounts as decimal strings, converted exactly to integer base units.

Stake is money: it travels through the API as a decimal string (``"100000"``, ``"12.5"``) with at
most nine decimals, and is turned into integer base units (1 INT = 10**9 base units) so that no
float ever touches it. The pattern below is also the CRD's ``pattern``, so the API server and the
models accept exactly the same strings.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

from pydantic import AfterValidator, Field

#: Base units per INT (nine decimals, like SPL tokens with 9 decimals).
BASE_UNITS_PER_INT = 10**9
DECIMALS = 9
#: At most 15 integer digits: far above any devnet supply, small enough to stay exact everywhere.
MAX_INTEGER_DIGITS = 15
#: Non-negative decimal, no sign, no exponent, no leading zeros, 1..9 decimals after a point.
INT_AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,9})?$"
INT_AMOUNT_MAX_LENGTH = MAX_INTEGER_DIGITS + 1 + DECIMALS
#: A ratio in [0, 1] as a decimal string with at most nine decimals (reputation weight).
UNIT_RATIO_PATTERN = r"^(0(\.[0-9]{1,9})?|1(\.0{1,9})?)$"

_AMOUNT_RE = re.compile(INT_AMOUNT_PATTERN)
_RATIO_RE = re.compile(UNIT_RATIO_PATTERN)


class AmountError(ValueError):
    """A string that is not a valid INT amount; the message says which rule it broke."""


def parse_int_amount(value: str) -> int:
    """Convert an INT decimal string to integer base units, exactly.

    Rejects floats, signs, exponents, more than nine decimals and anything else the CRD pattern
    rejects, with a message that says why.
    """
    if not isinstance(value, str):
        raise AmountError(f"INT amount must be a decimal string, got {type(value).__name__} {value!r}")
    if not _AMOUNT_RE.fullmatch(value):
        raise AmountError(_explain_bad_amount(value))
    whole, _, frac = value.partition(".")
    return int(whole) * BASE_UNITS_PER_INT + int(frac.ljust(DECIMALS, "0") or "0")


def format_int_amount(base_units: int) -> str:
    """Render integer base units as the shortest INT decimal string (inverse of parse)."""
    if isinstance(base_units, bool) or not isinstance(base_units, int):
        raise AmountError(f"base units must be an int, got {type(base_units).__name__}")
    if base_units < 0:
        raise AmountError(f"INT amounts are never negative, got {base_units} base units")
    whole, frac = divmod(base_units, BASE_UNITS_PER_INT)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:09d}".rstrip("0")


def parse_unit_ratio(value: str) -> Fraction:
    """Parse a decimal string in [0, 1] (e.g. a reputation weight) to an exact fraction."""
    if not isinstance(value, str) or not _RATIO_RE.fullmatch(value):
        raise AmountError(
            f"ratio must be a decimal string between 0 and 1 with at most {DECIMALS} decimals, "
            f"got {value!r}"
        )
    return Fraction(Decimal(value))


def format_ratio(value: Fraction, decimals: int = DECIMALS, *, round_down: bool = False) -> str:
    """Render a non-negative fraction as a decimal string, rounded half-up to ``decimals``.

    ``round_down``: truncate instead, for ratios that must never be overstated (a pool's
    self-stake ratio next to its minimum).
    """
    if value < 0:
        raise AmountError(f"ratio must not be negative, got {value}")
    scale = 10**decimals
    if round_down:
        scaled = value.numerator * scale // value.denominator
    else:
        scaled = (value.numerator * scale * 2 + value.denominator) // (value.denominator * 2)
    whole, frac = divmod(scaled, scale)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:0{decimals}d}".rstrip("0")


def _explain_bad_amount(value: str) -> str:
    if value == "":
        return "INT amount must not be empty"
    if value.startswith(("-", "+")):
        return f"INT amount must be a non-negative decimal without a sign, got {value!r}"
    if any(c in value for c in "eE"):
        return f"INT amount must be a plain decimal, exponents are not allowed, got {value!r}"
    whole, dot, frac = value.partition(".")
    if dot and len(frac) > DECIMALS:
        return f"INT amount has at most {DECIMALS} decimals, got {len(frac)} in {value!r}"
    if len(whole) > MAX_INTEGER_DIGITS:
        return f"INT amount has at most {MAX_INTEGER_DIGITS} integer digits, got {value!r}"
    if len(whole) > 1 and whole.startswith("0"):
        return f"INT amount must not have leading zeros, got {value!r}"
    return f"INT amount must be a decimal string like '100000' or '12.5', got {value!r}"


def _check_amount(value: str) -> str:
    parse_int_amount(value)
    return value


def _check_ratio(value: str) -> str:
    parse_unit_ratio(value)
    return value


#: An INT amount field: a string the CRD checks by pattern and the model explains when wrong.
IntAmount = Annotated[
    str,
    AfterValidator(_check_amount),
    Field(max_length=INT_AMOUNT_MAX_LENGTH, json_schema_extra={"pattern": INT_AMOUNT_PATTERN}),
]
#: A decimal ratio in [0, 1] (reputation weight, self-stake ratio).
UnitRatio = Annotated[
    str,
    AfterValidator(_check_ratio),
    Field(max_length=11, json_schema_extra={"pattern": UNIT_RATIO_PATTERN}),
]
