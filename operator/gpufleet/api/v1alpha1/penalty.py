"""Penalty: one routing timeout of one OperatorPool (namespaced, in the pool's namespace).

The reputation controller creates Penalties for automatic offenses (integrity, low-completion
hours); a platform engineer creates a ``Manual`` one with a reason. While a Penalty is enforced
the pool's devices get no traffic and the pool is not eligible for rewards. Deleting it lifts it
(an Event on the pool records who lifted what). Expired Penalties are kept as the pool's history:
the ladder's level is computed from them (``gpufleet.reputation.ladder``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field

from gpufleet.api.common import (
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Condition,
    CRDInfo,
    PrinterColumn,
    Resource,
    Timestamp,
    cel,
    conditions_field,
)

OffenseName = Literal["Integrity", "LowCompletion", "Manual"]
EnforcementName = Literal["Enforced", "Capped", "Expired", "Pending"]
#: Highest level a Penalty can carry (the default ladder has 5 timed steps + permanent = 6).
MAX_LEVEL = 32
#: Label carrying the pool's name on every Penalty (so ``-l gpufleet.io/pool=x`` lists its history).
POOL_LABEL = "gpufleet.io/pool"
#: Label with a hash of what the offense was about, so one occurrence is penalised once.
OFFENSE_KEY_LABEL = "gpufleet.io/offense-key"


class PenaltySpec(ApiModel):
    """What the pool did and what it costs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.until) || !has(self.start) || self.until > self.start",
                    "until must be after start",
                    field_path=".until",
                ),
            ]
        }
    )

    pool: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the penalised OperatorPool (same namespace).",
    )
    offense: OffenseName = Field(
        description="Integrity (misrepresented hardware), LowCompletion (an hour below the completion "
        "floor) or Manual (set by a platform engineer).",
    )
    reason: str = Field(
        min_length=1, max_length=1024, description="Why, for humans: the device and check, the hour and rate."
    )
    subject: str | None = Field(
        default=None,
        max_length=253,
        description="What the offense was about (node/device for integrity, the hour for low completion).",
    )
    level: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LEVEL,
        description="Ladder level (1 = first offense). Absent on a Manual penalty: the controller "
        "takes the pool's next level and writes it to status.level.",
    )
    start: Timestamp | None = Field(default=None, description="When it begins; absent means at creation.")
    until: Timestamp | None = Field(
        default=None,
        description="When it ends. Absent with a level: the ladder's duration for that level; a level "
        "past the ladder's end is a permanent suspension.",
    )


class PenaltyStatus(ApiModel):
    """What the controller made of the Penalty."""

    observed_generation: int | None = Field(default=None, ge=0, description="The generation this describes.")
    level: int | None = Field(default=None, ge=1, le=MAX_LEVEL, description="Ladder level in effect.")
    start: Timestamp | None = Field(default=None, description="When the penalty began.")
    until: Timestamp | None = Field(default=None, description="When it ends; absent when permanent.")
    permanent: bool = Field(default=False, description="True for a permanent suspension.")
    enforcement: EnforcementName | None = Field(
        default=None,
        description="Enforced (the pool gets no traffic), Capped (recorded and alerted, but the safety "
        "cap keeps the pool routing), Pending (starts later) or Expired.",
    )
    message: str | None = Field(
        default=None, max_length=4096, description="How level and enforcement were decided."
    )
    conditions: list[Condition] = conditions_field("Active: True while the penalty is enforced")


class Penalty(Resource):
    """A routing timeout of an OperatorPool."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="Penalty",
        plural="penalties",
        singular="penalty",
        scope="Namespaced",
        short_names=("pen",),
        printer_columns=(
            PrinterColumn("Pool", ".spec.pool", description="Penalised OperatorPool"),
            PrinterColumn("Offense", ".spec.offense", description="Integrity, LowCompletion or Manual"),
            PrinterColumn("Level", ".status.level", "integer", "Ladder level"),
            PrinterColumn("Until", ".status.until", description="End of the timeout (empty: permanent)"),
            PrinterColumn(
                "Enforcement", ".status.enforcement", description="Enforced, Capped, Pending, Expired"
            ),
            PrinterColumn("Reason", ".spec.reason", description="Why"),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="Penalty is one routing timeout of an OperatorPool: while enforced its devices get "
        "no traffic and it earns no rewards. Delete it to lift it.",
    )

    kind: Literal["Penalty"] = Field(default="Penalty", description="Penalty.")
    spec: PenaltySpec = Field(description="The offense and its cost.")
    status: PenaltyStatus | None = Field(default=None, description="Observed state.")
