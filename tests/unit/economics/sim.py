"""Random staking economies for the property tests and the nightly-style benchmark.

A scenario is a seed-free description (settings, pools, a list of raw operations) that hypothesis
generates; :func:`run` applies it to a fresh ledger and calls a checker after every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.ledger import Ledger
from gpufleet.economics.state import Settings

DAY = 86_400
KINDS = (
    "stake",
    "stake",
    "stake",
    "unstake",
    "unstake",
    "cancel",
    "claim",
    "claim_usdc",
    "finalize",
    "finalize",
    "accrue",
    "accrue_all",
    "accrue_all",
    "halt",
    "unhalt",
    "slash",
    "close",
    "commission",
    "withdraw",
    "withdraw_usdc",
    "global_halt",
    "advance",
)
HALT_FLAGS = ("is_staking_halted", "is_withdrawal_halted", "is_accrue_reward_halted")


@dataclass(frozen=True)
class PoolSpec:
    commission_bps: int
    usdc_commission_bps: int
    allow_delegation: bool
    auto_stake: bool
    operator_stake: int


@dataclass(frozen=True)
class RawOp:
    kind: str
    actor: int
    pool: int
    amount: int
    dt: int
    flag: int


@dataclass(frozen=True)
class SimScenario:
    min_bps: int
    share_usdc: bool
    pools: tuple[PoolSpec, ...]
    ops: tuple[RawOp, ...]


@dataclass
class Step:
    op: RawOp
    ok: bool
    error: str | None
    result: Any = None
    before: dict[str, Any] = field(default_factory=dict)
    pool: str = ""
    actor: str = ""
    prices: dict[str, tuple[int, int]] = field(default_factory=dict)


amounts = st.one_of(st.integers(1, 1_000), st.integers(1, 10**6), st.integers(1, 10**12))
pool_specs = st.builds(
    PoolSpec,
    commission_bps=st.sampled_from([0, 1, 500, 3333, 10_000]),
    usdc_commission_bps=st.sampled_from([0, 2500, 10_000]),
    allow_delegation=st.sampled_from([True, True, True, False]),
    auto_stake=st.booleans(),
    operator_stake=st.one_of(st.integers(8, 10**6), st.integers(8, 10**12)),
)
raw_ops = st.builds(
    RawOp,
    kind=st.sampled_from(KINDS),
    actor=st.integers(0, 5),
    pool=st.integers(0, 3),
    amount=amounts,
    dt=st.sampled_from([0, 1, 3600, DAY, 2 * DAY]),
    flag=st.integers(0, 2),
)
scenarios = st.builds(
    SimScenario,
    min_bps=st.sampled_from([0, 1000, 5000]),
    share_usdc=st.booleans(),
    pools=st.lists(pool_specs, min_size=1, max_size=4).map(tuple),
    ops=st.lists(raw_ops, min_size=5, max_size=40).map(tuple),
)


def holder_name(i: int) -> str:
    return f"d{i}"


def setup(sc: SimScenario) -> Ledger:
    ledger = Ledger(
        Settings(
            enforce_emission_schedule=False,
            delegator_unstake_delay_seconds=DAY,
            operator_unstake_delay_seconds=2 * DAY,
            min_operator_stake_bps=sc.min_bps,
            delegators_share_usdc=sc.share_usdc,
        )
    )
    for i in range(6):
        ledger.mint(holder_name(i), 10**13)
    for i, spec in enumerate(sc.pools):
        op = f"op{i}"
        ledger.mint(op, spec.operator_stake)
        ledger.create_pool(
            f"p{i}",
            op,
            reward_commission_rate_bps=spec.commission_bps,
            usdc_commission_rate_bps=spec.usdc_commission_bps,
            allow_delegation=spec.allow_delegation,
            auto_stake_fees=spec.auto_stake,
        )
        ledger.stake(op, f"p{i}", spec.operator_stake)
        if spec.allow_delegation and spec.operator_stake >= 8:
            for k in range(3):  # a few delegators from the start, within any minimum ratio
                ledger.stake(holder_name(k), f"p{i}", spec.operator_stake // 4 - k // 2)
    return ledger


def actor_for(ledger: Ledger, op: RawOp, pool: str) -> str:
    """Actor 5 is the pool's operator. Stakers are any delegator; for the other operations the
    actor is picked among the pool's existing holders so that they mostly get past the basics."""
    operator = ledger.pools[pool].operator_staking_record
    if op.actor == 5:
        return operator
    if op.kind == "stake":
        return holder_name(op.actor)
    holders = sorted(r.owner for r in ledger.holders(pool) if r.owner != operator)
    if op.kind in ("claim", "cancel"):
        pending = [h for h in holders if ledger.records[(pool, h)].tokens_unstake_amount]
        holders = pending or holders
    return holders[op.actor % len(holders)] if holders else operator


