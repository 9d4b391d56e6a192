"""Scenario replay and the ``gpufleet economics`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.cli import main
from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.scenario import load_scenario, parse_scenario, replay

EXAMPLES = sorted((Path(__file__).parents[3] / "examples" / "economics").glob("*.yaml"))


def test_examples_exist_and_replay_as_expected() -> None:
    assert len(EXAMPLES) >= 3
    for path in EXAMPLES:
        _, results = replay(load_scenario(path))
        assert all(r.as_expected for r in results), path


def test_alice_sam_example_ends_with_docs_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    path = next(p for p in EXAMPLES if p.name == "alice-sam.yaml")
    assert main(["economics", "replay", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    after_sam = next(
        s for s in doc["steps"] if s["op"] == "stake" and s["ok"] and s["args"]["owner"] == "sam"
    )
    holders = after_sam["state"]["pools"]["alice-pool"]["holders"]
    assert holders["alice"] == {**holders["alice"], "shares": 1000, "redeemable": 1100}
    assert holders["sam"] == {**holders["sam"], "shares": 90, "redeemable": 99}
    assert doc["unexpected"] == 0


def test_text_output_and_unexpected_refusal_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "units: base\nmint: {a: 5}\nsteps:\n"
        "  - {op: create_pool, pool: p, admin: a}\n"
        "  - {op: stake, owner: a, pool: p, amount: 6}\n"
        "  - {op: stake, owner: a, pool: p, amount: 5, expect_error: PendingDelay}\n"
    )
    assert main(["economics", "replay", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED InsufficientFunds" in out
    assert "UNEXPECTED (expected PendingDelay)" in out
    assert "# 3 steps, 2 unexpected" in out


def test_malformed_scenarios_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidInput, match="unknown op 'stak'"):
        parse_scenario({"steps": [{"op": "stak"}]})
    with pytest.raises(InvalidInput, match="float"):
        replay(parse_scenario({"mint": {"a": 1.5}, "steps": [{"op": "advance"}]}))
    with pytest.raises(InvalidInput, match="step 1 \\(stake\\): stake needs 'pool'"):
        replay(parse_scenario({"steps": [{"op": "stake", "owner": "a", "amount": "1"}]}))
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [")
    assert main(["economics", "replay", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_work_based_finalize_splits_the_schedule() -> None:
    sc = parse_scenario(
        {
            "mint": {"a": "100", "b": "300"},
            "steps": [
                {"op": "create_pool", "pool": "pa", "admin": "a"},
                {"op": "create_pool", "pool": "pb", "admin": "b"},
                {"op": "stake", "owner": "a", "pool": "pa", "amount": "100"},
                {"op": "stake", "owner": "b", "pool": "pb", "amount": "300"},
                {"op": "finalize_epoch", "work": {"pa": 30, "pb": 10}},
            ],
        }
    )
    ledger, results = replay(sc)
    assert all(r.ok for r in results)
    leaves = {
        ledger._addresses[leaf.address]: leaf.token_amount
        for leaf in ledger.reward_records[1].trees.all_leaves()
    }
    assert abs(leaves["pa"] - leaves["pb"]) <= 1  # equal weights: 100 * 30 == 300 * 10
    assert sum(leaves.values()) == 1_666_666_666_666_667


def test_emissions_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["economics", "emissions", "1", "1501"]) == 0
    assert capsys.readouterr().out.splitlines() == ["epoch 1: 1666666.666666667 INT", "epoch 1501: 0 INT"]
    assert main(["economics", "emissions", "0"]) == 1


def test_points_steps_accrue_per_operator() -> None:
    sc = parse_scenario(
        {
            "points": {"weights": {"m": "2.5"}},
            "steps": [
                {"at": 5, "op": "record_work", "operator": "ann", "model": "m", "tokens": 4},
                {"at": 6, "op": "award_bonus", "operator": "bob", "points": "1.5", "reason": "docs"},
            ],
        }
    )
    _, results = replay(sc)
    assert results[-1].snapshot["points"] == {"ann": "10", "bob": "1.5"}
    with pytest.raises(InvalidInput, match="no points weight"):
        replay(parse_scenario({"steps": [{"op": "record_work", "operator": "a", "model": "x", "tokens": 1}]}))
