"""PointsAward: bonus $INT points granted by hand to a pool, for a non-compute contribution.

An award is a fact with a reason (a guide, community help); a negative award corrects an earlier
mistake. The spec is immutable (CEL), the points are never zero and always carry a reason; that a
pool's total never goes below zero needs the other awards, so the epoch controller checks it and
marks an award that would break it as rejected (condition ``Applied=False``, reason
``WouldMakeTotalNegative``) with a Warning Event. Deleting an award takes its points back.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field

from gpufleet.api.common import (
    ApiModel,
    Condition,
    CRDInfo,
    LocalObjectReference,
    PrinterColumn,
    Resource,
    cel,
    conditions_field,
)

#: Points as a decimal string with at most 6 decimals, optionally negative (a correction).
SIGNED_POINTS_PATTERN = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"
#: Unsigned points (totals in a status).
POINTS_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,6})?$"


def _not_zero(value: str) -> str:
    """The CEL rule on zero, repeated for the model."""
    if value.lstrip("-").replace(".", "").strip("0") == "":
        raise ValueError("points must not be zero")
    return value


class PointsAwardSpec(ApiModel):
    """Who gets how many points and why; immutable."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "a PointsAward cannot be changed; delete it and create another"),
            ]
        }
    )

    pool: LocalObjectReference = Field(description="The OperatorPool (in this namespace) the points go to.")
    points: Annotated[str, AfterValidator(_not_zero)] = Field(
        max_length=23,
        pattern=SIGNED_POINTS_PATTERN,
        description='Points as a decimal string with at most 6 decimals ("50", "2.5"); a leading \'-\' '
        "corrects an earlier award. Never zero; the pool's total may never go below zero.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!self.matches('^-?0(\\\\.0+)?$')", "points must not be zero"),
            ]
        },
    )
    reason: str = Field(
        min_length=3,
        max_length=1024,
        description="What the contribution was (shown in the Event and the pool's status).",
    )


class PointsAwardStatus(ApiModel):
    """Whether the award counts."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The generation this status describes."
    )
    applied: bool | None = Field(default=None, description="True when the points count in the pool's total.")
    pool_total_after: str | None = Field(
        default=None,
        max_length=26,
        pattern=POINTS_PATTERN,
        description="The pool's total once this award applied.",
    )
    conditions: list[Condition] = conditions_field("Applied")


class PointsAward(Resource):
    """Bonus points for a pool (pool, points, reason)."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="PointsAward",
        plural="pointsawards",
        singular="pointsaward",
        scope="Namespaced",
        short_names=("pa",),
        printer_columns=(
            PrinterColumn("Pool", ".spec.pool.name", description="OperatorPool"),
            PrinterColumn("Points", ".spec.points", description="Points granted (negative: a correction)"),
            PrinterColumn("Applied", ".status.applied", "boolean", "Counts in the pool's total"),
            PrinterColumn("Reason", ".spec.reason", description="Why"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="PointsAward grants bonus $INT points to an operator pool for a non-compute "
        "contribution (a guide, community help), with a reason. Audited by an Event.",
    )

    kind: Literal["PointsAward"] = Field(default="PointsAward", description="PointsAward.")
    spec: PointsAwardSpec = Field(description="The award (immutable).")
    status: PointsAwardStatus | None = Field(default=None, description="Observed state.")
