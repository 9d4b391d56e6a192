"""Operator settings, read from ``GPUFLEET_*`` environment variables.

One object carries every tunable so that handlers, the planner and the benchmark all see the
same values, and so that tests can build settings explicitly instead of patching globals.
Each field is documented in docs/operator-settings.md.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GROUP_PREFIX = "gpufleet.io"


class OperatorSettings(BaseSettings):
    """Everything the operator can be tuned with; env var = ``GPUFLEET_`` + upper-cased name."""

    model_config = SettingsConfigDict(env_prefix="GPUFLEET_", extra="ignore", frozen=True)

    # --- where to operate ---------------------------------------------------------------
    namespace: str | None = Field(
        default=None, description="Watch only this namespace; unset means cluster-wide."
    )

    # --- routing economics --------------------------------------------------------------
    priority_k: Annotated[Decimal, Field(ge=0)] = Field(
        default=Decimal("0.0001"),
        description="k in priority = 1 + k * effective_stake_INT * reputation; unit 1/INT.",
    )
    default_reputation_weight: Annotated[Decimal, Field(ge=0, le=1)] = Field(
        default=Decimal("1"), description="Reputation weight for pools that do not set one."
    )
    min_self_stake_bps: Annotated[int, Field(ge=0, le=10000)] = Field(
        default=1000, description="Minimum self stake as basis points of the pool's total stake."
    )
    share_event_threshold: Annotated[Decimal, Field(ge=0, le=1)] = Field(
        default=Decimal("0.05"),
        description="Post a ShareChanged event when a device's VRAM share moves by more than this.",
    )

    # --- engine pods --------------------------------------------------------------------
    default_engine_image: str | None = Field(
        default=None,
        description="Image used when no EngineRelease matches an InferenceNode's release selector.",
    )
    default_engine_version: str = Field(
        default="0.0.0", description="Version label paired with default_engine_image."
    )
    agent_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    engine_port: Annotated[int, Field(gt=0, lt=65536)] = 8000
    engine_termination_grace_seconds: Annotated[int, Field(ge=30, le=3600)] = Field(
        default=180,
        description="terminationGracePeriodSeconds of engine pods. The node agent drains in-flight "
        "requests on SIGTERM (5 s settle + up to 120 s drain + 30 s engine stop by default), so "
        "keep this above that or the kubelet kills the engine mid-request.",
    )
    service_account_name: str | None = Field(
        default=None, description="Service account for engine pods; unset uses the namespace default."
    )
    gpu_resource_name: str = "nvidia.com/gpu"

    # --- talking to agents --------------------------------------------------------------
    agent_request_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="Timeout of one pod-proxy request to an agent."
    )
    readiness_recheck_seconds: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="First delay before re-asking a running, not yet ready agent."
    )
    readiness_recheck_max_seconds: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="Cap of the exponential back-off between readiness re-checks."
    )

    # --- reconciliation -----------------------------------------------------------------
    workers: Annotated[int, Field(ge=1, le=512)] = Field(
        default=16, description="How many objects are reconciled concurrently."
    )
    pool_settle_seconds: Annotated[float, Field(ge=0)] = Field(
        default=1.0,
        description="Delay before re-sharing a pool after its validated VRAM or stake changed (batching).",
    )
    event_batch_seconds: Annotated[float, Field(ge=0)] = Field(
        default=0.2, description="Pod events wait this long so that one reconcile covers a burst of them."
    )
    pod_watch: Literal["direct", "kopf"] = Field(
        default="direct",
        description="Who watches engine pods: a lean built-in informer (direct) or a kopf index (kopf).",
    )
    indexes: Literal["local", "kopf"] = Field(
        default="kopf",
        description="In-memory indexes fed from kopf on-event handlers (local) or kept by @kopf.index.",
    )
    api_request_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    api_concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=64, description="Most API requests in flight at once from the reconciler."
    )

    # --- process ------------------------------------------------------------------------
    liveness_endpoint: str | None = Field(
        default="http://0.0.0.0:8081/healthz",
        description="kopf liveness endpoint; empty disables it.",
    )
    peering_name: str | None = Field(
        default=None,
        description="kopf peering object name; unset runs standalone (deploy with replicas=1, Recreate).",
    )
    metrics_port: Annotated[int, Field(ge=0, lt=65536)] = Field(
        default=8080, description="Port of the operator's Prometheus /metrics; 0 disables it."
    )
    operator_namespace: str | None = Field(
        default=None, description="Namespace the operator runs in (for Events about cluster-scoped objects)."
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text", description="Operator log lines as text for people or JSON for log pipelines."
    )

    # --- reputation, penalties, k controller (#17; docs/reputation.md) --------------------
    reputation_enabled: bool = Field(
        default=False,
        description="Run the reputation and k controllers (penalties, status.reputation, RoutingPolicy).",
    )
    reputation_router_urls: str | None = Field(
        default=None,
        description="Comma-separated base URLs of router replicas (GET {url}/v1/stats); unset disables "
        "measuring (penalties still expire, k stays put).",
    )
    reputation_prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL: read the router counters with PromQL instead."
    )
    reputation_scrape_seconds: Annotated[float, Field(gt=0)] = Field(
        default=30.0, description="Seconds between two reads of the router counters."
    )
    reputation_status_min_seconds: Annotated[float, Field(ge=0)] = Field(
        default=60.0, description="At most one OperatorPool status.reputation write per pool per this."
    )
    reputation_window_hours: Annotated[int, Field(ge=1, le=24 * 31)] = Field(
        default=72, description="Rolling window of the completion score, in hourly buckets."
    )
    reputation_tier_top_pct: Annotated[Decimal, Field(gt=0, le=100)] = Field(
        default=Decimal("99.5"), description="Completion above this % is tier 1 (multiplier 1)."
    )
    reputation_tier_second_pct: Annotated[Decimal, Field(gt=0, le=100)] = Field(
        default=Decimal("98"), description="Lower bound (inclusive) of tier 2, in %."
    )
    reputation_tier_step_pct: Annotated[Decimal, Field(gt=0)] = Field(
        default=Decimal("2"), description="Width in % points of each tier below tier 2."
    )
    reputation_tier_step_multiplier: Annotated[Decimal, Field(gt=0, le=1)] = Field(
        default=Decimal("0.1"), description="Multiplier lost per tier."
    )
    reputation_min_sample: Annotated[int, Field(ge=0)] = Field(
        default=200, description="Requests in the window before a pool can leave tier 1."
    )
    reputation_throughput_min_requests: Annotated[int, Field(ge=0)] = Field(
        default=100, description="Completed requests (in busy hours) before throughput is scored."
    )
    reputation_throughput_reference_fraction: Annotated[Decimal, Field(gt=0, le=1)] = Field(
        default=Decimal("0.5"), description="A device meets its benchmark at this fraction of it."
    )
    reputation_benchmarks_configmap: str | None = Field(
        default=None, description="namespace/name of a ConfigMap (key benchmarks.yaml) overriding the table."
    )
    penalty_ladder: str = Field(
        default="1h,4h,16h,3d,7d", description="Timeouts per level (s/m/h/d); past the end: permanent."
    )
    penalty_forgive_days: Annotated[int, Field(ge=1)] = Field(
        default=7, description="Clean days after a penalty that forgive one level."
    )
    penalty_integrity_reasons: str = Field(
        default="VRAMMismatch,PCIIdMismatch,GFDLabelMismatch",
        description="Validation reasons that are integrity offenses (comma-separated).",
    )
    penalty_integrity_suspends_at: Annotated[int, Field(ge=1)] = Field(
        default=2, description="The n-th integrity offense suspends permanently."
    )
    penalty_low_completion_pct: Annotated[Decimal, Field(ge=0, le=100)] = Field(
        default=Decimal("90"), description="An hour below this completion % is an offense."
    )
    penalty_low_completion_min_requests: Annotated[int, Field(ge=0)] = Field(
        default=50, description="Requests an hour needs before it can be an offense."
    )
    penalty_cap_pct: Annotated[Decimal, Field(ge=0, le=100)] = Field(
        default=Decimal("20"), description="Most % of the fleet's devices automatic penalties take out."
    )
    routing_policy_name: str = Field(
        default="default", description="The cluster-scoped RoutingPolicy whose status.k is used."
    )
    routing_device_capacity: Annotated[int, Field(ge=1)] = Field(
        default=8, description="Concurrent requests assumed per routed device for utilisation."
    )

    # --- epochs, rewards, points (#19; docs/economics.md) ----------------------------------
    epochs_enabled: bool = Field(
        default=True, description="Run the epoch controller (counts work, closes epochs, keeps points)."
    )
    epoch_genesis: Annotated[int, Field(ge=0)] = Field(
        default=1_749_772_800, description="Unix second epoch 1 starts (default 2025-06-13T00:00:00Z)."
    )
    epoch_length_seconds: Annotated[int, Field(ge=1)] = Field(
        default=86_400, description="Epoch length; 86400 closes every epoch at 00:00 UTC."
    )
    epoch_scrape_seconds: Annotated[float, Field(gt=0)] = Field(
        default=15.0, description="Seconds between two reads of the router counters (and state saves)."
    )
    epoch_close_grace_seconds: Annotated[int, Field(ge=0)] = Field(
        default=30, description="Wait this long after an epoch's end for the scrape that covers it."
    )
    epoch_router_urls: str | None = Field(
        default=None,
        description="Comma-separated router base URLs (GET {url}/v1/stats); unset: reputation_router_urls.",
    )
    epoch_state_configmap: str = Field(
        default="gpufleet-epoch-state", description="ConfigMap (in operator_namespace) holding the counts."
    )
    points_model_params: str = Field(
        default="", description="model=millions of parameters, comma-separated, overriding the name's size."
    )

    @field_validator("reputation_router_urls", "reputation_prometheus_url", "reputation_benchmarks_configmap",
                     mode="before")
    @classmethod
    def _reputation_empty_is_none(cls, value: object) -> object:
        """An empty env var means unset (as for the other optional settings)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def namespaces(self) -> list[str]:
        """``namespace`` may list several, comma-separated; empty means cluster-wide."""
        return [n.strip() for n in (self.namespace or "").split(",") if n.strip()]

    @field_validator("namespace", "default_engine_image", "peering_name", "liveness_endpoint",
                     "service_account_name", "operator_namespace", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty env var means "unset", which is what a Helm chart writes for absent values."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("default_engine_image")
    @classmethod
    def _image_is_pinned(cls, value: str | None) -> str | None:
        if value is not None and "@sha256:" not in value:
            raise ValueError(
                f"default_engine_image {value!r} must be pinned by digest (repo@sha256:<64 hex>)"
            )
        return value

    @property
    def finalizer(self) -> str:
        return f"{GROUP_PREFIX}/finalizer"

    @property
    def annotation_prefix(self) -> str:
        return GROUP_PREFIX

    @property
    def min_self_stake_ratio(self) -> Decimal:
        return Decimal(self.min_self_stake_bps) / Decimal(10000)
