"""Stake from the staking model: replay a ledger (scenario or exported state) and read pool stake.

An ``OperatorPool`` may take its stake from a ledger instead of hand-typed ``selfStake`` /
``delegatedStake``: a ConfigMap holds either a scenario (``scenario.yaml``, replayed with
:func:`gpufleet.economics.scenario.replay`) or an exported state (``state.json``, written by
:func:`export_state`). What a pool's stake is, read from the ledger the way the program defines it:

* **total stake** = the pool's ``total_staked_amount``: tokens in unstake cooldown have left it
  (they sit in ``total_unstaking``), so an unstake drops the stake at once and nothing is counted
  during the cooldown; a slash burns the operator's shares and their tokens;
* **self stake** = what the operator's shares redeem for (rounded down, the program's rounding);
  **delegated stake** = the rest of the total (so the two always add up to the total);
* **commission** = the pool's current reward commission (a pending change counts from the epoch
  in which the program applies it);
* the **minimum self-stake rule** (10% by default) is the same function for both sources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import yaml

from gpufleet.economics.errors import EconomicsError, InvalidInput
from gpufleet.economics.ledger import Ledger, settings_from_mapping
from gpufleet.economics.scenario import parse_scenario, replay
from gpufleet.economics.state import OperatorPool, StakingRecord
from gpufleet.economics.units import BPS_DENOMINATOR, format_int

#: ConfigMap keys a ledger can be given under.
SCENARIO_KEY = "scenario.yaml"
STATE_KEY = "state.json"
STATE_FORMAT = "gpufleet.economics/ledger-state/v1"
#: The announcement's global minimum: 10% of the pool's total stake.
DEFAULT_MIN_SELF_STAKE_BPS = 1_000


def meets_min_self_stake(
    self_stake: int, total_stake: int, min_bps: int = DEFAULT_MIN_SELF_STAKE_BPS
) -> bool:
    """Self stake is at least ``min_bps`` of the total; a pool without stake has nothing to break."""
    if self_stake < 0 or total_stake < 0 or self_stake > total_stake:
        raise InvalidInput(f"self stake {self_stake} and total {total_stake} are inconsistent")
    if total_stake == 0:
        return True
    return self_stake * BPS_DENOMINATOR >= min_bps * total_stake


@dataclass(frozen=True)
class LedgerPoolStake:
    """One ledger pool's stake as the fleet uses it (base units)."""

    pool_id: str
    address: str
    self_stake: int
    delegated_stake: int
    unstaking: int
    commission_bps: int
    pending_commission_bps: int | None
    halted: bool
    closed: bool

    @property
    def total_stake(self) -> int:
        return self.self_stake + self.delegated_stake

    def meets_min_self_stake(self, min_bps: int = DEFAULT_MIN_SELF_STAKE_BPS) -> bool:
        return meets_min_self_stake(self.self_stake, self.total_stake, min_bps)


def pool_stakes(ledger: Ledger) -> dict[str, LedgerPoolStake]:
    """Every pool of ``ledger`` by name (its ``poolId``)."""
    out = {}
    for name, p in ledger.pools.items():
        total = p.total_staked_amount
        own = min(total, ledger.redeemable(p.operator_staking_record, name))
        out[name] = LedgerPoolStake(
            pool_id=name,
            address=p.address,
            self_stake=own,
            delegated_stake=total - own,
            unstaking=p.total_unstaking,
            commission_bps=p.reward_commission_rate_bps,
            pending_commission_bps=p.new_reward_commission_rate_bps,
            halted=p.halted_at_timestamp is not None,
            closed=p.closed_at_epoch is not None,
        )
    return out


def export_state(ledger: Ledger) -> str:
    """The ledger's settings, clock, pools and staking records as JSON (what ``state.json`` holds).

    Reward records are not exported: a ledger read back from this answers stake questions, it
    does not accrue further epochs.
    """
    doc = {
        "format": STATE_FORMAT,
        "now": ledger.now,
        "completedRewardEpoch": ledger.completed_reward_epoch,
        "settings": asdict(ledger.settings),
        "pools": [asdict(p) for p in ledger.pools.values()],
        "records": [asdict(r) for r in ledger.records.values()],
    }
    return json.dumps(doc, sort_keys=True, indent=1)


