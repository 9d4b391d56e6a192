"""Agent configuration from the operator's environment."""

from __future__ import annotations

import pytest

from gpufleet_node.config import ConfigError, Timings, load_config


def test_minimal_environment_uses_contract_defaults() -> None:
    config = load_config({"GPUFLEET_MODEL": "Qwen/Qwen3-0.6B"})
    assert config.engine == "auto"
    assert config.status_port == 8080
    assert config.engine_port == 8000
    assert config.device_index == 0
    assert config.engine_url == "http://127.0.0.1:8000"
    assert config.timings == Timings()


def test_operator_environment_is_read() -> None:
    config = load_config(
        {
            "GPUFLEET_MODEL": "m",
            "GPUFLEET_ENGINE": "SGLang",
            "GPUFLEET_DEVICE_INDEX": "3",
            "GPUFLEET_POOL": "pool-a",
            "GPUFLEET_NODE": "gpu-node-1",
            "GPUFLEET_MAX_MODEL_LEN": "8192",
            "GPUFLEET_PROBE_INTERVAL_SECONDS": "0.05",
            "GPUFLEET_BACKOFF_BASE_SECONDS": "0.1",
            "GPUFLEET_CRASH_LOOP_LIMIT": "2",
        }
    )
    assert (config.engine, config.device_index) == ("sglang", 3)
    assert (config.pool, config.node) == ("pool-a", "gpu-node-1")
    assert config.max_model_len == 8192
    assert config.timings.probe_interval == 0.05
    assert config.policy.base_delay == 0.1
    assert config.policy.crash_loop_limit == 2


def test_overrides_win_over_environment() -> None:
    config = load_config({"GPUFLEET_MODEL": "m", "GPUFLEET_STATUS_PORT": "9000"}, {"status_port": 9100})
    assert config.status_port == 9100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "GPUFLEET_MODEL is required"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_ENGINE": "tgi"}, "GPUFLEET_ENGINE='tgi'"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_DEVICE_INDEX": "x"}, "'x' is not an integer"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_DEVICE_INDEX": "-1"}, "out of range"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_STATUS_PORT": "70000"}, "GPUFLEET_STATUS_PORT=70000"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_DRAIN_TIMEOUT_SECONDS": "soon"}, "not a number of seconds"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_KILL_TIMEOUT_SECONDS": "-3"}, ">= 0"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_PROBE_INTERVAL_SECONDS": "0"}, "must be > 0"),
        ({"GPUFLEET_MODEL": "m", "GPUFLEET_BACKOFF_FACTOR": "0.5"}, "invalid restart policy"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown configuration override 'colour'"):
        load_config({"GPUFLEET_MODEL": "m"}, {"colour": "red"})
