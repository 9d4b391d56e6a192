"""``OperatorPool.status.reputation``: the measured reputation weight and every part of it.

Written by the reputation controller (at most once per pool per minute); see docs/reputation.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpufleet.api.common import ApiModel, Timestamp
from gpufleet.api.quantity import UnitRatio

#: Condition type on the OperatorPool: True while spec.reputationWeight overrides the measured weight.
REPUTATION_OVERRIDE_CONDITION = "ReputationOverride"
#: Condition type on the OperatorPool: True while a Penalty keeps the pool out of routing.
PENALISED_CONDITION = "Penalised"

CompletionReasonName = Literal["Measured", "BelowMinimumSample", "NoData"]
ThroughputNoteName = Literal["Measured", "NoBenchmark", "InsufficientLoad"]
#: Decimal tokens/s with at most 3 decimals.
TPS_PATTERN = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,3})?$"


class DeviceReputation(ApiModel):
    """One device's throughput score and resulting weight."""

    inference_node: str = Field(max_length=253, description="InferenceNode of the device.")
    device: int = Field(ge=0, le=63, description="Device index on that node.")
    model: str | None = Field(default=None, max_length=256, description="Model the benchmark is for.")
    gpu: str | None = Field(default=None, max_length=64, description="GPU catalog key the benchmark is for.")
    throughput_score: UnitRatio = Field(description="min(1, observed / reference), or 1 with a note.")
    note: ThroughputNoteName = Field(description="Measured, NoBenchmark or InsufficientLoad.")
    observed_tokens_per_second: str | None = Field(
        default=None, max_length=16, pattern=TPS_PATTERN, description="Decode tokens/s per stream, observed."
    )
    benchmark_tokens_per_second: str | None = Field(
        default=None, max_length=16, pattern=TPS_PATTERN, description="The benchmark it was compared with."
    )
    weight: UnitRatio = Field(description="Completion multiplier x throughput score.")


class ReputationStatus(ApiModel):
    """The pool's reputation and its parts."""

    weight: UnitRatio = Field(
        description="Measured weight: completion multiplier x mean device throughput score."
    )
    effective_weight: UnitRatio = Field(
        description="What priorities and routing use: spec.reputationWeight when set, else weight."
    )
    override: bool = Field(
        default=False, description="True when spec.reputationWeight overrides the measurement."
    )
    window_hours: int = Field(ge=1, description="Length of the rolling window in hours.")
    window_start: Timestamp | None = Field(
        default=None, description="Start of the oldest hour in the window."
    )
    completed: int = Field(ge=0, description="Requests completed in the window.")
    failed: int = Field(
        ge=0, description="Failures attributable to the operator (5xx, refused, reset, timeout)."
    )
    excused: int = Field(
        default=0, ge=0, description="Failures under a release later rolled back or halted (not counted)."
    )
    not_attributable: int = Field(
        default=0, ge=0, description="Client cancels and router refusals (not counted)."
    )
    sample: int = Field(ge=0, description="completed + failed: what the rate is computed over.")
    completion_rate: UnitRatio | None = Field(
        default=None, description="completed / sample; absent without data."
    )
    tier: int = Field(ge=1, description="Completion tier (1 is best).")
    multiplier: UnitRatio = Field(description="Completion multiplier of the tier.")
    completion_reason: CompletionReasonName = Field(
        description="Measured, BelowMinimumSample (tier 1 until the minimum sample) or NoData."
    )
    devices: list[DeviceReputation] = Field(
        default_factory=list,
        max_length=4096,
        description="Per-device throughput scores and weights.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["inferenceNode", "device"],
        },
    )
    penalty: str | None = Field(
        default=None, max_length=253, description="Name of the enforced Penalty, if any."
    )
    penalised_until: Timestamp | None = Field(default=None, description="End of the enforced Penalty.")
    updated_at: Timestamp | None = Field(default=None, description="When this was computed.")
