"""Epoch close: emission split by stake-weighted job completion, eligibility, commission, proofs."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.epochs import EpochClock
from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.merkle import RewardLeaf, RewardTrees, verify_proof
from gpufleet.economics.rewards import (
    RULE_JOBS,
    RULE_JOBS_X_STAKE,
    RULE_NONE,
    RULE_STAKE,
    PoolEpochInput,
    RecordedLine,
    compute_epoch_rewards,
    penalized_seconds,
    pool_address,
    rebuild_trees,
    verify_record,
)
from gpufleet.economics.units import INT

CLOCK = EpochClock(genesis=0, length=100)


def pool(name: str, stake: int, jobs: int, **kw: object) -> PoolEpochInput:
    return PoolEpochInput(name, pool_address(name), stake, jobs, **kw)  # type: ignore[arg-type]


def test_worked_example_from_docs() -> None:
    pools = [pool("ns/a", 200, 1200), pool("ns/b", 400, 1000), pool("ns/c", 100, 0)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=1000)
    assert [(p.pool, p.reward) for p in out.pools] == [("ns/a", 375), ("ns/b", 625), ("ns/c", 0)]
    assert out.rule == RULE_JOBS_X_STAKE
    assert out.pool("ns/a").score == 200 * 1200 * 100
    assert out.pools_paid == 2
    assert (out.start, out.end) == (0, 100)


def test_default_emission_is_the_schedule() -> None:
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 1), pool("ns/b", 1, 2)])
    assert out.emission == expected_reward_emissions(1) == 1_666_666_666_666_667
    assert out.distributed == out.emission
    assert out.undistributed == 0
    out = compute_epoch_rewards(1501, CLOCK, [pool("ns/a", 1, 1)])
    assert out.emission == 0
    assert out.distributed == 0


def test_dust_goes_to_largest_remainders_and_sums_exactly() -> None:
    pools = [pool("ns/a", 1, 1), pool("ns/b", 1, 1), pool("ns/c", 1, 1)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=10)
    assert sorted(p.reward for p in out.pools) == [3, 3, 4]
    assert out.distributed == 10


def test_penalty_time_cuts_eligibility_proportionally() -> None:
    pools = [pool("ns/a", 100, 10), pool("ns/b", 100, 10, penalized_seconds=25)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=700)
    assert out.pool("ns/a").eligible_seconds == 100
    assert out.pool("ns/b").eligible_seconds == 75
    assert (out.pool("ns/a").reward, out.pool("ns/b").reward) == (400, 300)
    # penalised for the whole epoch (or longer): nothing
    pools = [pool("ns/a", 100, 10), pool("ns/b", 100, 10, penalized_seconds=500)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=700)
    assert out.pool("ns/b").eligible_seconds == 0
    assert out.pool("ns/b").reward == 0
    assert out.pool("ns/a").reward == 700


def test_halted_pool_gets_nothing() -> None:
    pools = [pool("ns/a", 100, 10), pool("ns/b", 10**6, 10**6, halted=True)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=700)
    assert out.pool("ns/b").reward == 0
    assert out.pool("ns/b").eligible_seconds == 0
    assert out.pool("ns/a").reward == 700


def test_fallback_rules() -> None:
    # Only unstaked pools worked: split by jobs, the idle staked pool gets nothing.
    out = compute_epoch_rewards(
        1, CLOCK, [pool("ns/a", 0, 30), pool("ns/b", 0, 10), pool("ns/c", 99, 0)], emission=80
    )
    assert out.rule == RULE_JOBS
    assert [p.reward for p in out.pools] == [60, 20, 0]
    # Nobody served a job: split by stake (so the epoch still pays its emission).
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 0), pool("ns/b", 3, 0)], emission=80)
    assert out.rule == RULE_STAKE
    assert [p.reward for p in out.pools] == [20, 60]
    # Eligibility still applies to the fallbacks.
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 0), pool("ns/b", 3, 0, halted=True)], emission=80)
    assert [p.reward for p in out.pools] == [80, 0]
    # Nobody eligible: nothing paid, the whole emission undistributed.
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 5, 5, halted=True)], emission=80)
    assert out.rule == RULE_NONE
    assert out.distributed == 0
    assert out.undistributed == 80
    assert out.pools_paid == 0
    # No pools at all.
    out = compute_epoch_rewards(1, CLOCK, [], emission=80)
    assert out.pools == ()
    assert out.merkle_roots == []
    assert out.undistributed == 80


def test_commission_rounds_down_like_the_program() -> None:
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 1, commission_bps=333)], emission=1001)
    line = out.pool("ns/a")
    assert line.commission == 1001 * 333 // 10_000 == 33
    assert line.delegators == 968
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 1, commission_bps=10_000)], emission=7)
    assert out.pool("ns/a").commission == 7
    assert out.pool("ns/a").delegators == 0


def test_input_refusals() -> None:
    with pytest.raises(InvalidInput):
        pool("ns/a", -1, 0)
    with pytest.raises(InvalidInput):
        pool("ns/a", 0, -1)
    with pytest.raises(InvalidInput):
        pool("ns/a", 0, 0, penalized_seconds=-1)
    with pytest.raises(InvalidInput):
        pool("ns/a", 0, 0, commission_bps=10_001)
    with pytest.raises(InvalidInput):
        pool("ns/a", True, 0)
    a = pool("ns/a", 1, 1)
    with pytest.raises(InvalidInput):
        compute_epoch_rewards(1, CLOCK, [a, a], emission=1)
    with pytest.raises(InvalidInput):
        compute_epoch_rewards(1, CLOCK, [a, PoolEpochInput("ns/b", a.address, 1, 1)], emission=1)
    with pytest.raises(InvalidInput):
        compute_epoch_rewards(1, CLOCK, [a], emission=-1)
    out = compute_epoch_rewards(1, CLOCK, [a], emission=1)
    with pytest.raises(InvalidInput):
        out.pool("ns/zz")


def test_penalized_seconds_union_and_clipping() -> None:
    assert penalized_seconds([], 0, 100) == 0
    assert penalized_seconds([(10, 20)], 0, 100) == 10
    assert penalized_seconds([(10, 20), (15, 30)], 0, 100) == 20  # overlap counts once
    assert penalized_seconds([(15, 30), (10, 20)], 0, 100) == 20
    assert penalized_seconds([(10, 20), (40, 50)], 0, 100) == 20
    assert penalized_seconds([(-50, 10), (90, 500)], 0, 100) == 20  # clipped to the epoch
    assert penalized_seconds([(90, None)], 0, 100) == 10  # still running
    assert penalized_seconds([(200, 300)], 0, 100) == 0
    assert penalized_seconds([(10, 20), (12, 18)], 0, 100) == 10  # contained
    assert penalized_seconds([(20, 10)], 0, 100) == 0  # empty interval


def test_merkle_root_is_the_program_tree_of_the_lines_and_every_proof_verifies() -> None:
    pools = [pool(f"ns/p{i}", i + 1, 10 * i) for i in range(7)]
    out = compute_epoch_rewards(3, CLOCK, pools)
    expected = RewardTrees.build([RewardLeaf(p.address, p.reward, 0) for p in out.pools])
    assert out.merkle_roots == [r.hex() for r in expected.roots]
    for p in out.pools:
        loc = out.locate(p.pool)
        assert loc.leaf == RewardLeaf(p.address, p.reward, 0)
        assert verify_proof(out.trees.roots[loc.merkle_index], loc.leaf, loc.proof)
        # a wrong amount does not verify
        assert not verify_proof(
            out.trees.roots[loc.merkle_index], RewardLeaf(p.address, p.reward + 1, 0), loc.proof
        )
    lines = [RecordedLine(p.pool, p.address, p.reward) for p in out.pools]
    assert verify_record(lines, out.merkle_roots, out.emission) == []
    assert [r.hex() for r in rebuild_trees(lines).roots] == out.merkle_roots


def test_verify_record_finds_tampering() -> None:
    out = compute_epoch_rewards(1, CLOCK, [pool("ns/a", 1, 1), pool("ns/b", 1, 3)], emission=100)
    lines = [RecordedLine(p.pool, p.address, p.reward) for p in out.pools]
    tampered = [RecordedLine(lines[0].pool, lines[0].address, lines[0].reward + 1), lines[1]]
    problems = verify_record(tampered, out.merkle_roots, 100)
    assert any("emission" in p for p in problems)
    assert any("roots" in p for p in problems)
    moved = [
        RecordedLine(lines[0].pool, lines[0].address, lines[0].reward + 1),
        RecordedLine(lines[1].pool, lines[1].address, lines[1].reward - 1),
    ]
    assert any("roots" in p for p in verify_record(moved, out.merkle_roots, 100))
    assert verify_record(lines, out.merkle_roots, 101) != []
    assert verify_record(lines, out.merkle_roots, 101, undistributed=1) == []
    assert verify_record([], [], 5, undistributed=5) == []
    assert verify_record([], ["ab"], 5, undistributed=5) != []


def test_split_trees_verify() -> None:
    pools = [pool(f"ns/p{i}", 1, i + 1) for i in range(9)]
    out = compute_epoch_rewards(1, CLOCK, pools, emission=10**6, max_leaves_per_tree=4)
    assert len(out.merkle_roots) == 3
    lines = [RecordedLine(p.pool, p.address, p.reward) for p in out.pools]
    assert verify_record(lines, out.merkle_roots, 10**6, max_leaves_per_tree=4) == []
    assert verify_record(lines, out.merkle_roots, 10**6) != []


def test_real_counts_show_the_double_count_of_stake() -> None:
    """The docs' rule on router-like counts: jobs already follow stake, so reward ~ stake squared.

    Three pools of one GPU each, stakes 100,000 / 10,000 / 1,000 INT, k = 0.0001 per INT:
    priorities 11 / 2 / 1.1, so the router gives them ~78% / 14% / 8% of 10,000 jobs. The
    rule pays A ~98% although it holds ~90% of the stake; at k = 0 (equal jobs) it pays exactly
    the stake share. This is documented in docs/economics.md ("what the numbers show").
    """
    rng = random.Random(7)
    stakes = {"ns/a": 100_000 * INT, "ns/b": 10_000 * INT, "ns/c": 1_000 * INT}
    k = Fraction(1, 10_000)
    prio = {p: 1 + k * Fraction(s, INT) for p, s in stakes.items()}
    names = list(prio)
    jobs = dict.fromkeys(names, 0)
    for name in rng.choices(names, weights=[float(prio[n]) for n in names], k=10_000):
        jobs[name] += 1
    out = compute_epoch_rewards(1, CLOCK, [pool(p, stakes[p], jobs[p]) for p in names])
    share = {p.pool: Fraction(p.reward, out.emission) for p in out.pools}
    stake_share = Fraction(stakes["ns/a"], sum(stakes.values()))
    assert stake_share < Fraction(91, 100) < Fraction(97, 100) < share["ns/a"]
    equal = compute_epoch_rewards(1, CLOCK, [pool(p, stakes[p], 1000) for p in names])
    assert abs(Fraction(equal.pool("ns/a").reward, equal.emission) - stake_share) < Fraction(1, 10**12)


pools_st = st.lists(
    st.tuples(
        st.integers(0, 10**15),  # stake
        st.integers(0, 10**6),  # jobs
        st.integers(0, 10_000),  # commission
        st.integers(0, 150),  # penalised seconds
        st.booleans(),  # halted
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(rows=pools_st, emission=st.integers(0, 10**17))
def test_conservation_determinism_and_order_independence(
    rows: list[tuple[int, int, int, int, bool]], emission: int
) -> None:
    pools = [
        pool(f"ns/p{i}", s, j, commission_bps=c, penalized_seconds=pen, halted=h)
        for i, (s, j, c, pen, h) in enumerate(rows)
    ]
    out = compute_epoch_rewards(2, CLOCK, pools, emission=emission)
    assert out.distributed + out.undistributed == emission
    eligible = [p for p in out.pools if p.eligible_seconds > 0]
    if eligible and out.rule != RULE_NONE:
        assert out.distributed == emission
    for line, src in zip(out.pools, sorted(pools, key=lambda p: p.pool), strict=True):
        assert 0 <= line.commission <= line.reward
        assert line.commission == line.reward * src.commission_bps // 10_000
        if src.halted or src.penalized_seconds >= 100:
            assert line.reward == 0
        if line.score == 0:
            assert line.reward == 0
    again = compute_epoch_rewards(2, CLOCK, list(reversed(pools)), emission=emission)
    assert again == out or (again.pools == out.pools and again.merkle_roots == out.merkle_roots)
    # more score never means fewer base units (monotone up to one unit of dust)
    by_score = sorted(out.pools, key=lambda p: p.score)
    for lo, hi in itertools.pairwise(by_score):
        assert hi.reward + 1 >= lo.reward


def test_refusal_messages_are_pinned() -> None:
    with pytest.raises(InvalidInput, match=r"stake of ns/a must be a non-negative integer, got -1$"):
        pool("ns/a", -1, 0)
    with pytest.raises(InvalidInput, match=r"completed jobs of ns/a must be a non-negative integer, got -2$"):
        pool("ns/a", 0, -2)
    with pytest.raises(
        InvalidInput, match=r"penalized seconds of ns/a must be a non-negative integer, got -3$"
    ):
        pool("ns/a", 0, 0, penalized_seconds=-3)
    with pytest.raises(InvalidInput, match=r"commission of ns/a must be a non-negative integer, got -4$"):
        pool("ns/a", 0, 0, commission_bps=-4)
    with pytest.raises(InvalidInput, match=r"commission of ns/a is over 10000 bps: 10001$"):
        pool("ns/a", 0, 0, commission_bps=10_001)
    a = pool("ns/a", 1, 1)
    with pytest.raises(InvalidInput, match=r"each pool \(and each address\) may appear once in an epoch$"):
        compute_epoch_rewards(1, CLOCK, [a, a], emission=1)
    with pytest.raises(InvalidInput, match=r"emission must be a non-negative integer, got -1$"):
        compute_epoch_rewards(1, CLOCK, [a], emission=-1)
    out = compute_epoch_rewards(4, CLOCK, [a], emission=1)
    with pytest.raises(InvalidInput, match=r"pool ns/zz has no line in epoch 4$"):
        out.pool("ns/zz")
    assert pool("ns/a", 0, 0, commission_bps=10_000).commission_bps == 10_000


def test_lines_and_record_details() -> None:
    pools = [pool("ns/b", 3, 2, commission_bps=5000), pool("ns/a", 1, 4, halted=True), pool("ns/c", 0, 9)]
    out = compute_epoch_rewards(2, CLOCK, pools, emission=99)
    assert [p.pool for p in out.pools] == ["ns/a", "ns/b", "ns/c"]  # sorted by pool
    assert (out.epoch, out.start, out.end, out.emission, out.rule) == (2, 100, 200, 99, RULE_JOBS_X_STAKE)
    a, b, c = out.pools
    assert (a.eligible_seconds, a.score, a.reward, a.commission) == (0, 0, 0, 0)
    assert (b.eligible_seconds, b.score, b.reward, b.commission, b.delegators) == (100, 600, 99, 49, 50)
    assert (c.completed, c.stake, c.score, c.reward) == (9, 0, 0, 0)
    assert b.leaf == RewardLeaf(b.address, 99, 0)
    assert out.pools_paid == 1
    assert out.distributed == 99
    assert out.undistributed == 0
    assert len(out.merkle_roots) == 1
    assert len(out.merkle_roots[0]) == 64
    assert out.locate("ns/b").leaf == b.leaf
    lines = [RecordedLine(p.pool, p.address, p.reward) for p in out.pools]
    problems = verify_record(lines, out.merkle_roots, 100)
    assert problems == ["rewards 99 + undistributed 0 != emission 100"]
    problems = verify_record(lines, ["00" * 32], 99)
    assert problems == [f"recorded roots {['00' * 32]} != rebuilt {out.merkle_roots}"]
    assert verify_record([], ["ab"], 0) == ["roots recorded for an epoch without pools"]
    # penalised time exactly the length: no eligibility; one second less: one second
    edge = compute_epoch_rewards(
        1,
        CLOCK,
        [pool("ns/a", 1, 1, penalized_seconds=100), pool("ns/b", 1, 1, penalized_seconds=99)],
        emission=7,
    )
    assert [p.eligible_seconds for p in edge.pools] == [0, 1]
    assert [p.reward for p in edge.pools] == [0, 7]


def test_penalized_seconds_cursor_edges() -> None:
    assert penalized_seconds([(0, 100)], 0, 100) == 100
    assert penalized_seconds([(0, 50), (50, 100)], 0, 100) == 100  # touching intervals
    assert penalized_seconds([(0, 60), (10, 40), (50, 70)], 0, 100) == 70
    assert penalized_seconds([(30, 30)], 0, 100) == 0
    assert penalized_seconds([(10, None)], 0, 100) == 90


def test_a_pool_name_twice_is_refused_even_with_two_addresses() -> None:
    a = pool("ns/a", 1, 1)
    twin = PoolEpochInput("ns/a", pool_address("ns/other"), 1, 1)
    with pytest.raises(InvalidInput, match="may appear once"):
        compute_epoch_rewards(1, CLOCK, [a, twin], emission=1)


def test_no_eligible_pool_reports_zero_scores() -> None:
    out = compute_epoch_rewards(
        1, CLOCK, [pool("ns/a", 5, 5, halted=True), pool("ns/b", 1, 1, halted=True)], emission=9
    )
    assert [(p.score, p.reward) for p in out.pools] == [(0, 0), (0, 0)]
