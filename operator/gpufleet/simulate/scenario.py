"""Simulation scenarios: the fleet, its traffic, the router and the controllers, as validated YAML.

A scenario is data so that a person can copy the packaged default (``--print-scenario``), change
the stake distribution, GPU mix or load, and compare. Every field has a default; a file only
says what differs. A bad file fails once, naming the file and the field.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gpufleet.hardware.catalog import load_catalog


class ScenarioError(ValueError):
    """A scenario that cannot be simulated, with the file and field a person can fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
    """A positive random quantity: fixed, exponential, lognormal or Pareto (all by their mean/scale)."""

    distribution: Literal["fixed", "exponential", "lognormal", "pareto", "uniform"] = "fixed"
    value: float | None = Field(default=None, ge=0, description="fixed: the value.")
    mean: float | None = Field(default=None, gt=0, description="exponential/lognormal: the mean.")
    sigma: float = Field(default=1.0, gt=0, description="lognormal: sigma of the underlying normal.")
    alpha: float = Field(default=1.5, gt=0, description="pareto: shape (smaller = more unequal).")
    minimum: float = Field(default=1.0, ge=0, description="pareto: scale (the smallest value); uniform: low.")
    maximum: float | None = Field(default=None, gt=0, description="uniform: high; any: a cap.")

    @model_validator(mode="after")
    def _complete(self) -> Distribution:
        if self.distribution == "fixed" and self.value is None:
            raise ValueError("distribution 'fixed' needs 'value'")
        if self.distribution in ("exponential", "lognormal") and self.mean is None:
            raise ValueError(f"distribution {self.distribution!r} needs 'mean'")
        if self.distribution == "uniform" and self.maximum is None:
            raise ValueError("distribution 'uniform' needs 'minimum' and 'maximum'")
        return self

    def expected(self) -> float:
        """The mean (the cap is ignored; it is documented as a tail cut)."""
        if self.distribution == "fixed":
            return float(self.value or 0.0)
        if self.distribution in ("exponential", "lognormal"):
            return float(self.mean or 0.0)
        if self.distribution == "uniform":
            return (self.minimum + float(self.maximum or 0.0)) / 2
        if self.alpha <= 1:
            raise ValueError("pareto with alpha <= 1 has no mean")
        return self.alpha * self.minimum / (self.alpha - 1)


class StakeSpec(_Strict):
    """How much INT each operator's pool holds."""

    distribution: Literal["fixed", "pareto", "lognormal", "equal"] = "pareto"
    values_int: list[int] = Field(default_factory=list, description="fixed: INT per operator (cycled).")
    alpha: float = Field(default=1.16, gt=0, description="pareto shape; 1.16 is the 80/20 rule.")
    minimum_int: int = Field(default=1_000, ge=0, description="pareto scale / equal value (INT).")
    median_int: int = Field(default=10_000, gt=0, description="lognormal median (INT).")
    sigma: float = Field(default=1.5, gt=0, description="lognormal sigma.")
    maximum_int: int | None = Field(default=10_000_000, gt=0, description="cap on any pool (INT).")
    unstaked_fraction: float = Field(default=0.2, ge=0, le=1, description="operators with no stake at all.")

    @model_validator(mode="after")
    def _values(self) -> StakeSpec:
        if self.distribution == "fixed" and not self.values_int:
            raise ValueError("stake distribution 'fixed' needs values_int")
        if any(v < 0 for v in self.values_int):
            raise ValueError("values_int must be >= 0")
        return self


class OperatorsSpec(_Strict):
    """The operators: how many, their stake, their machines and how reliable they are."""

    count: int = Field(default=1000, ge=1, le=200_000)
    stake: StakeSpec = StakeSpec()
    devices_per_operator: dict[int, float] = Field(
        default_factory=lambda: {1: 0.6, 2: 0.2, 4: 0.15, 8: 0.05},
        description="Device count -> probability (normalised).",
    )
    gpus: dict[str, float] = Field(
        default_factory=lambda: {
            "rtx-4090": 0.35,
            "rtx-3090": 0.15,
            "l40s": 0.15,
            "a100-sxm4-80gb": 0.2,
            "h100-sxm": 0.15,
        },
        description="GPU catalog key -> probability (an operator's machines share one GPU type).",
    )
    failure_rate: float = Field(default=0.001, ge=0, le=1, description="Per-request failure probability.")
    flaky_fraction: float = Field(
        default=0.02, ge=0, le=1, description="Operators failing at flaky_failure_rate."
    )
    flaky_failure_rate: float = Field(default=0.05, ge=0, le=1)
    slow_fraction: float = Field(default=0.05, ge=0, le=1, description="Operators running below benchmark.")
    slow_factor: float = Field(default=0.6, gt=0, le=1, description="Their speed relative to the benchmark.")

    @field_validator("devices_per_operator", "gpus")
    @classmethod
    def _weights(cls, value: dict[Any, float]) -> dict[Any, float]:
        if not value or any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("needs at least one entry and non-negative weights with a positive sum")
        return value

    @field_validator("devices_per_operator")
    @classmethod
    def _counts(cls, value: dict[int, float]) -> dict[int, float]:
        if any(n < 1 or n > 64 for n in value):
            raise ValueError("device counts must be 1..64")
        return value

    @field_validator("gpus")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        catalog = load_catalog()
        unknown = [k for k in value if catalog.by_key(k) is None]
        if unknown:
            raise ValueError(f"unknown GPU catalog key(s): {', '.join(unknown)}")
        return value


