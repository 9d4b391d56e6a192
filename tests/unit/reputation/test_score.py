"""Reputation weight = completion multiplier x throughput score; the override."""

from __future__ import annotations

from fractions import Fraction as F

from gpufleet.reputation.score import DeviceIdentity, pool_reputation
from gpufleet.reputation.throughput import Benchmark, BenchmarkTable, ThroughputNote
from gpufleet.reputation.tiers import CompletionReason
from gpufleet.reputation.window import (
    CounterSnapshot,
    DeviceKey,
    FailureCause,
    Observation,
    Window,
    observe,
)

H = 3600
T0 = 500_000 * H
A0 = DeviceKey("ns", "a", "n1", "0")
A1 = DeviceKey("ns", "a", "n1", "1")
GONE = DeviceKey("ns", "a", "n0", "0")
B0 = DeviceKey("ns", "b", "n2", "0")
TABLE = BenchmarkTable({("m", "g"): Benchmark("m", "g", F(40), "measured", "t")})  # reference 20 tok/s
IDENT = DeviceIdentity("m", "g")


def window(rows: dict[DeviceKey, tuple[int, int, int, int, str]]) -> Window:
    """Per device: completed, 5xx failures, tokens, decode ms, release; one hour of traffic."""
    zero = [Observation("r", d, CounterSnapshot()) for d in rows]
    w = observe(Window(), zero, T0)
    later = [
        Observation(
            "r",
            d,
            CounterSnapshot(
                completions=c, failures={FailureCause.ENGINE_5XX: f}, completion_tokens=t, decode_ms=ms
            ),
            release=rel,
        )
        for d, (c, f, t, ms, rel) in rows.items()
    ]
    return observe(w, later, T0 + 60)


def test_weight_is_the_product_of_the_parts() -> None:
    w = window(
        {
            A0: (985, 15, 20_000, 1_000_000, "1.0"),  # 98.5% on the pool, 20 tok/s -> 1
            A1: (985, 15, 10_000, 1_000_000, "1.0"),  # 10 tok/s -> 1/2
            B0: (10, 990, 0, 0, "1.0"),  # another pool's failures are not ours
        }
    )
    rep = pool_reputation(w, {A0: IDENT, A1: IDENT}, TABLE)
    assert rep.completion.rate == F(985, 1000)
    assert rep.completion.multiplier == F(9, 10)
    assert rep.completion.tier == 2
    assert rep.devices[A0].throughput.score == 1
    assert rep.devices[A1].throughput.score == F(1, 2)
    assert rep.devices[A0].weight == F(9, 10)
    assert rep.devices[A1].weight == F(9, 20)
    assert rep.weight == F(9, 10) * F(3, 4)
    assert rep.effective_weight == rep.weight
    assert rep.device_weight(A1) == F(9, 20)
    assert rep.device_weight(DeviceKey("ns", "a", "new", "0")) == rep.weight
    assert rep.window_hours == 72
    assert rep.first_hour == T0 // H - 71


def test_departed_devices_still_count_for_completion_and_releases_are_excused() -> None:
    w = window({A0: (1000, 0, 0, 0, "1.0"), GONE: (0, 1000, 0, 0, "2.0-bad")})
    rep = pool_reputation(w, {A0: IDENT}, TABLE)
    assert rep.completion.rate == F(1, 2)
    assert set(rep.devices) == {A0}
    excused = pool_reputation(w, {A0: IDENT}, TABLE, excused_releases=frozenset({"2.0-bad"}))
    assert excused.completion.rate == 1
    assert excused.completion.excused == 1000
    assert excused.weight == 1


def test_override_wins_everywhere_but_parts_are_still_shown() -> None:
    w = window({A0: (0, 1000, 0, 0, "1.0")})
    rep = pool_reputation(w, {A0: IDENT}, TABLE, override=F(1, 2))
    assert rep.weight == 0
    assert rep.effective_weight == F(1, 2)
    assert rep.device_weight(A0) == F(1, 2)


def test_new_pool_is_one() -> None:
    rep = pool_reputation(Window(), {A0: IDENT}, TABLE)
    assert rep.completion.reason is CompletionReason.NO_DATA
    assert rep.weight == 1
    assert rep.first_hour is None
    assert rep.devices[A0].throughput.note is ThroughputNote.INSUFFICIENT_LOAD
    empty = pool_reputation(Window(), {}, TABLE)
    assert empty.weight == 1
    assert empty.devices == {}


def test_unbenchmarked_device_scores_one() -> None:
    w = window({A0: (1000, 0, 20_000, 10_000_000, "1.0")})
    rep = pool_reputation(w, {A0: DeviceIdentity("other", "g")}, TABLE)
    assert rep.devices[A0].throughput.note is ThroughputNote.NO_BENCHMARK
    assert rep.devices[A0].weight == 1


def test_policies_reach_both_parts_and_devices_are_listed_in_order() -> None:
    from gpufleet.reputation.throughput import ThroughputPolicy
    from gpufleet.reputation.tiers import TierPolicy

    w = window({A1: (985, 15, 10_000, 1_000_000, "1.0"), A0: (985, 15, 20_000, 1_000_000, "1.0")})
    strict = TierPolicy(top_pct=F(99), second_pct=F(98, 1) + F(6, 10), step_pct=F(1), minimum_sample=10)
    rep = pool_reputation(w, {A1: IDENT, A0: IDENT}, TABLE, tiers=strict)
    assert rep.completion.multiplier == F(8, 10)  # 98.5% is below 98.6: tier 3 under this policy
    assert list(rep.devices) == [A0, A1]  # sorted by device key, whatever the input order
    lax = ThroughputPolicy(reference_fraction=F(1, 4))  # reference 10 tok/s: both meet it
    assert pool_reputation(w, {A0: IDENT, A1: IDENT}, TABLE, throughput=lax).devices[A1].throughput.score == 1


def test_not_attributable_failures_are_reported() -> None:
    from gpufleet.reputation.window import CounterSnapshot, FailureCause, Observation, observe

    w = observe(Window(), [Observation("r", A0, CounterSnapshot())], T0)
    w = observe(
        w,
        [Observation("r", A0, CounterSnapshot(completions=5, failures={FailureCause.CLIENT_CANCEL: 3}))],
        T0 + 60,
    )
    assert pool_reputation(w, {A0: IDENT}, TABLE).not_attributable == 3
