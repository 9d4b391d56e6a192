"""The agent's configuration: what the operator passes in the environment, plus tunable timings.

Every value is checked up front so a bad pod spec fails at start with a message naming the variable,
instead of misbehaving minutes later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gpufleet_node.engines import DEFAULT_VENV_ROOT
from gpufleet_node.policy import RestartPolicy

EngineChoice = Literal["auto", "vllm", "sglang"]
STATUS_PORT = 8080
ENGINE_PORT = 8000


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Timings:
    """Every wait the agent makes; production defaults, tests shrink them."""

    probe_interval: float = 1.0
    probe_timeout: float = 2.0
    startup_timeout: float = 1800.0
    smoke_timeout: float = 120.0
    unhealthy_timeout: float = 60.0
    metrics_interval: float = 5.0
    drain_min: float = 5.0
    drain_timeout: float = 120.0
    kill_timeout: float = 30.0


# env suffix -> Timings field; all are GPUFLEET_<suffix>_SECONDS.
_TIMING_ENV: dict[str, str] = {
    "PROBE_INTERVAL": "probe_interval",
    "PROBE_TIMEOUT": "probe_timeout",
    "STARTUP_TIMEOUT": "startup_timeout",
    "SMOKE_TIMEOUT": "smoke_timeout",
    "UNHEALTHY_TIMEOUT": "unhealthy_timeout",
    "METRICS_INTERVAL": "metrics_interval",
    "DRAIN_MIN": "drain_min",
    "DRAIN_TIMEOUT": "drain_timeout",
    "KILL_TIMEOUT": "kill_timeout",
}
_POLICY_ENV: dict[str, str] = {
    "GPUFLEET_BACKOFF_BASE_SECONDS": "base_delay",
    "GPUFLEET_BACKOFF_FACTOR": "factor",
    "GPUFLEET_BACKOFF_MAX_SECONDS": "max_delay",
    "GPUFLEET_STABLE_AFTER_SECONDS": "stable_after",
}


@dataclass(frozen=True)
class AgentConfig:
    engine: EngineChoice
    model: str
    device_index: int = 0
    pool: str | None = None
    node: str | None = None
    max_model_len: int | None = None
    status_host: str = "0.0.0.0"
    status_port: int = STATUS_PORT
    engine_host: str = "127.0.0.1"
    engine_port: int = ENGINE_PORT
    hardware_profile: str | None = None
    engine_launcher: str | None = None
    venv_root: str = DEFAULT_VENV_ROOT
    timings: Timings = field(default_factory=Timings)
    policy: RestartPolicy = field(default_factory=RestartPolicy)

    @property
    def engine_url(self) -> str:
        return f"http://{self.engine_host}:{self.engine_port}"


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0 or not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number >= 0")
    return value


def _int(env: Mapping[str, str], name: str, default: int | None, *, low: int, high: int) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default, low=0, high=65535)
    assert value is not None
    return value


def _engine(env: Mapping[str, str]) -> EngineChoice:
    raw = (env.get("GPUFLEET_ENGINE") or "auto").strip().lower()
    if raw == "auto":
        return "auto"
    if raw == "vllm":
        return "vllm"
    if raw == "sglang":
        return "sglang"
    raise ConfigError(f"GPUFLEET_ENGINE={raw!r} must be one of auto, vllm, sglang")


def load_config(env: Mapping[str, str], overrides: Mapping[str, object] | None = None) -> AgentConfig:
    """Build the configuration from environment variables, then apply command-line overrides."""
    model = (env.get("GPUFLEET_MODEL") or "").strip()
    if not model:
        raise ConfigError("GPUFLEET_MODEL is required: the model the engine serves (e.g. Qwen/Qwen3-0.6B)")
    device_index = _int(env, "GPUFLEET_DEVICE_INDEX", 0, low=0, high=63)
    assert device_index is not None
    timings = Timings(
        **{
            attr: _seconds(env, f"GPUFLEET_{suffix}_SECONDS", getattr(Timings, attr))
            for suffix, attr in _TIMING_ENV.items()
        }
    )
    if timings.probe_interval <= 0:
        raise ConfigError("GPUFLEET_PROBE_INTERVAL_SECONDS must be > 0")
    policy_args: dict[str, float] = {
        attr: _seconds(env, name, getattr(RestartPolicy, attr)) for name, attr in _POLICY_ENV.items()
    }
    crash_loop_limit = _int(
        env, "GPUFLEET_CRASH_LOOP_LIMIT", RestartPolicy.crash_loop_limit, low=0, high=1_000_000
    )
    assert crash_loop_limit is not None
    try:
        policy = RestartPolicy(crash_loop_limit=crash_loop_limit, **policy_args)
    except ValueError as exc:
        raise ConfigError(f"invalid restart policy: {exc}") from None
    values: dict[str, object] = {
        "engine": _engine(env),
        "model": model,
        "device_index": device_index,
        "pool": env.get("GPUFLEET_POOL") or None,
        "node": env.get("GPUFLEET_NODE") or None,
        "max_model_len": _int(env, "GPUFLEET_MAX_MODEL_LEN", None, low=1, high=10_000_000),
        "status_port": _port(env, "GPUFLEET_STATUS_PORT", STATUS_PORT),
        "engine_port": _port(env, "GPUFLEET_ENGINE_PORT", ENGINE_PORT),
        "hardware_profile": env.get("GPUFLEET_HARDWARE_PROFILE") or None,
        "engine_launcher": env.get("GPUFLEET_ENGINE_LAUNCHER") or None,
        "venv_root": env.get("GPUFLEET_VENV_ROOT") or DEFAULT_VENV_ROOT,
        "timings": timings,
        "policy": policy,
    }
    for key, value in (overrides or {}).items():
        if key not in values and key not in {"status_host", "engine_host"}:
            raise ConfigError(f"unknown configuration override {key!r}")
        if value is not None:
            values[key] = value
    return AgentConfig(**values)  # type: ignore[arg-type]
