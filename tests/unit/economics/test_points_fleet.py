"""Points from the running fleet: model size, compute points from tokens, awards never below zero."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.points import (
    DEFAULT_PARAMS_MILLIONS,
    MICRO,
    apply_award,
    compute_micro_points,
    format_signed_points,
    model_params_millions,
    parse_signed_points,
    pool_compute_points,
)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", (8_000, "name")),
        ("Qwen/Qwen2.5-0.5B-Instruct", (500, "name")),
        ("Qwen/Qwen2.5-1.25B", (1_250, "name")),
        ("mistralai/Mixtral-8x7B-v0.1", (56_000, "name")),
        ("openai/gpt-oss-120b", (120_000, "name")),
        ("facebook/opt-125m", (125, "name")),
        ("meta-llama/Llama-3.1-70B", (70_000, "name")),
        ("deepseek-r1", (DEFAULT_PARAMS_MILLIONS, "default")),
        ("bert-base", (DEFAULT_PARAMS_MILLIONS, "default")),
        ("x-0b", (DEFAULT_PARAMS_MILLIONS, "default")),
        ("v1.5b-thing", (1_500, "name")),
        ("model-7bit", (DEFAULT_PARAMS_MILLIONS, "default")),
    ],
)
def test_model_size_from_name(model: str, expected: tuple[int, str]) -> None:
    assert model_params_millions(model) == expected


def test_model_size_table_wins_and_default_is_settable() -> None:
    table = {"mistralai/Mixtral-8x7B-v0.1": 13_000, "deepseek-r1": 671_000}
    assert model_params_millions("mistralai/Mixtral-8x7B-v0.1", table) == (13_000, "table")
    assert model_params_millions("org/deepseek-r1", table) == (671_000, "table")
    assert model_params_millions("unknown", {}, default=42) == (42, "default")


def test_compute_points_one_point_per_thousand_tokens_per_billion_parameters() -> None:
    assert compute_micro_points(1_000, 1_000) == 1 * MICRO
    assert compute_micro_points(1_000, 8_000) == 8 * MICRO
    assert compute_micro_points(0, 8_000) == 0
    assert compute_micro_points(3, 125) == 375  # 0.000375 points
    for bad in ((-1, 1), (True, 1), (1, 0), (1, True), (1.0, 1)):
        with pytest.raises(InvalidInput):
            compute_micro_points(*bad)
    assert pool_compute_points({"org/m-8B": 1_000, "org/m-1B": 500}) == 8 * MICRO + MICRO // 2
    assert pool_compute_points({"x": 10}, default=3) == 30
    assert pool_compute_points({}) == 0


def test_signed_awards() -> None:
    assert parse_signed_points("50") == 50 * MICRO
    assert parse_signed_points(" -2.5") == -2_500_000
    assert parse_signed_points(3) == 3 * MICRO
    for bad in ("0", "-0", "1.2345678", 1.5, "abc", "--1"):
        with pytest.raises(InvalidInput):
            parse_signed_points(bad)
    assert apply_award(10 * MICRO, -10 * MICRO) == 0
    assert apply_award(0, 5) == 5
    with pytest.raises(InvalidInput, match="never negative"):
        apply_award(10 * MICRO, -10 * MICRO - 1)
    assert format_signed_points(-2_500_000) == "-2.5"
    assert format_signed_points(2_500_000) == "2.5"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(10**9), 10**9), max_size=30))
def test_totals_never_negative(awards: list[int]) -> None:
    total = 0
    for award in awards:
        try:
            total = apply_award(total, award)
        except InvalidInput:
            assert total + award < 0
        assert total >= 0


def test_messages_and_edges_pinned() -> None:
    with pytest.raises(InvalidInput, match=r"tokens must be a non-negative integer, got -1$"):
        compute_micro_points(-1, 1)
    with pytest.raises(InvalidInput, match=r"model size must be a positive integer of millions, got 0$"):
        compute_micro_points(1, 0)
    with pytest.raises(InvalidInput, match=r"points must not be zero$"):
        parse_signed_points("0")
    with pytest.raises(InvalidInput, match=r"bonus must not be zero$"):
        parse_signed_points("-0.0", what="bonus")
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: bonus "):
        parse_signed_points("-x", what="bonus")
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: points "):
        parse_signed_points("x")
    msg = r"award of -3 points would take ns/p's total from 2 to -1; totals are never negative$"
    with pytest.raises(InvalidInput, match=msg):
        apply_award(2 * MICRO, -3 * MICRO, pool="ns/p")
    with pytest.raises(InvalidInput, match=r"would take the pool's total"):
        apply_award(0, -1)
    assert format_signed_points(0) == "0"
    assert format_signed_points(-1) == "-0.000001"
    assert compute_micro_points(1, 1) == 1
    assert pool_compute_points({"a-2B": 3, "b-3B": 5}, {"a-2B": 7}) == 3 * 7 + 5 * 3_000
    assert pool_compute_points({"unsized": 4}, {}, 5) == 20
    # the exact id wins over the last path part, both over the name
    assert model_params_millions("org/m-8B", {"org/m-8B": 1, "m-8B": 2}) == (1, "table")
    assert model_params_millions("org/m-8B", {"m-8B": 2}) == (2, "table")
    assert model_params_millions("org/m-8B", None) == (8_000, "name")
    assert model_params_millions("m-350M") == (350, "name")
    assert model_params_millions("m-2x3B") == (6_000, "name")
    assert model_params_millions("m-1.5b-chat") == (1_500, "name")
    assert model_params_millions("m-0.05B") == (50, "name")
    assert model_params_millions("m-7B-then-13B") == (13_000, "name")  # the last size named
    assert model_params_millions("none") == (1_000, "default")