class ModelSpec(_Strict):
    """A served model: its traffic share, benchmarks per GPU and how a device batches it."""

    name: str = Field(
        min_length=1, description="As in the benchmarks file, e.g. meta-llama/Llama-3.1-8B-Instruct."
    )
    traffic_share: float = Field(default=1.0, gt=0, description="Share of requests (normalised).")
    fleet_share: float = Field(default=1.0, gt=0, description="Share of devices serving it (normalised).")
    throughput: dict[str, float] = Field(
        default_factory=dict,
        description="GPU key -> single-stream decode tokens/s (else gpufleet/hardware/benchmarks.yaml).",
    )
    concurrency: int = Field(
        default=8, ge=1, le=4096, description="Per-device cap (max concurrent sequences)."
    )
    concurrency_per_gpu: dict[str, int] = Field(default_factory=dict)
    batching_alpha: float = Field(
        default=0.1,
        ge=0,
        description="Per-sequence speed at batch b is s1/(1+alpha(b-1)); 0 = every slot runs at full speed.",
    )
    prefill_speedup: float = Field(
        default=20.0, gt=0, description="Prompt tokens cost 1/this of an output token."
    )


class RequestsSpec(_Strict):
    """Sizes of requests in tokens."""

    prompt_tokens: Distribution = Distribution(distribution="lognormal", mean=512, sigma=1.0, maximum=8192)
    output_tokens: Distribution = Distribution(distribution="exponential", mean=256, maximum=4096)


class Diurnal(_Strict):
    amplitude: float = Field(
        default=0.0, ge=0, lt=1, description="rate x (1 + a sin(2 pi (t - phase)/period))"
    )
    period_s: float = Field(default=86_400.0, gt=0)
    phase_s: float = 0.0


class Burst(_Strict):
    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    factor: float = Field(gt=0, description="Rate multiplier while the burst lasts.")


class LoadStep(_Strict):
    at_s: float = Field(ge=0)
    load: float = Field(gt=0, le=2, description="New base load from this time.")


class ArrivalsSpec(_Strict):
    """Poisson arrivals; rate = load x fleet capacity x diurnal x bursts (steps change the load)."""

    load: float = Field(default=0.6, gt=0, le=2, description="Offered work / fleet full-batch throughput.")
    diurnal: Diurnal = Diurnal()
    bursts: list[Burst] = Field(default_factory=list)
    steps: list[LoadStep] = Field(default_factory=list)


class RouterSpec(_Strict):
    """The data plane's selection rule, per-host caps and what happens when a pick finds no room.

    The default models the committed router (``gpufleet.router.envoy``): Envoy ``ROUND_ROBIN``
    (EDF over the integer weights) with a per-host connection limit equal to the cap on HTTP/1.1
    upstreams, so a request picked for a full host waits in that host's pending queue.
    """

    policy: Literal["edf", "random"] = Field(
        default="edf", description="edf: Envoy weighted round robin (EDF); random: weighted random."
    )
    overflow: Literal["host", "retry", "queue", "reject"] = Field(
        default="host",
        description="host: wait in the picked host's pending queue (Envoy per-host max_connections); "
        "retry: up to `attempts` picks, then 503 + Retry-After and the client retries after retry_after_s; "
        "queue: up to `attempts` picks, then FIFO at the router until a slot frees; "
        "reject: counted as rejected.",
    )
    attempts: int = Field(
        default=1,
        ge=0,
        le=100,
        description="retry/queue/reject: picks per request before overflow (a full host uses one); "
        "0 = any free host. host: always one pick.",
    )
    retry_after_s: float = Field(default=1.0, gt=0)
    retry_limit: int = Field(default=30, ge=0, description="Give up after this many 503s (counted rejected).")
    retry_failed_once: bool = Field(
        default=True, description="A failure before the first byte is retried once."
    )


