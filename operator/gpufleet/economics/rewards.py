"""Closing an epoch: the emission split by stake-weighted job completion, eligibility, commission.

``compute_epoch_rewards`` is the whole decision; the epoch controller only gathers its inputs
(completed jobs from the router's counters, stake from the pool's stake source, penalty time from
``Penalty`` objects) and records its output. docs/economics.md defines the rule:

* a pool's **eligible time** is the epoch's length minus the seconds it spent under a penalty
  (overlapping penalties count once); a halted pool has none;
* its **score** is ``completed jobs x stake x eligible seconds`` (integers, stake in base units,
  cooldown tokens excluded);
* the emission of the epoch (``gpufleet.economics.emissions``) is split in proportion to the
  scores, rounding down, and the base units left over go one each to the largest remainders
  (ties in the reward tree's address order), so the rewards sum to the emission exactly;
* if no eligible pool has both jobs and stake, the split falls back to ``jobs x eligible
  seconds`` (work was done, but only by unstaked pools), then to ``stake x eligible seconds``
  (nobody served a job); if no pool is eligible at all nothing is paid and the whole emission is
  reported as undistributed (on chain: a reward record without roots, totals 0);
* commission is ``reward x commission bps / 10000`` rounded down, the program's rounding (the
  delegators' part keeps the dust).

The reward record is the program's merkle tree over one leaf per pool (``address, reward, 0``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpufleet.economics.distribution import split_by_weight
from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.epochs import EpochClock
from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.merkle import (
    LeafLocation,
    RewardLeaf,
    RewardTrees,
    name_to_pubkey,
    operator_pool_address,
    verify_proof,
)
from gpufleet.economics.units import BPS_DENOMINATOR

RULE_JOBS_X_STAKE = "JobsTimesStake"
RULE_JOBS = "JobsOnly"
RULE_STAKE = "StakeOnly"
RULE_NONE = "NoEligiblePool"


def _nonneg(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, got {value!r}")
    return value


def pool_address(pool: str) -> str:
    """The reward-tree address of a pool without a ledger address: the PDA of its stand-in key."""
    return operator_pool_address(name_to_pubkey(pool))


def penalized_seconds(intervals: Iterable[tuple[int, int | None]], start: int, end: int) -> int:
    """Seconds of ``[start, end)`` covered by at least one ``[from, until)`` (None: still running)."""
    clipped = sorted((max(a, start), min(end if b is None else b, end)) for a, b in intervals)
    total = 0
    cursor = start
    for a, b in clipped:
        a = max(a, cursor)
        if b > a:
            total += b - a
            cursor = b
    return total


@dataclass(frozen=True)
class PoolEpochInput:
    """One pool's facts for one epoch."""

    pool: str
    address: str
    stake: int
    completed: int
    commission_bps: int = 0
    penalized_seconds: int = 0
    halted: bool = False

    def __post_init__(self) -> None:
        _nonneg(self.stake, f"stake of {self.pool}")
        _nonneg(self.completed, f"completed jobs of {self.pool}")
        _nonneg(self.penalized_seconds, f"penalized seconds of {self.pool}")
        if _nonneg(self.commission_bps, f"commission of {self.pool}") > BPS_DENOMINATOR:
            raise InvalidInput(
                f"commission of {self.pool} is over {BPS_DENOMINATOR} bps: {self.commission_bps}"
            )


@dataclass(frozen=True)
class PoolReward:
    """One pool's line of a closed epoch."""

    pool: str
    address: str
    completed: int
    stake: int
    eligible_seconds: int
    score: int
    reward: int
    commission: int

    @property
    def delegators(self) -> int:
        """What the pool's holders (operator included) get after commission."""
        return self.reward - self.commission

    @property
    def leaf(self) -> RewardLeaf:
        return RewardLeaf(self.address, self.reward, 0)


