"""Throughput score: benchmark table, busy-enough rule, min(1, observed / reference)."""

from __future__ import annotations

from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.hardware.catalog import load_catalog
from gpufleet.reputation.throughput import (
    DEFAULT_THROUGHPUT,
    Benchmark,
    BenchmarkTable,
    ThroughputError,
    ThroughputNote,
    ThroughputPolicy,
    load_benchmarks,
    observed_speed,
    parse_benchmarks,
    throughput_score,
)
from gpufleet.reputation.window import DeviceBucket

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
BENCH = Benchmark("m", "g", F(50), "measured", "test")  # reference = 25 tok/s


def bucket(completed: int, tokens: int, decode_ms: int) -> DeviceBucket:
    return DeviceBucket(completed=completed, tokens=tokens, decode_ms=decode_ms)


def test_bundled_table_uses_catalog_keys_and_cites_sources() -> None:
    table = load_benchmarks()
    catalog_keys = {g.key for g in load_catalog().gpus}
    assert len(table) >= 20
    for (model, gpu), b in table.entries.items():
        assert gpu in catalog_keys, gpu
        assert b.model == model
        assert b.gpu == gpu
        assert b.decode_tokens_per_second > 0
        assert b.source
        if b.kind == "measured":
            assert "[XD24]" in b.source
    assert table.lookup(LLAMA, "rtx-4090") == Benchmark(
        LLAMA, "rtx-4090", F(5484, 100), "measured", "[XD24] 4090 24GB, Llama 3 8B F16, tg 512"
    )
    assert table.lookup(LLAMA, "no-such-gpu") is None
    assert table.lookup("no/model", "rtx-4090") is None


def test_parse_and_override() -> None:
    base = parse_benchmarks(
        {
            "models": {
                "m": {
                    "g": {"tokensPerSecond": 10, "kind": "measured", "source": "x"},
                    "h": {"tokensPerSecond": "2.5"},
                }
            }
        }
    )
    assert base.lookup("m", "h") == Benchmark("m", "h", F(5, 2), "estimate", "")
    net = parse_benchmarks({"models": {"m": {"g": {"tokensPerSecond": 20}}}})
    merged = base.override(net)
    assert merged.lookup("m", "g") == Benchmark("m", "g", F(20), "estimate", "")
    assert merged.lookup("m", "h") == base.lookup("m", "h")
    assert len(merged) == 2
    assert load_benchmarks("models:\n  m:\n    g: {tokensPerSecond: 3}\n").lookup("m", "g") is not None


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"models": []},
        {"models": {"m": []}},
        {"models": {"m": {"g": {}}}},
        {"models": {"m": {"g": {"tokensPerSecond": "fast"}}}},
        {"models": {"m": {"g": {"tokensPerSecond": 0}}}},
        {"models": {"m": {"g": {"tokensPerSecond": -1}}}},
        {"models": {"m": {"g": {"tokensPerSecond": 1, "kind": "guess"}}}},
    ],
)
def test_bad_tables(doc: dict[str, object]) -> None:
    with pytest.raises(ThroughputError):
        parse_benchmarks(doc)


def test_table_must_be_a_mapping() -> None:
    with pytest.raises(ThroughputError):
        load_benchmarks("- a\n- b\n")


def test_no_benchmark_scores_one_with_a_note() -> None:
    s = throughput_score([bucket(500, 100_000, 1_000_000)], None)
    assert (s.score, s.note, s.benchmark) == (F(1), ThroughputNote.NO_BENCHMARK, None)
    assert s.observed_tokens_per_second == F(100)


def test_measured_score_is_observed_over_reference_capped_at_one() -> None:
    # 20,000 tokens in 2,000 s = 10 tok/s against a reference of 50 * 1/2 = 25
    s = throughput_score([bucket(200, 20_000, 2_000_000)], BENCH)
    assert (s.score, s.note, s.observed_tokens_per_second) == (F(2, 5), ThroughputNote.MEASURED, F(10))
    assert (s.requests, s.tokens) == (200, 20_000)
    exact = throughput_score([bucket(200, 25_000, 1_000_000)], BENCH)
    assert exact.score == 1
    fast = throughput_score([bucket(200, 100_000, 1_000_000)], BENCH)
    assert fast.score == 1
    assert fast.observed_tokens_per_second == 100


