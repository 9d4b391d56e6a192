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
