"""The router's counter model: validation, differences, round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpufleet.router.stats import (
    LATENCY_BUCKETS_SECONDS,
    DeviceKey,
    DeviceStats,
    Failures,
    Histogram,
    RouterStats,
    Tokens,
)

KEY = DeviceKey(namespace="ns", pool="p", inference_node="n", device=1, model="m", pod="n-gpu-1")


def test_histogram_observe_and_minus() -> None:
    h0 = Histogram()
    h1 = h0.observe(0.003).observe(0.2).observe(500.0)
    assert h1.count == 3
    assert h1.counts[LATENCY_BUCKETS_SECONDS.index(0.005)] == 1
    assert h1.counts[LATENCY_BUCKETS_SECONDS.index(0.25)] == 2
    assert h1.counts[-1] == 2  # 500 s is only in +Inf
    assert h1.minus(h0) == h1
    assert h1.minus(h1).count == 0
    assert h0.minus(h1) == h0  # reset: newer has fewer


def test_histogram_rejects_bad_shapes() -> None:
    with pytest.raises(ValidationError):
        Histogram(bounds=(1.0, 2.0), counts=(1,), count=1)
    with pytest.raises(ValidationError):
        Histogram(bounds=(1.0, 2.0), counts=(2, 1), count=2)
    with pytest.raises(ValidationError):
        Histogram(bounds=(1.0,), counts=(3,), count=2)
    with pytest.raises(ValidationError):
        Histogram(bounds=(2.0, 1.0), counts=(0, 0), count=0)


def test_failures_totals() -> None:
    f = Failures(connect=1, reset=2, http_5xx=3, timeout=4, client_cancel=5)
    assert f.total == 15
    assert f.engine_faults == 10


def test_device_minus_and_reset() -> None:
    a = DeviceStats(
        key=KEY, requests=10, completions=8, failures=Failures(http_5xx=2), tokens=Tokens(prompt=5)
    )
    b = DeviceStats(
        key=KEY,
        requests=25,
        completions=20,
        failures=Failures(http_5xx=3, timeout=2),
        tokens=Tokens(prompt=9, completion=4),
        retries=1,
    )
    d = b.minus(a)
    assert (d.requests, d.completions, d.failures.http_5xx, d.failures.timeout) == (15, 12, 1, 2)
    assert d.tokens == Tokens(prompt=4, completion=4)
    assert d.retries == 1
    assert a.minus(b) == a  # counter reset -> the newer snapshot as is


def test_snapshot_round_trip_json() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    snap = RouterStats(
        router="r-0",
        since=now,
        observed_at=now,
        k="0.0001",
        reprogrammings=3,
        router_503=2,
        devices=(DeviceStats(key=KEY, requests=1, completions=1),),
    )
    again = RouterStats.model_validate_json(snap.model_dump_json())
    assert again == snap
    assert again.device(KEY) is not None
    assert again.device(KEY.model_copy(update={"device": 9})) is None
    assert KEY.label_tuple() == ("p", "n", "1", "m")
    with pytest.raises(ValidationError):
        RouterStats.model_validate({**snap.model_dump(), "unknown": 1})


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=50))
def test_histogram_invariants(values: list[float]) -> None:
    h = Histogram()
    for v in values:
        h = h.observe(v)
    assert h.count == len(values)
    assert all(a <= b for a, b in zip(h.counts, h.counts[1:], strict=False))
    assert h.counts[-1] == sum(1 for v in values if v <= LATENCY_BUCKETS_SECONDS[-1])
    assert h.minus(Histogram()).count == h.count