def test_reference_fraction_is_applied() -> None:
    policy = ThroughputPolicy(reference_fraction=F(1))
    s = throughput_score([bucket(200, 25_000, 1_000_000)], BENCH, policy)
    assert s.score == F(1, 2)


def test_busy_enough_thresholds_at_their_boundaries() -> None:
    d = DEFAULT_THROUGHPUT
    assert (d.min_bucket_requests, d.min_requests, d.min_tokens, d.reference_fraction) == (
        10,
        100,
        10_000,
        F(1, 2),
    )
    ok = throughput_score([bucket(100, 10_000, 2_000_000)], BENCH)
    assert ok.note is ThroughputNote.MEASURED
    assert ok.score == F(1, 5)
    few_requests = throughput_score([bucket(99, 10_000, 2_000_000)], BENCH)
    assert (few_requests.score, few_requests.note) == (F(1), ThroughputNote.INSUFFICIENT_LOAD)
    few_tokens = throughput_score([bucket(100, 9_999, 2_000_000)], BENCH)
    assert (few_tokens.score, few_tokens.note) == (F(1), ThroughputNote.INSUFFICIENT_LOAD)
    no_time = throughput_score([bucket(100, 10_000, 0)], BENCH)
    assert (no_time.score, no_time.note, no_time.observed_tokens_per_second) == (
        F(1),
        ThroughputNote.INSUFFICIENT_LOAD,
        None,
    )


def test_quiet_hours_are_left_out() -> None:
    quiet = bucket(9, 900_000, 1_000)  # 9 requests: not busy enough, however fast it looked
    at_min = bucket(10, 5_000, 1_000_000)
    assert observed_speed([quiet, at_min]) == (10, 5_000, 1_000_000)
    s = throughput_score([quiet, at_min, bucket(90, 5_000, 1_000_000)], BENCH)
    assert s.observed_tokens_per_second == F(5)
    assert s.score == F(1, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_bucket_requests": -1},
        {"min_requests": -1},
        {"min_tokens": -1},
        {"reference_fraction": F(0)},
        {"reference_fraction": F(11, 10)},
    ],
)
def test_invalid_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(ThroughputError):
        ThroughputPolicy(**kwargs)  # type: ignore[arg-type]


def test_edge_policy_is_valid() -> None:
    ThroughputPolicy(min_bucket_requests=0, min_requests=0, min_tokens=0, reference_fraction=F(1))


def test_table_len_and_empty_override() -> None:
    assert len(BenchmarkTable({})) == 0
    t = load_benchmarks()
    assert t.override(BenchmarkTable({})) == t


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 10**6), st.integers(0, 10**7)), max_size=20))
def test_score_is_in_unit_interval(rows: list[tuple[int, int, int]]) -> None:
    s = throughput_score([bucket(*r) for r in rows], BENCH)
    assert 0 <= s.score <= 1
    if s.note is ThroughputNote.MEASURED and s.observed_tokens_per_second is not None:
        assert s.score == min(F(1), s.observed_tokens_per_second / 25)


def test_every_result_carries_its_inputs() -> None:
    rows = [bucket(150, 20_000, 1_000_000)]
    none = throughput_score(rows, None)
    assert (none.requests, none.tokens, none.observed_tokens_per_second) == (150, 20_000, F(20))
    few = throughput_score([bucket(50, 20_000, 1_000_000)], BENCH)
    assert (few.requests, few.tokens, few.observed_tokens_per_second, few.benchmark) == (
        50,
        20_000,
        F(20),
        BENCH,
    )
    measured = throughput_score(rows, BENCH)
    assert (measured.benchmark, measured.requests, measured.tokens) == (BENCH, 150, 20_000)


def test_one_millisecond_of_decode_is_measurable() -> None:
    s = throughput_score([bucket(100, 10_000, 1)], BENCH)
    assert (s.note, s.observed_tokens_per_second, s.score) == (ThroughputNote.MEASURED, F(10_000_000), F(1))


def test_the_policy_reaches_the_busy_hour_rule() -> None:
    lenient = ThroughputPolicy(min_bucket_requests=1, min_requests=5, min_tokens=10)
    s = throughput_score([bucket(5, 50, 10_000)], BENCH, lenient)  # 5 tok/s
    assert (s.note, s.score, s.requests) == (ThroughputNote.MEASURED, F(1, 5), 5)
    assert throughput_score([bucket(5, 50, 10_000)], BENCH).note is ThroughputNote.INSUFFICIENT_LOAD
