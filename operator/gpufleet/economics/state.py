"""Accounts of the staking program as plain data: global settings, pools, staking records.

Field names follow the program's accounts (``state/*.rs``) so that a reader can check one against
the other; amounts are integer base units (INT: 9 decimals, USDC: 6), shares are integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.merkle import RewardTrees
from gpufleet.economics.units import BPS_DENOMINATOR

#: Precision of the per-share USDC index (``USDC_PRECISION_FACTOR``).
USDC_PRECISION_FACTOR = 10**18
#: ``MIN_SLASHING_DELAY_SECONDS`` of a mainnet build.
MIN_SLASHING_DELAY_SECONDS = 86_400


@dataclass
class Settings:
    """``PoolOverview``'s settings, plus the switches where the announcement and program differ.

    Defaults follow the Epoch 3 announcement: the operator must hold at least 10% of the pool
    (``min_operator_stake_bps``) and delegators do not share USDC revenue. Set
    ``min_operator_stake_bps=0`` and ``min_operator_token_stake`` to use the program's absolute
    minimum only, and ``delegators_share_usdc=True`` for the program's USDC split.
    """

    is_staking_halted: bool = False
    is_withdrawal_halted: bool = False
    is_accrue_reward_halted: bool = False
    allow_pool_creation: bool = True
    operator_pool_registration_fee: int = 0
    min_operator_token_stake: int = 0
    min_operator_stake_bps: int = 1_000
    delegator_unstake_delay_seconds: int = 7 * 86_400
    operator_unstake_delay_seconds: int = 14 * 86_400
    slashing_delay_seconds: int = MIN_SLASHING_DELAY_SECONDS
    delegators_share_usdc: bool = False
    #: Refuse a reward record whose token total is not the emission schedule's (the program does).
    enforce_emission_schedule: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise InvalidInput(f"setting {f.name} must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"setting {f.name} must be a non-negative integer, got {value!r}")
        if self.min_operator_stake_bps > BPS_DENOMINATOR:
            raise InvalidInput(
                f"min_operator_stake_bps is at most {BPS_DENOMINATOR} (100%), "
                f"got {self.min_operator_stake_bps}"
            )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class StakingRecord:
    """One holder's position in one pool (``StakingRecord``)."""

    owner: str
    operator_pool: str
    shares: int = 0
    unstake_at_timestamp: int = 0
    tokens_unstake_amount: int = 0
    last_settled_usdc_per_share: int = 0
    accrued_usdc_earnings: int = 0


@dataclass
class OperatorPool:
    """An operator's pool (``OperatorPool``); ``name`` is the model's handle, ``address`` its key."""

    name: str
    address: str
    admin: str
    operator_staking_record: str
    auto_stake_fees: bool = False
    reward_commission_rate_bps: int = 0
    new_reward_commission_rate_bps: int | None = None
    usdc_commission_rate_bps: int = 0
    new_usdc_commission_rate_bps: int | None = None
    allow_delegation: bool = True
    total_staked_amount: int = 0
    total_shares: int = 0
    total_unstaking: int = 0
    joined_at_epoch: int = 0
    closed_at_epoch: int | None = None
    halted_at_timestamp: int | None = None
    reward_last_claimed_epoch: int = 0
    accrued_rewards: int = 0
    accrued_reward_commission: int = 0
    accrued_usdc_commission: int = 0
    accrued_delegator_usdc: int = 0
    cumulative_usdc_per_share: int = 0
    # Token accounts owned by the pool (vaults), in base units.
    staked_token_vault: int = 0
    reward_commission_vault: int = 0
    usdc_commission_vault: int = 0
    delegator_usdc_vault: int = 0

    def calc_shares_for_token_amount(self, token_amount: int) -> int:
        """Shares minted for ``token_amount`` at the current price, rounded down (1:1 when empty)."""
        if self.total_shares == 0:
            return token_amount
        return token_amount * self.total_shares // self.total_staked_amount

    def calc_tokens_for_share_amount(self, share_amount: int) -> int:
        """Tokens redeemable for ``share_amount`` at the current price, rounded down."""
        if share_amount == 0:
            return 0
        return share_amount * self.total_staked_amount // self.total_shares

    def share_price(self) -> Fraction:
        """Tokens per share (1 for an empty pool); for display, never used for money."""
        if self.total_shares == 0:
            return Fraction(1)
        return Fraction(self.total_staked_amount, self.total_shares)

    def settle_usdc_earnings(self, record: StakingRecord) -> None:
        delta = max(0, self.cumulative_usdc_per_share - record.last_settled_usdc_per_share)
        record.accrued_usdc_earnings += record.shares * delta // USDC_PRECISION_FACTOR
        record.last_settled_usdc_per_share = self.cumulative_usdc_per_share

    def unsettled_usdc(self, record: StakingRecord) -> int:
        delta = max(0, self.cumulative_usdc_per_share - record.last_settled_usdc_per_share)
        return record.accrued_usdc_earnings + record.shares * delta // USDC_PRECISION_FACTOR

    def stake_tokens(self, record: StakingRecord, token_amount: int) -> int:
        """``OperatorPool::stake_tokens``: settle USDC, mint shares, grow the pool."""
        self.settle_usdc_earnings(record)
        shares = self.calc_shares_for_token_amount(token_amount)
        self.total_staked_amount += token_amount
        self.total_shares += shares
        return shares

    def unstake_tokens(self, record: StakingRecord, share_amount: int) -> int:
        """``OperatorPool::unstake_tokens``: burn shares, move their tokens to unstaking."""
        self.settle_usdc_earnings(record)
        tokens = self.calc_tokens_for_share_amount(share_amount)
        self.total_staked_amount -= tokens
        self.total_shares -= share_amount
        self.total_unstaking += tokens
        return tokens

    def slash_tokens(self, record: StakingRecord, share_amount: int) -> int:
        """``OperatorPool::slash_tokens``: burn shares and remove their tokens at once."""
        self.settle_usdc_earnings(record)
        tokens = self.calc_tokens_for_share_amount(share_amount)
        self.total_staked_amount -= tokens
        self.total_shares -= share_amount
        return tokens

    def unclaimed_rewards_block(self, completed_reward_epoch: int) -> bool:
        """``check_unclaimed_rewards``: True when finalized epochs still wait to be accrued.

        A closed pool only has to have accrued up to its closing epoch.
        """
        if completed_reward_epoch > self.reward_last_claimed_epoch:
            if self.closed_at_epoch is not None:
                return self.reward_last_claimed_epoch < self.closed_at_epoch
            return True
        return False

    def is_empty(self) -> bool:
        return self.total_shares == 0 and self.total_staked_amount == 0 and self.total_unstaking == 0


@dataclass
class RewardRecord:
    """One finalized epoch (``RewardRecord``) together with the trees its roots come from."""

    epoch: int
    merkle_roots: list[bytes]
    total_rewards: int
    total_usdc_payout: int
    epoch_finalized_at: int
    trees: RewardTrees = field(default_factory=lambda: RewardTrees(trees=[]))

    def summary(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "merkleRoots": [r.hex() for r in self.merkle_roots],
            "totalRewards": self.total_rewards,
            "totalUsdcPayout": self.total_usdc_payout,
            "epochFinalizedAt": self.epoch_finalized_at,
        }
