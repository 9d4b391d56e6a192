"""OperatorPool: an operator's staking pool, whose stake backs the GPUs of its InferenceNodes."""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from gpufleet.api.common import (
    ApiModel,
    Condition,
    CRDInfo,
    LocalObjectReference,
    PrinterColumn,
    Resource,
    Timestamp,
    cel,
    conditions_field,
    rule_error,
)
from gpufleet.api.quantity import IntAmount, UnitRatio, parse_int_amount, parse_unit_ratio
from gpufleet.api.v1alpha1.inferencenode import MaxUnavailable
from gpufleet.api.v1alpha1.pointsaward import POINTS_PATTERN, SIGNED_POINTS_PATTERN
from gpufleet.api.v1alpha1.reputation import ReputationStatus

#: The announcement's global minimum self-stake: 10% of the pool's total stake.
MIN_SELF_STAKE_RATIO = Fraction(1, 10)
#: Commission is stored in basis points: 10000 = 100%.
BPS_PER_UNIT = 10_000


class PoolUpdatePolicy(ApiModel):
    """Engine update limits that apply across all InferenceNodes of the pool."""

    max_unavailable: MaxUnavailable = Field(
        default="10%",
        description="Devices of the whole pool that engine updates may make unavailable at once: a "
        "count >= 1 or a percentage (1%-100%) of the pool's devices, rounded down but at least one.",
    )
    approved_major_version: int | None = Field(
        default=None,
        ge=0,
        description="Highest major engine version approved for every node of the pool (a node's own "
        "approvedMajorVersion also counts).",
    )


class LedgerStakeSource(ApiModel):
    """A pool's stake read from a staking ledger held in a ConfigMap (see docs/economics.md)."""

    config_map_ref: LocalObjectReference = Field(
        description="ConfigMap in the pool's namespace holding the ledger: data key scenario.yaml (a "
        "scenario the operator replays) or state.json (an exported ledger state).",
    )
    pool_id: str = Field(
        min_length=1, max_length=253, description="The pool's name in the ledger."
    )


class StakeSource(ApiModel):
    """Where the pool's stake comes from when it is not typed into the spec."""

    ledger: LedgerStakeSource = Field(
        description="Replay a staking ledger and take this pool's stake from it."
    )


class OperatorPoolSpec(ApiModel):
    """Configuration and stake of an operator pool, mirrored from the staking protocol."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.stakeSource) != has(self.selfStake)",
                    "set exactly one of selfStake and stakeSource",
                    field_path=".selfStake",
                ),
                cel(
                    "!has(self.stakeSource) || self.delegatedStake == '0'",
                    "delegatedStake comes from the ledger when stakeSource is set",
                    field_path=".delegatedStake",
                ),
            ]
        }
    )

    self_stake: IntAmount | None = Field(
        default=None,
        description="INT staked by the operator itself, as a decimal string with at most 9 decimals "
        "(e.g. \"100000\" or \"12.5\"); never a float. Exactly one of selfStake and stakeSource.",
    )
    stake_source: StakeSource | None = Field(
        default=None,
        description="Take self and delegated stake (and commission) from a staking ledger instead of "
        "selfStake/delegatedStake; the operator writes what it read to status.ledgerStake.",
    )
    delegated_stake: IntAmount = Field(
        default="0",
        description="INT delegated to the pool by token holders, as a decimal string with at most 9 "
        "decimals.",
    )
    commission_bps: int = Field(
        default=0,
        ge=0,
        le=BPS_PER_UNIT,
        description="Commission on epoch rewards kept by the operator, in basis points: 0 (0%) to "
        "10000 (100%).",
    )
    accepts_delegations: bool = Field(
        default=True, description="Whether the pool accepts new delegations from token holders."
    )
    reputation_weight: UnitRatio | None = Field(
        default=None,
        description="Optional override of the measured reputation weight (status.reputation): a "
        "multiplier between 0 and 1 as a decimal string. Absent: routing uses the measured weight; set: "
        "the ReputationOverride condition says so.",
    )
    update_policy: PoolUpdatePolicy = Field(
        default_factory=PoolUpdatePolicy,
        description="Pool-wide limits for engine updates.",
        json_schema_extra={"default": {}},
    )

    @model_validator(mode="after")
    def _one_stake_source(self) -> OperatorPoolSpec:
        if (self.stake_source is None) == (self.self_stake is None):
            raise rule_error("selfStake", "set exactly one of selfStake and stakeSource")
        if self.stake_source is not None and self.delegated_stake != "0":
            raise rule_error("delegatedStake", "delegatedStake comes from the ledger when stakeSource is set")
        return self

    @property
    def self_stake_base_units(self) -> int:
        """Self stake in integer base units (1 INT = 10**9); 0 for a ledger-sourced pool."""
        return 0 if self.self_stake is None else parse_int_amount(self.self_stake)

    @property
    def delegated_stake_base_units(self) -> int:
        """Delegated stake in integer base units."""
        return parse_int_amount(self.delegated_stake)

    @property
    def total_stake_base_units(self) -> int:
        """Self plus delegated stake in integer base units."""
        return self.self_stake_base_units + self.delegated_stake_base_units

    @property
    def commission(self) -> Fraction:
        """Commission as an exact fraction in [0, 1]."""
        return Fraction(self.commission_bps, BPS_PER_UNIT)

    @property
    def reputation(self) -> Fraction:
        """The override as an exact fraction in [0, 1]; 1 when no override is set."""
        return Fraction(1) if self.reputation_weight is None else parse_unit_ratio(self.reputation_weight)

    @property
    def self_stake_ratio(self) -> Fraction | None:
        """Self stake over total stake; None for a pool without stake."""
        total = self.total_stake_base_units
        return None if total == 0 else Fraction(self.self_stake_base_units, total)

    @property
    def meets_minimum_self_stake(self) -> bool:
        """The announcement's rule: self stake is at least 10% of the pool's total stake."""
        ratio = self.self_stake_ratio
        return ratio is None or ratio >= MIN_SELF_STAKE_RATIO


class PoolPoints(ApiModel):
    """Points of the pool, written by the epoch controller in near real time."""

    total: str = Field(max_length=26, pattern=POINTS_PATTERN, description="compute + bonus, never negative.")
    compute: str = Field(
        max_length=26,
        pattern=POINTS_PATTERN,
        description="1 point per 1,000 tokens per billion model parameters, over the tokens the pool served.",
    )
    bonus: str = Field(
        max_length=27, pattern=SIGNED_POINTS_PATTERN, description="Sum of the pool's applied PointsAwards."
    )
    tokens: int = Field(ge=0, description="Prompt plus completion tokens served since counting began.")
    updated_at: Timestamp | None = Field(default=None, description="When the totals were last computed.")


class LedgerStake(ApiModel):
    """What the operator read from the pool's ledger."""

    pool_id: str = Field(max_length=253, description="The pool's name in the ledger.")
    address: str | None = Field(
        default=None, max_length=44, description="The ledger pool's address (base58)."
    )
    self_stake: IntAmount = Field(description="What the operator's shares redeem for (INT).")
    delegated_stake: IntAmount = Field(description="The rest of the pool's staked tokens (INT).")
    unstaking: IntAmount = Field(default="0", description="Tokens in unstake cooldown: not counted as stake.")
    commission_bps: int = Field(
        default=0, ge=0, le=BPS_PER_UNIT, description="Current reward commission (bps)."
    )
    halted: bool = Field(default=False, description="The ledger pool is halted.")
    meets_minimum_self_stake: bool = Field(default=True, description="Self stake >= 10% of the total.")


