"""Small, typed, immutable views of the raw Kubernetes bodies the operator reads.

The reconciler works on thousands of bodies per second; reading the few fields it needs into
frozen dataclasses (instead of re-validating whole objects) keeps it fast, and makes the pure
planning functions easy to feed from tests. Admission-time validation is the CRDs' job; these
views only reject what would make planning meaningless, with a message naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from gpufleet.api.quantity import parse_int_amount

Body = Mapping[str, Any]

LABEL_POOL = "gpufleet.io/pool"
LABEL_INODE = "gpufleet.io/inference-node"
LABEL_DEVICE = "gpufleet.io/device-index"
LABEL_ROUTABLE = "gpufleet.io/routable"
LABEL_VERSION = "gpufleet.io/engine-version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "gpufleet"
READY_GATE = "gpufleet.io/engine-ready"

GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_MEMORY = "nvidia.com/gpu.memory"
GFD_COUNT = "nvidia.com/gpu.count"
GFD_MAJOR = "nvidia.com/gpu.compute.major"
GFD_MINOR = "nvidia.com/gpu.compute.minor"


class InvalidObject(ValueError):
    """A body lacks a field the operator cannot do without."""


def _meta(body: Body) -> Mapping[str, Any]:
    meta = body.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidObject("object has no metadata")
    return meta


def _dig(body: Body, *path: str) -> Any:
    cur: Any = body
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


@dataclass(frozen=True)
class ModelRef:
    name: str
    max_model_len: int | None = None
    quantization: str | None = None


@dataclass(frozen=True)
class InodeView:
    """An ``InferenceNode``: what the planner needs from its spec and status."""

    namespace: str
    name: str
    uid: str
    generation: int
    pool: str
    node_name: str
    gpu_count: int | None
    engine: str
    models: tuple[ModelRef, ...]
    release_channel: str | None
    release_version: str | None
    requests: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @classmethod
    def from_body(cls, body: Body) -> InodeView:
        meta = _meta(body)
        spec = body.get("spec") or {}
        name = str(meta.get("name") or "")
        where = f"InferenceNode {meta.get('namespace')}/{name}"
        pool = _dig(spec, "poolRef", "name")
        if not pool:
            raise InvalidObject(f"{where}: spec.poolRef.name is required")
        node_name = spec.get("nodeName")
        if not node_name:
            raise InvalidObject(f"{where}: spec.nodeName is required")
        gpu_count = spec.get("gpuCount")
        if gpu_count is not None and (not isinstance(gpu_count, int) or gpu_count < 0):
            raise InvalidObject(f"{where}: spec.gpuCount must be a non-negative integer, got {gpu_count!r}")
        models = tuple(
            ModelRef(
                name=str(m["name"]),
                max_model_len=m.get("maxModelLen"),
                quantization=m.get("quantization"),
            )
            for m in spec.get("models") or ()
            if isinstance(m, Mapping) and m.get("name")
        )
        if not models:
            raise InvalidObject(f"{where}: spec.models needs at least one model with a name")
        release = spec.get("release") or {}
        resources = spec.get("resources") or {}
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=name,
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            pool=str(pool),
            node_name=str(node_name),
            gpu_count=gpu_count,
            engine=str(spec.get("engine") or "auto"),
            models=models,
            release_channel=release.get("channel"),
            release_version=release.get("version"),
            requests=dict(resources.get("requests") or {}),
            limits=dict(resources.get("limits") or {}),
            status=dict(body.get("status") or {}),
            deleting=bool(meta.get("deletionTimestamp")),
        )


def _decimal(text: Any, default: Decimal, where: str) -> Decimal:
    if text is None or text == "":
        return default
    try:
        return Decimal(str(text))
    except InvalidOperation as exc:
        raise InvalidObject(f"{where}: {text!r} is not a decimal number") from exc


@dataclass(frozen=True)
class PoolView:
    """An ``OperatorPool``: stakes in base units (1 INT = 10**9)."""

    namespace: str
    name: str
    uid: str
    generation: int
    self_stake: int
    delegated_stake: int
    reputation_weight: Decimal | None
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def total_stake(self) -> int:
        return self.self_stake + self.delegated_stake

    @classmethod
    def from_body(cls, body: Body) -> PoolView:
        meta = _meta(body)
        spec = body.get("spec") or {}
        where = f"OperatorPool {meta.get('namespace')}/{meta.get('name')}"
        try:
            # A ledger-sourced pool (spec.stakeSource, #19) has the stake the epoch controller
            # read from its ledger in status.ledgerStake; none until it has been read.
            source = (body.get("status") or {}).get("ledgerStake") or {} if spec.get("stakeSource") else spec
            self_stake = parse_int_amount(str(source.get("selfStake", "0")))
            delegated = parse_int_amount(str(source.get("delegatedStake", "0")))
        except ValueError as exc:
            raise InvalidObject(f"{where}: {exc}") from exc
        rep_raw = spec.get("reputationWeight")
        rep = None if rep_raw is None else _decimal(rep_raw, Decimal(1), f"{where}: spec.reputationWeight")
        if rep is not None and not Decimal(0) <= rep <= Decimal(1):
            raise InvalidObject(f"{where}: spec.reputationWeight {rep} is outside [0, 1]")
        if rep is None:
            # #17: without the spec override, the weight the reputation controller measured.
            measured = ((body.get("status") or {}).get("reputation") or {}).get("effectiveWeight")
            if measured is not None:
                with suppress(InvalidObject):
                    value = _decimal(measured, Decimal(1), f"{where}: status.reputation.effectiveWeight")
                    rep = value if Decimal(0) <= value <= Decimal(1) else None
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            self_stake=self_stake,
            delegated_stake=delegated,
            reputation_weight=rep,
            status=dict(body.get("status") or {}),
        )


@dataclass(frozen=True)
class NodeView:
    """A Kubernetes ``Node``: only its GPU Feature Discovery labels and GPU capacity."""

    name: str
    labels: Mapping[str, str]
    allocatable_gpus: int | None
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Body, gpu_resource: str = "nvidia.com/gpu") -> NodeView:
        meta = _meta(body)
        raw = _dig(body, "status", "allocatable", gpu_resource)
        if raw is None:
            raw = _dig(body, "status", "capacity", gpu_resource)
        try:
            allocatable = None if raw is None else int(str(raw))
        except ValueError:
            allocatable = None
        labels = meta.get("labels") or {}
        return cls(
            name=str(meta.get("name") or ""),
            labels={k: str(v) for k, v in labels.items() if k.startswith("nvidia.com/")},
            allocatable_gpus=allocatable,
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class PodView:
    """A pod the operator manages, reduced to what planning and readiness need."""

    namespace: str
    name: str
    uid: str
    inode: str
    device_index: int | None
    node_name: str | None
    image: str | None
    version: str | None
    routable: str | None
    phase: str
    deleting: bool
    container_ready: bool
    gate_status: str | None
    ready: bool
    conditions: tuple[Mapping[str, Any], ...] = ()
    owner_uid: str | None = None
    resource_version: str = ""
    restarts: int = 0  # summed over containers
    max_restarts: int = 0  # of the container that restarted most (crash-loop detection)
    waiting_reason: str | None = None  # e.g. CrashLoopBackOff, ImagePullBackOff
    #: ``status.reason``/``message`` of the pod, e.g. ``OutOfnvidia.com/gpu`` when the kubelet
    #: rejected it at admission.
    reason: str | None = None
    message: str | None = None

    @classmethod
    def from_body(cls, body: Body) -> PodView:
        meta = _meta(body)
        labels = meta.get("labels") or {}
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        raw_index = labels.get(LABEL_DEVICE)
        try:
            index = None if raw_index is None else int(raw_index)
        except ValueError:
            index = None
        containers = spec.get("containers") or [{}]
        statuses = status.get("containerStatuses") or []
        conds = tuple(status.get("conditions") or ())
        gate = next((c.get("status") for c in conds if c.get("type") == READY_GATE), None)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        owner = next(
            (o.get("uid") for o in meta.get("ownerReferences") or () if o.get("controller")), None
        )
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            inode=str(labels.get(LABEL_INODE) or ""),
            device_index=index,
            node_name=spec.get("nodeName"),
            image=containers[0].get("image"),
            version=labels.get(LABEL_VERSION),
            routable=labels.get(LABEL_ROUTABLE),
            phase=str(status.get("phase") or "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            container_ready=bool(statuses) and all(bool(s.get("ready")) for s in statuses),
            gate_status=gate,
            ready=ready,
            conditions=conds,
            owner_uid=owner,
            resource_version=str(meta.get("resourceVersion") or ""),
            restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
            max_restarts=max((int(s.get("restartCount") or 0) for s in statuses), default=0),
            reason=status.get("reason"),
            message=(str(status["message"])[:512] if status.get("message") else None),
            waiting_reason=next(
                ((s.get("state") or {}).get("waiting", {}).get("reason") for s in statuses
                 if (s.get("state") or {}).get("waiting")), None),
        )

    @property
    def running(self) -> bool:
        return self.phase == "Running" and not self.deleting

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")
