"""Invariants of the staking model over random sequences of operations (hypothesis).

Each property runs 500 generated economies (1-4 pools, 6 delegators, up to 40 operations); the
benchmark ``bench/economics_properties.py`` runs the same properties with many more.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import given, settings

from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.ledger import AccrueResult, Ledger
from tests.unit.economics import sim

#: 500 in CI; the nightly-style benchmark raises it through the environment.
EXAMPLES = settings(max_examples=int(os.environ.get("GPUFLEET_ECONOMICS_EXAMPLES", "500")), deadline=None)


def check_conservation(ledger: Ledger, step: sim.Step) -> None:
    """No token is created or destroyed except by emission (and slashing only moves it aside)."""
    assert sum(ledger.supply().values()) == ledger.genesis_tokens + ledger.emitted_tokens
    assert sum(ledger.usdc_supply().values()) == ledger.usdc_supplied
    assert ledger.reward_token_vault >= ledger.unclaimed_rewards
    assert ledger.usdc_earnings_vault >= ledger.unclaimed_usdc
    for name, pool in ledger.pools.items():
        records = list(ledger.holders(name))
        assert pool.staked_token_vault == pool.total_staked_amount + pool.total_unstaking
        assert sum(r.shares for r in records) == pool.total_shares
        assert sum(r.tokens_unstake_amount for r in records) == pool.total_unstaking
        assert min([pool.total_staked_amount, pool.total_shares, pool.total_unstaking]) >= 0


def check_redeemable(ledger: Ledger, step: sim.Step) -> None:
    """What all holders can redeem never exceeds what the pool holds."""
    for name, pool in ledger.pools.items():
        redeemable = sum(pool.calc_tokens_for_share_amount(r.shares) for r in ledger.holders(name))
        assert redeemable <= pool.total_staked_amount
        assert redeemable + pool.total_unstaking <= pool.staked_token_vault


@EXAMPLES
@given(sim.scenarios)
def test_tokens_are_conserved(scenario: sim.SimScenario) -> None:
    sim.run(scenario, check_conservation)


@EXAMPLES
@given(sim.scenarios)
def test_holders_never_redeem_more_than_the_pool_holds(scenario: sim.SimScenario) -> None:
    sim.run(scenario, check_redeemable)


@EXAMPLES
@given(sim.scenarios)
def test_rounding_dust_stays_in_the_pool_and_slashing_spares_delegators(scenario: sim.SimScenario) -> None:
    """Nobody's position shrinks because of someone else's operation; rounding never pays out.

    Stakes mint shares rounded down and unstakes pay tokens rounded down, so the price of a share
    never falls for the others. The only position that can fall is the operator's under a slash.
    """

    def check(ledger: Ledger, step: sim.Step) -> None:
        if not step.ok:
            return
        for name, (staked, shares) in sim.pool_prices(ledger).items():
            old_staked, old_shares = step.prices[name]
            if shares and old_shares:  # the price of a share never falls, whatever happened
                assert staked * old_shares >= old_staked * shares, (
                    f"{name}'s share price fell in {step.op.kind}"
                )
        after = sim.values(ledger)
        actor = f"{step.pool}/{step.actor}"
        target = step.pool
        slashed_operator = f"{target}/{ledger.pools[target].operator_staking_record}"
        for key, (redeemable, unstaking, _) in after.items():
            if key not in step.before or key == actor:
                continue
            if step.op.kind == "slash" and key == slashed_operator:
                continue
            old_redeemable, old_unstaking, _ = step.before[key]
            assert redeemable >= old_redeemable, f"{key} lost value in {step.op.kind}"
            assert unstaking == old_unstaking, f"{key}'s cooldown changed in {step.op.kind}"
        if step.op.kind == "stake" and actor in step.before:
            gained = after[actor][0] - step.before[actor][0]
            assert gained <= step.op.amount, "a staker can never redeem more than it put in"
        if step.op.kind == "unstake":
            old_r, old_u, old_s = step.before[actor]
            new_r, new_u, new_s = after[actor]
            assert new_u - old_u <= old_r, "unstaking pays at most the shares' value"
            assert new_r + new_u <= old_r + old_u, "unstaking never creates value"
            assert new_s < old_s
        if step.op.kind == "slash":
            for key, (_, unstaking, shares) in after.items():
                if key.startswith(f"{target}/") and key != slashed_operator:
                    assert (shares, unstaking) == (step.before[key][2], step.before[key][1])

    sim.run(scenario, check)


@EXAMPLES
@given(sim.scenarios)
def test_epochs_accrue_in_order_exactly_once(scenario: sim.SimScenario) -> None:
    accrued: dict[str, list[int]] = {}

    def check(ledger: Ledger, step: sim.Step) -> None:
        results: list[AccrueResult] = []
        if step.ok and isinstance(step.result, AccrueResult):
            results = [step.result]
        elif step.ok and step.op.kind == "accrue_all":
            results = list(step.result)
        for r in results:
            accrued.setdefault(r.pool, []).append(r.epoch)

    ledger = sim.run(scenario, check)
    ledger.update_settings(is_accrue_reward_halted=False)
    for r in ledger.accrue_all():
        accrued.setdefault(r.pool, []).append(r.epoch)
    for name, pool in ledger.pools.items():
        epochs = accrued.get(name, [])
        assert epochs == list(range(pool.joined_at_epoch + 1, pool.reward_last_claimed_epoch + 1))
        final = ledger.completed_reward_epoch
        if pool.closed_at_epoch is not None:
            final = min(final, max(pool.closed_at_epoch, pool.joined_at_epoch))
        assert pool.reward_last_claimed_epoch == final
        assert pool.accrued_rewards == pool.accrued_reward_commission == 0
    assert ledger.unclaimed_rewards == 0


# --- halts block exactly what the program says ------------------------------------------------------
GLOBAL_BLOCKS = {
    "is_staking_halted": {"stake": "StakingHalted", "unstake": "StakingHalted"},
    "is_withdrawal_halted": {
        "unstake": "WithdrawalsHalted",
        "claim": "WithdrawalsHalted",
        "claim_usdc": "WithdrawalsHalted",
        "withdraw": "WithdrawalsHalted",
        "withdraw_usdc": "WithdrawalsHalted",
    },
    "is_accrue_reward_halted": {"accrue": "AccrueRewardHalted", "accrue_all": "AccrueRewardHalted"},
}
POOL_BLOCKS_ANYONE = {
    "stake": "OperatorPoolHalted",
    "withdraw": "OperatorPoolHalted",
    "withdraw_usdc": "OperatorPoolHalted",
    "close": "OperatorPoolHalted",
}
POOL_BLOCKS_OPERATOR = {
    "unstake": "UnstakingNotAllowed",
    "claim": "UnstakingNotAllowed",
    "claim_usdc": "OperatorPoolHalted",
}
NOT_COMPARED = {"halt", "unhalt", "global_halt", "slash"}  # they set halts themselves


def _outcome(ledger: Ledger, op: sim.RawOp) -> tuple[bool, Any]:
    try:
        return True, sim.apply(ledger, op)
    except EconomicsError as exc:
        return False, type(exc).__name__


def _blocked(op: sim.RawOp, pool: str, is_operator: bool, halt: str, result: Any) -> str | None:
    if halt in GLOBAL_BLOCKS:
        if op.kind == "accrue_all" and not result:
            return None  # nothing to accrue, so nothing was blocked
        return GLOBAL_BLOCKS[halt].get(op.kind)
    if halt != pool:
        return None
    if op.kind in POOL_BLOCKS_ANYONE:
        return POOL_BLOCKS_ANYONE[op.kind]
    if is_operator:
        return POOL_BLOCKS_OPERATOR.get(op.kind)
    return None


@EXAMPLES
@given(sim.scenarios)
def test_halts_block_exactly_the_protocols_operations(scenario: sim.SimScenario) -> None:
    """Differential: the same operation with one more halt set is refused iff the program says so."""
    ledger = sim.setup(scenario)
    for i, op in enumerate(scenario.ops):
        halted = copy.deepcopy(ledger)
        pools = list(ledger.pools)
        if i % 4 == 3:
            halt = pools[op.pool % len(pools)]
            if halted.pools[halt].halted_at_timestamp is not None:
                halted.set_halt(halt, False)
                ledger, halted = halted, ledger  # compare un-halted against already-halted
                ledger = copy.deepcopy(ledger)
            else:
                halted.set_halt(halt, True)
        else:
            halt = sim.HALT_FLAGS[i % 3]
            if getattr(ledger.settings, halt):
                ledger.update_settings(**{halt: False})
                halted = copy.deepcopy(ledger)
            halted.update_settings(**{halt: True})
        pool, actor = sim.resolve(ledger, op)
        is_operator = actor == ledger.pools[pool].operator_staking_record
        free_ok, free_result = _outcome(ledger, op)
        halted_ok, halted_result = _outcome(halted, op)
        if op.kind in NOT_COMPARED or (op.kind == "claim" and op.flag == 2):
            continue  # the composite "unstake then claim" is also subject to the staking halt
        expected = _blocked(op, pool, is_operator, halt, free_result) if free_ok else None
        if expected is not None:
            assert (halted_ok, halted_result) == (False, expected), f"{halt} should block {op}"
        elif free_ok:
            assert (halted_ok, halted_result) == (True, free_result), f"{halt} must not block {op}"