def import_state(text: str) -> Ledger:
    """A ledger from :func:`export_state` output."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"ledger state is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise InvalidInput(f"ledger state must have format {STATE_FORMAT!r}")
    ledger = Ledger(settings_from_mapping(doc.get("settings", {})), now=int(doc.get("now", 0)))
    ledger.completed_reward_epoch = int(doc.get("completedRewardEpoch", 0))
    pool_fields = {f.name for f in fields(OperatorPool)}
    record_fields = {f.name for f in fields(StakingRecord)}
    for raw in doc.get("pools", []):
        extra = set(raw) - pool_fields
        if extra:
            raise InvalidInput(f"unknown pool field(s) {sorted(extra)}")
        pool = OperatorPool(**raw)
        ledger.pools[pool.name] = pool
    for raw in doc.get("records", []):
        extra = set(raw) - record_fields
        if extra:
            raise InvalidInput(f"unknown staking record field(s) {sorted(extra)}")
        rec = StakingRecord(**raw)
        if rec.operator_pool not in ledger.pools:
            raise InvalidInput(f"staking record of {rec.owner} names unknown pool {rec.operator_pool}")
        ledger.records[(rec.operator_pool, rec.owner)] = rec
    ledger.total_pools = len(ledger.pools)
    return ledger


@dataclass(frozen=True)
class LedgerView:
    """A replayed ledger and where it came from; ``errors`` lists unexpected scenario outcomes."""

    ledger: Ledger
    source: str
    errors: tuple[str, ...] = ()

    def stakes(self) -> dict[str, LedgerPoolStake]:
        return pool_stakes(self.ledger)


def load_ledger(data: Mapping[str, str]) -> LedgerView:
    """The ledger a ConfigMap's ``data`` describes (exactly one of the two keys)."""
    present = [k for k in (SCENARIO_KEY, STATE_KEY) if k in data]
    if len(present) != 1:
        raise InvalidInput(
            f"a ledger ConfigMap needs exactly one of {SCENARIO_KEY}, {STATE_KEY}; has {sorted(data)}"
        )
    if present[0] == STATE_KEY:
        return LedgerView(import_state(data[STATE_KEY]), STATE_KEY)
    try:
        doc = yaml.safe_load(data[SCENARIO_KEY])
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{SCENARIO_KEY} is not YAML: {exc}") from None
    scenario = parse_scenario(doc, source=SCENARIO_KEY)
    ledger, results = replay(scenario)
    errors = tuple(
        f"step {r.index} ({r.op}): {r.error or 'succeeded'}"
        + (f", expected {r.expected_error}" if r.expected_error else "")
        for r in results
        if not r.as_expected
    )
    return LedgerView(ledger, SCENARIO_KEY, errors)


def ledger_pool_stake(data: Mapping[str, str], pool_id: str) -> LedgerPoolStake:
    """One pool's stake from a ConfigMap's data; refuses an unknown pool id."""
    try:
        view = load_ledger(data)
    except EconomicsError:
        raise
    except (TypeError, ValueError, KeyError) as exc:  # a malformed state file
        raise InvalidInput(f"ledger cannot be read: {exc}") from None
    stakes = view.stakes()
    if pool_id not in stakes:
        raise InvalidInput(f"ledger has no pool {pool_id!r}; pools: {sorted(stakes)}")
    return stakes[pool_id]


def stake_status(stake: LedgerPoolStake, min_bps: int = DEFAULT_MIN_SELF_STAKE_BPS) -> dict[str, Any]:
    """The ``status.ledgerStake`` block written for a ledger-sourced pool (INT decimal strings)."""
    return {
        "poolId": stake.pool_id,
        "address": stake.address,
        "selfStake": format_int(stake.self_stake),
        "delegatedStake": format_int(stake.delegated_stake),
        "unstaking": format_int(stake.unstaking),
        "commissionBps": stake.commission_bps,
        "halted": stake.halted,
        "meetsMinimumSelfStake": stake.meets_min_self_stake(min_bps),
    }
