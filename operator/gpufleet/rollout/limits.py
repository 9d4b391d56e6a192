"""Unavailability limits: ``maxUnavailable`` as an absolute count or a percentage."""

from __future__ import annotations

import math
import re

_PERCENT = re.compile(r"^(\d{1,3})%$")


class InvalidLimit(ValueError):
    """A maxUnavailable value that is neither a positive integer nor a percentage."""


def resolve_max_unavailable(value: int | str, total: int, *, field: str = "maxUnavailable") -> int:
    """How many of ``total`` devices may be unavailable at once.

    Percentages round down like a Deployment's maxUnavailable, but never below 1: a limit of 0
    would stall the rollout forever, which is never what "10%" of a small pool means.
    """
    if total < 0:
        raise InvalidLimit(f"{field}: total device count must be >= 0, got {total}")
    if isinstance(value, bool):
        raise InvalidLimit(f"{field}: expected an integer >= 1 or a percentage like '25%', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise InvalidLimit(f"{field}: must be >= 1, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return resolve_max_unavailable(int(text), total, field=field)
        match = _PERCENT.match(text)
        if match:
            percent = int(match.group(1))
            if not 1 <= percent <= 100:
                raise InvalidLimit(f"{field}: percentage must be between 1% and 100%, got {value!r}")
            return max(1, math.floor(total * percent / 100))
    raise InvalidLimit(f"{field}: expected an integer >= 1 or a percentage like '25%', got {value!r}")
