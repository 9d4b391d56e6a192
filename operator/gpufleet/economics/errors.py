"""Refusals of the staking model, named after the on-chain program's errors.

Every operation the program can refuse raises a subclass of :class:`EconomicsError` whose class
name is the program's ``ErrorCode`` variant (``context-labs/inference-staking``,
``programs/inference-staking/src/error.rs``), so that a simulated refusal and a real transaction
failure read the same. Where the program fails through one of Anchor's generic checks
(``require_gte!`` without a custom code, a token transfer without funds, a missing account), the
class gets a descriptive name and ``code`` carries the generic Anchor/SPL error it stands for.
"""

from __future__ import annotations

from typing import ClassVar


class EconomicsError(Exception):
    """Base of every refusal; ``code`` is the protocol's error name, ``message`` says why."""

    code: ClassVar[str] = "EconomicsError"
    #: The program's own message for the code (``#[msg(...)]``), shown before the details.
    protocol_message: ClassVar[str] = ""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        parts = [p for p in (self.protocol_message, detail) if p]
        self.message = ": ".join(parts) if parts else self.code
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# --- the program's ErrorCode variants that the model can raise ---------------------------------
class StakingNotAllowed(EconomicsError):
    """Delegation is switched off for the pool and the staker is not its operator."""

    code = "StakingNotAllowed"
    protocol_message = "Staking is not allowed"


class UnstakingNotAllowed(EconomicsError):
    """The operator may not unstake or claim while its pool is halted."""

    code = "UnstakingNotAllowed"
    protocol_message = "Unstaking is not allowed"


class UnclaimedRewards(EconomicsError):
    """The pool has finalized epochs whose rewards it has not accrued yet."""

    code = "UnclaimedRewards"
    protocol_message = "Rewards have to be claimed first"


class MinOperatorTokenStakeNotMet(EconomicsError):
    """The operator's own stake would fall below the minimum (ratio or absolute)."""

    code = "MinOperatorTokenStakeNotMet"
    protocol_message = "Minimum operator token stake not met"


#: The issue's short name for the same refusal.
MinOperatorStakeNotMet = MinOperatorTokenStakeNotMet


class NoTokensToClaim(EconomicsError):
    """Nothing is unstaking, so there is nothing to claim."""

    code = "NoTokensToClaim"
    protocol_message = "No tokens available to be claimed"


class PendingDelay(EconomicsError):
    """The unstake cooldown has not elapsed yet."""

    code = "PendingDelay"
    protocol_message = "Tokens are still in unstaking cooldown"


class InsufficientRewards(EconomicsError):
    """The global reward vault holds less than the rewards issued and not yet paid out."""

    code = "InsufficientRewards"
    protocol_message = "Insufficient reward tokens to issue"


class InsufficientUsdc(EconomicsError):
    """The global USDC vault holds less than the USDC issued and not yet paid out."""

    code = "InsufficientUsdc"
    protocol_message = "Insufficient USDC tokens to issue"


class ClosedPool(EconomicsError):
    """The pool is closed (or was closed before the epoch being accrued)."""

    code = "ClosedPool"
    protocol_message = "Pool is closed"


class InvalidProof(EconomicsError):
    """The merkle proof does not lead from the pool's leaf to the reward record's root."""

    code = "InvalidProof"
    protocol_message = "Invalid Proof"


class OperatorPoolHalted(EconomicsError):
    """The pool is halted by a halt authority."""

    code = "OperatorPoolHalted"
    protocol_message = "OperatorPool is halted"


class StakingHalted(EconomicsError):
    """Staking (and unstaking) is halted program-wide."""

    code = "StakingHalted"
    protocol_message = "Staking is halted"


class WithdrawalsHalted(EconomicsError):
    """Withdrawals (unstake, claims, commission withdrawals) are halted program-wide."""

    code = "WithdrawalsHalted"
    protocol_message = "Withdrawals are halted"


class AccrueRewardHalted(EconomicsError):
    """Reward accrual is halted program-wide."""

    code = "AccrueRewardHalted"
    protocol_message = "Accrue reward is halted"


class PoolCreationDisabled(EconomicsError):
    """Creating operator pools is switched off."""

    code = "PoolCreationDisabled"
    protocol_message = "Pool creation is disabled"


class EpochMustBeFinalizing(EconomicsError):
    """A reward record can only be created while the epoch is marked as finalizing."""

    code = "EpochMustBeFinalizing"
    protocol_message = "Epoch must be finalizing when calling CreateRewardRecord"


class EpochIsFinalizingEpochInvalid(EconomicsError):
    """The epoch named when marking finalization is not the next epoch."""

    code = "EpochIsFinalizingEpochInvalid"
    protocol_message = "Invalid expected epoch provided for epoch finalizing update"


class UnclaimedUsdcEarnings(EconomicsError):
    """USDC earnings must be claimed first."""

    code = "UnclaimedUsdcEarnings"
    protocol_message = "USDC earnings must be claimed before unstaking"


