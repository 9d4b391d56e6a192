"""Splitting an epoch's emission across pools by stake-weighted job completion.

The announcement only says token rewards are "based on stake-weighted job completion". gpufleet
defines it as follows (docs/economics.md has the worked example):

* each pool's weight is ``work * stake``: the work units it completed in the epoch (jobs, or
  generated tokens -- the caller chooses, the same unit for every pool) times its staked INT at the
  end of the epoch (``total_staked_amount``: tokens in cooldown do not count);
* pool ``p`` receives ``floor(E * w_p / W)`` base units of the emission ``E``, and the base units
  left over by rounding go one each to the pools with the largest remainders (ties: the order of
  the pools' addresses in the reward tree), so the split always sums to exactly ``E``;
* if no pool has both work and stake, the emission is split by work alone (work was done, but
  only by unstaked pools: paying idle staked pools instead would reward nobody's work), then by
  stake alone (nobody worked), and if no pool has stake either, equally; with no pools at all
  nothing is split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.merkle import locale_compare_key


@dataclass(frozen=True)
class PoolActivity:
    """What a pool did in one epoch: its address, stake (base units) and completed work units."""

    address: str
    stake: int
    work: int

    def __post_init__(self) -> None:
        for name in ("stake", "work"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(
                    f"{name} of pool {self.address} must be a non-negative integer, got {value!r}"
                )


def split_by_weight(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Largest-remainder split of ``total`` proportional to integer weights; sums to ``total``."""
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise InvalidInput(f"amount to split must be a non-negative integer, got {total!r}")
    if any(w < 0 for w in weights.values()):
        raise InvalidInput("weights must not be negative")
    weight_sum = sum(weights.values())
    if weight_sum == 0:
        raise InvalidInput("cannot split by weights that are all zero")
    order = sorted(weights, key=locale_compare_key)
    shares = {k: total * weights[k] // weight_sum for k in order}
    remainders = {k: total * weights[k] % weight_sum for k in order}
    left = total - sum(shares.values())
    # Stable sort keeps address order among equal remainders.
    for k in sorted(order, key=lambda k: -remainders[k])[:left]:
        shares[k] += 1
    return shares


def split_emission(total: int, pools: Sequence[PoolActivity]) -> dict[str, int]:
    """Token reward per pool address for one epoch, by stake-weighted job completion."""
    if not pools:
        return {}
    addresses = [p.address for p in pools]
    if len(set(addresses)) != len(addresses):
        raise InvalidInput("each pool may appear once in an epoch's activity")
    weights = {p.address: p.work * p.stake for p in pools}
    if sum(weights.values()) == 0:
        weights = {p.address: p.work for p in pools}
    if sum(weights.values()) == 0:
        weights = {p.address: p.stake for p in pools}
    if sum(weights.values()) == 0:
        weights = {p.address: 1 for p in pools}
    return split_by_weight(total, weights)
