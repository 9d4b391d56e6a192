"""Automatic engine updates: release selection, the per-node rollout state machine, failure budgets.

Everything here is pure (no Kubernetes calls); ``gpufleet.controllers.rollout`` wires it to kopf.
"""

from gpufleet.rollout.plan import (
    CreatePod,
    DeletePod,
    NodeState,
    Plan,
    PodView,
    PoolCapacity,
    UpdatePolicy,
    device_image,
    plan_rollout,
)
from gpufleet.rollout.selection import Hold, HoldReason, NodeHardware, ReleaseView, Selection, select_release
from gpufleet.rollout.semver import InvalidVersion, Version
from gpufleet.rollout.state import FailureReason, FailureRecord, Phase, RolloutStatus

__all__ = [
    "CreatePod",
    "DeletePod",
    "FailureReason",
    "FailureRecord",
    "Hold",
    "HoldReason",
    "InvalidVersion",
    "NodeHardware",
    "NodeState",
    "Phase",
    "Plan",
    "PodView",
    "PoolCapacity",
    "ReleaseView",
    "RolloutStatus",
    "Selection",
    "UpdatePolicy",
    "Version",
    "device_image",
    "plan_rollout",
    "select_release",
]
