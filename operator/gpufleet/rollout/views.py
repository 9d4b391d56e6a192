"""Kubernetes JSON -> the rollout layer's inputs. Pure, so the controller stays thin.

Bad objects raise ``ValueError`` naming the object and the field; the controller reports them
instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from gpufleet.api.conditions import device_blocked
from gpufleet.objects import READY_GATE
from gpufleet.objects import PodView as CorePod
from gpufleet.rollout.plan import NodeState, PodView, UpdatePolicy, parse_time
from gpufleet.rollout.selection import CHANNELS, DEFAULT_CHANNEL, NodeHardware, ReleaseView
from gpufleet.rollout.semver import InvalidVersion, Version
from gpufleet.rollout.state import RolloutStatus

Body = Mapping[str, Any]


#: Container waiting reasons that mean the new version will not come up by itself.
STUCK_REASONS = frozenset(
    {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)
#: Restarts after which a container counts as crash-looping even between back-offs.
CRASH_RESTARTS = 3


def _meta(body: Body) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def pod_view(body: Body, *, first_seen_ready: datetime | None = None) -> PodView | None:
    """The planner's view of an engine pod body; ``None`` for a pod without a device-index label.

    Derived from the one typed view of a pod (``gpufleet.objects.PodView``, what the shared pod
    watch caches) by ``pod_view_of``.
    """
    view = CorePod.from_body(body)
    return None if view.device_index is None else pod_view_of(view, first_seen_ready=first_seen_ready)


def pod_view_of(pod: CorePod, *, first_seen_ready: datetime | None = None) -> PodView:
    """The rollout planner's view of one pod of the shared pod cache.

    Ready means the pod's Ready condition *and* the ``gpufleet.io/engine-ready`` gate are True;
    ``ready_since`` is the earlier of when this operator first saw it ready and the later
    transition time of the two plus one second (they have second precision): both are upper
    bounds of the real moment, so ``minReadySeconds`` is never shortened.
    """
    ready_cond = _condition(pod.conditions, "Ready")
    gate = _condition(pod.conditions, READY_GATE)
    ready = bool(ready_cond and ready_cond.get("status") == "True" and gate and gate.get("status") == "True")
    ready_since: datetime | None = None
    if ready:
        stamps = [parse_time(c.get("lastTransitionTime")) for c in (ready_cond, gate) if c]
        known = [s for s in stamps if s is not None]
        bounds = [b for b in (first_seen_ready, max(known) + timedelta(seconds=1) if known else None) if b]
        ready_since = min(bounds) if bounds else None
    crash = (
        pod.phase == "Failed"
        or pod.waiting_reason in STUCK_REASONS
        or pod.max_restarts >= CRASH_RESTARTS
    )
    return PodView(
        name=pod.name,
        device_index=pod.device_index if pod.device_index is not None else -1,
        image=pod.image,
        version=pod.version,
        ready=ready,
        ready_since=ready_since,
        crash_looping=crash,
        terminating=pod.deleting,
    )


def release_view(body: Body) -> ReleaseView:
    meta, spec, status = _meta(body), body.get("spec") or {}, body.get("status") or {}
    where = f"EngineRelease {meta.get('name')}"
    try:
        version = Version.parse(str(spec.get("version") or ""))
    except InvalidVersion as exc:
        raise ValueError(f"{where}: spec.version: {exc}") from exc
    channel = str(spec.get("channel") or DEFAULT_CHANNEL)
    if channel not in CHANNELS:
        raise ValueError(f"{where}: spec.channel {channel!r} is not one of {CHANNELS}")
    try:
        return ReleaseView(
            name=str(meta.get("name") or ""),
            version=version,
            image=str(spec.get("image") or ""),
            channel=channel,
            min_driver_version=spec.get("minDriverVersion"),
            min_cuda_version=spec.get("minCUDAVersion"),
            engines=frozenset(spec.get("engines") or ()),
            failure_budget=int(spec.get("failureBudget") or 3),
            resume_count=int(spec.get("resumeCount") or 0),
            halted=bool(status.get("halted"))
            and int(status.get("observedResumeCount") or 0) >= int(spec.get("resumeCount") or 0),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def node_hardware(node_labels: Mapping[str, str] | None, engines: Iterable[str] = ()) -> NodeHardware:
    """Driver and CUDA versions from NVIDIA GPU Feature Discovery labels."""
    labels = node_labels or {}
    driver = None
    major, minor = labels.get("nvidia.com/cuda.driver.major"), labels.get("nvidia.com/cuda.driver.minor")
    if major and minor:
        rev = labels.get("nvidia.com/cuda.driver.rev")
        driver = f"{major}.{minor}" + (f".{rev}" if rev else "")
    cuda = None
    cmajor, cminor = labels.get("nvidia.com/cuda.runtime.major"), labels.get("nvidia.com/cuda.runtime.minor")
    if cmajor and cminor:
        cuda = f"{cmajor}.{cminor}"
    return NodeHardware(driver_version=driver, cuda_version=cuda, engines=frozenset(e for e in engines if e))


def update_policy(spec: Mapping[str, Any]) -> UpdatePolicy:
    raw = spec.get("updatePolicy") or {}
    return UpdatePolicy(
        automatic=bool(raw.get("automatic", True)),
        max_unavailable=raw.get("maxUnavailable", 1),
        progress_deadline_seconds=float(raw.get("progressDeadlineSeconds", 600)),
        min_ready_seconds=float(raw.get("minReadySeconds", 30)),
        update_unhealthy=bool(raw.get("updateUnhealthy", False)),
    )


def node_devices(status: Mapping[str, Any], pods: Iterable[PodView]) -> tuple[int, ...]:
    """Devices the rollout manages: those in status.devices plus any that has a pod."""
    indices = {
        int(d["index"]) for d in status.get("devices") or () if isinstance(d, Mapping) and "index" in d
    }
    indices |= {p.device_index for p in pods}
    return tuple(sorted(indices))


def node_engines(status: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(
        str(d["engine"]) for d in status.get("devices") or () if isinstance(d, Mapping) and d.get("engine")
    )


def blocked_devices(status: Mapping[str, Any]) -> frozenset[int]:
    """Devices whose GPU failed validation (a verdict, not a pending report): they never serve."""
    return frozenset(
        int(d["index"])
        for d in status.get("devices") or ()
        if isinstance(d, Mapping) and "index" in d and device_blocked(d.get("validation"))
    )


def node_state(spec: Mapping[str, Any], status: Mapping[str, Any], pods: Iterable[PodView]) -> NodeState:
    pods = list(pods)
    return NodeState(
        devices=node_devices(status, pods),
        policy=update_policy(spec),
        current_version=status.get("currentVersion"),
        last_stable_version=status.get("lastStableVersion"),
        rollout=RolloutStatus.from_status(status.get("rollout")),
        blocked=blocked_devices(status),
    )


def approved_major(node_spec: Mapping[str, Any], pool_spec: Mapping[str, Any] | None) -> int | None:
    """The larger of the node's and the pool's approvedMajorVersion."""
    values = [
        (node_spec.get("updatePolicy") or {}).get("approvedMajorVersion"),
        ((pool_spec or {}).get("updatePolicy") or {}).get("approvedMajorVersion"),
    ]
    known = [int(v) for v in values if v is not None]
    return max(known) if known else None


def pool_max_unavailable(pool_spec: Mapping[str, Any] | None) -> int | str:
    return ((pool_spec or {}).get("updatePolicy") or {}).get("maxUnavailable", "10%")  # type: ignore[no-any-return]
