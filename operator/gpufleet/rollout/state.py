"""The rollout planner's vocabulary: the record models (defined once, in the API) and phase sets."""

from __future__ import annotations

from gpufleet.api.v1alpha1.rollout import FailureReason, FailureRecord, Phase, RolloutStatus

__all__ = [
    "ACTIVE_PHASES",
    "BUDGET_REASONS",
    "REPLACING_PHASES",
    "FailureReason",
    "FailureRecord",
    "Phase",
    "RolloutStatus",
]

#: Phases in which the node's pods are being changed; the node is "in a rollout".
ACTIVE_PHASES = frozenset({Phase.PRE_CHECK, Phase.PROGRESSING, Phase.POST_CHECK, Phase.ROLLING_BACK})
#: Phases in which devices of the current batch may be reserved (about to go unavailable).
REPLACING_PHASES = frozenset({Phase.PROGRESSING, Phase.ROLLING_BACK})


#: Failures that count against a release's failure budget (a halt is a consequence, not a cause).
BUDGET_REASONS = frozenset(
    {FailureReason.PROGRESS_DEADLINE_EXCEEDED, FailureReason.CRASH_LOOP, FailureReason.READINESS_REGRESSION}
)