class EpochReward(ApiModel):
    """The pool's result in one closed epoch."""

    epoch: int = Field(ge=1, description="Epoch number.")
    reward: IntAmount = Field(description="INT earned.")
    commission: IntAmount = Field(description="The operator's commission out of it.")
    completed_jobs: int = Field(ge=0, description="Jobs counted.")
    eligibility: UnitRatio = Field(description="Share of the epoch the pool was eligible.")


class OperatorPoolStatus(ApiModel):
    """Observed state of an OperatorPool, aggregated over its InferenceNodes by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )
    total_stake: IntAmount | None = Field(
        default=None,
        description="Self plus delegated stake, as an INT decimal string.",
    )
    validated_vram_mib: int | None = Field(
        default=None,
        ge=0,
        alias="validatedVRAMMiB",
        description="Total VRAM in MiB of the pool's validated GPUs; the denominator of vramShare.",
    )
    devices: int | None = Field(default=None, ge=0, description="Validated GPUs in the pool.")
    ready_devices: int | None = Field(default=None, ge=0, description="Validated GPUs whose engine is ready.")
    self_stake_ratio: UnitRatio | None = Field(
        default=None,
        description="Self stake over total stake as a decimal string in [0, 1].",
    )
    points: PoolPoints | None = Field(
        default=None,
        description="Off-chain $INT points: compute points from tokens served plus bonus awards.",
    )
    ledger_stake: LedgerStake | None = Field(
        default=None,
        description="Stake read from the ledger of spec.stakeSource (absent for hand-typed stake).",
    )
    last_epoch_reward: EpochReward | None = Field(
        default=None, description="The pool's line of the most recently closed Epoch."
    )
    reputation: ReputationStatus | None = Field(
        default=None, description="Measured reputation weight and its parts (docs/reputation.md)."
    )
    conditions: list[Condition] = conditions_field(
        "MinimumSelfStake is False when self stake is below 10% of the total; Ready"
    )


class OperatorPool(Resource):
    """An operator's staking pool: self stake, delegations and commission."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="OperatorPool",
        plural="operatorpools",
        singular="operatorpool",
        scope="Namespaced",
        short_names=("opool",),
        printer_columns=(
            PrinterColumn("Self Stake", ".spec.selfStake", description="INT staked by the operator"),
            PrinterColumn("Total Stake", ".status.totalStake", description="Self plus delegated INT"),
            PrinterColumn("Commission", ".spec.commissionBps", "integer", "Commission in basis points"),
            PrinterColumn("Devices", ".status.devices", "integer", "Validated GPUs"),
            PrinterColumn("VRAM MiB", ".status.validatedVRAMMiB", "integer", "Validated VRAM"),
            PrinterColumn("Self Ratio", ".status.selfStakeRatio", description="Self stake / total"),
            PrinterColumn(
                "Min Self Stake",
                '.status.conditions[?(@.type=="MinimumSelfStake")].status',
                description="Self stake >= 10% of total",
            ),
            PrinterColumn("Points", ".status.points.total", description="Off-chain $INT points", priority=1),
            PrinterColumn(
                "Reputation", ".status.reputation.effectiveWeight", description="Routing weight", priority=1
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="OperatorPool is an operator's staking pool: self stake, delegated stake and "
        "commission. Its stake is shared over its GPUs in proportion to their VRAM.",
    )

    kind: Literal["OperatorPool"] = Field(default="OperatorPool", description="OperatorPool.")
    spec: OperatorPoolSpec = Field(description="Desired state.")
    status: OperatorPoolStatus | None = Field(default=None, description="Observed state.")
