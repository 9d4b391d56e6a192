"""VRAM share, effective stake and priority score of a device (the Epoch 3 routing formula).

    priority = 1 + k * (device VRAM / pool validated VRAM) * pool stake * reputation weight

Stake is held as integer base units (1 INT = 10**9) and shares as exact ``Fraction`` so that
every device of a pool gets a reproducible value and the same inputs never produce a
different status (which would cause needless writes). ``k`` is expressed per whole INT: with
``k = 0.0001`` a device carrying 100,000 INT of effective stake at reputation 1 scores 11.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TypeVar

from gpufleet.api.quantity import BASE_UNITS_PER_INT, format_int_amount

INT_BASE = BASE_UNITS_PER_INT
"""Base units per INT (nine decimals, like the SPL token); amounts: ``gpufleet.api.quantity``."""

PRIORITY_DECIMALS = 6
"""Priority scores are rounded to this many decimals before they are written to a status."""

K = TypeVar("K")


class ShareError(ValueError):
    """Inputs that cannot describe a share (negative VRAM, device larger than its pool …)."""


def vram_share(device_vram_mib: int, pool_vram_mib: int) -> Fraction:
    """The device's fraction of its pool's validated VRAM."""
    if device_vram_mib < 0:
        raise ShareError(f"device VRAM {device_vram_mib} MiB is negative")
    if pool_vram_mib <= 0:
        raise ShareError(f"pool validated VRAM {pool_vram_mib} MiB leaves nothing to share")
    if device_vram_mib > pool_vram_mib:
        raise ShareError(
            f"device VRAM {device_vram_mib} MiB exceeds the pool's validated VRAM {pool_vram_mib} MiB"
        )
    return Fraction(device_vram_mib, pool_vram_mib)


def effective_stake(share: Fraction, total_stake_base: int) -> int:
    """floor(share * pool stake) in base units: rounding never creates stake."""
    if total_stake_base < 0:
        raise ShareError(f"pool stake {total_stake_base} base units is negative")
    if not 0 <= share <= 1:
        raise ShareError(f"share {share} is outside [0, 1]")
    return (share.numerator * total_stake_base) // share.denominator


def priority_score(effective_stake_base: int, k: Decimal, reputation_weight: Decimal) -> Fraction:
    """``1 + k * effective stake (INT) * reputation``, exactly."""
    if k < 0:
        raise ShareError(f"k = {k} is negative")
    if not 0 <= reputation_weight <= 1:
        raise ShareError(f"reputation weight {reputation_weight} is outside [0, 1]")
    return 1 + Fraction(k) * Fraction(effective_stake_base, INT_BASE) * Fraction(reputation_weight)


def priority_number(score: Fraction) -> float:
    """The float written to a status; rounded so that the same score always serialises alike."""
    return round(float(score), PRIORITY_DECIMALS)


def self_stake_ratio(self_stake_base: int, total_stake_base: int) -> Fraction:
    """Self stake / total stake; an empty pool counts as 0 (it cannot meet any minimum)."""
    if self_stake_base < 0 or total_stake_base < 0 or self_stake_base > total_stake_base:
        raise ShareError(
            f"self stake {self_stake_base} and total stake {total_stake_base} base units are inconsistent"
        )
    if total_stake_base == 0:
        return Fraction(0)
    return Fraction(self_stake_base, total_stake_base)


@dataclass(frozen=True)
class DeviceShare:
    """Everything the status of one device says about its stake."""

    vram_mib: int
    share: Fraction
    effective_stake_base: int
    priority: Fraction

    @property
    def share_number(self) -> float:
        return round(float(self.share), PRIORITY_DECIMALS)

    @property
    def effective_stake_text(self) -> str:
        return format_int_amount(self.effective_stake_base)

    @property
    def priority_number(self) -> float:
        return priority_number(self.priority)


def device_share(
    device_vram_mib: int,
    pool_vram_mib: int,
    total_stake_base: int,
    k: Decimal,
    reputation_weight: Decimal,
) -> DeviceShare:
    share = vram_share(device_vram_mib, pool_vram_mib)
    stake = effective_stake(share, total_stake_base)
    return DeviceShare(device_vram_mib, share, stake, priority_score(stake, k, reputation_weight))


def distribute(
    devices_vram_mib: Mapping[K, int],
    total_stake_base: int,
    k: Decimal,
    reputation_weight: Decimal,
) -> dict[K, DeviceShare]:
    """Shares of a whole pool at once (the pool's VRAM is the sum of the given devices)."""
    pool_vram = sum(devices_vram_mib.values())
    if not devices_vram_mib:
        return {}
    return {
        key: device_share(vram, pool_vram, total_stake_base, k, reputation_weight)
        for key, vram in devices_vram_mib.items()
    }
