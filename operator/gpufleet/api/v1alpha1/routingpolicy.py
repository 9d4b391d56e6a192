"""RoutingPolicy: the k controller's settings and its live k (cluster-scoped, one per fleet).

The operator uses the RoutingPolicy named ``default`` (``GPUFLEET_ROUTING_POLICY_NAME``). Its
status carries the k the router applies and the operator's priorities use, the utilisation it was
computed from and why it last changed (``gpufleet.reputation.kcontrol``).
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from gpufleet.api.common import (
    ApiModel,
    Condition,
    CRDInfo,
    PrinterColumn,
    Resource,
    Timestamp,
    cel,
    conditions_field,
)
from gpufleet.api.quantity import UnitRatio, parse_unit_ratio

#: A non-negative decimal with at most 9 decimals (k is per INT: 0.0001 by default).
K_PATTERN = r"^(0|[1-9][0-9]{0,5})(\.[0-9]{1,9})?$"
#: Utilisation can exceed 1 (requests queue beyond the concurrency caps).
UTILISATION_PATTERN = r"^(0|[1-9][0-9]{0,3})(\.[0-9]{1,9})?$"


def _check_k(value: str) -> str:
    if not re.fullmatch(K_PATTERN, value):
        raise ValueError(f"must be a decimal like 0.0001 (at most 9 decimals), got {value!r}")
    return value


KValue = Annotated[
    str, AfterValidator(_check_k), Field(max_length=16, json_schema_extra={"pattern": K_PATTERN})
]
KReasonName = Literal[
    "UtilisationBelowTarget",
    "UtilisationAboveTarget",
    "WithinDeadband",
    "AtMaximum",
    "AtMinimum",
    "NoCapacity",
    "Initial",
]


def as_fraction(value: str) -> Fraction:
    """A KValue / UnitRatio string as an exact fraction."""
    return Fraction(Decimal(value))


class RoutingPolicySpec(ApiModel):
    """The k controller's bounds, target and gains."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                # Guarded with has(): kube-apiserver also checks the rules against the schema's
                # default (`spec: {}`), in which the defaulted fields are still absent.
                cel(
                    "!has(self.kMin) || !has(self.kMax) || double(self.kMin) <= double(self.kMax)",
                    "kMin must not exceed kMax",
                    field_path=".kMin",
                ),
                cel(
                    "!has(self.deadband) || !has(self.targetUtilisation) || "
                    "(double(self.deadband) < double(self.targetUtilisation) && "
                    "double(self.targetUtilisation) + double(self.deadband) < 1.0)",
                    "need deadband < targetUtilisation and targetUtilisation + deadband < 1",
                    field_path=".deadband",
                ),
            ]
        }
    )

    k_min: KValue = Field(default="0", description="Lowest k (per INT); 0 = round-robin at full load.")
    k_max: KValue = Field(
        default="0.001", description="Highest k (per INT), reached when the network is idle."
    )
    initial_k: KValue | None = Field(
        default=None, description="k before the first measurement; absent uses GPUFLEET_PRIORITY_K (clamped)."
    )
    target_utilisation: UnitRatio = Field(
        default="0.7", description="Utilisation (in-flight over capacity) k steers around."
    )
    deadband: UnitRatio = Field(
        default="0.05", description="No change while the smoothed utilisation is within target +/- this."
    )
    rise_gain: UnitRatio = Field(
        default="0.05", description="Most of (kMax - kMin) k may rise per interval, when fully idle."
    )
    fall_gain: UnitRatio = Field(
        default="0.25", description="Most of (kMax - kMin) k may fall per interval, when fully busy."
    )
    smoothing: UnitRatio = Field(
        default="0.3", description="EMA weight of the newest utilisation sample, in (0, 1]."
    )
    interval_seconds: int = Field(default=30, ge=1, le=3600, description="Seconds between two k updates.")

    def fractions(self) -> dict[str, Fraction]:
        """Every numeric field as an exact fraction."""
        return {
            "k_min": as_fraction(self.k_min),
            "k_max": as_fraction(self.k_max),
            "target": parse_unit_ratio(self.target_utilisation),
            "deadband": parse_unit_ratio(self.deadband),
            "rise_gain": parse_unit_ratio(self.rise_gain),
            "fall_gain": parse_unit_ratio(self.fall_gain),
            "smoothing": parse_unit_ratio(self.smoothing),
        }


class RoutingPolicyStatus(ApiModel):
    """The live k and why it has its value."""

    observed_generation: int | None = Field(default=None, ge=0, description="The generation this describes.")
    k: KValue | None = Field(
        default=None, description="The k in effect (per INT): the router applies it live."
    )
    measured_utilisation: str | None = Field(
        default=None,
        max_length=16,
        pattern=UTILISATION_PATTERN,
        description="The last utilisation sample: in-flight requests over summed concurrency caps.",
    )
    smoothed_utilisation: str | None = Field(
        default=None, max_length=16, pattern=UTILISATION_PATTERN, description="EMA of the samples."
    )
    in_flight: int | None = Field(default=None, ge=0, description="In-flight requests at the last sample.")
    capacity: int | None = Field(
        default=None, ge=0, description="Summed concurrency caps at the last sample."
    )
    last_change: Timestamp | None = Field(default=None, description="When k last changed.")
    last_update: Timestamp | None = Field(default=None, description="When the controller last ran.")
    reason: KReasonName | None = Field(default=None, description="Why k has this value.")
    message: str | None = Field(default=None, max_length=4096, description="The numbers behind the reason.")
    conditions: list[Condition] = conditions_field("Ready: True while utilisation is measured")


class RoutingPolicy(Resource):
    """The fleet's k controller (cluster-scoped)."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="RoutingPolicy",
        plural="routingpolicies",
        singular="routingpolicy",
        scope="Cluster",
        short_names=("rpol",),
        printer_columns=(
            PrinterColumn("K", ".status.k", description="k in effect (per INT)"),
            PrinterColumn("Utilisation", ".status.smoothedUtilisation", description="Smoothed utilisation"),
            PrinterColumn("Target", ".spec.targetUtilisation", description="Target utilisation"),
            PrinterColumn("Reason", ".status.reason", description="Why k has this value"),
            PrinterColumn("Last Change", ".status.lastChange", "date", "When k last changed"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="RoutingPolicy holds the k controller's bounds, target and gains; its status is the "
        "live k the router applies and the priorities use.",
    )

    kind: Literal["RoutingPolicy"] = Field(default="RoutingPolicy", description="RoutingPolicy.")
    spec: RoutingPolicySpec = Field(
        default_factory=RoutingPolicySpec,
        description="Controller settings.",
        json_schema_extra={"default": {}},
    )
    status: RoutingPolicyStatus | None = Field(default=None, description="Observed state.")
