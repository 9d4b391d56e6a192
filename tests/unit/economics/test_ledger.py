"""The staking ledger against the program's rules, one instruction at a time."""

from __future__ import annotations

import pytest

from gpufleet.economics import errors as e
from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.ledger import Ledger, RewardClaim
from gpufleet.economics.merkle import Proof
from gpufleet.economics.state import Settings
from gpufleet.economics.units import INT

DAY = 86_400


def make(**settings: object) -> Ledger:
    base: dict[str, object] = {
        "enforce_emission_schedule": False,
        "delegator_unstake_delay_seconds": DAY,
        "operator_unstake_delay_seconds": 2 * DAY,
    }
    base.update(settings)
    return Ledger(Settings(**base))  # type: ignore[arg-type]


def pool_with(ledger: Ledger, op_stake: int = 1000, **kw: object) -> str:
    ledger.mint("op", op_stake)
    ledger.create_pool("p", "op", **kw)  # type: ignore[arg-type]
    ledger.stake("op", "p", op_stake)
    return "p"


def epoch(ledger: Ledger, reward: int, usdc: int = 0, pool: str = "p") -> None:
    ledger.finalize_epoch({pool: (reward, usdc)})
    ledger.accrue_all()


def test_docs_worked_example_alice_and_sam() -> None:
    """staking-protocol.mdx: 1,000 -> 1,000 shares; +100; Sam 100 -> 90 shares; 1,100 and 99."""
    ledger = make()
    ledger.mint("alice", 1000)
    ledger.mint("sam", 100)
    ledger.create_pool("alice-pool", "alice")
    assert ledger.stake("alice", "alice-pool", 1000) == 1000
    ledger.finalize_epoch({"alice-pool": (100, 0)})
    ledger.accrue_reward("alice-pool")
    pool = ledger.pool("alice-pool")
    assert (pool.total_staked_amount, pool.total_shares) == (1100, 1000)
    assert ledger.stake("sam", "alice-pool", 100) == 90
    assert (pool := ledger.pool("alice-pool")).total_staked_amount == 1200
    assert pool.total_shares == 1090
    assert ledger.redeemable("alice", "alice-pool") == 1100
    assert ledger.redeemable("sam", "alice-pool") == 99


def test_stake_check_order_matches_program() -> None:
    ledger = make()
    pool_with(ledger, allow_delegation=False)
    ledger.mint("d", 10)
    ledger.update_settings(is_staking_halted=True)
    with pytest.raises(e.StakingHalted):
        ledger.stake("d", "p", 0)  # the account constraint comes before the amount check
    ledger.update_settings(is_staking_halted=False)
    with pytest.raises(e.InvalidAmount):
        ledger.stake("d", "p", 0)
    with pytest.raises(e.StakingNotAllowed):
        ledger.stake("d", "p", 5)
    ledger.update_pool("p", allow_delegation=True)
    ledger.set_halt("p", True)
    with pytest.raises(e.OperatorPoolHalted):
        ledger.stake("d", "p", 5)
    ledger.set_halt("p", False)
    ledger.close_pool("p")
    ledger.set_halt("p", True)
    with pytest.raises(e.ClosedPool):  # closed is checked before halted
        ledger.stake("d", "p", 5)


def test_stake_refused_until_rewards_accrued_then_needs_funds() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.finalize_epoch({"p": (10, 0)})
    ledger.mint("d", 5)
    with pytest.raises(e.UnclaimedRewards):
        ledger.stake("d", "p", 5)
    ledger.accrue_reward("p")
    before = ledger.snapshot()
    with pytest.raises(e.InsufficientFunds):
        ledger.stake("d", "p", 6)
    assert ledger.snapshot() == before  # a refused instruction changes nothing, like a reverted transaction
    assert before["wallets"]["d"]["INT"] == 5


def test_min_operator_stake_ratio_default_is_ten_percent() -> None:
    ledger = make()
    pool_with(ledger, op_stake=1000)
    ledger.mint("d", 10_000)
    with pytest.raises(e.MinOperatorTokenStakeNotMet):
        ledger.stake("d", "p", 9001)
    assert ledger.records.get(("p", "d")) is None, "a refused stake must not leave a record behind"
    assert ledger.token_wallets["d"] == 10_000
    assert ledger.stake("d", "p", 9000) == 9000
    with pytest.raises(e.MinOperatorTokenStakeNotMet):
        ledger.unstake("op", "p", 1)
    # the delegator leaving raises the operator's ratio again
    ledger.unstake("d", "p", 1000)
    assert ledger.unstake("op", "p", 100) == 100


