"""Planning: the pods an InferenceNode should have vs the pods it has -> creates, deletes, patches.

Level-based and idempotent: the plan is derived from the current world every time, so running it
again (after a restart, or twice in a row) never produces a duplicate, and a converged node
yields an empty plan (zero writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gpufleet.devices import NodePlan, Observation, Verdict, effective_verdict
from gpufleet.objects import LABEL_ROUTABLE, InodeView, PodView
from gpufleet.podspec import PodDevice, PodRelease, build_pod, pod_name
from gpufleet.settings import OperatorSettings


@dataclass(frozen=True)
class Delete:
    name: str
    reason: str  # CamelCase, also the Event reason
    message: str


@dataclass(frozen=True)
class LabelPatch:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class GateCheck:
    """A running pod of a valid device whose readiness gate is not yet True: ask its agent."""

    name: str
    index: int


@dataclass(frozen=True)
class GateClear:
    """A pod whose gate is True although its device is blocked (or not confirmed): take it back."""

    name: str
    index: int
    message: str


@dataclass
class PodPlan:
    creates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    label_patches: list[LabelPatch] = field(default_factory=list)
    gate_checks: list[GateCheck] = field(default_factory=list)
    gate_clears: list[GateClear] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # names held back by a terminating pod

    @property
    def writes(self) -> int:
        return len(self.creates) + len(self.deletes) + len(self.label_patches) + len(self.gate_clears)

    @property
    def empty(self) -> bool:
        return self.writes == 0 and not self.gate_checks


def plan_pods(
    inode: InodeView,
    node_plan: NodePlan,
    pods: Iterable[PodView],
    release: PodRelease | None,
    observations: Mapping[int, Observation],
    settings: OperatorSettings,
    *,
    release_for: Callable[[int], PodRelease | None] | None = None,
) -> PodPlan:
    """Decide every pod write for one InferenceNode.

    ``observations`` are the agents' reports by device index (only for the pods running now).
    A pod is deleted for its GPU being gone only when the node object was observed and lacks it.
    Without a release no pod is created (there is no image to run) but nothing is deleted either.
    Image/version changes of existing pods are the rollout step's business, not this plan's;
    ``release_for(index)``, when given, is the version a *new* pod of that device runs (what the
    rollout record names for it), else ``release``.
    """
    plan = PodPlan()
    if inode.deleting:
        return plan  # the garbage collector removes owned pods
    wanted = {d.index: d for d in node_plan.devices}
    by_index: dict[int, list[PodView]] = {}
    for pod in pods:
        if pod.deleting:
            continue
        if pod.device_index is None or pod.device_index not in wanted:
            if node_plan.node_observed:
                message = f"GPU {pod.device_index} is no longer part of node {inode.node_name}"
                plan.deletes.append(Delete(pod.name, "GPURemoved", message))
            # else: the node object was never seen (not in the cache): keep the pod. Only a node
            # that is known to lack the GPU justifies taking a serving engine down.
            continue
        if pod.node_name is not None and pod.node_name != inode.node_name:
            plan.deletes.append(Delete(pod.name, "NodeChanged",
                                       f"pod runs on {pod.node_name}, "
                                       f"InferenceNode now names {inode.node_name}"))
            continue
        if pod.finished:
            why = f" ({pod.reason}: {pod.message or ''})".replace(": )", ")") if pod.reason else ""
            plan.deletes.append(Delete(pod.name, "PodReplaced",
                                       f"pod ended in phase {pod.phase}{why}; a new one will be created"))
            continue
        by_index.setdefault(pod.device_index, []).append(pod)
    terminating = {p.name for p in pods if p.deleting}

    for index, planned in wanted.items():
        canonical = pod_name(inode.name, index)
        present = by_index.get(index, [])
        if len(present) > 1:
            keep = next((p for p in present if p.name == canonical), present[0])
            for extra in present:
                if extra is not keep:
                    plan.deletes.append(Delete(extra.name, "DuplicatePod",
                                               f"GPU {index} already has pod {keep.name}"))
            present = [keep]
        observed = observations.get(index)
        verdict: Verdict = effective_verdict(planned, observed)
        blocked = not verdict.valid and not verdict.pending
        routable = "false" if blocked else "true"
        if not present:
            wanted_release = release_for(index) if release_for is not None else release
            if wanted_release is None:
                continue
            if canonical in terminating:
                plan.waiting.append(canonical)
                continue
            device = PodDevice(index=index, routable=routable == "true", product=planned.product)
            plan.creates.append(build_pod(inode, device, wanted_release, settings))
            continue
        pod = present[0]
        if pod.routable != routable:
            plan.label_patches.append(LabelPatch(pod.name, {LABEL_ROUTABLE: routable}))
        own_report = observed is not None and not observed.carried
        if verdict.valid and own_report and pod.running and pod.gate_status != "True":
            plan.gate_checks.append(GateCheck(pod.name, index))
        elif blocked and pod.gate_status == "True":
            message = f"GPU {index}: {verdict.reason}: {verdict.message}"
            plan.gate_clears.append(GateClear(pod.name, index, message))
    return plan
