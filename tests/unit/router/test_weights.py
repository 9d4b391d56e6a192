"""Weight math and eligibility of the stake-weighted router."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.router.weights import (
    UINT32_MAX,
    Endpoint,
    Exclusion,
    compute_group,
    compute_weights,
    max_relative_share_error,
    plan_eligibility,
    plan_routing,
)
from gpufleet.shares import INT_BASE, priority_score

K = Decimal("0.0001")


def ep(pod: str, stake_int: int = 0, *, models: tuple[str, ...] = ("m",), **kw: Any) -> Endpoint:
    base: dict[str, Any] = {
        "namespace": "ns",
        "pool": "p",
        "inference_node": "n",
        "device": 0,
        "pod": pod,
        "models": models,
        "ip": "10.0.0.1",
        "port": 8000,
        "effective_stake_base": stake_int * INT_BASE,
    }
    base.update(kw)
    return Endpoint(**base)


def test_announcement_example_exact_weights() -> None:
    """4x RTX 4090 at 25,000 INT (priority 3.5) and 1x A100 at 100,000 (priority 11)."""
    eps = [ep(f"r{i}", 25_000) for i in range(4)] + [ep("a100", 100_000)]
    group = compute_weights(eps, K)["m"]
    by = {m.endpoint.pod: m for m in group.endpoints}
    assert by["a100"].priority == 11
    assert by["r0"].priority == Fraction(7, 2)
    assert group.exact
    assert by["a100"].weight == 22
    assert by["r0"].weight == 7
    assert by["a100"].share == Fraction(11, 25)
    assert by["a100"].normalised == 1.0
    assert by["r1"].normalised == pytest.approx(3.5 / 11)
    assert max_relative_share_error(group) == 0


def test_k_zero_is_uniform() -> None:
    eps = [ep("a", 1), ep("b", 10**6), ep("c", 0)]
    group = compute_weights(eps, Decimal(0))["m"]
    assert [m.weight for m in group.endpoints] == [1, 1, 1]
    assert {m.share for m in group.endpoints} == {Fraction(1, 3)}


def test_uses_the_operators_priority_function() -> None:
    e = ep("a", 12_345, reputation_weight=Decimal("0.5"))
    [member] = compute_weights([e], K)["m"].endpoints
    assert member.priority == priority_score(e.effective_stake_base, K, Decimal("0.5"))


def test_groups_per_model_and_multi_model_endpoints() -> None:
    eps = [ep("a", 10, models=("x", "y")), ep("b", 20, models=("y",)), ep("c", 0, models=("x", "x"))]
    groups = compute_weights(eps, K)
    assert sorted(groups) == ["x", "y"]
    assert [m.endpoint.pod for m in groups["x"].endpoints] == ["a", "c"]
    assert sum(m.share for m in groups["y"].endpoints) == 1


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"running": False}, Exclusion.NOT_RUNNING),
        ({"gate_open": False}, Exclusion.GATE_CLOSED),
        ({"routable": False}, Exclusion.NOT_ROUTABLE),
        ({"pool_halted": True}, Exclusion.POOL_HALTED),
        ({"penalised": True}, Exclusion.PENALISED),
        ({"ip": None}, Exclusion.NO_ADDRESS),
        ({"port": 0}, Exclusion.NO_ADDRESS),
        ({"max_concurrency": 0}, Exclusion.NO_CAPACITY),
        ({"models": ()}, Exclusion.NO_MODEL),
    ],
)
def test_each_exclusion(kw: dict[str, Any], reason: Exclusion) -> None:
    plan = plan_eligibility([ep("bad", **kw), ep("good")])
    assert [e.pod for e in plan.eligible] == ["good"]
    assert plan.reasons(("ns", "bad")) == (reason,)
    assert plan.reasons(("ns", "good")) == ()


def test_all_reasons_reported_in_order() -> None:
    plan = plan_eligibility([ep("bad", running=False, routable=False, penalised=True)])
    assert plan.reasons(("ns", "bad")) == (Exclusion.NOT_RUNNING, Exclusion.NOT_ROUTABLE, Exclusion.PENALISED)


def test_duplicate_key_keeps_last() -> None:
    plan, groups = plan_routing([ep("a", running=False), ep("a")], K)
    assert [e.pod for e in plan.eligible] == ["a"]
    assert not plan.excluded
    assert len(groups["m"].endpoints) == 1


def test_wide_range_scales_into_uint32_and_starves_nobody() -> None:
    # Priorities with coprime-ish fractional parts force scaling.
    eps = [ep(f"p{i}", effective_stake_base=i * 7919 + 1) for i in range(1, 500)]
    eps.append(ep("whale", effective_stake_base=10**10 * INT_BASE))  # priority ~ 10^6
    group = compute_weights(eps, K)["m"]
    assert not group.exact
    assert group.total_weight <= UINT32_MAX
    assert min(m.weight for m in group.endpoints) >= 1
    whale = group.by_key()[("ns", "whale")]
    assert abs(group.weight_share(whale) - whale.share) / whale.share < Fraction(1, 10**6)


def test_empty_input() -> None:
    assert compute_weights([], K) == {}
    assert compute_group("m", [], K).endpoints == ()


def test_recompute_10k_endpoints_is_reasonable() -> None:
    """Correctness at scale (speed itself is measured in bench/router.py)."""
    eps = [ep(f"p{i}", effective_stake_base=(i * 104729) % (10**6 * INT_BASE)) for i in range(10_000)]
    group = compute_weights(eps, K)["m"]
    assert len(group.endpoints) == 10_000
    assert group.total_weight <= UINT32_MAX
    assert min(m.weight for m in group.endpoints) >= 1


stakes = st.integers(min_value=0, max_value=10**10 * INT_BASE)  # priority 1 .. 10^6+1 at k=1e-4
reputations = st.decimals(min_value=0, max_value=1, places=3)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(stakes, reputations), min_size=1, max_size=60),
    st.decimals(min_value=0, max_value=Decimal("0.01"), places=6),
)
def test_invariants(rows: list[tuple[int, Decimal]], k: Decimal) -> None:
    eps = [ep(f"p{i}", effective_stake_base=s, reputation_weight=r) for i, (s, r) in enumerate(rows)]
    group = compute_weights(eps, k)["m"]
    members = group.endpoints
    # shares are exact and sum to one
    assert sum(m.share for m in members) == 1
    # uint32 budget, nobody starved
    assert group.total_weight == sum(m.weight for m in members) <= UINT32_MAX
    assert all(1 <= m.weight <= UINT32_MAX for m in members)
    # normalised weight in (0, 1], max is 1
    assert all(0 < m.normalised <= 1 for m in members)
    assert max(m.normalised for m in members) == 1.0
    # higher priority never gets a lower weight
    ordered = sorted(members, key=lambda m: m.priority)
    assert all(a.weight <= b.weight for a, b in itertools.pairwise(ordered))
    # weight share error bounded by 1/weight + n/2^32 (relative)
    n = len(members)
    for m in members:
        err = abs(group.weight_share(m) - m.share) / m.share
        assert err <= Fraction(1, m.weight) + Fraction(2 * n, UINT32_MAX)
    if group.exact:
        assert max_relative_share_error(group) == 0
    if k == 0:
        assert {m.weight for m in members} == {1}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=2, max_size=40))
def test_exact_over_a_million_to_one(priorities: list[int]) -> None:
    """Integer priorities 1..10^6 (k = 1/INT-per-base... here stake chosen so priority is integral)."""
    k = Decimal(1)
    eps = [ep(f"p{i}", effective_stake_base=(p - 1) * INT_BASE) for i, p in enumerate(priorities)]
    group = compute_weights(eps, k)["m"]
    assert group.exact  # sum <= 40 * 10^6 fits uint32: weights reproduce shares exactly
    assert max_relative_share_error(group) == 0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "running": st.booleans(),
                "gate_open": st.booleans(),
                "routable": st.booleans(),
                "pool_halted": st.booleans(),
                "penalised": st.booleans(),
            }
        ),
        min_size=0,
        max_size=20,
    )
)
def test_eligible_iff_no_reason(flags: list[dict[str, Any]]) -> None:
    eps = [ep(f"p{i}", **f) for i, f in enumerate(flags)]
    plan = plan_eligibility(eps)
    for e, f in zip(eps, flags, strict=True):
        eligible = all(
            (f["running"], f["gate_open"], f["routable"], not f["pool_halted"], not f["penalised"])
        )
        assert (e in plan.eligible) == eligible
        assert bool(plan.reasons(e.key)) == (not eligible)
    assert len(plan.eligible) + len(plan.excluded) == len(eps)
