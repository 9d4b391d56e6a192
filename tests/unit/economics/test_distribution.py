"""Stake-weighted job completion split of an epoch's emission."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.distribution import PoolActivity, split_by_weight, split_emission
from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.merkle import b58encode


def addr(i: int) -> str:
    return b58encode(hashlib.sha256(b"d-%d" % i).digest())


def test_worked_example_from_docs() -> None:
    a, b, c = addr(1), addr(2), addr(3)
    pools = [PoolActivity(a, 200, 1200), PoolActivity(b, 400, 1000), PoolActivity(c, 100, 0)]
    # weights 240000 : 400000 : 0 of 1000 -> 375 : 625 : 0
    assert split_emission(1000, pools) == {a: 375, b: 625, c: 0}


def test_rounding_leftovers_go_to_largest_remainders() -> None:
    a, b, c = addr(1), addr(2), addr(3)
    out = split_by_weight(10, {a: 1, b: 1, c: 1})
    assert sum(out.values()) == 10
    assert sorted(out.values()) == [3, 3, 4]


def test_fallbacks_when_nobody_worked_or_staked() -> None:
    a, b = addr(1), addr(2)
    assert split_emission(9, [PoolActivity(a, 1, 0), PoolActivity(b, 2, 0)]) == {a: 3, b: 6}
    assert sum(split_emission(9, [PoolActivity(a, 0, 0), PoolActivity(b, 0, 5)]).values()) == 9
    assert split_emission(9, []) == {}


def test_bad_activity_is_refused() -> None:
    with pytest.raises(InvalidInput, match="stake"):
        PoolActivity(addr(1), -1, 0)
    with pytest.raises(InvalidInput, match="once"):
        split_emission(5, [PoolActivity(addr(1), 1, 1), PoolActivity(addr(1), 1, 1)])


@settings(max_examples=500, deadline=None)
@given(
    total=st.integers(0, 10**18),
    activity=st.lists(st.tuples(st.integers(0, 10**15), st.integers(0, 10**6)), min_size=1, max_size=12),
)
def test_split_is_exact_and_proportional(total: int, activity: list[tuple[int, int]]) -> None:
    pools = [PoolActivity(addr(i), s, w) for i, (s, w) in enumerate(activity)]
    out = split_emission(total, pools)
    assert sum(out.values()) == total
    weights = {p.address: p.work * p.stake for p in pools}
    if sum(weights.values()):
        w_sum = sum(weights.values())
        for p in pools:
            exact = total * weights[p.address] / w_sum
            assert abs(out[p.address] - exact) < 1 + 1e-9 * exact
