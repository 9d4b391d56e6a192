"""The ledger replayed through one journal of every instruction, success and refusal alike.

Each step's result (or error class and full message) and the whole ledger snapshot after it are
compared with ``ledger_journal.json``; conservation of INT and USDC is asserted after every step.
The journal was recorded from this ledger after its rules were checked by test_ledger.py; it pins
rounding, vault bookkeeping and every message so that a changed comparison or a dropped field fails
here (bench/results/mutation.md). Regenerate after an intended change with
``GPUFLEET_REGENERATE_JOURNAL=1 .venv/bin/pytest tests/unit/economics/test_ledger_mutants.py``
and review the diff. Also: a hypothesis run of random instructions conserves tokens.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.ledger import UNSET, Ledger, RewardClaim, settings_from_mapping
from gpufleet.economics.merkle import STAKING_PROGRAM_ID as PROGRAM
from gpufleet.economics.merkle import Proof, RewardLeaf, RewardTrees, name_to_pubkey, operator_pool_address
from gpufleet.economics.state import MIN_SLASHING_DELAY_SECONDS, RewardRecord, Settings
from gpufleet.economics.units import BPS_DENOMINATOR, U64_MAX

JOURNAL = Path(__file__).with_name("ledger_journal.json")
DAY = 86_400

Step = tuple[Any, ...]  # (method, *args[, KW(keyword arguments)])


class KW(dict[str, Any]):
    """Keyword arguments of a journal step (a plain dict is a positional argument)."""


def _plain(value: Any) -> Any:
    if isinstance(value, RewardRecord):
        return {
            "epoch": value.epoch,
            "roots": [r.hex() if isinstance(r, bytes) else str(r) for r in value.merkle_roots],
            "summary": _plain(value.summary()),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | str):
        return value
    return repr(value)


def totals(ledger: Ledger) -> dict[str, int]:
    return {
        "completed": ledger.completed_reward_epoch,
        "finalizing": int(ledger.is_epoch_finalizing),
        "unclaimedRewards": ledger.unclaimed_rewards,
        "unclaimedUsdc": ledger.unclaimed_usdc,
        "rewardVault": ledger.reward_token_vault,
        "usdcVault": ledger.usdc_earnings_vault,
        "genesis": ledger.genesis_tokens,
        "emitted": ledger.emitted_tokens,
        "usdcSupplied": ledger.usdc_supplied,
        "slashed": ledger.slashed_tokens,
        "slashedUsdc": ledger.slashed_usdc,
        "fees": ledger.registration_fees_collected,
        "pools": ledger.total_pools,
    }


def conserved(ledger: Ledger) -> None:
    """Every INT base unit is somewhere; so is every USDC unit."""
    assert sum(ledger.supply().values()) == ledger.genesis_tokens + ledger.emitted_tokens
    assert sum(ledger.usdc_supply().values()) == ledger.usdc_supplied
    for pool in ledger.pools.values():
        assert min(pool.staked_token_vault, pool.reward_commission_vault, pool.usdc_commission_vault) >= 0


def run(ledger: Ledger, steps: list[Step]) -> list[dict[str, Any]]:
    out = []
    for step in steps:
        method, *args = step
        kwargs = args.pop() if args and isinstance(args[-1], KW) else KW()
        args = [a.build() if isinstance(a, _LazyTrees) else a for a in args]
        entry: dict[str, Any] = {"step": [method, *_plain(args), _plain(kwargs)]}
        try:
            if method == "settings_from_mapping":
                result: Any = settings_from_mapping(*args)
            else:
                result = getattr(ledger, method)(*args, **kwargs)
            entry["result"] = _plain(result)
        except EconomicsError as exc:
            entry["error"] = [type(exc).__name__, str(exc)]
        conserved(ledger)
        entry["totals"] = totals(ledger)
        entry["snapshot"] = _plain(ledger.snapshot())
        entry["records"] = {f"{p}/{o}": _plain(r) for (p, o), r in sorted(ledger.records.items())}
        entry["pools"] = {name: _plain(pool) for name, pool in sorted(ledger.pools.items())}
        out.append(entry)
    return out


def operator_journey() -> list[Step]:
    """Pools, stakes, epochs, commissions, unstaking, halts, slashing, closing: success and refusal."""
    return [
        ("mint", "op", 10_000, 500),
        ("mint", "alice", 5_000, KW({"usdc": 0})),
        ("mint", "bob", 3_000),
        ("mint", "x", -1),
        ("mint", "x", 1.5),
        ("mint", "x", 2**64),
        ("mint", "x", True),
        (
            "create_pool",
            "p",
            "op",
            KW({"reward_commission_rate_bps": 1000, "usdc_commission_rate_bps": 2000}),
        ),
        ("create_pool", "p", "op"),
        ("create_pool", "q", "op"),
        ("create_pool", "q", "quinn"),
        ("create_pool", "q2", "someone", KW(address=operator_pool_address(name_to_pubkey("quinn"), PROGRAM))),
        ("create_pool", "r", "ralph", KW({"reward_commission_rate_bps": 10_001})),
        ("create_pool", "r", "ralph", KW({"usdc_commission_rate_bps": -1})),
        ("create_pool", "r", "ralph", KW({"reward_commission_rate_bps": True})),
        ("create_pool", "", "ralph"),
        ("stake", "alice", "p", 100),
        ("stake", "op", "p", 2_000),
        ("stake", "alice", "p", 1_000),
        ("stake", "bob", "p", 0),
        ("stake", "bob", "p", 4_000),
        ("stake", "bob", "nope", 4),
        (
            "update_pool",
            "p",
            KW({"new_reward_commission_rate_bps": 500, "new_usdc_commission_rate_bps": 100}),
        ),
        ("update_pool", "p", KW({"new_reward_commission_rate_bps": 10_001})),
        ("update_pool", "p", KW({"new_usdc_commission_rate_bps": 10_001})),
        ("update_pool", "p", KW({"allow_delegation": False})),
        ("stake", "bob", "p", 10),
        ("stake", "op", "p", 10),
        ("update_pool", "p", KW({"allow_delegation": True, "auto_stake_fees": False})),
        ("stake", "bob", "p", 1_000),
        ("finalize_epoch", {"p": (301, 77)}),
        ("stake", "bob", "p", 10),
        ("unstake", "bob", "p", 10),
        ("accrue_reward", "p", 2),
        ("accrue_reward", "p", 1),
        ("accrue_reward", "p"),
        ("stake", "bob", "p", 10),
        ("unstake", "alice", "p", 0),
        ("unstake", "alice", "p", 100_000),
        ("unstake", "alice", "p", 400),
        ("claim_unstake", "alice", "p"),
        ("advance_to", DAY - 1),
        ("claim_unstake", "alice", "p"),
        ("advance_to", DAY),
        ("claim_unstake", "alice", "p"),
        ("claim_unstake", "alice", "p"),
        ("unstake", "bob", "p", 300),
        ("cancel_unstake", "bob", "p"),
        ("unstake", "op", "p", 1_900),
        ("withdraw_reward_commission", "p"),
        ("withdraw_usdc_commission", "p"),
        ("finalize_epoch", {"p": (1_000, 333)}),
        ("cancel_unstake", "bob", "p"),
        ("claim_unstake", "alice", "p"),
        ("accrue_all",),
        ("claim_usdc_earnings", "alice", "p"),
        ("set_halt", "p", True),
        ("stake", "alice", "p", 1),
        ("unstake", "op", "p", 1),
        ("claim_unstake", "op", "p"),
        ("claim_usdc_earnings", "op", "p"),
        ("withdraw_reward_commission", "p"),
        ("withdraw_usdc_commission", "p"),
        ("close_pool", "p"),
        ("accrue_reward_emergency_bypass", "p"),
        ("slash", "p", 0),
        ("slash", "p", 10**9),
        ("slash", "p", 50),
        ("advance_to", DAY + 86_400 * 3),
        ("slash", "p", 50),
        ("slash", "q", 1),
        ("set_halt", "p", False),
        ("finalize_epoch", {"p": (50, 0)}),
        ("accrue_all",),
        ("close_pool", "p"),
        ("close_pool", "p"),
        ("stake", "alice", "p", 1),
        ("unstake", "op", "p", 10),
        ("accrue_reward_emergency_bypass", "p"),
        ("finalize_epoch", {"p": (20, 5)}),
        ("accrue_all",),
        ("finalize_epoch", {"p": (0, 0)}),
        ("finalize_epoch", {}),
        ("accrue_all",),
        ("unstake", "op", "p", 10),
        ("advance_to", DAY * 30),
        ("claim_unstake", "op", "p"),
        ("redeemable", "alice", "p"),
        ("redeemable", "nobody", "p"),
        ("advance_to", 5),
        ("advance_to", 1.5),
    ]


def program_mode_journey() -> list[Step]:
    """Delegators share USDC, fees auto-staked, registration fee, halts, epochs by hand."""
    return [
        ("mint", "op", 50_000, 1_000),
        ("mint", "dee", 20_000),
        ("mint", "poor", 5),
        ("create_pool", "p", "poor"),
        (
            "create_pool",
            "p",
            "op",
            KW(reward_commission_rate_bps=2500, usdc_commission_rate_bps=4000, auto_stake_fees=True),
        ),
        ("stake", "op", "p", 999),
        ("stake", "op", "p", 1_000),
        ("stake", "dee", "p", 9_001),
        ("stake", "dee", "p", 9_000),
        ("unstake", "op", "p", 1),
        ("create_pool", "late", "op", KW({"allow_delegation": False})),
        ("mint", "lena", 100),
        ("create_pool", "late", "lena", KW({"allow_delegation": False})),
        ("stake", "dee", "late", 10),
        ("mark_epoch_finalizing", 2),
        ("create_reward_record", "no-trees", 0, 0),
        ("mark_epoch_finalizing", 1),
        ("create_pool", "later", "dee"),
        ("build_reward_trees", {"nope": (1, 1)}, 1),
        ("build_reward_trees", {"later": (1, 1)}, 1),
        ("finalize_epoch", {"p": (4_000, 700)}, KW({"fund": False})),
        ("fund_reward_vault", 4_000, 700),
        ("fund_reward_vault", -5),
        ("finalize_epoch", {"p": (4_000, 700)}, KW({"fund": False})),
        ("accrue_reward", "late"),
        ("accrue_all",),
        ("claim_usdc_earnings", "dee", "p"),
        ("claim_usdc_earnings", "dee", "p"),
        ("claim_usdc_earnings", "op", "p"),
        ("withdraw_usdc_commission", "p"),
        ("withdraw_reward_commission", "p"),
        ("finalize_epoch", {"p": (100, 0), "late": (7, 3)}),
        ("finalize_epoch", {"p": (100, 10)}),
        ("accrue_reward_emergency_bypass", "later"),
        ("accrue_reward_emergency_bypass", "p"),
        ("accrue_reward", "p"),
        ("accrue_reward", "p"),
        ("accrue_reward_emergency_bypass", "p"),
        ("accrue_all",),
        ("update_settings", KW({"bogus": 1})),
        ("update_settings", KW({"slashing_delay_seconds": 1})),
        ("update_settings", KW({"is_staking_halted": True})),
        ("stake", "dee", "p", 1),
        ("unstake", "dee", "p", 1),
        ("update_settings", KW({"is_staking_halted": False, "is_withdrawal_halted": True})),
        ("unstake", "dee", "p", 1),
        ("claim_unstake", "dee", "p"),
        ("claim_usdc_earnings", "dee", "p"),
        ("withdraw_reward_commission", "p"),
        ("withdraw_usdc_commission", "p"),
        ("update_settings", KW({"is_withdrawal_halted": False, "is_accrue_reward_halted": True})),
        ("finalize_epoch", {"p": (10, 0)}),
        ("accrue_reward", "p"),
        ("update_settings", KW({"is_accrue_reward_halted": False, "allow_pool_creation": False})),
        ("create_pool", "z", "zed"),
        ("accrue_all",),
        (
            "update_pool",
            "p",
            KW({"new_reward_commission_rate_bps": None, "new_usdc_commission_rate_bps": None}),
        ),
        ("update_pool", "p", KW({"new_reward_commission_rate_bps": UNSET})),
        ("settings_from_mapping", {"nope": 1}),
        ("settings_from_mapping", {"min_operator_stake_bps": 500}),
    ]


def emission_journey() -> list[Step]:
    """The emission schedule enforced: wrong totals refused, forged claims refused."""
    return [
        ("mint", "op", 10**12),
        ("create_pool", "p", "op"),
        ("stake", "op", "p", 10**12),
        ("finalize_epoch", {"p": (5, 0)}),
        ("mark_epoch_finalizing", 1),
        ("fund_reward_vault", 10),
        ("create_reward_record", "empty-trees", 1, 0),
        ("accrue_reward", "p", None, KW({"claim": RewardClaim(0, 1, 0, Proof((), ()))})),
        ("accrue_reward", "p", None, KW({"claim": RewardClaim(3, 1, 0, Proof((), ()))})),
    ]


def unfunded_admin_journey() -> list[Step]:
    """Admins who never minted (their wallets appear only when paid), auto-staked fees, lagging and
    closing epochs, slashing an operator with settled USDC, every bound at its edge."""
    return [
        ("mint", "dora", 10_000, 500),
        ("mint", "dora", 1_000, 100),
        ("mint", "whale", U64_MAX),
        ("mint", "whale", 0, U64_MAX),
        (
            "create_pool",
            "p",
            "adam",
            KW(reward_commission_rate_bps=2_000, usdc_commission_rate_bps=3_000, auto_stake_fees=True),
        ),
        (
            "create_pool",
            "q",
            "bea",
            KW(reward_commission_rate_bps=BPS_DENOMINATOR, usdc_commission_rate_bps=0),
        ),
        ("create_pool", "t", "tim"),
        ("stake", "dora", "p", 5_000),
        ("stake", "dora", "q", 3_000),
        ("stake", "dora", "t", 1),
        ("finalize_epoch", {"p": (1_000, 200), "q": (400, 50), "t": (0, 1)}),
        ("finalize_epoch", {"p": (600, 120), "q": (100, 10), "t": (0, 1)}),
        ("accrue_all",),
        ("withdraw_reward_commission", "q"),
        ("withdraw_usdc_commission", "q"),
        ("claim_usdc_earnings", "adam", "p"),
        ("withdraw_usdc_commission", "p"),
        ("claim_usdc_earnings", "dora", "t"),
        ("update_pool", "q", KW(auto_stake_fees=True, new_reward_commission_rate_bps=100)),
        ("update_pool", "q", KW(new_reward_commission_rate_bps=200)),
        ("finalize_epoch", {"p": (300, 90), "q": (50, 5), "t": (0, 0)}),
        ("accrue_all",),
        ("unstake", "adam", "p", 10),
        ("advance_to", 0),
        ("claim_unstake", "adam", "p"),
        ("advance_to", 10 * DAY),
        ("claim_unstake", "adam", "p"),
        ("finalize_epoch", {"p": (0, 60), "q": (0, 0), "t": (0, 0)}),
        ("accrue_all",),
        ("unstake", "adam", "p", 1),
        ("set_halt", "p", True),
        ("advance_to", 20 * DAY),
        ("slash", "p", 10**6),
        ("slash", "p", 0),
        ("update_settings", KW(slashing_delay_seconds=MIN_SLASHING_DELAY_SECONDS)),
        ("update_settings", KW(slashing_delay_seconds=MIN_SLASHING_DELAY_SECONDS + 100)),
        ("update_settings", KW(slashing_delay_seconds=MIN_SLASHING_DELAY_SECONDS - 1)),
        ("slash", "p", 1),
        ("slash", "p", 288),  # exactly every share the operator has left
        ("close_pool", "q"),
        ("finalize_epoch", {"q": (70, 7), "t": (0, 0)}),
        ("finalize_epoch", {"t": (0, 0)}),
        ("accrue_reward", "q"),
        ("accrue_reward", "q"),
        ("accrue_all",),
        ("advance_to", 20 * DAY),
    ]


def refusals_journey() -> list[Step]:
    """Each instruction refused with a bad argument (every field is named), and bounds at their edge."""
    return [
        ("mint", "op", 100_000, 10_000),
        ("mint", "op"),
        ("fund_reward_vault",),
        ("fund_reward_vault", 0, -1),
        ("create_pool", "p", "op", KW(reward_commission_rate_bps=500)),
        ("create_pool", "t", "tess"),
        ("stake", "ghost", "p", 5),
        ("stake", "op", "p", 1.5),
        ("stake", "op", "p", 50_000),
        ("unstake", "op", "p", 1.5),
        ("unstake", "nobody", "p", 1),
        ("slash", "p", 1.5),
        ("mint", "dee", 5_000),
        ("stake", "dee", "p", 2_000),
        ("stake", "dee", "t", 1),
        ("build_reward_trees", {"p": (-1, 0)}, 1),
        ("build_reward_trees", {"p": (0, -1)}, 1),
        ("mark_epoch_finalizing", 1),
        ("create_reward_record", "no-trees", -1, 0),
        ("create_reward_record", "no-trees", 0, -1),
        ("create_reward_record", ("leaves", ("p", 0, 5), ("t", 0, 0)), 0, 5),
        ("fund_reward_vault", 0, 5),
        ("create_reward_record", ("leaves", ("p", 0, 5), ("t", 0, 0)), 0, 5),
        ("claim_usdc_earnings", "dee", "p"),
        ("accrue_reward", "p", None, KW(claim=RewardClaim(1, 0, 5, Proof((), ())))),
        ("accrue_reward", "p", None, KW(claim=RewardClaim(0, -1, 5, Proof((), ())))),
        ("accrue_reward", "p", None, KW(claim=RewardClaim(0, 0, -5, Proof((), ())))),
        ("accrue_reward", "p", None, KW(claim=RewardClaim(0, 1, 5, Proof((), ())))),
        ("accrue_all",),
        ("finalize_epoch", {"p": (0, 0), "t": (0, 1)}),
        ("finalize_epoch", {"p": (10, 0)}, KW(fund=False)),
        ("finalize_epoch", {"p": (0, 50)}, KW(fund=False)),
        ("accrue_all",),
        ("claim_usdc_earnings", "dee", "t"),
        ("claim_usdc_earnings", "dee", "t"),
        ("mint", "late", 1_000),
        ("stake", "late", "p", 100),
        ("claim_usdc_earnings", "late", "p"),
        ("unstake", "dee", "t", 1),
        ("advance_to", 60 * DAY),
        ("claim_unstake", "dee", "t"),
        ("finalize_epoch", {"p": (1, 0), "t": (0, 0)}, KW(max_leaves_per_tree=1)),
        ("accrue_all",),
        ("mark_epoch_finalizing", 4),
        ("close_pool", "p"),  # closes after epoch 5: epoch 4 is already finalizing
        ("unstake", "op", "p", 10),
        ("finalize_epoch", {"p": (0, 0), "t": (0, 0)}),
        ("finalize_epoch", {"p": (0, 0), "t": (0, 0)}),
        ("accrue_all",),
        ("unstake", "op", "p", 10),
        ("mark_epoch_finalizing", 6),
        ("fund_reward_vault", 3),
        ("create_reward_record", ("leaves", ("p", 3, 0)), 3, 0),  # a leaf for a pool closed before
        ("accrue_reward", "p"),
        ("accrue_all",),
    ]


JOURNEYS = {
    "operator": (
        {"enforce_emission_schedule": False, "delegator_unstake_delay_seconds": DAY,
         "operator_unstake_delay_seconds": 2 * DAY, "slashing_delay_seconds": 2 * DAY},
        operator_journey,
    ),
    "program": (
        {"enforce_emission_schedule": False, "delegators_share_usdc": True,
         "operator_pool_registration_fee": 100, "min_operator_token_stake": 1_000,
         "min_operator_stake_bps": 1_000},
        program_mode_journey,
    ),
    "emission": ({}, emission_journey),
    "refusals": (
        {"enforce_emission_schedule": False, "delegators_share_usdc": True, "min_operator_stake_bps": 0},
        refusals_journey,
    ),
    "unfunded": (
        {"enforce_emission_schedule": False, "delegators_share_usdc": True, "min_operator_stake_bps": 0,
         "min_operator_token_stake": 0, "operator_unstake_delay_seconds": DAY,
         "slashing_delay_seconds": DAY},
        unfunded_admin_journey,
    ),
}  # fmt: skip


def _ledger(name: str) -> Ledger:
    values, _ = JOURNEYS[name]
    if name == "emission":  # another deployment of the program: pool addresses derive from its id
        return Ledger(Settings(**values), program_id=name_to_pubkey("another staking program"))
    return Ledger(Settings(**values))


def journal() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, (_, steps) in JOURNEYS.items():
        ledger = _ledger(name)
        out[name] = run(ledger, _with_trees(ledger, steps()))
    return out


def _with_trees(ledger: Ledger, steps: list[Step]) -> list[Step]:
    """Replace the placeholder tree names of ``create_reward_record`` by real (empty) trees."""
    fixed: list[Step] = []
    for step in steps:
        if step[0] == "create_reward_record" and isinstance(step[1], str):
            fixed.append((step[0], ledger.build_reward_trees({}, 10**6), *step[2:]))
        elif step[0] == "create_reward_record" and isinstance(step[1], tuple):
            fixed.append((step[0], _LazyTrees(ledger, step[1][1:]), *step[2:]))
        else:
            fixed.append(step)
    return fixed


class _LazyTrees:
    """Trees with the given (pool, tokens, usdc) leaves, built when the step runs (pools exist by then)."""

    def __init__(self, ledger: Ledger, leaves: tuple[tuple[str, int, int], ...]) -> None:
        self.ledger, self.leaves = ledger, leaves

    def build(self) -> RewardTrees:
        return RewardTrees.build(
            [RewardLeaf(self.ledger.pools[name].address, tokens, usdc) for name, tokens, usdc in self.leaves]
        )


def test_journal_matches_the_recorded_one() -> None:
    got = json.loads(json.dumps(journal()))
    if os.environ.get("GPUFLEET_REGENERATE_JOURNAL") == "1":
        JOURNAL.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
    want = json.loads(JOURNAL.read_text())
    assert set(got) == set(want)
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for i, (g, w) in enumerate(zip(got[name], want[name], strict=True)):
            assert g == w, f"{name} step {i}: {w['step']}"


def test_the_journal_reaches_every_error_it_should() -> None:
    """The journeys are not vacuous: they hit refusals of most kinds and succeed most of the time."""
    got = journal()
    errors = {e["error"][0] for steps in got.values() for e in steps if "error" in e}
    assert len(errors) >= 30, sorted(errors)
    ok = sum(1 for steps in got.values() for e in steps if "result" in e)
    assert ok >= 60


# ------------------------------------------------------------------ conservation under random use

OWNERS = ("op", "a", "b")
ops = st.one_of(
    st.tuples(st.just("stake"), st.sampled_from(OWNERS), st.integers(0, 3_000)),
    st.tuples(st.just("unstake"), st.sampled_from(OWNERS), st.integers(0, 3_000)),
    st.tuples(st.just("cancel_unstake"), st.sampled_from(OWNERS)),
    st.tuples(st.just("claim_unstake"), st.sampled_from(OWNERS)),
    st.tuples(st.just("claim_usdc_earnings"), st.sampled_from(OWNERS)),
    st.tuples(st.just("epoch"), st.integers(0, 5_000), st.integers(0, 500)),
    st.tuples(st.just("advance"), st.integers(0, 3 * DAY)),
    st.tuples(st.just("halt"), st.booleans()),
    st.tuples(st.just("slash"), st.integers(1, 2_000)),
    st.tuples(
        st.just("withdraw"),
    ),
)


#: Fewer examples under bench/mutation.py (every mutant runs this test); the same seed either way.
EXAMPLES = 25 if os.environ.get("GPUFLEET_MUTATION") == "1" else 150


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
@given(st.lists(ops, max_size=30), st.booleans(), st.integers(0, 10_000), st.integers(0, 10_000))
def test_random_instructions_conserve_tokens(
    steps: list[tuple[Any, ...]], share_usdc: bool, commission: int, usdc_commission: int
) -> None:
    ledger = Ledger(
        Settings(
            enforce_emission_schedule=False,
            delegators_share_usdc=share_usdc,
            delegator_unstake_delay_seconds=DAY,
            operator_unstake_delay_seconds=DAY,
            slashing_delay_seconds=DAY,
        )
    )
    for owner in OWNERS:
        ledger.mint(owner, 10_000, 1_000)
    ledger.create_pool(
        "p", "op", reward_commission_rate_bps=commission, usdc_commission_rate_bps=usdc_commission
    )
    ledger.stake("op", "p", 2_000)
    for step in steps:
        kind, *args = step
        before = sum(ledger.supply().values())
        try:
            if kind in ("stake", "unstake"):
                getattr(ledger, kind)(args[0], "p", args[1])
            elif kind in ("cancel_unstake", "claim_unstake", "claim_usdc_earnings"):
                getattr(ledger, kind)(args[0], "p")
            elif kind == "epoch":
                ledger.finalize_epoch({"p": (args[0], args[1])})
                ledger.accrue_all()
            elif kind == "advance":
                ledger.advance_to(ledger.now + args[0])
            elif kind == "halt":
                ledger.set_halt("p", args[0])
            elif kind == "slash":
                ledger.slash("p", args[0])
            else:
                ledger.withdraw_reward_commission("p")
                ledger.withdraw_usdc_commission("p")
        except EconomicsError:
            assert sum(ledger.supply().values()) == before  # a refused instruction moves nothing
        conserved(ledger)
        pool = ledger.pool("p")
        holders = sum(r.shares for r in ledger.holders("p"))
        assert holders == pool.total_shares
        redeemable = sum(ledger.redeemable(o, "p") for o in OWNERS)
        assert redeemable <= pool.total_staked_amount  # rounding never pays out more than is staked