class NoUsdcEarningsToClaim(EconomicsError):
    """The staking record has no USDC earnings."""

    code = "NoUsdcEarningsToClaim"
    protocol_message = "No USDC earnings available to claim"


class InsufficientPoolUsdcVaultBalance(EconomicsError):
    """The pool's delegator USDC vault cannot cover the claim."""

    code = "InsufficientPoolUsdcVaultBalance"
    protocol_message = "Insufficient USDC in pool vault"


class InvalidCommissionRate(EconomicsError):
    """Commission rates are basis points from 0 to 10,000."""

    code = "InvalidCommissionRate"
    protocol_message = "Invalid commission rate"


class FinalUnstakeEpochInvalid(EconomicsError):
    """The operator of a closed pool may unstake only once the pool's final epoch is finalized."""

    code = "FinalUnstakeEpochInvalid"
    protocol_message = "Pool must be closed before the current epoch for the operator to unstake"


class InvalidEmergencyBypassEpoch(EconomicsError):
    """The emergency bypass can only skip an epoch that is already finalized."""

    code = "InvalidEmergencyBypassEpoch"
    protocol_message = "Invalid epoch for emergency bypass"


class InvalidEpoch(EconomicsError):
    """Epochs count from 1."""

    code = "InvalidEpoch"
    protocol_message = "Invalid epoch provided"


class InvalidRewardAmount(EconomicsError):
    """The record's token total is not the emission schedule's amount for the epoch."""

    code = "InvalidRewardAmount"
    protocol_message = "Invalid reward amount - does not match expected emissions for epoch"


class InvalidSlashingDelay(EconomicsError):
    """The slashing delay is below the program's minimum (one day on mainnet)."""

    code = "InvalidSlashingDelay"
    protocol_message = "Slashing delay must be at least 86,400 seconds (1 day)"


class OperatorPoolNotHalted(EconomicsError):
    """Only a halted pool can be slashed."""

    code = "OperatorPoolNotHalted"
    protocol_message = "Operator pool must be halted before slashing"


class SlashingDelayNotMet(EconomicsError):
    """The pool has not been halted for the slashing delay yet."""

    code = "SlashingDelayNotMet"
    protocol_message = "Minimum slashing delay period has not elapsed"


class InvalidAmount(EconomicsError):
    """Amounts of tokens or shares must be positive."""

    code = "InvalidAmount"
    protocol_message = "Invalid amount provided - cannot be zero"


class InvalidSlashSharesAmount(EconomicsError):
    """A slash can take at most the operator's own shares (never a delegator's)."""

    code = "InvalidSlashSharesAmount"
    protocol_message = "Invalid shares amount provided - cannot be greater than total operator shares"


# --- Anchor / SPL generic failures the program relies on ---------------------------------------
class InsufficientShares(EconomicsError):
    """Unstaking more shares than the staking record owns (``require_gte!`` in ``unstake``)."""

    code = "RequireGteViolated"
    protocol_message = "Not enough shares"


class InsufficientFunds(EconomicsError):
    """A token transfer from a wallet that holds less (SPL Token ``InsufficientFunds``)."""

    code = "InsufficientFunds"
    protocol_message = "Insufficient funds"


class RewardTotalsMismatch(EconomicsError):
    """A record without merkle roots must issue nothing (``require_eq!`` in create_reward_record)."""

    code = "RequireEqViolated"
    protocol_message = "A reward record without merkle roots must have zero totals"


class AccountNotInitialized(EconomicsError):
    """The pool, staking record or reward record named does not exist."""

    code = "AccountNotInitialized"
    protocol_message = "Account does not exist"


class AccountAlreadyInUse(EconomicsError):
    """A pool with this name (PDA) already exists."""

    code = "AccountAlreadyInUse"
    protocol_message = "Account already exists"


class RewardEpochOutOfOrder(EconomicsError):
    """Rewards accrue strictly in epoch order: only ``reward_last_claimed_epoch + 1`` is accepted."""

    code = "ConstraintRaw"
    protocol_message = "Reward record is not the pool's next epoch"


class TooManyMerkleRoots(EconomicsError):
    """A reward record holds at most five merkle roots (``#[max_len(5)]``)."""

    code = "AccountDidNotSerialize"
    protocol_message = "A reward record holds at most 5 merkle roots"


# --- model-only errors (no on-chain counterpart) -----------------------------------------------
class ClockWentBackwards(EconomicsError):
    """Operations must be applied in time order; the model's clock never goes backwards."""

    code = "ClockWentBackwards"
    protocol_message = "Time must not go backwards"


class InvalidInput(EconomicsError):
    """Malformed input to the model (bad amount string, unknown setting, bad address ...)."""

    code = "InvalidInput"
    protocol_message = "Invalid input"


ALL_ERRORS: tuple[type[EconomicsError], ...] = tuple(
    dict.fromkeys(
        obj
        for obj in list(globals().values())
        if isinstance(obj, type) and issubclass(obj, EconomicsError) and obj is not EconomicsError
    )
)
