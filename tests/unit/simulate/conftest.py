"""Small scenarios for the simulator's tests (each runs in well under a second or two)."""

from __future__ import annotations

from typing import Any

from gpufleet.simulate.scenario import Scenario, parse_scenario


def small(**overrides: Any) -> Scenario:
    """A quiet little fleet: no failures, no reputation, exact sizes unless overridden."""
    data: dict[str, Any] = {
        "name": "test",
        "seed": 7,
        "duration_s": 200.0,
        "warmup_s": 0.0,
        "sample_interval_s": 10.0,
        "operators": {
            "count": 20,
            "stake": {"distribution": "pareto", "alpha": 1.2, "minimum_int": 1000, "unstaked_fraction": 0.25},
            "devices_per_operator": {1: 0.7, 2: 0.3},
            "gpus": {"rtx-4090": 0.5, "h100-sxm": 0.5},
            "failure_rate": 0.0,
            "flaky_fraction": 0.0,
            "slow_fraction": 0.0,
        },
        "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct", "concurrency": 4, "batching_alpha": 0.0}],
        "requests": {
            "prompt_tokens": {"distribution": "fixed", "value": 0},
            "output_tokens": {"distribution": "exponential", "mean": 100},
        },
        "arrivals": {"load": 0.5},
        "router": {"policy": "edf", "attempts": 0, "overflow": "queue"},
        "k": {"mode": "static", "value": 0.0},
        "reputation": {"enabled": False},
    }
    for dotted, value in overrides.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return parse_scenario(data, source="test scenario")
