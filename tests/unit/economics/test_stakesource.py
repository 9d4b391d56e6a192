"""Stake from a ledger: delegation, cooldown, slash and commission flow into pool stake."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.ledger import Ledger
from gpufleet.economics.scenario import parse_scenario, replay
from gpufleet.economics.stakesource import (
    SCENARIO_KEY,
    STATE_KEY,
    export_state,
    import_state,
    ledger_pool_stake,
    load_ledger,
    meets_min_self_stake,
    pool_stakes,
    stake_status,
)
from gpufleet.economics.state import Settings
from gpufleet.economics.units import INT

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "economics"

BASE = {
    "settings": {
        "enforce_emission_schedule": False,
        "delegator_unstake_delay_seconds": 100,
        "slashing_delay_seconds": 86400,
    },
    "mint": {"op": "1000", "dan": "20000"},
    "steps": [
        {"at": 0, "op": "create_pool", "pool": "op-pool", "admin": "op", "reward_commission_bps": 1000},
        {"op": "stake", "owner": "op", "pool": "op-pool", "amount": "1000"},
    ],
}


def scenario(*steps: Mapping[str, object]) -> str:
    doc = json.loads(json.dumps(BASE))
    doc["steps"] += list(steps)
    return yaml.safe_dump(doc)


def stake(*steps: Mapping[str, object]) -> tuple[int, int, int, int, bool]:
    s = ledger_pool_stake({SCENARIO_KEY: scenario(*steps)}, "op-pool")
    return s.self_stake, s.delegated_stake, s.unstaking, s.commission_bps, s.halted


def test_operator_only() -> None:
    assert stake() == (1000 * INT, 0, 0, 1000, False)


def test_delegation_flows_in() -> None:
    assert stake({"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "5000"})[:2] == (
        1000 * INT,
        5000 * INT,
    )


def test_unstake_drops_at_once_and_cooldown_counts_nothing() -> None:
    steps: list[Mapping[str, object]] = [
        {"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "5000"},
        {"op": "unstake", "owner": "dan", "pool": "op-pool", "shares": "2000"},
    ]
    self_, delegated, unstaking, _, _ = stake(*steps)
    assert (self_, delegated, unstaking) == (1000 * INT, 3000 * INT, 2000 * INT)
    claimed = stake(*steps, {"at": 200, "op": "claim_unstake", "owner": "dan", "pool": "op-pool"})
    assert claimed[:3] == (1000 * INT, 3000 * INT, 0)


def test_slash_reduces_the_operator_only() -> None:
    steps: list[Mapping[str, object]] = [
        {"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "5000"},
        {"op": "set_halt", "pool": "op-pool", "halted": True},
        {"at": 86400, "op": "slash", "pool": "op-pool", "shares": "500"},
    ]
    self_, delegated, _, _, halted = stake(*steps)
    assert (self_, delegated, halted) == (500 * INT, 5000 * INT, True)
    assert not meets_min_self_stake(self_, self_ + delegated)


def test_commission_change_is_pending_until_accrued() -> None:
    pending = ledger_pool_stake(
        {SCENARIO_KEY: scenario({"op": "update_pool", "pool": "op-pool", "reward_commission_bps": 2500})},
        "op-pool",
    )
    assert (pending.commission_bps, pending.pending_commission_bps) == (1000, 2500)
    applied = ledger_pool_stake(
        {
            SCENARIO_KEY: scenario(
                {"op": "update_pool", "pool": "op-pool", "reward_commission_bps": 2500},
                {"at": 10, "op": "finalize_epoch", "rewards": {"op-pool": "10"}},
                {"op": "accrue_all"},
            )
        },
        "op-pool",
    )
    assert (applied.commission_bps, applied.pending_commission_bps) == (2500, None)
    # the accrued reward raised the pool: 9 INT to holders, 1 INT commission in the vault
    assert applied.total_stake == 1009 * INT


def test_self_and_delegated_always_add_up_to_total_staked() -> None:
    ledger, _ = replay(
        parse_scenario(
            yaml.safe_load(
                scenario(
                    {"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "5000"},
                    {"at": 10, "op": "finalize_epoch", "rewards": {"op-pool": "7.000000001"}},
                    {"op": "accrue_all"},
                    {"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "3.3"},
                )
            )
        )
    )
    s = pool_stakes(ledger)["op-pool"]
    assert s.total_stake == ledger.pool("op-pool").total_staked_amount
    assert s.self_stake == ledger.redeemable("op", "op-pool")


def test_min_self_stake_rule() -> None:
    assert meets_min_self_stake(0, 0)
    assert meets_min_self_stake(100, 1000)
    assert not meets_min_self_stake(99, 1000)
    assert meets_min_self_stake(99, 1000, min_bps=990)
    assert meets_min_self_stake(0, 10, min_bps=0)
    assert meets_min_self_stake(1000, 1000, min_bps=10_000)
    assert not meets_min_self_stake(999, 1000, min_bps=10_000)
    for bad in ((-1, 5), (5, -1), (6, 5)):
        with pytest.raises(InvalidInput):
            meets_min_self_stake(*bad)


def test_exported_state_round_trip_gives_the_same_stakes() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        ledger, _ = replay(parse_scenario(yaml.safe_load(path.read_text())))
        text = export_state(ledger)
        back = import_state(text)
        assert pool_stakes(back) == pool_stakes(ledger), path.name
        assert export_state(back) == text
        view = load_ledger({STATE_KEY: text})
        assert view.source == STATE_KEY
        assert view.stakes() == pool_stakes(ledger)


def test_import_refusals() -> None:
    ledger = Ledger(Settings(enforce_emission_schedule=False))
    good = json.loads(export_state(ledger))
    for bad in ("{", "[]", json.dumps({**good, "format": "x"})):
        with pytest.raises(InvalidInput):
            import_state(bad)
    with pytest.raises(InvalidInput):
        import_state(json.dumps({**good, "pools": [{"name": "p", "bogus": 1}]}))
    with pytest.raises(InvalidInput):
        import_state(json.dumps({**good, "records": [{"owner": "o", "operator_pool": "nope"}]}))
    with pytest.raises(InvalidInput):
        import_state(json.dumps({**good, "records": [{"owner": "o", "operator_pool": "p", "x": 1}]}))


def test_load_ledger_refusals_and_errors() -> None:
    with pytest.raises(InvalidInput):
        load_ledger({})
    with pytest.raises(InvalidInput):
        load_ledger({SCENARIO_KEY: "x", STATE_KEY: "y"})
    with pytest.raises(InvalidInput):
        load_ledger({SCENARIO_KEY: "a: [b"})
    with pytest.raises(InvalidInput, match="no pool"):
        ledger_pool_stake({SCENARIO_KEY: scenario()}, "other")
    view = load_ledger(
        {SCENARIO_KEY: scenario({"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "99999"})}
    )
    assert view.errors
    assert "InsufficientFunds" in view.errors[0]
    view = load_ledger(
        {
            SCENARIO_KEY: scenario(
                {
                    "op": "stake",
                    "owner": "dan",
                    "pool": "op-pool",
                    "amount": "1",
                    "expect_error": "StakingHalted",
                }
            )
        }
    )
    assert "succeeded, expected StakingHalted" in view.errors[0]
    assert load_ledger({SCENARIO_KEY: scenario()}).errors == ()


def test_stake_status_block() -> None:
    delegate = {"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "9000"}
    s = ledger_pool_stake({SCENARIO_KEY: scenario(delegate)}, "op-pool")
    block = stake_status(s)
    assert block == {
        "poolId": "op-pool",
        "address": s.address,
        "selfStake": "1000",
        "delegatedStake": "9000",
        "unstaking": "0",
        "commissionBps": 1000,
        "halted": False,
        "meetsMinimumSelfStake": True,
    }
    slashed = ledger_pool_stake(
        {
            SCENARIO_KEY: scenario(
                delegate,
                {"op": "set_halt", "pool": "op-pool", "halted": True},
                {"at": 86400, "op": "slash", "pool": "op-pool", "shares": "1"},
            )
        },
        "op-pool",
    )
    block = stake_status(slashed)
    assert block["halted"] is True
    assert block["meetsMinimumSelfStake"] is False
    assert stake_status(slashed, min_bps=900)["meetsMinimumSelfStake"] is True


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stake", "unstake"]), st.integers(1, 3000)), max_size=8))
def test_stake_tracks_the_ledger(ops: list[tuple[str, int]]) -> None:
    steps: list[Mapping[str, object]] = []
    for op, amount in ops:
        if op == "stake":
            steps.append({"op": "stake", "owner": "dan", "pool": "op-pool", "amount": str(amount)})
        else:
            steps.append({"op": "unstake", "owner": "dan", "pool": "op-pool", "shares": str(amount)})
    view = load_ledger({SCENARIO_KEY: scenario(*steps)})
    s = view.stakes()["op-pool"]
    pool = view.ledger.pool("op-pool")
    assert s.total_stake == pool.total_staked_amount
    assert s.unstaking == pool.total_unstaking
    assert s.self_stake == 1000 * INT  # only dan moves


def test_export_format_is_stable_and_minimal_state_imports() -> None:
    ledger, _ = replay(parse_scenario(yaml.safe_load(scenario())))
    text = export_state(ledger)
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1)
    assert text.startswith('{\n "completedRewardEpoch": 0,\n "format": "gpufleet.economics/ledger-state/v1",')
    minimal = import_state(json.dumps({"format": "gpufleet.economics/ledger-state/v1"}))
    assert (minimal.now, minimal.completed_reward_epoch, minimal.pools, minimal.records) == (0, 0, {}, {})
    assert minimal.settings == Settings()
    assert minimal.total_pools == 0
    back = import_state(text)
    assert back.total_pools == 1
    assert back.now == ledger.now


def test_more_refusal_messages() -> None:
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: ledger state is not JSON: "):
        import_state("{")
    with pytest.raises(
        InvalidInput, match=r"ledger state must have format 'gpufleet.economics/ledger-state/v1'$"
    ):
        import_state("[]")
    fmt = {"format": "gpufleet.economics/ledger-state/v1"}
    with pytest.raises(InvalidInput, match=r"unknown pool field\(s\) \['bogus'\]$"):
        import_state(json.dumps({**fmt, "pools": [{"name": "p", "bogus": 1}]}))
    with pytest.raises(InvalidInput, match=r"unknown staking record field\(s\) \['x'\]$"):
        import_state(json.dumps({**fmt, "records": [{"owner": "o", "operator_pool": "p", "x": 1}]}))
    with pytest.raises(InvalidInput, match=r"staking record of o names unknown pool nope$"):
        import_state(json.dumps({**fmt, "records": [{"owner": "o", "operator_pool": "nope"}]}))
    with pytest.raises(
        InvalidInput, match=r"needs exactly one of scenario.yaml, state.json; has \['other'\]$"
    ):
        load_ledger({"other": ""})
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: scenario.yaml is not YAML: "):
        load_ledger({SCENARIO_KEY: "a: [b"})
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: scenario.yaml: "):
        load_ledger({SCENARIO_KEY: "[]"})  # the scenario parser names the key as its source
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: ledger cannot be read: "):
        ledger_pool_stake({STATE_KEY: json.dumps({**fmt, "now": "soon"})}, "p")
    with pytest.raises(InvalidInput, match=r"self stake 6 and total 5 are inconsistent$"):
        meets_min_self_stake(6, 5)
    assert not meets_min_self_stake(0, 1)


def test_view_source_errors_text_and_pool_fields() -> None:
    view = load_ledger(
        {SCENARIO_KEY: scenario({"op": "stake", "owner": "dan", "pool": "op-pool", "amount": "99999"})}
    )
    assert view.source == SCENARIO_KEY
    assert view.errors == ("step 3 (stake): InsufficientFunds",)
    ledger, _ = replay(
        parse_scenario(
            yaml.safe_load(
                scenario(
                    {"op": "unstake", "owner": "op", "pool": "op-pool", "shares": "1000"},
                    {"op": "close_pool", "pool": "op-pool"},
                )
            )
        )
    )
    s = pool_stakes(ledger)["op-pool"]
    assert s.address == ledger.pool("op-pool").address
    assert s.closed is True
    assert pool_stakes(replay(parse_scenario(yaml.safe_load(scenario())))[0])["op-pool"].closed is False
