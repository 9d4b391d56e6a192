"""Condition types and reasons of gpufleet's objects, as enums (part of the API, like the CRDs).

Each condition type has exactly one writer in the operator (see docs/design/contracts.md):

* ``InferenceNode``: ``GPUValidated``, ``EngineSelected``, ``Ready`` (the device/pod part of the
  InferenceNode pass); ``Updating``, ``RolledBack``, ``ReleaseSkipped`` (its rollout step);
* ``OperatorPool``: ``MinimumSelfStake``, ``Ready`` (the pool pass);
* ``EngineRelease``: ``Halted`` (the failure-budget pass).

Reasons are stable, machine-readable CamelCase strings (dashboards and tests match them). The
rollout's own reasons are ``gpufleet.rollout.state.Phase``/``FailureReason`` and
``gpufleet.rollout.selection.HoldReason``; hardware verdicts are ``gpufleet.hardware.validation``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class InferenceNodeCondition(StrEnum):
    GPU_VALIDATED = "GPUValidated"
    ENGINE_SELECTED = "EngineSelected"
    READY = "Ready"
    UPDATING = "Updating"
    ROLLED_BACK = "RolledBack"
    RELEASE_SKIPPED = "ReleaseSkipped"


class OperatorPoolCondition(StrEnum):
    MINIMUM_SELF_STAKE = "MinimumSelfStake"
    READY = "Ready"


class EngineReleaseCondition(StrEnum):
    HALTED = "Halted"


class Reason(StrEnum):
    """Reasons of the InferenceNode and OperatorPool conditions the device/pod/pool passes write."""

    # GPUValidated (and a device's status.devices[].validation.reason while not confirmed yet)
    ALL_VALID = "AllValid"
    DEVICE_BLOCKED = "DeviceBlocked"
    AWAITING_HARDWARE_REPORT = "AwaitingHardwareReport"
    NO_GPUS = "NoGPUs"
    NODE_NOT_FOUND = "NodeNotFound"  # spec.nodeName names no Kubernetes node
    # EngineSelected
    RELEASE_SELECTED = "ReleaseSelected"
    NO_MATCHING_RELEASE = "NoMatchingRelease"
    # Ready (InferenceNode)
    ALL_ENGINES_READY = "AllEnginesReady"
    PARTIALLY_READY = "PartiallyReady"
    NO_ENGINE_READY = "NoEngineReady"
    POOL_NOT_FOUND = "PoolNotFound"
    POD_REJECTED = "PodRejected"  # the kubelet refused an engine pod (e.g. OutOfnvidia.com/gpu)
    INVALID_SPEC = "InvalidSpec"
    # OperatorPool
    NO_STAKE = "NoStake"
    BELOW_MINIMUM = "BelowMinimum"
    MINIMUM_MET = "MinimumMet"
    DEVICES_SERVING = "DevicesServing"
    NO_DEVICE_SERVING = "NoDeviceServing"


def device_blocked(validation: Mapping[str, Any] | None) -> bool:
    """Whether a ``status.devices[].validation`` is a verdict against the GPU (not a pending report).

    The one rule, used by the InferenceNode status, the rollout (blocked GPUs are never waited
    for), the metrics and the restart memory of blocked devices.
    """
    validation = validation or {}
    reason = validation.get("reason")
    return validation.get("valid") is False and bool(reason) and reason != Reason.AWAITING_HARDWARE_REPORT


def device_pending(validation: Mapping[str, Any] | None) -> bool:
    """The device waits for its agent's first report (or has no validation at all yet)."""
    validation = validation or {}
    return not validation or validation.get("reason") == Reason.AWAITING_HARDWARE_REPORT