@dataclass(frozen=True)
class EpochRewards:
    """A closed epoch: what was emitted, how it was split, and the reward record's trees."""

    epoch: int
    start: int
    end: int
    emission: int
    rule: str
    pools: tuple[PoolReward, ...]
    trees: RewardTrees

    @property
    def distributed(self) -> int:
        return sum(p.reward for p in self.pools)

    @property
    def undistributed(self) -> int:
        return self.emission - self.distributed

    @property
    def merkle_roots(self) -> list[str]:
        return [r.hex() for r in self.trees.roots]

    @property
    def pools_paid(self) -> int:
        return sum(1 for p in self.pools if p.reward > 0)

    def pool(self, name: str) -> PoolReward:
        for p in self.pools:
            if p.pool == name:
                return p
        raise InvalidInput(f"pool {name} has no line in epoch {self.epoch}")

    def locate(self, name: str) -> LeafLocation:
        loc = self.trees.locate(self.pool(name).address)
        if loc is None:  # pragma: no cover - every pool has a leaf by construction
            raise InvalidInput(f"pool {name} has no leaf in epoch {self.epoch}")
        return loc


def compute_epoch_rewards(
    epoch: int,
    clock: EpochClock,
    pools: Sequence[PoolEpochInput],
    *,
    emission: int | None = None,
    max_leaves_per_tree: int | None = None,
) -> EpochRewards:
    """The rewards of ``epoch`` for ``pools`` (every pool that exists at close gets a leaf)."""
    start, end = clock.bounds(epoch)
    total = expected_reward_emissions(epoch) if emission is None else _nonneg(emission, "emission")
    names = [p.pool for p in pools]
    addresses = [p.address for p in pools]
    if len(set(names)) != len(names) or len(set(addresses)) != len(addresses):
        raise InvalidInput("each pool (and each address) may appear once in an epoch")
    length = end - start
    eligible = {p.address: 0 if p.halted else max(0, length - p.penalized_seconds) for p in pools}
    candidates = (
        (RULE_JOBS_X_STAKE, {p.address: p.completed * p.stake * eligible[p.address] for p in pools}),
        (RULE_JOBS, {p.address: p.completed * eligible[p.address] for p in pools}),
        (RULE_STAKE, {p.address: p.stake * eligible[p.address] for p in pools}),
    )
    rule, weights = RULE_NONE, {p.address: 0 for p in pools}
    for name, w in candidates:
        if sum(w.values()) > 0:
            rule, weights = name, w
            break
    shares = split_by_weight(total, weights) if rule != RULE_NONE else dict.fromkeys(weights, 0)
    lines = tuple(
        PoolReward(
            pool=p.pool,
            address=p.address,
            completed=p.completed,
            stake=p.stake,
            eligible_seconds=eligible[p.address],
            score=weights[p.address],
            reward=shares[p.address],
            commission=shares[p.address] * p.commission_bps // BPS_DENOMINATOR,
        )
        for p in sorted(pools, key=lambda p: p.pool)
    )
    trees = RewardTrees.build([line.leaf for line in lines], max_leaves_per_tree)
    return EpochRewards(epoch, start, end, total, rule, lines, trees)


@dataclass(frozen=True)
class RecordedLine:
    """A pool's line as stored in an ``Epoch`` object (what ``verify`` checks)."""

    pool: str
    address: str
    reward: int


def rebuild_trees(lines: Sequence[RecordedLine], max_leaves_per_tree: int | None = None) -> RewardTrees:
    """The reward trees from recorded lines: the same leaves give the same roots."""
    return RewardTrees.build([RewardLeaf(x.address, x.reward, 0) for x in lines], max_leaves_per_tree)


def verify_record(
    lines: Sequence[RecordedLine],
    roots: Sequence[str],
    emission: int,
    undistributed: int = 0,
    max_leaves_per_tree: int | None = None,
) -> list[str]:
    """Problems with a recorded epoch (empty when sound): totals, roots, and every pool's proof."""
    problems: list[str] = []
    paid = sum(x.reward for x in lines)
    if paid + undistributed != emission:
        problems.append(f"rewards {paid} + undistributed {undistributed} != emission {emission}")
    if not lines:
        return problems + ([] if not roots else ["roots recorded for an epoch without pools"])
    trees = rebuild_trees(lines, max_leaves_per_tree)
    if [r.hex() for r in trees.roots] != list(roots):
        problems.append(f"recorded roots {list(roots)} != rebuilt {[r.hex() for r in trees.roots]}")
        return problems
    for x in lines:
        loc = trees.locate(x.address)
        if loc is None or not verify_proof(
            trees.roots[loc.merkle_index], RewardLeaf(x.address, x.reward, 0), loc.proof
        ):
            problems.append(f"proof of {x.pool} does not verify")
    return problems
