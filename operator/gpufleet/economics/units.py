"""Money as integers: INT has 9 decimals, USDC 6; the model never sees a float.

INT strings go through the API's parser (``gpufleet.api.quantity``) so that a stake written in an
``OperatorPool`` and one written in a scenario file mean the same; USDC uses the same rules with
six decimals.
"""

from __future__ import annotations

import re
from fractions import Fraction

from gpufleet.api.quantity import AmountError, format_int_amount, parse_int_amount
from gpufleet.economics.errors import InvalidInput

INT_DECIMALS = 9
USDC_DECIMALS = 6
INT = 10**INT_DECIMALS
USDC = 10**USDC_DECIMALS
BPS_DENOMINATOR = 10_000
U64_MAX = 2**64 - 1

_DECIMAL_RE = re.compile(r"^(0|[1-9][0-9]*)(\.[0-9]+)?$")


def _pow10(decimals: int) -> int:
    return int(10**decimals)


def parse_amount(value: object, decimals: int, *, what: str = "amount") -> int:
    """Whole-token decimal (string or int) to base units; floats are refused, not rounded."""
    if isinstance(value, (bool, float)):
        raise InvalidInput(
            f"{what} must be a decimal string like '12.5' or an integer, got {type(value).__name__} "
            f"{value!r}; write it in quotes so YAML does not turn it into a float"
        )
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput(f"{what} must not be negative, got {value}")
        return value * _pow10(decimals)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a decimal string or an integer, got {type(value).__name__}")
    text = value.replace("_", "").replace(",", "").strip()
    if decimals == INT_DECIMALS:
        try:
            return parse_int_amount(text)
        except AmountError as exc:
            raise InvalidInput(f"{what}: {exc}") from None
    match = _DECIMAL_RE.fullmatch(text)
    if match is None:
        raise InvalidInput(f"{what} must be a non-negative decimal like '12.5', got {value!r}")
    whole, frac = match.group(1), (match.group(2) or ".")[1:]
    if len(frac) > decimals:
        raise InvalidInput(f"{what} has at most {decimals} decimals, got {len(frac)} in {value!r}")
    return int(whole) * _pow10(decimals) + int(frac.ljust(decimals, "0") or "0")


def parse_int(value: object, *, what: str = "INT amount") -> int:
    """INT (9 decimals) to base units."""
    return parse_amount(value, INT_DECIMALS, what=what)


def parse_usdc(value: object, *, what: str = "USDC amount") -> int:
    """USDC (6 decimals) to base units."""
    return parse_amount(value, USDC_DECIMALS, what=what)


def format_amount(base_units: int, decimals: int) -> str:
    """Base units to the shortest exact decimal string."""
    if decimals == INT_DECIMALS and base_units >= 0:
        return format_int_amount(base_units)
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(base_units), 10**decimals)
    if frac == 0 or decimals == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}".rstrip("0")


def format_int(base_units: int) -> str:
    return format_amount(base_units, INT_DECIMALS)


def format_usdc(base_units: int) -> str:
    return format_amount(base_units, USDC_DECIMALS)


def format_fraction(value: Fraction, digits: int = 9) -> str:
    """An exact ratio (e.g. a share price) truncated to ``digits`` decimals, for display only."""
    if value < 0:
        raise InvalidInput(f"ratio must not be negative, got {value}")
    scaled = value.numerator * 10**digits // value.denominator
    whole, frac = divmod(scaled, 10**digits)
    return f"{whole}.{frac:0{digits}d}" if digits else str(whole)


def check_bps(value: int, *, what: str) -> int:
    """A basis-point rate must be an int (not bool/float)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer number of basis points, got {value!r}")
    return value
