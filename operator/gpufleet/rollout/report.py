"""What a node's rollout looks like to people: conditions and metric values derived from status."""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.rollout.selection import Selection
from gpufleet.rollout.state import ACTIVE_PHASES, Phase, RolloutStatus

UPDATING = "Updating"
ROLLED_BACK = "RolledBack"
RELEASE_SKIPPED = "ReleaseSkipped"


@dataclass(frozen=True)
class ConditionSpec:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def rollout_conditions(rollout: RolloutStatus, selection: Selection | None) -> list[ConditionSpec]:
    """``Updating``, ``RolledBack`` and ``ReleaseSkipped`` for an InferenceNode.

    ``ReleaseSkipped`` is True while a newer release of the node's channel is not taken (driver or
    CUDA too old, engine missing, awaiting major-version approval, halted, failed here before).
    """
    out: list[ConditionSpec] = []
    if rollout.phase in ACTIVE_PHASES:
        target = rollout.from_version if rollout.phase == Phase.ROLLING_BACK else rollout.target_version
        out.append(
            ConditionSpec(
                UPDATING, "True", rollout.phase.value, rollout.message or f"{rollout.phase.value} to {target}"
            )
        )
    else:
        reason = selection.reason if selection is not None else "Idle"
        message = selection.message if selection is not None else ""
        out.append(ConditionSpec(UPDATING, "False", _camel(reason), message or rollout.message or ""))
    if rollout.phase == Phase.ROLLED_BACK and rollout.failure is not None:
        failure = rollout.failure
        out.append(
            ConditionSpec(
                ROLLED_BACK,
                "True",
                failure.reason.value,
                f"rolled back from {failure.version} to {rollout.from_version}: {failure.message}",
            )
        )
    else:
        out.append(
            ConditionSpec(
                ROLLED_BACK,
                "False",
                "NoRollback",
                "the last rollout did not roll back" if rollout.started_at else "no rollout yet",
            )
        )
    holds = selection.holds if selection is not None else ()
    if holds:
        first = holds[0]
        more = "; ".join(h.message for h in holds[1:4])
        out.append(
            ConditionSpec(
                RELEASE_SKIPPED,
                "True",
                first.reason.value,
                first.message + (f"; also {more}" if more else ""),
            )
        )
    else:
        out.append(ConditionSpec(RELEASE_SKIPPED, "False", "NoneSkipped", "no newer release is held back"))
    return out


def _camel(text: str) -> str:
    return text if text and text[0].isalpha() else "Unknown"


def progress(rollout: RolloutStatus, total_devices: int) -> int:
    """Devices already on the target version (for the progress metric)."""
    if rollout.phase in (Phase.PROGRESSING, Phase.POST_CHECK):
        return min(len(rollout.updated_devices), total_devices)
    return total_devices if rollout.phase == Phase.SUCCEEDED else 0
