"""Host selection: Envoy's EDF weighted round robin and weighted random with a member set."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.simulate.select import EdfSelector, RandomSelector


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_edf_gives_each_host_its_weight_per_cycle(weights: list[int]) -> None:
    sel = EdfSelector(range(len(weights)), weights, len(weights))
    rounds = 3
    counts = Counter(sel.pick() for _ in range(rounds * sum(weights)))
    for host, w in enumerate(weights):
        # EDF is within one pick of the exact share at any prefix of the schedule.
        assert abs(counts[host] - rounds * w) <= 1


def test_edf_equal_weights_is_round_robin() -> None:
    sel = EdfSelector(range(4), [1, 1, 1, 1], 4)
    assert [sel.pick() for _ in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_removed_hosts_are_never_picked_and_come_back() -> None:
    for sel in (
        EdfSelector(range(3), [5, 1, 1], 3),
        RandomSelector(range(3), [5, 1, 1], 3, random.Random(1)),
    ):
        sel.remove(0)
        assert {sel.pick() for _ in range(200)} == {1, 2}
        sel.remove(1)
        sel.remove(2)
        assert sel.pick() == -1
        sel.add(0)
        assert sel.pick() == 0


def test_weighted_random_matches_weights() -> None:
    weights = [1, 2, 3, 4]
    sel = RandomSelector(range(4), weights, 4, random.Random(5))
    n = 40_000
    counts = Counter(sel.pick() for _ in range(n))
    for host, w in enumerate(weights):
        expected = n * w / 10
        assert abs(counts[host] - expected) < 5 * (expected * (1 - w / 10)) ** 0.5


def test_reweighting_changes_shares() -> None:
    sel = EdfSelector(range(2), [1, 1], 2)
    sel.set_weights([9, 1])
    counts = Counter(sel.pick() for _ in range(100))
    assert counts[0] == 90
