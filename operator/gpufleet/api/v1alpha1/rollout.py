"""The per-node rollout record kept in ``InferenceNode.status.rollout`` (typed in the CRD).

Everything the rollout state machine needs to continue lives here, so an operator that restarts
at any point picks the rollout up from the object itself (no in-memory state is authoritative).
Written only by the rollout step of the InferenceNode pass (``gpufleet.controllers.rollout``);
``gpufleet.rollout.state`` is the planner's view of the same models.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from gpufleet.api.common import ApiModel


class Phase(StrEnum):
    IDLE = "Idle"
    PRE_CHECK = "PreCheck"
    PROGRESSING = "Progressing"
    POST_CHECK = "PostCheck"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"


class FailureReason(StrEnum):
    """Why a rollout was rolled back; stable, machine-readable (condition reason, metric label)."""

    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    CRASH_LOOP = "CrashLoop"
    READINESS_REGRESSION = "ReadinessRegression"
    RELEASE_HALTED = "ReleaseHalted"


class FailureRecord(ApiModel):
    """The last failed rollout of this node: keeps it from retrying the same release until resumed."""

    release: str | None = Field(default=None, description="EngineRelease name of the failed rollout.")
    version: str = Field(description="Version that failed on this node.")
    reason: FailureReason = Field(description="Why the node rolled back.")
    message: str = Field(default="", description="Human-readable detail (which device, which pod).")
    resume_count: int = Field(
        default=0, description="The release's spec.resumeCount when it failed; a resume lets the node retry."
    )
    at: str | None = Field(default=None, description="When the failure was detected (RFC 3339).")


class RolloutStatus(ApiModel):
    """Progress of the engine rollout on one InferenceNode."""

    phase: Phase = Field(default=Phase.IDLE, description="Rollout state machine phase.")
    release: str | None = Field(default=None, description="EngineRelease being rolled out.")
    from_version: str | None = Field(default=None, description="Version the rollout started from.")
    from_image: str | None = Field(default=None, description="Image (by digest) the rollout started from.")
    target_version: str | None = Field(default=None, description="Version being rolled out.")
    target_image: str | None = Field(default=None, description="Image (by digest) being rolled out.")
    current_image: str | None = Field(default=None, description="Image of status.currentVersion.")
    stable_image: str | None = Field(default=None, description="Image of status.lastStableVersion.")
    batch: int = Field(default=0, ge=0, description="Current batch number (1-based; 0 before the first).")
    batch_devices: list[int] = Field(
        default_factory=list, description="Device indices being replaced in the current batch."
    )
    updated_devices: list[int] = Field(
        default_factory=list, description="Device indices already running the target version."
    )
    batch_started_at: str | None = Field(default=None, description="When the current batch started.")
    started_at: str | None = Field(default=None, description="When the rollout started.")
    finished_at: str | None = Field(default=None, description="When the rollout finished.")
    reason: str | None = Field(default=None, description="CamelCase reason for the current phase.")
    message: str | None = Field(default=None, description="Human-readable detail for the current phase.")
    failure: FailureRecord | None = Field(default=None, description="The last failed rollout of this node.")

    def to_status(self) -> dict[str, object]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def from_status(cls, raw: object) -> RolloutStatus:
        """Parse ``status.rollout`` as read back from the API server (JSON types, lenient)."""
        if not raw:
            return cls()
        return cls.model_validate(raw, strict=False)
