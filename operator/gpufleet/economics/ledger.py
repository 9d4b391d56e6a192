"""The staking program as an in-memory ledger: same rules, same check order, same rounding.

Each public method is one instruction of ``context-labs/inference-staking`` (the docstring names
it). Checks run in the order the program runs them (account constraints first, then the handler's
``require!`` calls in source order), and an operation that fails leaves the ledger untouched, like a
reverted transaction. Money is integer base units everywhere; shares are integers.

Token accounts are modelled as balances so that conservation can be checked: holders' wallets,
the global reward and USDC vaults, each pool's staked/commission/USDC vaults, the registration fee
wallet and the slashing destinations. New INT enters only through :meth:`Ledger.mint` (genesis
supply) and :meth:`Ledger.fund_reward_vault` (emission); it leaves circulation only by slashing.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from gpufleet.economics import errors as e
from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.merkle import (
    STAKING_PROGRAM_ID,
    Proof,
    RewardLeaf,
    RewardTrees,
    name_to_pubkey,
    operator_pool_address,
    verify_proof,
)
from gpufleet.economics.state import (
    MIN_SLASHING_DELAY_SECONDS,
    USDC_PRECISION_FACTOR,
    OperatorPool,
    RewardRecord,
    Settings,
    StakingRecord,
)
from gpufleet.economics.units import BPS_DENOMINATOR, U64_MAX, format_fraction, format_int


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class RewardClaim:
    """An explicit ``accrue_reward`` argument set (to replay a proof made elsewhere)."""

    merkle_index: int
    token_amount: int
    usdc_amount: int
    proof: Proof


@dataclass(frozen=True)
class AccrueResult:
    """What one ``accrue_reward`` did (the program's ``AccrueRewardEvent``)."""

    pool: str
    epoch: int
    delegator_rewards: int
    operator_reward_commission: int
    delegator_usdc_earnings: int
    operator_usdc_commission: int
    total_rewards_transferred: int
    total_usdc_transferred: int


def _amount(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise e.InvalidInput(f"{what} must be an integer number of base units, got {value!r}")
    if value < 0:
        raise e.InvalidInput(f"{what} must not be negative, got {value}")
    if value > U64_MAX:
        raise e.InvalidInput(f"{what} does not fit in a u64: {value}")
    return value


def _rate(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise e.InvalidCommissionRate(f"{what} must be an integer 0..{BPS_DENOMINATOR} bps, got {value!r}")
    if value > BPS_DENOMINATOR:
        raise e.InvalidCommissionRate(f"{what} is {value} bps; the maximum is {BPS_DENOMINATOR} (100%)")
    return value


class Ledger:
    """One staking program instance (a ``PoolOverview`` and everything under it)."""

    def __init__(
        self, settings: Settings | None = None, *, now: int = 0, program_id: str = STAKING_PROGRAM_ID
    ) -> None:
        self.settings = settings or Settings()
        self.program_id = program_id
        self.now = now
        self.completed_reward_epoch = 0
        self.is_epoch_finalizing = False
        self.unclaimed_rewards = 0
        self.unclaimed_usdc = 0
        self.total_pools = 0
        self.pools: dict[str, OperatorPool] = {}
        self.records: dict[tuple[str, str], StakingRecord] = {}
        self.reward_records: dict[int, RewardRecord] = {}
        self.token_wallets: dict[str, int] = {}
        self.usdc_wallets: dict[str, int] = {}
        self.reward_token_vault = 0
        self.usdc_earnings_vault = 0
        self.registration_fees_collected = 0
        self.slashed_tokens = 0
        self.slashed_usdc = 0
        self.genesis_tokens = 0
        self.emitted_tokens = 0
        self.usdc_supplied = 0
        self._addresses: dict[str, str] = {}

    # ------------------------------------------------------------------ time and supply
    def advance_to(self, timestamp: int) -> None:
        """Move the clock (unix seconds); it never goes backwards."""
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise e.InvalidInput(f"timestamp must be integer seconds, got {timestamp!r}")
        if timestamp < self.now:
            raise e.ClockWentBackwards(f"clock is at {self.now}, cannot go back to {timestamp}")
        self.now = timestamp

    def mint(self, holder: str, tokens: int = 0, usdc: int = 0) -> None:
        """Genesis supply for a holder (airdrop/faucet); not part of the protocol's emission."""
        _amount(tokens, "tokens")
        _amount(usdc, "usdc")
        self.token_wallets[holder] = self.token_wallets.get(holder, 0) + tokens
        self.usdc_wallets[holder] = self.usdc_wallets.get(holder, 0) + usdc
        self.genesis_tokens += tokens
        self.usdc_supplied += usdc

    def fund_reward_vault(self, tokens: int = 0, usdc: int = 0) -> None:
        """Emission: new INT (and incoming USDC revenue) deposited into the global vaults."""
        _amount(tokens, "tokens")
        _amount(usdc, "usdc")
        self.reward_token_vault += tokens
        self.usdc_earnings_vault += usdc
        self.emitted_tokens += tokens
        self.usdc_supplied += usdc

    # ------------------------------------------------------------------ settings
    def update_settings(self, **changes: Any) -> None:
        """``update_pool_overview``: change global settings and halts."""
        known = set(Settings.field_names())
        unknown = sorted(set(changes) - known)
        if unknown:
            raise e.InvalidInput(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        delay = changes.get("slashing_delay_seconds")
        if delay is not None and isinstance(delay, int) and delay < MIN_SLASHING_DELAY_SECONDS:
            raise e.InvalidSlashingDelay(f"got {delay} seconds")
        merged = {**asdict(self.settings), **changes}
        self.settings = Settings(**merged)

    # ------------------------------------------------------------------ lookups
    def pool(self, name: str) -> OperatorPool:
        try:
            return self.pools[name]
        except KeyError:
            raise e.AccountNotInitialized(f"no operator pool named {name!r}") from None

    def record(self, owner: str, pool: str) -> StakingRecord:
        try:
            return self.records[(pool, owner)]
        except KeyError:
            raise e.AccountNotInitialized(f"{owner!r} has no staking record in pool {pool!r}") from None

    def _current_epoch(self) -> int:
        return self.completed_reward_epoch + (1 if self.is_epoch_finalizing else 0)

    def _debit(self, wallets: dict[str, int], holder: str, amount: int, what: str) -> None:
        have = wallets.get(holder, 0)
        if have < amount:
            raise e.InsufficientFunds(f"{holder} holds {have} {what} base units, needs {amount}")

    def _check_min_operator_stake(self, pool: OperatorPool, operator_shares: int) -> None:
        """The program's absolute minimum and the announcement's ratio, whichever are set."""
        stake = pool.calc_tokens_for_share_amount(operator_shares)
        s = self.settings
        if stake < s.min_operator_token_stake:
            raise e.MinOperatorTokenStakeNotMet(
                f"pool {pool.name}: operator stake {format_int(stake)} INT "
                f"< minimum {format_int(s.min_operator_token_stake)} INT"
            )
        if stake * BPS_DENOMINATOR < s.min_operator_stake_bps * pool.total_staked_amount:
            raise e.MinOperatorTokenStakeNotMet(
                f"pool {pool.name}: operator would hold {format_int(stake)} of "
                f"{format_int(pool.total_staked_amount)} INT staked, below the required "
                f"{s.min_operator_stake_bps / 100:g}% of the pool"
            )

    # ------------------------------------------------------------------ pools
    def create_pool(
        self,
        name: str,
        admin: str,
        *,
        reward_commission_rate_bps: int = 0,
        usdc_commission_rate_bps: int = 0,
        allow_delegation: bool = True,
        auto_stake_fees: bool = False,
        address: str | None = None,
    ) -> OperatorPool:
        """``create_operator_pool``; the pool's address is the PDA of its admin unless given."""
        if not self.settings.allow_pool_creation:
            raise e.PoolCreationDisabled(f"cannot create {name!r}")
        if not isinstance(name, str) or not name:
            raise e.InvalidInput(f"pool name must be a non-empty string, got {name!r}")
        if address is None:
            address = operator_pool_address(name_to_pubkey(admin), self.program_id)
        if name in self.pools or address in self._addresses:
            holder = self._addresses.get(address, name)
            raise e.AccountAlreadyInUse(f"pool {name!r} (address {address}) already exists as {holder!r}")
        _rate(reward_commission_rate_bps, "reward commission")
        _rate(usdc_commission_rate_bps, "USDC commission")
        fee = self.settings.operator_pool_registration_fee
        if fee > 0:
            self._debit(self.token_wallets, admin, fee, "INT")
        current = self._current_epoch()
        pool = OperatorPool(
            name=name,
            address=address,
            admin=admin,
            operator_staking_record=admin,
            auto_stake_fees=bool(auto_stake_fees),
            reward_commission_rate_bps=reward_commission_rate_bps,
            usdc_commission_rate_bps=usdc_commission_rate_bps,
            allow_delegation=bool(allow_delegation),
            joined_at_epoch=current,
            reward_last_claimed_epoch=current,
        )
        if fee > 0:
            self.token_wallets[admin] -= fee
            self.registration_fees_collected += fee
        self.total_pools += 1
        self.pools[name] = pool
        self._addresses[address] = name
        self.records[(name, admin)] = StakingRecord(owner=admin, operator_pool=name)
        return pool

    def update_pool(
        self,
        name: str,
        *,
        new_reward_commission_rate_bps: int | Any | None = UNSET,
        new_usdc_commission_rate_bps: int | Any | None = UNSET,
        allow_delegation: bool | Any = UNSET,
        auto_stake_fees: bool | Any = UNSET,
    ) -> None:
        """``update_operator_pool``: new commission rates wait until the pool's next accrual."""
        pool = self.pool(name)
        if new_reward_commission_rate_bps is not UNSET and new_reward_commission_rate_bps is not None:
            _rate(new_reward_commission_rate_bps, "new reward commission")
        if new_usdc_commission_rate_bps is not UNSET and new_usdc_commission_rate_bps is not None:
            _rate(new_usdc_commission_rate_bps, "new USDC commission")
        if allow_delegation is not UNSET:
            pool.allow_delegation = bool(allow_delegation)
        if auto_stake_fees is not UNSET:
            pool.auto_stake_fees = bool(auto_stake_fees)
        if new_reward_commission_rate_bps is not UNSET:
            pool.new_reward_commission_rate_bps = new_reward_commission_rate_bps
        if new_usdc_commission_rate_bps is not UNSET:
            pool.new_usdc_commission_rate_bps = new_usdc_commission_rate_bps

    def close_pool(self, name: str) -> int:
        """``close_operator_pool``: permanent; the pool still earns the next epoch's reward."""
        pool = self.pool(name)
        if pool.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {name} is halted and cannot be closed")
        if pool.closed_at_epoch is not None:
            raise e.ClosedPool(f"pool {name} was already closed at epoch {pool.closed_at_epoch}")
        pool.closed_at_epoch = self._current_epoch() + 1
        return pool.closed_at_epoch

    def set_halt(self, name: str, halted: bool) -> None:
        """``set_halt_status``: halting (again) restarts the slashing delay clock."""
        pool = self.pool(name)
        pool.halted_at_timestamp = self.now if halted else None

    # ------------------------------------------------------------------ staking
    def stake(self, owner: str, pool_name: str, amount: int) -> int:
        """``stake``: mint shares at the current price (rounded down); returns shares minted."""
        if self.settings.is_staking_halted:
            raise e.StakingHalted(f"{owner} cannot stake into {pool_name}")
        live = self.pool(pool_name)
        existing = self.records.get((pool_name, owner))
        _amount(amount, "stake amount")
        if amount <= 0:
            raise e.InvalidAmount("stake amount must be positive")
        is_operator = owner == live.operator_staking_record
        if not (live.allow_delegation or is_operator):
            raise e.StakingNotAllowed(f"pool {pool_name} does not accept delegations")
        if live.closed_at_epoch is not None:
            raise e.ClosedPool(f"pool {pool_name} closed at epoch {live.closed_at_epoch}")
        if live.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {pool_name} is halted")
        if live.reward_last_claimed_epoch < self.completed_reward_epoch:
            raise e.UnclaimedRewards(
                f"pool {pool_name} has accrued up to epoch {live.reward_last_claimed_epoch}, "
                f"epoch {self.completed_reward_epoch} is finalized; accrue its rewards first"
            )
        self._debit(self.token_wallets, owner, amount, "INT")
        pool = copy.copy(live)
        record = (
            copy.copy(existing)
            if existing
            else StakingRecord(
                owner=owner,
                operator_pool=pool_name,
                last_settled_usdc_per_share=live.cumulative_usdc_per_share,
            )
        )
        shares = pool.stake_tokens(record, amount)
        record.shares += shares
        pool.staked_token_vault += amount
        operator_shares = (
            record.shares if is_operator else self.record(live.operator_staking_record, pool_name).shares
        )
        self._check_min_operator_stake(pool, operator_shares)
        self.token_wallets[owner] -= amount
        self.pools[pool_name] = pool
        self.records[(pool_name, owner)] = record
        return shares

    def unstake(self, owner: str, pool_name: str, shares: int) -> int:
        """``unstake``: burn shares, start (or restart, for everything pending) the cooldown."""
        if self.settings.is_staking_halted:
            raise e.StakingHalted(f"{owner} cannot unstake from {pool_name}")
        live = self.pool(pool_name)
        live_record = self.record(owner, pool_name)
        _amount(shares, "shares")
        if shares <= 0:
            raise e.InvalidAmount("shares to unstake must be positive")
        is_operator = owner == live.operator_staking_record
        if is_operator and live.halted_at_timestamp is not None:
            raise e.UnstakingNotAllowed(f"pool {pool_name} is halted; its operator cannot unstake")
        if self.settings.is_withdrawal_halted:
            raise e.WithdrawalsHalted(f"{owner} cannot unstake from {pool_name}")
        if live.unclaimed_rewards_block(self.completed_reward_epoch):
            raise e.UnclaimedRewards(f"pool {pool_name} must accrue its finalized epochs first")
        if live_record.shares < shares:
            raise e.InsufficientShares(f"{owner} owns {live_record.shares} shares, asked to unstake {shares}")
        pool = copy.copy(live)
        record = copy.copy(live_record)
        tokens = pool.unstake_tokens(record, shares)
        delay = (
            self.settings.operator_unstake_delay_seconds
            if is_operator
            else self.settings.delegator_unstake_delay_seconds
        )
        record.shares -= shares
        record.tokens_unstake_amount += tokens
        record.unstake_at_timestamp = self.now + delay
        if is_operator:
            if pool.closed_at_epoch is not None:
                if self.completed_reward_epoch + 1 < pool.closed_at_epoch:
                    raise e.FinalUnstakeEpochInvalid(
                        f"pool {pool_name} closes at epoch {pool.closed_at_epoch}; "
                        f"wait until epoch {pool.closed_at_epoch - 1} is finalized"
                    )
            else:
                self._check_min_operator_stake(pool, record.shares)
        self.pools[pool_name] = pool
        self.records[(pool_name, owner)] = record
        return tokens

    def cancel_unstake(self, owner: str, pool_name: str) -> int:
        """``cancel_unstake``: re-stake everything pending at today's price; returns new shares."""
        live = self.pool(pool_name)
        live_record = self.record(owner, pool_name)
        if live.unclaimed_rewards_block(self.completed_reward_epoch):
            raise e.UnclaimedRewards(f"pool {pool_name} must accrue its finalized epochs first")
        pool = copy.copy(live)
        record = copy.copy(live_record)
        amount = record.tokens_unstake_amount
        new_shares = pool.stake_tokens(record, amount)
        pool.total_unstaking -= amount
        record.shares += new_shares
        record.unstake_at_timestamp = 0
        record.tokens_unstake_amount = 0
        self.pools[pool_name] = pool
        self.records[(pool_name, owner)] = record
        return new_shares

    def claim_unstake(self, owner: str, pool_name: str) -> int:
        """``claim_unstake``: pay out tokens whose cooldown is over; returns tokens paid."""
        live = self.pool(pool_name)
        live_record = self.record(owner, pool_name)
        is_operator = owner == live.operator_staking_record
        if is_operator and live.halted_at_timestamp is not None:
            raise e.UnstakingNotAllowed(f"pool {pool_name} is halted; its operator cannot claim")
        if self.settings.is_withdrawal_halted:
            raise e.WithdrawalsHalted(f"{owner} cannot claim from {pool_name}")
        if live.unclaimed_rewards_block(self.completed_reward_epoch):
            raise e.UnclaimedRewards(f"pool {pool_name} must accrue its finalized epochs first")
        if self.now < live_record.unstake_at_timestamp:
            raise e.PendingDelay(
                f"{owner}'s {live_record.tokens_unstake_amount} base units unlock at "
                f"{live_record.unstake_at_timestamp} (now {self.now}, "
                f"{live_record.unstake_at_timestamp - self.now} s left)"
            )
        amount = live_record.tokens_unstake_amount
        if amount <= 0:
            raise e.NoTokensToClaim(f"{owner} has nothing unstaking in {pool_name}")
        pool = copy.copy(live)
        record = copy.copy(live_record)
        pool.staked_token_vault -= amount
        pool.total_unstaking -= amount
        record.tokens_unstake_amount = 0
        record.unstake_at_timestamp = 0
        if is_operator and pool.closed_at_epoch is None:
            self._check_min_operator_stake(pool, record.shares)
        self.pools[pool_name] = pool
        self.records[(pool_name, owner)] = record
        self.token_wallets[owner] = self.token_wallets.get(owner, 0) + amount
        return amount

    def claim_usdc_earnings(self, owner: str, pool_name: str) -> int:
        """``claim_usdc_earnings``: a holder's share of delegator USDC (program mode only)."""
        live = self.pool(pool_name)
        live_record = self.record(owner, pool_name)
        is_operator = owner == live.operator_staking_record
        if is_operator and live.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {pool_name} is halted; its operator cannot claim USDC")
        if self.settings.is_withdrawal_halted:
            raise e.WithdrawalsHalted(f"{owner} cannot claim USDC from {pool_name}")
        if live.reward_last_claimed_epoch < self.completed_reward_epoch:
            raise e.UnclaimedRewards(f"pool {pool_name} must accrue its finalized epochs first")
        record = copy.copy(live_record)
        live.settle_usdc_earnings(record)
        claimable = record.accrued_usdc_earnings
        if claimable <= 0:
            raise e.NoUsdcEarningsToClaim(f"{owner} has no USDC earnings in {pool_name}")
        if live.delegator_usdc_vault < claimable:
            raise e.InsufficientPoolUsdcVaultBalance(
                f"vault holds {live.delegator_usdc_vault}, claim is {claimable}"
            )
        live.delegator_usdc_vault -= claimable
        record.accrued_usdc_earnings = 0
        self.records[(pool_name, owner)] = record
        self.usdc_wallets[owner] = self.usdc_wallets.get(owner, 0) + claimable
        return claimable

    def withdraw_reward_commission(self, pool_name: str) -> int:
        """``withdraw_operator_reward_commission``: the whole commission vault to the admin."""
        pool = self.pool(pool_name)
        if self.settings.is_withdrawal_halted:
            raise e.WithdrawalsHalted(f"cannot withdraw commission of {pool_name}")
        if pool.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {pool_name} is halted")
        amount = pool.reward_commission_vault
        pool.reward_commission_vault = 0
        self.token_wallets[pool.admin] = self.token_wallets.get(pool.admin, 0) + amount
        return amount

    def withdraw_usdc_commission(self, pool_name: str) -> int:
        """``withdraw_operator_usdc_commission``: the whole USDC commission vault to the admin."""
        pool = self.pool(pool_name)
        if self.settings.is_withdrawal_halted:
            raise e.WithdrawalsHalted(f"cannot withdraw USDC commission of {pool_name}")
        if pool.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {pool_name} is halted")
        amount = pool.usdc_commission_vault
        pool.usdc_commission_vault = 0
        self.usdc_wallets[pool.admin] = self.usdc_wallets.get(pool.admin, 0) + amount
        return amount

    def slash(self, pool_name: str, shares: int) -> int:
        """``slash_stake``: confiscate operator shares of a pool halted for the slashing delay.

        Only the operator's staking record is touched, so a delegator's stake cannot shrink; the
        operator's unclaimed USDC and both commission vaults are confiscated too.
        """
        live = self.pool(pool_name)
        live_op = self.record(live.operator_staking_record, pool_name)
        _amount(shares, "shares")
        if shares <= 0:
            raise e.InvalidAmount("shares to slash must be positive")
        if live.halted_at_timestamp is None:
            raise e.OperatorPoolNotHalted(f"halt pool {pool_name} first")
        if live_op.shares < shares:
            raise e.InvalidSlashSharesAmount(
                f"operator owns {live_op.shares} shares, asked to slash {shares}"
            )
        elapsed = self.now - live.halted_at_timestamp
        if elapsed < self.settings.slashing_delay_seconds:
            raise e.SlashingDelayNotMet(
                f"pool {pool_name} halted {elapsed} s ago; "
                f"slashing needs {self.settings.slashing_delay_seconds} s"
            )
        pool = copy.copy(live)
        op = copy.copy(live_op)
        tokens = pool.slash_tokens(op, shares)
        op.shares -= shares
        usdc = op.accrued_usdc_earnings
        if usdc > 0:
            if pool.delegator_usdc_vault < usdc:
                raise e.InsufficientPoolUsdcVaultBalance(f"vault {pool.delegator_usdc_vault} < {usdc}")
            pool.delegator_usdc_vault -= usdc
            op.accrued_usdc_earnings = 0
        self.slashed_usdc += usdc + pool.usdc_commission_vault
        self.slashed_tokens += tokens + pool.reward_commission_vault
        pool.usdc_commission_vault = 0
        pool.reward_commission_vault = 0
        pool.staked_token_vault -= tokens
        self.pools[pool_name] = pool
        self.records[(pool_name, op.owner)] = op
        return tokens

    # ------------------------------------------------------------------ epochs and rewards
    def mark_epoch_finalizing(self, expected_epoch: int) -> None:
        """``mark_epoch_as_finalizing``: names the epoch explicitly to avoid mistakes."""
        if expected_epoch != self.completed_reward_epoch + 1:
            raise e.EpochIsFinalizingEpochInvalid(
                f"next epoch is {self.completed_reward_epoch + 1}, got {expected_epoch}"
            )
        self.is_epoch_finalizing = True

    def pools_due_reward(self, epoch: int) -> list[OperatorPool]:
        """Pools that will accrue ``epoch`` and so need a leaf in its record (possibly zero)."""
        return [
            p
            for p in self.pools.values()
            if p.joined_at_epoch < epoch and (p.closed_at_epoch is None or p.closed_at_epoch >= epoch)
        ]

    def create_reward_record(
        self, trees: RewardTrees, total_rewards: int, total_usdc_payout: int
    ) -> RewardRecord:
        """``create_reward_record``: finalize the next epoch with the given merkle trees."""
        if not self.is_epoch_finalizing:
            raise e.EpochMustBeFinalizing("call mark_epoch_finalizing first")
        _amount(total_rewards, "total rewards")
        _amount(total_usdc_payout, "total USDC payout")
        epoch = self.completed_reward_epoch + 1
        roots = trees.roots
        if not roots:
            if total_rewards != 0 or total_usdc_payout != 0:
                raise e.RewardTotalsMismatch(f"got {total_rewards} tokens and {total_usdc_payout} USDC")
        elif self.settings.enforce_emission_schedule:
            expected = expected_reward_emissions(epoch)
            if total_rewards != expected:
                raise e.InvalidRewardAmount(f"epoch {epoch} emits {expected} base units, got {total_rewards}")
        if self.unclaimed_rewards + total_rewards > self.reward_token_vault:
            raise e.InsufficientRewards(
                f"vault {self.reward_token_vault} < issued {self.unclaimed_rewards + total_rewards}"
            )
        if self.unclaimed_usdc + total_usdc_payout > self.usdc_earnings_vault:
            raise e.InsufficientUsdc(
                f"vault {self.usdc_earnings_vault} < issued {self.unclaimed_usdc + total_usdc_payout}"
            )
        record = RewardRecord(epoch, roots, total_rewards, total_usdc_payout, self.now, trees)
        self.reward_records[epoch] = record
        self.unclaimed_rewards += total_rewards
        self.unclaimed_usdc += total_usdc_payout
        self.completed_reward_epoch = epoch
        self.is_epoch_finalizing = False
        return record

    def build_reward_trees(
        self, rewards: Mapping[str, tuple[int, int]], epoch: int, max_leaves_per_tree: int | None = None
    ) -> RewardTrees:
        """Leaves for every pool due ``epoch``: given amounts, zero for pools not named."""
        due = {p.name: p for p in self.pools_due_reward(epoch)}
        for name in rewards:
            if name not in self.pools:
                raise e.AccountNotInitialized(f"reward for unknown pool {name!r}")
            if name not in due:
                p = self.pools[name]
                raise e.InvalidInput(
                    f"pool {name} cannot receive epoch {epoch} rewards "
                    f"(joined at epoch {p.joined_at_epoch}, closed at {p.closed_at_epoch})"
                )
        leaves = []
        for name, p in due.items():
            tokens, usdc = rewards.get(name, (0, 0))
            leaves.append(
                RewardLeaf(p.address, _amount(tokens, "token reward"), _amount(usdc, "USDC reward"))
            )
        return RewardTrees.build(leaves, max_leaves_per_tree)

    def finalize_epoch(
        self,
        rewards: Mapping[str, tuple[int, int]],
        *,
        fund: bool = True,
        max_leaves_per_tree: int | None = None,
    ) -> RewardRecord:
        """Close the current epoch end to end: mark finalizing, build the trees, fund, record.

        ``rewards`` maps pool name to ``(token reward, usdc)`` in base units; with ``fund`` the
        token total is emitted into the reward vault and the USDC deposited before recording.
        """
        epoch = self.completed_reward_epoch + 1
        trees = self.build_reward_trees(rewards, epoch, max_leaves_per_tree)
        total_tokens = sum(leaf.token_amount for leaf in trees.all_leaves())
        total_usdc = sum(leaf.usdc_amount for leaf in trees.all_leaves())
        if trees.roots and self.settings.enforce_emission_schedule:
            expected = expected_reward_emissions(epoch)
            if total_tokens != expected:
                raise e.InvalidRewardAmount(
                    f"epoch {epoch} emits {expected} base units, leaves sum to {total_tokens}"
                )
        if not self.is_epoch_finalizing:
            self.mark_epoch_finalizing(epoch)
        if fund:
            self.fund_reward_vault(
                max(0, self.unclaimed_rewards + total_tokens - self.reward_token_vault),
                max(0, self.unclaimed_usdc + total_usdc - self.usdc_earnings_vault),
            )
        return self.create_reward_record(trees, total_tokens, total_usdc)

    def accrue_reward(
        self, pool_name: str, epoch: int | None = None, claim: RewardClaim | None = None
    ) -> AccrueResult:
        """``accrue_reward``: apply the pool's next epoch (strictly in order, exactly once).

        Rewards of older epochs are only booked; tokens move and the share price rises when the
        pool reaches the latest finalized epoch (or its closing epoch). Commission comes off the
        top; the rest raises the price of every share without minting new ones.
        """
        if self.settings.is_accrue_reward_halted:
            raise e.AccrueRewardHalted(f"cannot accrue rewards of {pool_name}")
        live = self.pool(pool_name)
        next_epoch = live.reward_last_claimed_epoch + 1
        if epoch is not None and epoch != next_epoch:
            raise e.RewardEpochOutOfOrder(
                f"pool {pool_name} has accrued up to epoch {live.reward_last_claimed_epoch}; "
                f"the next one is {next_epoch}, not {epoch}"
            )
        reward_record = self.reward_records.get(next_epoch)
        if reward_record is None:
            raise e.AccountNotInitialized(
                f"epoch {next_epoch} is not finalized; nothing to accrue for {pool_name}"
            )
        if claim is None:
            loc = reward_record.trees.locate(live.address)
            if loc is None:
                raise e.InvalidProof(f"pool {pool_name} has no leaf in epoch {next_epoch}'s reward record")
            claim = RewardClaim(loc.merkle_index, loc.leaf.token_amount, loc.leaf.usdc_amount, loc.proof)
        if not 0 <= claim.merkle_index < len(reward_record.merkle_roots):
            raise e.InvalidProof(f"merkle index {claim.merkle_index} out of range")
        leaf = RewardLeaf(
            live.address,
            _amount(claim.token_amount, "token reward"),
            _amount(claim.usdc_amount, "USDC reward"),
        )
        if not verify_proof(reward_record.merkle_roots[claim.merkle_index], leaf, claim.proof):
            raise e.InvalidProof(f"proof for pool {pool_name} does not match epoch {next_epoch}'s root")
        if live.closed_at_epoch is not None and live.closed_at_epoch < next_epoch:
            raise e.ClosedPool(f"pool {pool_name} closed at epoch {live.closed_at_epoch}")
        return self._apply_reward(live, reward_record.epoch, leaf.token_amount, leaf.usdc_amount)

    def _apply_reward(
        self, live: OperatorPool, epoch: int, reward_amount: int, usdc_amount: int
    ) -> AccrueResult:
        pool = copy.copy(live)
        op = copy.copy(self.record(pool.operator_staking_record, pool.name))
        is_most_recent = self.completed_reward_epoch == epoch
        is_closure_epoch = pool.closed_at_epoch is not None and pool.closed_at_epoch == epoch
        reward_commission = reward_amount * pool.reward_commission_rate_bps // BPS_DENOMINATOR
        delegator_rewards = reward_amount - reward_commission
        usdc_rate = pool.usdc_commission_rate_bps if self.settings.delegators_share_usdc else BPS_DENOMINATOR
        usdc_commission = usdc_amount * usdc_rate // BPS_DENOMINATOR
        usdc_delegator = usdc_amount - usdc_commission
        pool.accrued_rewards += delegator_rewards
        pool.accrued_reward_commission += reward_commission
        pool.accrued_usdc_commission += usdc_commission
        pool.accrued_delegator_usdc += usdc_delegator
        pool.reward_last_claimed_epoch += 1
        rewards_moved = usdc_moved = 0
        if is_most_recent or is_closure_epoch:
            op_usdc = pool.accrued_usdc_commission
            del_usdc = pool.accrued_delegator_usdc
            pool.total_staked_amount += pool.accrued_rewards
            to_staked_vault = pool.accrued_rewards
            if pool.auto_stake_fees:
                to_staked_vault += pool.accrued_reward_commission
                op.shares += pool.stake_tokens(op, pool.accrued_reward_commission)
            else:
                pool.reward_commission_vault += pool.accrued_reward_commission
            pool.staked_token_vault += to_staked_vault
            pool.usdc_commission_vault += op_usdc
            pool.delegator_usdc_vault += del_usdc
            if pool.total_shares > 0 and del_usdc > 0:
                pool.cumulative_usdc_per_share += del_usdc * USDC_PRECISION_FACTOR // pool.total_shares
            if pool.new_reward_commission_rate_bps is not None:
                pool.reward_commission_rate_bps = pool.new_reward_commission_rate_bps
                pool.new_reward_commission_rate_bps = None
            if pool.new_usdc_commission_rate_bps is not None:
                pool.usdc_commission_rate_bps = pool.new_usdc_commission_rate_bps
                pool.new_usdc_commission_rate_bps = None
            rewards_moved = pool.accrued_rewards + pool.accrued_reward_commission
            usdc_moved = op_usdc + del_usdc
            self.unclaimed_rewards -= rewards_moved
            self.unclaimed_usdc -= usdc_moved
            self.reward_token_vault -= rewards_moved
            self.usdc_earnings_vault -= usdc_moved
            pool.accrued_rewards = pool.accrued_reward_commission = 0
            pool.accrued_usdc_commission = pool.accrued_delegator_usdc = 0
        self.pools[pool.name] = pool
        self.records[(pool.name, op.owner)] = op
        return AccrueResult(
            pool.name,
            epoch,
            delegator_rewards,
            reward_commission,
            usdc_delegator,
            usdc_commission,
            rewards_moved,
            usdc_moved,
        )

    def accrue_reward_emergency_bypass(self, pool_name: str) -> None:
        """``accrue_reward_emergency_bypass``: skip an epoch the pool was left out of."""
        pool = self.pool(pool_name)
        if pool.halted_at_timestamp is not None:
            raise e.OperatorPoolHalted(f"pool {pool_name} is halted")
        if pool.closed_at_epoch is not None:
            raise e.ClosedPool(f"pool {pool_name} is closed")
        nxt = pool.reward_last_claimed_epoch
        if nxt + 1 not in self.reward_records or nxt + 2 not in self.reward_records:
            raise e.InvalidEmergencyBypassEpoch(f"epochs {nxt + 1} and {nxt + 2} must both be finalized")
        if self.completed_reward_epoch <= pool.reward_last_claimed_epoch:
            raise e.InvalidEmergencyBypassEpoch("the pool is up to date")
        pool.reward_last_claimed_epoch += 1

    def accrue_all(self) -> list[AccrueResult]:
        """Bring every pool up to date, oldest epoch first (what a crank does after finalizing)."""
        results = []
        for name in list(self.pools):
            pool = self.pools[name]
            while pool.reward_last_claimed_epoch < self.completed_reward_epoch and (
                pool.closed_at_epoch is None or pool.reward_last_claimed_epoch < pool.closed_at_epoch
            ):
                results.append(self.accrue_reward(name))
                pool = self.pools[name]
        return results

    # ------------------------------------------------------------------ views
    def holders(self, pool_name: str) -> Iterator[StakingRecord]:
        for (p, _), rec in self.records.items():
            if p == pool_name:
                yield rec

    def redeemable(self, owner: str, pool_name: str) -> int:
        """Tokens ``owner`` would get for all its shares now (excluding tokens in cooldown)."""
        rec = self.records.get((pool_name, owner))
        if rec is None:
            return 0
        return self.pool(pool_name).calc_tokens_for_share_amount(rec.shares)

    def supply(self) -> dict[str, int]:
        """Where every INT base unit is; the values sum to genesis + emission."""
        return {
            "wallets": sum(self.token_wallets.values()),
            "rewardVault": self.reward_token_vault,
            "stakedVaults": sum(p.staked_token_vault for p in self.pools.values()),
            "commissionVaults": sum(p.reward_commission_vault for p in self.pools.values()),
            "registrationFees": self.registration_fees_collected,
            "slashed": self.slashed_tokens,
        }

    def usdc_supply(self) -> dict[str, int]:
        return {
            "wallets": sum(self.usdc_wallets.values()),
            "earningsVault": self.usdc_earnings_vault,
            "commissionVaults": sum(p.usdc_commission_vault for p in self.pools.values()),
            "delegatorVaults": sum(p.delegator_usdc_vault for p in self.pools.values()),
            "slashed": self.slashed_usdc,
        }

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly picture of the whole ledger (amounts in base units)."""
        pools: dict[str, Any] = {}
        for name, p in self.pools.items():
            holders = {}
            for rec in self.holders(name):
                holders[rec.owner] = {
                    "shares": rec.shares,
                    "redeemable": p.calc_tokens_for_share_amount(rec.shares),
                    "unstaking": rec.tokens_unstake_amount,
                    "unstakeAt": rec.unstake_at_timestamp,
                    "usdcEarnings": p.unsettled_usdc(rec),
                }
            pools[name] = {
                "address": p.address,
                "totalStaked": p.total_staked_amount,
                "totalShares": p.total_shares,
                "totalUnstaking": p.total_unstaking,
                "sharePrice": format_fraction(p.share_price()),
                "rewardCommissionBps": p.reward_commission_rate_bps,
                "newRewardCommissionBps": p.new_reward_commission_rate_bps,
                "allowDelegation": p.allow_delegation,
                "autoStakeFees": p.auto_stake_fees,
                "rewardLastClaimedEpoch": p.reward_last_claimed_epoch,
                "closedAtEpoch": p.closed_at_epoch,
                "haltedAt": p.halted_at_timestamp,
                "commissionVault": p.reward_commission_vault,
                "usdcCommissionVault": p.usdc_commission_vault,
                "holders": holders,
            }
        return {
            "now": self.now,
            "completedRewardEpoch": self.completed_reward_epoch,
            "isEpochFinalizing": self.is_epoch_finalizing,
            "halts": {
                "staking": self.settings.is_staking_halted,
                "withdrawal": self.settings.is_withdrawal_halted,
                "accrueReward": self.settings.is_accrue_reward_halted,
                "poolCreationAllowed": self.settings.allow_pool_creation,
            },
            "pools": pools,
            "wallets": {
                h: {"INT": self.token_wallets.get(h, 0), "USDC": self.usdc_wallets.get(h, 0)}
                for h in sorted(set(self.token_wallets) | set(self.usdc_wallets))
            },
            "supply": self.supply(),
            "usdcSupply": self.usdc_supply(),
        }


def settings_from_mapping(values: Mapping[str, Any]) -> Settings:
    """Settings from a plain mapping, with a clear error for unknown keys."""
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise e.InvalidInput(f"unknown setting(s) {unknown}; known: {sorted(known)}")
    return Settings(**dict(values))