def resolve(ledger: Ledger, op: RawOp) -> tuple[str, str]:
    """The pool and the actor an operation applies to, in the current state."""
    pools = list(ledger.pools)
    pool = pools[op.pool % len(pools)]
    return pool, actor_for(ledger, op, pool)


def apply(ledger: Ledger, op: RawOp) -> Any:
    """Apply one raw operation; raises the ledger's refusal if there is one."""
    pool, who = resolve(ledger, op)
    if op.dt:
        ledger.advance_to(ledger.now + op.dt)
    kind = op.kind
    if kind == "stake":
        return ledger.stake(who, pool, op.amount)
    if kind == "unstake":
        rec = ledger.records.get((pool, who))
        shares = rec.shares if rec else 0
        return ledger.unstake(who, pool, op.amount % (shares + 1) if op.flag else shares)
    if kind == "cancel":
        return ledger.cancel_unstake(who, pool)
    if kind == "claim":
        rec = ledger.records.get((pool, who))
        if op.flag == 2 and rec is not None and rec.shares and not rec.tokens_unstake_amount:
            ledger.unstake(who, pool, rec.shares)  # a full exit: unstake, wait, claim
            rec = ledger.records[(pool, who)]
        if op.flag and rec is not None:  # usually wait for the cooldown to end first
            ledger.advance_to(max(ledger.now, rec.unstake_at_timestamp))
        return ledger.claim_unstake(who, pool)
    if kind == "claim_usdc":
        return ledger.claim_usdc_earnings(who, pool)
    if kind == "finalize":
        epoch = ledger.completed_reward_epoch + 1
        due = ledger.pools_due_reward(epoch)
        rewards = {
            p.name: ((op.amount * (k + 1)) % 10**9, (op.amount * 7919 >> k) % 10**9)
            for k, p in enumerate(due)
        }
        return ledger.finalize_epoch(rewards)
    if kind == "accrue":
        return ledger.accrue_reward(pool)
    if kind == "accrue_all":
        return ledger.accrue_all()
    if kind == "halt":
        return ledger.set_halt(pool, True)
    if kind == "unhalt":
        return ledger.set_halt(pool, False)
    if kind == "slash":
        if op.flag:  # halt, wait out the slashing delay, then slash: otherwise slashes are rare
            if ledger.pools[pool].halted_at_timestamp is None:
                ledger.set_halt(pool, True)
            ledger.advance_to(ledger.now + ledger.settings.slashing_delay_seconds)
        op_shares = ledger.record(ledger.pools[pool].operator_staking_record, pool).shares
        return ledger.slash(pool, op.amount % (op_shares + 1))
    if kind == "close":
        return ledger.close_pool(pool)
    if kind == "commission":
        return ledger.update_pool(pool, new_reward_commission_rate_bps=op.amount % 10_001)
    if kind == "withdraw":
        return ledger.withdraw_reward_commission(pool)
    if kind == "withdraw_usdc":
        return ledger.withdraw_usdc_commission(pool)
    if kind == "global_halt":
        flag = HALT_FLAGS[op.flag]
        return ledger.update_settings(**{flag: not getattr(ledger.settings, flag)})
    if kind == "advance":
        return None
    raise AssertionError(kind)


def run(sc: SimScenario, check: Callable[[Ledger, Step], None]) -> Ledger:
    ledger = setup(sc)
    for op in sc.ops:
        before = values(ledger)
        prices = pool_prices(ledger)
        pool, actor = resolve(ledger, op)
        try:
            result = apply(ledger, op)
            step = Step(op, True, None, result, before, pool, actor, prices)
        except EconomicsError as exc:
            step = Step(op, False, type(exc).__name__, None, before, pool, actor, prices)
        check(ledger, step)
    return ledger


def values(ledger: Ledger) -> dict[str, Any]:
    """Each holder's redeemable tokens and tokens in cooldown, per pool."""
    out: dict[str, Any] = {}
    for (pool, owner), rec in ledger.records.items():
        p = ledger.pools[pool]
        out[f"{pool}/{owner}"] = (
            p.calc_tokens_for_share_amount(rec.shares),
            rec.tokens_unstake_amount,
            rec.shares,
        )
    return out


def pool_prices(ledger: Ledger) -> dict[str, tuple[int, int]]:
    """Each pool's (total staked, total shares): the exact share price as a ratio."""
    return {name: (p.total_staked_amount, p.total_shares) for name, p in ledger.pools.items()}