def test_min_operator_stake_absolute_program_mode() -> None:
    ledger = make(min_operator_stake_bps=0, min_operator_token_stake=500)
    pool_with(ledger, op_stake=600)
    ledger.mint("d", 100_000)
    assert ledger.stake("d", "p", 100_000) == 100_000  # no ratio in program mode
    with pytest.raises(e.MinOperatorTokenStakeNotMet):
        ledger.unstake("op", "p", 101)
    assert ledger.unstake("op", "p", 100) == 100


def test_unstake_resets_timer_for_everything_pending_and_stops_earning() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mint("d", 1000)
    ledger.stake("d", "p", 1000)
    ledger.advance_to(100)
    assert ledger.unstake("d", "p", 300) == 300
    assert ledger.record("d", "p").unstake_at_timestamp == 100 + DAY
    ledger.advance_to(100 + DAY // 2)
    ledger.unstake("d", "p", 200)
    rec = ledger.record("d", "p")
    assert rec.tokens_unstake_amount == 500
    assert rec.unstake_at_timestamp == 100 + DAY // 2 + DAY
    # a reward while in cooldown goes to the remaining shares only
    epoch(ledger, 1500)
    assert ledger.record("d", "p").tokens_unstake_amount == 500
    assert ledger.redeemable("d", "p") == 500 + 500  # 500 shares of a pool whose price doubled
    ledger.advance_to(100 + DAY)
    with pytest.raises(e.PendingDelay):
        ledger.claim_unstake("d", "p")
    ledger.advance_to(100 + DAY // 2 + DAY)
    assert ledger.claim_unstake("d", "p") == 500
    with pytest.raises(e.NoTokensToClaim):
        ledger.claim_unstake("d", "p")


def test_unstake_check_order() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.update_settings(is_staking_halted=True)
    with pytest.raises(e.StakingHalted):
        ledger.unstake("op", "p", 0)
    ledger.update_settings(is_staking_halted=False)
    with pytest.raises(e.InvalidAmount):
        ledger.unstake("op", "p", 0)
    ledger.set_halt("p", True)
    ledger.update_settings(is_withdrawal_halted=True)
    with pytest.raises(e.UnstakingNotAllowed):
        ledger.unstake("op", "p", 1)
    ledger.set_halt("p", False)
    with pytest.raises(e.WithdrawalsHalted):
        ledger.unstake("op", "p", 1)
    ledger.update_settings(is_withdrawal_halted=False)
    ledger.finalize_epoch({"p": (0, 0)})
    with pytest.raises(e.UnclaimedRewards):
        ledger.unstake("op", "p", 1)
    ledger.accrue_all()
    with pytest.raises(e.InsufficientShares) as info:
        ledger.unstake("op", "p", 1001)
    assert info.value.code == "RequireGteViolated"


def test_cancel_unstake_restakes_at_current_price() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mint("d", 1000)
    ledger.stake("d", "p", 1000)
    ledger.unstake("d", "p", 1000)
    epoch(ledger, 1000)  # only the operator's 1000 earn: price 2
    assert ledger.cancel_unstake("d", "p") == 500
    rec = ledger.record("d", "p")
    assert (rec.shares, rec.tokens_unstake_amount, rec.unstake_at_timestamp) == (500, 0, 0)
    assert ledger.pool("p").total_unstaking == 0


def test_commission_first_then_price_rises_and_rate_change_waits_an_epoch() -> None:
    ledger = make()
    pool_with(ledger, reward_commission_rate_bps=1000)
    ledger.update_pool("p", new_reward_commission_rate_bps=5000)
    epoch(ledger, 1000)
    pool = ledger.pool("p")
    assert pool.reward_commission_vault == 100
    assert (pool.total_staked_amount, pool.total_shares) == (1900, 1000)
    assert pool.reward_commission_rate_bps == 5000
    epoch(ledger, 1000)
    assert ledger.pool("p").reward_commission_vault == 600
    assert ledger.withdraw_reward_commission("p") == 600
    assert ledger.token_wallets["op"] == 600


def test_auto_stake_fees_mints_operator_shares_after_the_price_rise() -> None:
    ledger = make()
    pool_with(ledger, reward_commission_rate_bps=1000, auto_stake_fees=True)
    ledger.mint("d", 1000)
    ledger.stake("d", "p", 1000)
    epoch(ledger, 2000)  # 200 commission, 1800 to 2000 tokens/2000 shares -> price 1.9
    pool = ledger.pool("p")
    assert pool.reward_commission_vault == 0
    assert pool.total_staked_amount == 4000
    assert ledger.record("op", "p").shares == 1000 + 200 * 2000 // 3800
    assert ledger.redeemable("d", "p") == 1900


def test_accrual_strictly_in_order_and_lagging_epochs_only_booked() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.finalize_epoch({"p": (100, 0)})
    ledger.finalize_epoch({"p": (200, 0)})
    with pytest.raises(e.RewardEpochOutOfOrder):
        ledger.accrue_reward("p", epoch=2)
    first = ledger.accrue_reward("p", epoch=1)
    assert first.total_rewards_transferred == 0, "an old epoch is booked, not paid"
    assert ledger.pool("p").total_staked_amount == 1000
    second = ledger.accrue_reward("p")
    assert second.total_rewards_transferred == 300
    assert ledger.pool("p").total_staked_amount == 1300
    with pytest.raises(e.AccountNotInitialized):
        ledger.accrue_reward("p")  # nothing left: exactly once
    assert ledger.unclaimed_rewards == 0


def test_accrue_rejects_forged_proofs_and_halt() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.finalize_epoch({"p": (100, 0)})
    with pytest.raises(e.InvalidProof):
        ledger.accrue_reward("p", claim=RewardClaim(0, 101, 0, Proof((), ())))
    with pytest.raises(e.InvalidProof):
        ledger.accrue_reward("p", claim=RewardClaim(3, 100, 0, Proof((), ())))
    ledger.update_settings(is_accrue_reward_halted=True)
    with pytest.raises(e.AccrueRewardHalted):
        ledger.accrue_reward("p")
    ledger.update_settings(is_accrue_reward_halted=False)
    assert ledger.accrue_reward("p", claim=RewardClaim(0, 100, 0, Proof((), ()))).epoch == 1


def test_emission_schedule_enforced_by_default() -> None:
    ledger = Ledger()
    ledger.mint("op", 1000)
    ledger.create_pool("p", "op")
    with pytest.raises(e.InvalidRewardAmount):
        ledger.finalize_epoch({"p": (100, 0)})
    assert not ledger.is_epoch_finalizing
    record = ledger.finalize_epoch({"p": (expected_reward_emissions(1), 0)})
    assert record.total_rewards == 1_666_666_666_666_667


def test_reward_record_needs_finalizing_and_funding() -> None:
    ledger = make()
    pool_with(ledger)
    trees = ledger.build_reward_trees({"p": (100, 0)}, 1)
    with pytest.raises(e.EpochMustBeFinalizing):
        ledger.create_reward_record(trees, 100, 0)
    with pytest.raises(e.EpochIsFinalizingEpochInvalid):
        ledger.mark_epoch_finalizing(2)
    ledger.mark_epoch_finalizing(1)
    with pytest.raises(e.InsufficientRewards):
        ledger.create_reward_record(trees, 100, 0)
    ledger.fund_reward_vault(100, 5)
    with pytest.raises(e.InsufficientUsdc):
        ledger.create_reward_record(trees, 100, 6)
    assert ledger.create_reward_record(trees, 100, 5).epoch == 1


def test_pool_created_while_finalizing_skips_that_epoch() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mark_epoch_finalizing(1)
    ledger.mint("late", 10)
    late = ledger.create_pool("late-pool", "late")
    assert late.reward_last_claimed_epoch == 1
    ledger.finalize_epoch({"p": (10, 0)})
    assert [p.name for p in ledger.pools_due_reward(1)] == ["p"]
    ledger.stake("late", "late-pool", 10)  # not blocked by epoch 1


def test_halt_blocks_operator_but_not_delegators() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mint("d", 1000)
    ledger.stake("d", "p", 1000)
    ledger.unstake("op", "p", 100)
    ledger.set_halt("p", True)
    ledger.advance_to(5 * DAY)
    with pytest.raises(e.UnstakingNotAllowed):
        ledger.claim_unstake("op", "p")
    with pytest.raises(e.OperatorPoolHalted):
        ledger.withdraw_reward_commission("p")
    with pytest.raises(e.OperatorPoolHalted):
        ledger.close_pool("p")
    ledger.unstake("d", "p", 1000)
    ledger.advance_to(7 * DAY)
    assert ledger.claim_unstake("d", "p") == 1000


def test_slash_only_halted_after_delay_only_operator_shares() -> None:
    ledger = make()
    pool_with(ledger, reward_commission_rate_bps=1000)
    ledger.mint("d", 3000)
    ledger.stake("d", "p", 3000)
    epoch(ledger, 1000)
    d_before = ledger.redeemable("d", "p")
    with pytest.raises(e.InvalidAmount):
        ledger.slash("p", 0)
    with pytest.raises(e.OperatorPoolNotHalted):
        ledger.slash("p", 10)
    ledger.advance_to(10)
    ledger.set_halt("p", True)
    with pytest.raises(e.InvalidSlashSharesAmount):
        ledger.slash("p", 1001)
    ledger.advance_to(10 + DAY - 1)
    with pytest.raises(e.SlashingDelayNotMet):
        ledger.slash("p", 500)
    ledger.advance_to(10 + DAY)
    slashed = ledger.slash("p", 500)
    assert slashed == 500 * 4900 // 4000
    assert ledger.slashed_tokens == slashed + 100, "the commission vault is confiscated too"
    assert ledger.redeemable("d", "p") >= d_before
    assert ledger.record("op", "p").shares == 500


def test_slashing_delay_minimum() -> None:
    ledger = make()
    with pytest.raises(e.InvalidSlashingDelay):
        ledger.update_settings(slashing_delay_seconds=DAY - 1)
    with pytest.raises(e.InvalidInput):
        ledger.update_settings(no_such_setting=True)


def test_close_pool_final_epoch_then_operator_exit() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mint("d", 500)
    ledger.stake("d", "p", 500)
    assert ledger.close_pool("p") == 1
    with pytest.raises(e.ClosedPool):
        ledger.close_pool("p")
    ledger.finalize_epoch({"p": (150, 0)})  # the closing epoch still pays
    ledger.accrue_all()
    assert ledger.pool("p").total_staked_amount == 1650
    ledger.finalize_epoch({})
    assert ledger.pools_due_reward(2) == []
    ledger.unstake("op", "p", 1000)  # closed: no minimum applies any more
    ledger.advance_to(3 * DAY)
    assert ledger.claim_unstake("op", "p") == 1100


def test_operator_unstake_in_closed_pool_waits_for_final_epoch() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mark_epoch_finalizing(1)
    assert ledger.close_pool("p") == 2  # closing while finalizing pushes the final epoch out
    ledger.finalize_epoch({"p": (0, 0)})
    ledger.accrue_all()
    ledger.finalize_epoch({"p": (0, 0)})
    ledger.accrue_all()
    assert ledger.unstake("op", "p", 1) == 1
    # a (valid) leaf for the closed pool in a later epoch is refused after the proof checks out
    from gpufleet.economics.merkle import RewardLeaf, RewardTrees

    ledger.mark_epoch_finalizing(3)
    ledger.fund_reward_vault(7)
    ledger.create_reward_record(RewardTrees.build([RewardLeaf(ledger.pool("p").address, 7, 0)]), 7, 0)
    with pytest.raises(e.ClosedPool):
        ledger.accrue_reward("p")


def test_final_unstake_epoch_invalid() -> None:
    ledger = make()
    pool_with(ledger)
    ledger.mark_epoch_finalizing(1)
    ledger.close_pool("p")  # closed_at = 2 while epoch 0 is completed
    with pytest.raises(e.FinalUnstakeEpochInvalid):
        ledger.unstake("op", "p", 1)


def test_usdc_goes_to_operator_by_default_and_is_shared_in_program_mode() -> None:
    ledger = make()
    pool_with(ledger, usdc_commission_rate_bps=1000)
    ledger.mint("d", 1000)
    ledger.stake("d", "p", 1000)
    epoch(ledger, 0, usdc=50 * 10**6)
    assert ledger.pool("p").usdc_commission_vault == 50 * 10**6
    with pytest.raises(e.NoUsdcEarningsToClaim):
        ledger.claim_usdc_earnings("d", "p")
    shared = make(delegators_share_usdc=True)
    pool_with(shared, usdc_commission_rate_bps=1000)
    shared.mint("d", 1000)
    shared.stake("d", "p", 1000)
    epoch(shared, 0, usdc=50 * 10**6)
    assert shared.pool("p").usdc_commission_vault == 5 * 10**6
    assert shared.claim_usdc_earnings("d", "p") == 22_500_000
    assert shared.claim_usdc_earnings("op", "p") == 22_500_000
    assert shared.withdraw_usdc_commission("p") == 5 * 10**6
    assert shared.usdc_wallets["op"] == 27_500_000


def test_pool_creation_rules() -> None:
    ledger = make(operator_pool_registration_fee=5)
    with pytest.raises(e.InsufficientFunds):
        ledger.create_pool("p", "op")
    ledger.mint("op", 5)
    with pytest.raises(e.InvalidCommissionRate):
        ledger.create_pool("p", "op", reward_commission_rate_bps=10_001)
    ledger.create_pool("p", "op")
    assert ledger.registration_fees_collected == 5
    with pytest.raises(e.AccountAlreadyInUse):
        ledger.create_pool("q", "op")  # one pool per admin: same PDA
    ledger.update_settings(allow_pool_creation=False)
    with pytest.raises(e.PoolCreationDisabled):
        ledger.create_pool("r", "someone")
    with pytest.raises(e.InvalidCommissionRate):
        ledger.update_pool("p", new_reward_commission_rate_bps=20_000)


def test_emergency_bypass_skips_a_missing_leaf() -> None:
    ledger = make()
    pool_with(ledger)
    trees = ledger.build_reward_trees({}, 1)
    ledger.mark_epoch_finalizing(1)
    from gpufleet.economics.merkle import RewardLeaf, RewardTrees

    other = RewardTrees.build([RewardLeaf("1" * 31 + "2", 0, 0)])
    ledger.create_reward_record(other, 0, 0)
    assert trees.roots  # p would have had a zero leaf
    with pytest.raises(e.InvalidProof):
        ledger.accrue_reward("p")
    with pytest.raises(e.InvalidEmergencyBypassEpoch):
        ledger.accrue_reward_emergency_bypass("p")
    ledger.finalize_epoch({"p": (10, 0)})
    ledger.accrue_reward_emergency_bypass("p")
    assert ledger.accrue_reward("p").total_rewards_transferred == 10


def test_clock_and_bad_input_are_explained() -> None:
    ledger = make()
    ledger.advance_to(10)
    with pytest.raises(e.ClockWentBackwards):
        ledger.advance_to(9)
    with pytest.raises(e.InvalidInput, match="integer number of base units"):
        ledger.mint("x", 1.5)  # type: ignore[arg-type]
    with pytest.raises(e.AccountNotInitialized, match="no operator pool"):
        ledger.stake("x", "nope", 1)
    with pytest.raises(e.InvalidInput, match="min_operator_stake_bps"):
        Settings(min_operator_stake_bps=10_001)


def test_errors_carry_protocol_message_and_code() -> None:
    err = e.PendingDelay("3 s left")
    assert str(err) == "PendingDelay: Tokens are still in unstaking cooldown: 3 s left"
    assert e.MinOperatorStakeNotMet is e.MinOperatorTokenStakeNotMet
    assert len({cls.code for cls in e.ALL_ERRORS}) == len(e.ALL_ERRORS)


def test_realistic_amounts_stay_exact() -> None:
    ledger = Ledger()
    ledger.mint("op", 100_000 * INT)
    ledger.create_pool("p", "op", reward_commission_rate_bps=750)
    ledger.stake("op", "p", 100_000 * INT)
    for _ in range(3):
        n = ledger.completed_reward_epoch + 1
        ledger.finalize_epoch({"p": (expected_reward_emissions(n), 0)})
        ledger.accrue_all()
    pool = ledger.pool("p")
    paid = sum(expected_reward_emissions(n) for n in (1, 2, 3))
    assert pool.total_staked_amount + pool.reward_commission_vault == 100_000 * INT + paid
    assert sum(ledger.supply().values()) == ledger.genesis_tokens + ledger.emitted_tokens
