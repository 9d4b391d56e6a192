"""Pure planners of the epoch controller: pool facts, penalties, the Epoch body, points, proofs."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from gpufleet.api.v1alpha1.epoch import Epoch
from gpufleet.controllers.epoch.plan import (
    Award,
    build_epoch_body,
    condition,
    epoch_inputs,
    last_epoch_reward,
    ledger_ref,
    parse_model_params,
    parse_time,
    penalty_intervals,
    plan_points,
    points_status,
    pool_facts,
    pool_status_patch,
    proof_document,
    ratio_text,
    read_award,
    read_epoch,
    rfc3339,
    scrape_from_router_stats,
)
from gpufleet.economics.accounting import PoolWork
from gpufleet.economics.epochs import EpochClock
from gpufleet.economics.points import MICRO
from gpufleet.economics.rewards import compute_epoch_rewards, pool_address
from gpufleet.economics.stakesource import LedgerPoolStake
from gpufleet.economics.units import INT
from gpufleet.router.stats import DeviceKey, DeviceStats, RouterStats, Tokens

CLOCK = EpochClock(genesis=1_800_000_000, length=60)


def body(name: str, spec: dict[str, Any], ns: str = "fleet", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, **meta}, "spec": spec}


def test_time_helpers() -> None:
    assert rfc3339(1_749_772_800) == "2025-06-13T00:00:00Z"
    assert parse_time("2025-06-13T00:00:00Z") == 1_749_772_800
    assert parse_time("2025-06-13T02:00:00+02:00") == 1_749_772_800
    assert parse_time(None) is None
    assert parse_time("") is None
    assert parse_time("yesterday") is None
    assert parse_time(5) is None


def test_ratio_text() -> None:
    assert ratio_text(45, 60) == "0.75"
    assert ratio_text(60, 60) == "1"
    assert ratio_text(61, 60) == "1"
    assert ratio_text(0, 60) == "0"
    assert ratio_text(1, 3) == "0.333333333"
    assert ratio_text(1, 10**10) == "0"
    assert ratio_text(5, 0) == "0"


def test_pool_facts_spec_and_ledger() -> None:
    spec = body("a", {"selfStake": "20000", "delegatedStake": "80000", "commissionBps": 500})
    f = pool_facts(spec)
    assert (f.pool, f.self_stake, f.stake, f.commission_bps, f.halted, f.source) == (
        "fleet/a",
        20_000 * INT,
        100_000 * INT,
        500,
        False,
        "spec",
    )
    assert f.address == pool_address("fleet/a")
    assert f.meets_min_self_stake
    halted = copy.deepcopy(spec)
    halted["metadata"]["annotations"] = {"gpufleet.io/halted": "True"}
    assert pool_facts(halted).halted
    low = body("b", {"selfStake": "9", "delegatedStake": "91"})
    assert not pool_facts(low).meets_min_self_stake
    led = body("c", {"stakeSource": {"ledger": {"configMapRef": {"name": "cm"}, "poolId": "p"}}})
    assert ledger_ref(led) == ("cm", "p")
    assert ledger_ref(spec) is None
    unread = pool_facts(led)
    assert (unread.stake, unread.source, unread.halted) == (0, "ledger", False)
    stake = LedgerPoolStake("p", pool_address("x/y"), 30 * INT, 120 * INT, 5, 700, None, True, False)
    f = pool_facts(led, stake)
    assert (f.self_stake, f.stake, f.commission_bps, f.halted, f.address) == (
        30 * INT,
        150 * INT,
        700,
        True,
        pool_address("x/y"),
    )


def test_penalty_intervals() -> None:
    pens = [
        body("p1", {"pool": "a", "start": rfc3339(100), "until": rfc3339(200)}),
        body("p2", {"pool": "a"}, creationTimestamp=rfc3339(300)),  # permanent, start = creation
        body("p3", {"pool": "b", "start": rfc3339(100), "until": rfc3339(200)}),
        body("p4", {"pool": "a", "start": rfc3339(100), "until": rfc3339(200)}, ns="other"),
        {**body("p5", {"pool": "a"}), "status": {"start": rfc3339(400), "until": rfc3339(450)}},
        {**body("p6", {"pool": "a", "start": rfc3339(1)}), "status": {"enforcement": "Capped"}},
        body("p7", {"pool": {"name": "a"}, "start": rfc3339(500), "until": rfc3339(510)}),
        body("p8", {"pool": "a"}),  # no time at all: ignored
    ]
    assert penalty_intervals(pens, "fleet/a") == [(100, 200), (300, None), (400, 450), (500, 510)]
    assert penalty_intervals(pens, "fleet/b") == [(100, 200)]


def test_epoch_inputs_and_body_round_trip() -> None:
    a = pool_facts(body("a", {"selfStake": "100", "commissionBps": 1000}))
    b = pool_facts(body("b", {"selfStake": "300"}))
    start, end = CLOCK.bounds(3)
    wa = PoolWork()
    wa.add("m", 30, 10, 20)
    tally = {"fleet/a": wa}
    pens = [body("p", {"pool": "b", "start": rfc3339(start + 15), "until": rfc3339(start + 30)})]
    inputs = epoch_inputs([a, b], tally, pens, start, end)
    assert [(i.pool, i.completed, i.penalized_seconds) for i in inputs] == [
        ("fleet/a", 30, 0),
        ("fleet/b", 0, 15),
    ]
    result = compute_epoch_rewards(3, CLOCK, inputs, emission=1000)
    doc = build_epoch_body(result, [a, b], tally, carried_jobs=2, router_resets=1, max_leaves_per_tree=4)
    Epoch.model_validate(doc)
    spec = doc["spec"]
    assert doc["metadata"]["name"] == "epoch-00003"
    assert spec["start"] == rfc3339(start)
    assert spec["lengthSeconds"] == 60
    assert spec["counting"] == {"carriedJobs": 2, "routerResets": 1}
    assert spec["maxLeavesPerTree"] == 4
    line_a = spec["pools"][0]
    assert line_a["tokens"] == 30
    assert line_a["reward"] == "0.000001"  # all 1000 base units: only a served jobs
    assert line_a["commission"] == "0.0000001"
    assert spec["pools"][1]["eligibility"] == "0.75"
    assert spec["pools"][1]["tokens"] == 0
    record = read_epoch(doc)
    assert record.problems() == []
    assert record.commission == {"fleet/a": 100, "fleet/b": 0}
    proof = proof_document(record, "fleet/a")
    assert proof["verified"] is True
    assert proof["tokenAmount"] == 1000
    assert proof["leaf"] == f"{a.address},1000,0"
    with pytest.raises(KeyError):
        proof_document(record, "fleet/zz")
    assert last_epoch_reward(doc, "fleet/a") == {
        "epoch": 3,
        "reward": "0.000001",
        "commission": "0.0000001",
        "completedJobs": 30,
        "eligibility": "1",
    }
    assert last_epoch_reward(doc, "fleet/zz") is None
    # a tampered record is caught
    bad = copy.deepcopy(doc)
    bad["spec"]["pools"][0]["reward"] = "0.000002"
    assert read_epoch(bad).problems() != []
    assert proof_document(read_epoch(bad), "fleet/a")["verified"] is False


def test_points_plan_orders_awards_and_never_goes_negative() -> None:
    awards = [
        Award("fleet/late", "fleet/a", -30 * MICRO, 30, "fix"),
        Award("fleet/first", "fleet/a", 20 * MICRO, 10, "guide"),
        Award("fleet/too-much", "fleet/a", -1000 * MICRO, 20, "typo"),
        Award("fleet/small-fix", "fleet/a", -28 * MICRO, 40, "exactly to zero"),
    ]
    plan = plan_points({"org/m-8B": 1_000}, awards)  # 8 compute points
    assert plan.compute == 8 * MICRO
    assert [(n, d.applied, d.total_after) for n, d in plan.decisions.items()] == [
        ("fleet/first", True, 28 * MICRO),
        ("fleet/too-much", False, 28 * MICRO),
        ("fleet/late", False, 28 * MICRO),
        ("fleet/small-fix", True, 0),
    ]
    assert plan.bonus == -8 * MICRO
    assert plan.total == 0
    assert plan.tokens == 1_000
    assert "never negative" in plan.decisions["fleet/too-much"].message
    assert plan.decisions["fleet/first"].message == "20 points for fleet/a: guide"
    # same creation time: name order
    tie = plan_points({}, [Award("ns/b", "ns/p", 5, 1, "x"), Award("ns/a", "ns/p", -5, 1, "y")])
    assert list(tie.decisions) == ["ns/a", "ns/b"]
    assert not tie.decisions["ns/a"].applied
    status = points_status(plan_points({"m-1B": 2_500}, []), 1_749_772_800)
    assert status == {
        "total": "2.5",
        "compute": "2.5",
        "bonus": "0",
        "tokens": 2_500,
        "updatedAt": "2025-06-13T00:00:00Z",
    }
    table = plan_points({"odd-model": 1_000}, [], {"odd-model": 70_000})
    assert table.compute == 70 * MICRO
    assert plan_points({"odd-model": 1_000}, [], default_params_millions=3).compute == 3_000


def test_read_award() -> None:
    award = read_award(
        body(
            "guide",
            {"pool": {"name": "a"}, "points": "-2.5", "reason": "r"},
            creationTimestamp="2025-06-13T00:00:00Z",
        )
    )
    assert award == Award("fleet/guide", "fleet/a", -2_500_000, 1_749_772_800, "r")
    assert read_award(body("bad", {"pool": {"name": "a"}, "points": "zero", "reason": "r"})) is None
    assert read_award(body("bad", {"pool": {"name": "a"}, "points": "0", "reason": "r"})) is None


def test_status_patch_only_when_something_changed() -> None:
    pts = {"total": "1", "compute": "1", "bonus": "0", "tokens": 5, "updatedAt": "2025-06-13T00:00:00Z"}
    assert pool_status_patch({}, points=pts) == {"points": pts}
    later = {**pts, "updatedAt": "2025-06-14T00:00:00Z"}
    assert pool_status_patch({"points": pts}, points=later) is None  # a new timestamp alone: no write
    assert pool_status_patch({"points": pts}, points={**later, "tokens": 6}) == {
        "points": {**later, "tokens": 6}
    }
    led = {"poolId": "p", "selfStake": "1"}
    assert pool_status_patch({"ledgerStake": led}, ledger_stake=led) is None
    assert pool_status_patch({}, ledger_stake=led) == {"ledgerStake": led}
    rew = {"epoch": 3}
    assert pool_status_patch({"lastEpochReward": rew}, last_epoch_reward=rew) is None
    assert pool_status_patch({}, last_epoch_reward=rew) == {"lastEpochReward": rew}
    assert pool_status_patch({}) is None


def test_condition_keeps_transition_time_unless_status_changes() -> None:
    first = condition([], "Applied", "True", "Applied", "ok", 100, generation=2)
    assert first == [
        {
            "type": "Applied",
            "status": "True",
            "reason": "Applied",
            "message": "ok",
            "lastTransitionTime": rfc3339(100),
            "observedGeneration": 2,
        }
    ]
    same = condition(first, "Applied", "True", "Applied", "still ok", 200)
    assert same[0]["lastTransitionTime"] == rfc3339(100)
    assert same[0]["message"] == "still ok"
    flipped = condition(first, "Applied", "False", "WouldMakeTotalNegative", "no", 300)
    assert flipped[0]["lastTransitionTime"] == rfc3339(300)
    other = condition([{"type": "X", "status": "True"}], "Applied", "True", "A", "m", 1)
    assert [c["type"] for c in other] == ["X", "Applied"]


def test_parse_model_params() -> None:
    assert parse_model_params("") == {}
    assert parse_model_params("org/a=8000, b=13000") == {"org/a": 8000, "b": 13000}
    assert parse_model_params("x=y=5") == {"x=y": 5}
    for bad in ("a", "a=", "=5", "a=0", "a=-1", "a=1.5"):
        with pytest.raises(ValueError, match="points_model_params"):
            parse_model_params(bad)


def test_scrape_from_router_stats() -> None:
    key = DeviceKey(namespace="fleet", pool="a", inference_node="box", device=3, model="m")
    stats = RouterStats(
        router="router-1",
        since=datetime.fromtimestamp(1000, UTC),
        observed_at=datetime.fromtimestamp(2000, UTC),
        k="0.0001",
        devices=(DeviceStats(key=key, requests=9, completions=7, tokens=Tokens(prompt=10, completion=20)),),
    )
    scrape = scrape_from_router_stats(stats)
    assert (scrape.source, scrape.at, scrape.started_at) == ("router-1", 2000, 1000)
    assert scrape.boot == datetime.fromtimestamp(1000, UTC).isoformat()
    (sample,) = scrape.series
    assert sample.key.text() == "router-1|fleet/a|box|3|m"
    assert sample.values() == (7, 10, 20)


def test_exact_documents_and_defaults() -> None:
    a = pool_facts({"metadata": {"name": "a"}, "spec": {"selfStake": "1"}})  # no namespace: default
    assert a.pool == "default/a"
    assert a.commission_bps == 0
    b = pool_facts(body("b", {"selfStake": "1"}))
    result = compute_epoch_rewards(7, CLOCK, epoch_inputs([a, b], {}, [], *CLOCK.bounds(7)), emission=10)
    doc = build_epoch_body(result, [a, b], {})
    assert doc["metadata"] == {
        "name": "epoch-00007",
        "labels": {"app.kubernetes.io/managed-by": "gpufleet", "gpufleet.io/epoch": "7"},
    }
    assert doc["spec"]["counting"] == {"carriedJobs": 0, "routerResets": 0}
    assert "maxLeavesPerTree" not in doc["spec"]
    assert [p["stakeSource"] for p in doc["spec"]["pools"]] == ["spec", "spec"]
    assert [p["halted"] for p in doc["spec"]["pools"]] == [False, False]
    record = read_epoch(doc)
    assert record.number == 7
    assert record.max_leaves_per_tree is None
    line = next(x for x in record.lines if x.pool == "fleet/b")
    proof = proof_document(record, "fleet/b")
    trees_root = record.roots[0]
    assert proof == {
        "epoch": 7,
        "pool": "fleet/b",
        "address": b.address,
        "tokenAmount": line.reward,
        "usdcAmount": 0,
        "reward": f"0.00000000{line.reward}",
        "leaf": f"{b.address},{line.reward},0",
        "leafPreimage": "00" + f"{b.address},{line.reward},0".encode().hex(),
        "leafHash": proof["leafHash"],
        "merkleIndex": 0,
        "proof": proof["proof"],
        "proofPath": proof["proofPath"],
        "root": trees_root,
        "verified": True,
    }
    assert len(proof["proof"]) == 1
    assert proof["proofPath"] in ([True], [False])
    with pytest.raises(KeyError, match="epoch 7 has no line for pool fleet/zz"):
        proof_document(record, "fleet/zz")


def test_split_record_proofs_use_the_recorded_tree_size() -> None:
    facts = [pool_facts(body(f"p{i}", {"selfStake": "1"})) for i in range(5)]
    tally = {}
    for i, f in enumerate(facts):
        w = PoolWork()
        w.add("m", i + 1, 0, 0)
        tally[f.pool] = w
    result = compute_epoch_rewards(
        1, CLOCK, epoch_inputs(facts, tally, [], *CLOCK.bounds(1)), emission=1000, max_leaves_per_tree=2
    )
    doc = build_epoch_body(result, facts, tally, max_leaves_per_tree=2)
    record = read_epoch(doc)
    assert record.max_leaves_per_tree == 2
    assert len(record.roots) == 3
    assert record.problems() == []
    for f in facts:
        proof = proof_document(record, f.pool)
        assert proof["verified"] is True
        assert proof["root"] == record.roots[proof["merkleIndex"]]
    assert {proof_document(record, f.pool)["merkleIndex"] for f in facts} == {0, 1, 2}


def test_unread_ledger_pool_and_refs() -> None:
    led = {"metadata": {"name": "c"}, "spec": {"stakeSource": {"ledger": {}}}}
    assert ledger_ref(led) == ("", "")
    f = pool_facts(led)
    assert f == type(f)("default/c", pool_address("default/c"), 0, 0, 0, False, "ledger")
    assert ledger_ref({"spec": {"stakeSource": {"ledger": "x"}}}) is None
    halted = {
        "metadata": {"name": "c", "annotations": {"gpufleet.io/halted": "true"}},
        "spec": {"selfStake": "2"},
    }
    assert pool_facts(halted).halted is True
    assert pool_facts({"metadata": {"name": "d"}, "spec": {}}).stake == 0


def test_small_helpers_edges() -> None:
    assert ratio_text(1, 1) == "1"
    assert ratio_text(0, 1) == "0"
    assert ratio_text(1, 2) == "0.5"
    assert parse_model_params("a=1") == {"a": 1}
    assert last_epoch_reward({"spec": {}}, "x") is None
    award = read_award({"metadata": {"name": "n"}, "spec": {"pool": {"name": "p"}, "points": "1"}})
    assert award == Award("default/n", "default/p", MICRO, 0, "")
    pens = [
        body("other", {"pool": "zz", "start": rfc3339(1)}),
        {"metadata": {"name": "p"}, "spec": {"pool": "a", "start": rfc3339(5), "until": rfc3339(9)}},
    ]
    assert penalty_intervals(pens, "default/a") == [(5, 9)]
    long = condition([], "T", "True", "R", "x" * 40_000, 1)
    assert len(long[0]["message"]) == 32_768
    assert "observedGeneration" not in long[0]
    h = pool_facts(
        {"metadata": {"name": "h", "annotations": {"gpufleet.io/halted": "true"}}, "spec": {"selfStake": "1"}}
    )
    (inp,) = epoch_inputs([h], {}, [], 0, 60)
    assert inp.halted is True
    plan = plan_points({"unsized": 1_000}, [Award("ns/x", "ns/p", -2 * MICRO, 1, "r")])
    assert plan.compute == 1_000 * 1_000  # the default size: 1B
    assert "ns/p's total" in plan.decisions["ns/x"].message