class ControllerSpec(_Strict):
    """The k controller's settings (the RoutingPolicy spec); unset = the project's KPolicy default."""

    k_min: float | None = Field(default=None, ge=0)
    k_max: float | None = Field(default=None, gt=0)
    target: float | None = Field(default=None, gt=0, lt=1, description="Target utilisation.")
    deadband: float | None = Field(default=None, ge=0, lt=1)
    rise_gain: float | None = Field(default=None, gt=0, le=1, description="Share of the k span per interval.")
    fall_gain: float | None = Field(default=None, gt=0, le=1)
    smoothing: float | None = Field(default=None, gt=0, le=1, description="EMA weight of a new sample.")
    interval_seconds: int | None = Field(default=None, ge=1)
    k_initial: float | None = Field(default=None, ge=0, description="k at the start (default k_max).")


class KSpec(_Strict):
    mode: Literal["static", "controller"] = "static"
    value: float = Field(default=0.0001, ge=0, description="Static k (per whole INT).")
    controller: ControllerSpec = ControllerSpec()


class ReputationSpec(_Strict):
    """Reputation window, tiers and penalties; ``hour_s`` compresses time so that days fit in a run."""

    enabled: bool = True
    hour_s: float = Field(default=3600.0, gt=0, description="Simulated seconds per reputation hour.")
    window_hours: int = Field(default=72, ge=1)
    min_sample: int = Field(default=200, ge=0)
    update_interval_s: float = Field(default=60.0, gt=0)
    penalties: bool = True
    penalty_floor: float = Field(default=0.90, ge=0, le=1)
    penalty_min_requests: int = Field(default=50, ge=1)


class OutagesSpec(_Strict):
    mtbf_s: float | None = Field(default=None, gt=0, description="Mean time between failures per device.")
    mttr_s: float = Field(default=600.0, gt=0, description="Mean time to repair.")
    scheduled: list[ScheduledOutage] = Field(default_factory=list)


class ScheduledOutage(_Strict):
    at_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    fraction: float = Field(default=0.1, gt=0, le=1, description="Share of devices going down together.")


OutagesSpec.model_rebuild()


class Scenario(_Strict):
    """Everything one simulation run needs."""

    name: str = "default"
    seed: int = Field(default=1, ge=0)
    duration_s: float = Field(default=600.0, gt=0, description="Simulated time (arrivals stop here).")
    max_requests: int | None = Field(default=None, ge=1, description="Stop arrivals after this many.")
    warmup_s: float = Field(default=120.0, ge=0, description="Requests arriving earlier are not measured.")
    sample_interval_s: float = Field(default=10.0, gt=0)
    operators: OperatorsSpec = OperatorsSpec()
    models: list[ModelSpec] = Field(
        default_factory=lambda: [ModelSpec(name="meta-llama/Llama-3.1-8B-Instruct")]
    )
    requests: RequestsSpec = RequestsSpec()
    arrivals: ArrivalsSpec = ArrivalsSpec()
    router: RouterSpec = RouterSpec()
    k: KSpec = KSpec()
    reputation: ReputationSpec = ReputationSpec()
    outages: OutagesSpec = OutagesSpec()

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        if not value:
            raise ValueError("at least one model")
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return value


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_scenario(data: Any, *, source: str = "<scenario>") -> Scenario:
    """Validate parsed YAML; the error names the source and every bad field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping (see gpufleet simulate --print-scenario)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {_format_errors(exc)}") from exc


def default_scenario_text() -> str:
    return resources.files("gpufleet.simulate").joinpath("default.yaml").read_text(encoding="utf-8")


def load_scenario(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Scenario:
    """The scenario at ``path`` (else the packaged default), with dotted-key ``overrides`` applied."""
    if path is None:
        source, text = "default scenario", default_scenario_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    if overrides:
        data = apply_overrides(data if isinstance(data, dict) else {}, overrides)
    return parse_scenario(data, source=source)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"arrivals.load": 0.9}`` -> a deep copy of ``data`` with that field set."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        keys = dotted.split(".")
        for key in keys[:-1]:
            nxt = node.get(key)
            if not isinstance(nxt, dict):
                nxt = {}
                node[key] = nxt
            node = nxt
        node[keys[-1]] = value
    return out


def with_overrides(scenario: Scenario, overrides: dict[str, Any]) -> Scenario:
    """A copy of a validated scenario with dotted-key overrides, validated again."""
    data = apply_overrides(scenario.model_dump(mode="json"), overrides)
    return parse_scenario(data, source=f"scenario {scenario.name!r} with {sorted(overrides)}")
