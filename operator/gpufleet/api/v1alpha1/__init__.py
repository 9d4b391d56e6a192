"""gpufleet.io/v1alpha1: the InferenceNode, OperatorPool and EngineRelease kinds."""

from gpufleet.api.common import API_VERSION, GROUP, VERSION, Condition, LocalObjectReference, ObjectMeta
from gpufleet.api.v1alpha1.enginerelease import (
    EngineRelease,
    EngineReleaseSpec,
    EngineReleaseStatus,
    EngineVersions,
)
from gpufleet.api.v1alpha1.epoch import Epoch, EpochPool, EpochSpec, epoch_object_name
from gpufleet.api.v1alpha1.inferencenode import (
    DeviceStatus,
    DeviceValidation,
    InferenceNode,
    InferenceNodeSpec,
    InferenceNodeStatus,
    ModelSpec,
    ReleaseSelector,
    ResourceOverrides,
    UpdatePolicy,
)
from gpufleet.api.v1alpha1.operatorpool import (
    MIN_SELF_STAKE_RATIO,
    OperatorPool,
    OperatorPoolSpec,
    OperatorPoolStatus,
    PoolUpdatePolicy,
)
from gpufleet.api.v1alpha1.penalty import Penalty, PenaltySpec, PenaltyStatus
from gpufleet.api.v1alpha1.pointsaward import PointsAward, PointsAwardSpec
from gpufleet.api.v1alpha1.routingpolicy import RoutingPolicy, RoutingPolicySpec, RoutingPolicyStatus

#: Every kind of this version, in the order CRDs are generated and documented.
KINDS = (InferenceNode, OperatorPool, EngineRelease, Epoch, PointsAward, Penalty, RoutingPolicy)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "MIN_SELF_STAKE_RATIO",
    "VERSION",
    "Condition",
    "DeviceStatus",
    "DeviceValidation",
    "EngineRelease",
    "EngineReleaseSpec",
    "EngineReleaseStatus",
    "EngineVersions",
    "Epoch",
    "EpochPool",
    "EpochSpec",
    "InferenceNode",
    "InferenceNodeSpec",
    "InferenceNodeStatus",
    "LocalObjectReference",
    "ModelSpec",
    "ObjectMeta",
    "OperatorPool",
    "OperatorPoolSpec",
    "OperatorPoolStatus",
    "Penalty",
    "PenaltySpec",
    "PenaltyStatus",
    "PointsAward",
    "PointsAwardSpec",
    "PoolUpdatePolicy",
    "ReleaseSelector",
    "ResourceOverrides",
    "RoutingPolicy",
    "RoutingPolicySpec",
    "RoutingPolicyStatus",
    "UpdatePolicy",
    "epoch_object_name",
]
