"""Window details a mutation run found unpinned: merges, pool views, defaults, stable serialisation."""

from __future__ import annotations

import json

from gpufleet.reputation.window import (
    DEFAULT_WINDOW_HOURS,
    CounterSnapshot,
    DeviceBucket,
    DeviceKey,
    FailureCause,
    Observation,
    Window,
    advance,
    merge_windows,
    observe,
)

H = 3600
T0 = 2_000 * H
A = DeviceKey("ns", "pool-a", "n1", "0")
A2 = DeviceKey("ns", "pool-a", "n1", "1")
B = DeviceKey("ns", "pool-b", "n2", "0")


def o(dev: DeviceKey, done: int, source: str = "r0", tokens: int = 0, ms: int = 0) -> Observation:
    return Observation(
        source, dev, CounterSnapshot(completions=done, completion_tokens=tokens, decode_ms=ms, generation="g")
    )


def test_advance_within_the_hour_is_the_same_object() -> None:
    w = observe(Window(), [o(A, 1)], T0)
    assert advance(w, T0 + H - 1) is w
    assert advance(w, T0 + H) is not w


def test_sources_of_the_first_hour_stay() -> None:
    w = observe(Window(hours=2), [o(A, 1)], T0)
    assert set(advance(w, T0 + H).sources) == {"r0"}
    assert advance(w, T0 + 2 * H).sources == {}


def test_bucket_merge_adds_everything() -> None:
    a = DeviceBucket(completed=1, failed_by_release={"1": 2}, not_attributable=3, tokens=4, decode_ms=5)
    b = DeviceBucket(
        completed=10, failed_by_release={"1": 20, "2": 1}, not_attributable=30, tokens=40, decode_ms=50
    )
    assert a.merge(b) == DeviceBucket(
        completed=11, failed_by_release={"1": 22, "2": 1}, not_attributable=33, tokens=44, decode_ms=55
    )


def test_merge_sums_the_same_device_and_hour_keeps_hours_and_prunes() -> None:
    a = observe(observe(Window(hours=4), [o(A, 0)], T0), [o(A, 5, tokens=50, ms=500)], T0 + 1)
    b = observe(observe(Window(hours=4), [o(A, 0, "r1")], T0), [o(A, 7, "r1", tokens=70, ms=700)], T0 + 2)
    m = merge_windows(a, b)
    assert m.hours == 4
    assert m.buckets[T0 // H][A] == DeviceBucket(completed=12, tokens=120, decode_ms=1200)
    assert set(m.sources) == {"r0", "r1"}
    late = observe(observe(Window(hours=4), [o(B, 0, "r2")], T0 + 6 * H), [o(B, 1, "r2")], T0 + 6 * H + 1)
    pruned = merge_windows(a, late)
    assert pruned.current_hour == T0 // H + 6
    assert list(pruned.buckets) == [T0 // H + 6]  # a's hour is out of the 4-hour window
    assert set(pruned.sources) == {"r2"}
    assert set(pruned.baselines) == {("r2", B)}


def test_for_pool_keeps_hours_sources_and_only_its_baselines() -> None:
    w = observe(Window(hours=5), [o(A, 0), o(B, 0)], T0)
    w = observe(w, [o(A, 1), o(B, 0)], T0 + 1)
    w = observe(w, [o(A, 1), o(B, 3)], T0 + H)
    p = w.for_pool("ns", "pool-a")
    assert p.hours == 5
    assert p.sources == w.sources
    assert set(p.baselines) == {("r0", A)}
    assert list(p.buckets) == [T0 // H]  # the hour with only pool-b's traffic is not part of it
    assert p.devices() == {A}


def test_from_dict_defaults() -> None:
    assert Window.from_dict({}) == Window()
    assert Window.from_dict({}).hours == DEFAULT_WINDOW_HOURS
    w = Window.from_dict({"baselines": [{"source": "r", "device": str(A), "hour": 3}], "currentHour": 0})
    assert w.baselines == {("r", A): (CounterSnapshot(), 3)}
    assert w.current_hour == 0
    full = Window.from_dict(
        {
            "hours": 3,
            "baselines": [
                {
                    "source": "r",
                    "device": str(A),
                    "hour": 1,
                    "generation": "g",
                    "completions": 2,
                    "failures": {"timeout": 1},
                    "tokens": 3,
                    "decodeMs": 4,
                }
            ],
            "sources": {"r": ["g", 1]},
        }
    )
    assert full.hours == 3
    assert full.baselines[("r", A)] == (
        CounterSnapshot(
            completions=2,
            failures={FailureCause.TIMEOUT: 1},
            completion_tokens=3,
            decode_ms=4,
            generation="g",
        ),
        1,
    )
    assert full.sources == {"r": ("g", 1)}
    assert full.to_dict()["hours"] == 3


def test_serialisation_is_sorted_and_independent_of_insertion_order() -> None:
    one = observe(Window(), [o(B, 0, "r1"), o(A2, 0, "r0"), o(A, 0, "r1")], T0)
    one = observe(one, [o(B, 1, "r1"), o(A2, 2, "r0"), o(A, 3, "r1")], T0 + 1)
    two = observe(Window(), [o(A, 0, "r1"), o(A2, 0, "r0"), o(B, 0, "r1")], T0)
    two = observe(two, [o(A, 3, "r1"), o(A2, 2, "r0"), o(B, 1, "r1")], T0 + 1)
    assert json.dumps(one.to_dict()) == json.dumps(two.to_dict())
    raw = one.to_dict()
    assert list(raw["buckets"][str(T0 // H)]) == [str(A), str(A2), str(B)]
    assert [(b["source"], b["device"]) for b in raw["baselines"]] == [
        ("r0", str(A2)),
        ("r1", str(A)),
        ("r1", str(B)),
    ]
