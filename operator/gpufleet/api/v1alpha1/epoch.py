"""Epoch: one closed reward epoch, written once by the epoch controller and never changed.

The record lives in ``spec`` (immutable by CEL) so that closing an epoch is a single create of an
object with a deterministic name (``epoch-00042``): a second close, after an operator restart at
midnight, finds it already there. ``gpufleet economics proof`` and ``verify`` rebuild the
program's merkle tree from ``spec.pools`` and compare it with ``spec.merkleRoots``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from gpufleet.api.common import (
    ApiModel,
    Condition,
    CRDInfo,
    PrinterColumn,
    Resource,
    Timestamp,
    cel,
    conditions_field,
    rule_error,
)
from gpufleet.api.quantity import IntAmount, UnitRatio

#: A pool reference ``namespace/name``.
POOL_REF_PATTERN = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
#: A Solana address in base58 (32 bytes: 32 to 44 characters).
BASE58_PATTERN = r"^[1-9A-HJ-NP-Za-km-z]{32,44}$"
MERKLE_ROOT_PATTERN = r"^[0-9a-f]{64}$"
#: An arbitrarily large non-negative integer as a decimal string (scores exceed int64).
BIG_INT_PATTERN = r"^(0|[1-9][0-9]{0,79})$"

MerkleRoot = Annotated[str, Field(max_length=64, pattern=MERKLE_ROOT_PATTERN)]
DistributionRule = Literal["JobsTimesStake", "JobsOnly", "StakeOnly", "NoEligiblePool"]
StakeSourceKind = Literal["spec", "ledger"]


def epoch_object_name(number: int) -> str:
    """The deterministic name of epoch ``number``'s object (sorts by number up to 99,999)."""
    return f"epoch-{number:05d}"


class EpochPool(ApiModel):
    """One pool's line in a closed epoch."""

    pool: str = Field(
        max_length=317, pattern=POOL_REF_PATTERN, description="The OperatorPool, namespace/name."
    )
    address: str = Field(
        max_length=44,
        pattern=BASE58_PATTERN,
        description="The pool's address in the reward tree (base58): the ledger pool's address for a "
        "ledger-sourced pool, else the program address derived from namespace/name.",
    )
    completed_jobs: int = Field(
        ge=0, description="Jobs the pool's devices completed in the epoch (router counters)."
    )
    tokens: int = Field(default=0, ge=0, description="Prompt plus completion tokens processed in the epoch.")
    stake: IntAmount = Field(description="Stake counted at close (INT; tokens in unstake cooldown excluded).")
    stake_source: StakeSourceKind = Field(
        default="spec", description="Where the stake came from: spec or ledger."
    )
    eligible_seconds: int = Field(
        ge=0, description="Seconds of the epoch the pool was eligible (not penalised, not halted)."
    )
    eligibility: UnitRatio = Field(description="eligibleSeconds over the epoch's length, in [0, 1].")
    halted: bool = Field(default=False, description="The pool was halted at close: no reward.")
    score: str = Field(
        max_length=80,
        pattern=BIG_INT_PATTERN,
        description="The completion score used: completedJobs x stake (base units) x eligibleSeconds "
        "under the JobsTimesStake rule (see the epoch's rule), as a decimal integer.",
    )
    reward: IntAmount = Field(description="INT this pool earns for the epoch (its reward-tree leaf).")
    commission: IntAmount = Field(description="The operator's commission out of reward (rounded down).")


class CountingReport(ApiModel):
    """How the epoch's counts were gathered."""

    carried_jobs: int = Field(
        default=0, ge=0, description="Jobs of earlier, already closed epochs counted here."
    )
    router_resets: int = Field(
        default=0, ge=0, description="Router counter resets seen while the epoch was open."
    )


class EpochSpec(ApiModel):
    """The closed epoch's record; immutable once written."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "an Epoch is a closed record and cannot be changed"),
                cel("self.start < self.end", "start must be before end", field_path=".end"),
            ]
        }
    )

    number: int = Field(ge=1, description="Epoch number (from 1).")
    start: Timestamp = Field(description="First second of the epoch (RFC 3339, UTC).")
    end: Timestamp = Field(description="First second after the epoch (RFC 3339, UTC).")
    length_seconds: int = Field(ge=1, description="end - start in seconds.")
    emission: IntAmount = Field(description="INT the schedule emits for this epoch.")
    distributed: IntAmount = Field(
        description="INT paid to pools (equals emission unless no pool was eligible)."
    )
    undistributed: IntAmount = Field(default="0", description="INT not paid because no pool was eligible.")
    rule: DistributionRule = Field(
        description="Which split was used (JobsTimesStake unless nobody qualified)."
    )
    pools_paid: int = Field(ge=0, description="Pools with a non-zero reward.")
    merkle_roots: list[MerkleRoot] = Field(
        default_factory=list,
        max_length=5,
        description="Roots of the reward record's merkle trees (hex), as the staking program stores them.",
    )
    max_leaves_per_tree: int | None = Field(
        default=None, ge=1, description="Leaves per tree when the record is split into several trees."
    )
    pools: list[EpochPool] = Field(
        default_factory=list,
        max_length=5000,
        description="One line per pool that existed at close.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["pool"]},
    )
    counting: CountingReport = Field(
        default_factory=CountingReport,
        description="How the counts were gathered.",
        json_schema_extra={"default": {}},
    )

    @model_validator(mode="after")
    def _start_before_end(self) -> EpochSpec:
        if not self.start < self.end:
            raise rule_error("end", "start must be before end")
        return self


class EpochStatus(ApiModel):
    """What the controller observed after writing the record."""

    conditions: list[Condition] = conditions_field("Closed")


class Epoch(Resource):
    """A closed reward epoch: emission, per-pool jobs, stake, eligibility, reward and the merkle root."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="Epoch",
        plural="epochs",
        singular="epoch",
        scope="Cluster",
        short_names=("ep",),
        printer_columns=(
            PrinterColumn("Number", ".spec.number", "integer", "Epoch number"),
            PrinterColumn("Start", ".spec.start", description="First second (UTC)"),
            PrinterColumn("End", ".spec.end", description="First second after (UTC)"),
            PrinterColumn("Emission", ".spec.emission", description="INT emitted"),
            PrinterColumn("Pools Paid", ".spec.poolsPaid", "integer", "Pools with a reward"),
            PrinterColumn("Merkle Root", ".spec.merkleRoots[0]", description="Reward record root"),
            PrinterColumn("Rule", ".spec.rule", description="Split used", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="Epoch is a closed reward epoch: the emission split over operator pools by "
        "stake-weighted job completion, and the reward record's merkle roots. Written once.",
    )

    kind: Literal["Epoch"] = Field(default="Epoch", description="Epoch.")
    spec: EpochSpec = Field(description="The closed epoch's record (immutable).")
    status: EpochStatus | None = Field(default=None, description="Observed state.")
