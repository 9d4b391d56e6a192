"""Device discovery: the node's GFD labels give the plan, the agent's hardware report confirms it.

Both go through ``gpufleet.hardware.validation`` so there is one definition of "valid". A device
is *pending* until its agent has reported, *blocked* when either source fails validation, and
*valid* only when the report passes. Pool VRAM counts valid devices only, at the catalog's
nominal VRAM (so four identical GPUs get exactly a quarter each, whatever ECC shaves off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gpufleet.api.conditions import Reason
from gpufleet.hardware.catalog import Catalog, GPUModel
from gpufleet.hardware.report import GPUDevice, HardwareReport
from gpufleet.hardware.validation import validate_device
from gpufleet.objects import GFD_COUNT, GFD_MAJOR, GFD_MEMORY, GFD_MINOR, GFD_PRODUCT, InodeView, NodeView

PENDING_REASON = Reason.AWAITING_HARDWARE_REPORT


class ReportError(ValueError):
    """The agent's /v1/hardware answer cannot be used (shape, missing device)."""


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str
    message: str

    def as_status(self) -> dict[str, Any]:
        return {"valid": self.valid, "reason": self.reason, "message": self.message}

    @property
    def pending(self) -> bool:
        return self.reason == PENDING_REASON


@dataclass(frozen=True)
class PlannedDevice:
    """One GPU the node's labels promise."""

    index: int
    product: str | None
    model: GPUModel | None
    labelled_vram_mib: int | None
    compute_capability: str | None
    verdict: Verdict  # the plan's own verdict: pending, or blocked when the label is unknown


@dataclass(frozen=True)
class Observation:
    """What one agent reported about its GPU, judged by the operator (never trusted as sent)."""

    device: GPUDevice
    driver_version: str
    verdict: Verdict
    model: GPUModel | None
    engine: str | None
    #: From an earlier pod's report of this device (its pod was replaced and the new one has not
    #: answered yet): it still decides valid/blocked, but opens no readiness gate.
    carried: bool = False


@dataclass(frozen=True)
class NodePlan:
    devices: tuple[PlannedDevice, ...]
    problem: str | None  # why fewer (or no) devices than asked for, for the GPUValidated message
    #: Whether the Kubernetes node object was seen at all. Without it the plan knows nothing about
    #: the node's GPUs (a cold cache after a restart looks exactly like this), so nothing may be
    #: deleted for a GPU "going away".
    node_observed: bool = True


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    raw = labels.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def plan_devices(inode: InodeView, node: NodeView | None, catalog: Catalog) -> NodePlan:
    """The GPUs to run engines on, from GFD labels (node-level: one product per node)."""
    if node is None:
        return NodePlan((), f"Kubernetes node {inode.node_name!r} does not exist", node_observed=False)
    labels = node.labels
    counted = _int_label(labels, GFD_COUNT)
    count = counted if counted is not None else node.allocatable_gpus
    if count is None or count <= 0:
        return NodePlan((), f"node {node.name!r} has no GPUs "
                            f"({GFD_COUNT} and nvidia.com/gpu are absent or 0)")
    problem = None
    if node.allocatable_gpus is not None and node.allocatable_gpus < count:
        problem = f"node {node.name!r} labels {count} GPUs but only {node.allocatable_gpus} are allocatable"
        count = node.allocatable_gpus
    if inode.gpu_count is not None:
        if inode.gpu_count > count:
            problem = f"spec.gpuCount={inode.gpu_count} but node {node.name!r} has only {count} GPUs"
        count = min(count, inode.gpu_count)
    product = labels.get(GFD_PRODUCT)
    model = catalog.by_gfd_product(product) if product else None
    if product is None:
        verdict = Verdict(False, PENDING_REASON,
                          f"node has no {GFD_PRODUCT} label; waiting for the agent's report")
    elif model is None:
        verdict = Verdict(
            False,
            "UnknownProduct",
            f"node is labelled {GFD_PRODUCT}={product!r}, "
            f"which is not in GPU catalog {catalog.catalog_version}",
        )
    else:
        verdict = Verdict(False, PENDING_REASON, "waiting for the node agent's hardware report")
    major, minor = labels.get(GFD_MAJOR), labels.get(GFD_MINOR)
    cc = f"{major}.{minor}" if major is not None and minor is not None else None
    memory = _int_label(labels, GFD_MEMORY)
    devices = tuple(PlannedDevice(i, product, model, memory, cc, verdict) for i in range(count))
    return NodePlan(devices, problem)


def parse_agent_report(payload: Any, device_index: int) -> tuple[HardwareReport, GPUDevice, str | None]:
    """Pick this pod's GPU out of an agent's ``/v1/hardware`` JSON.

    A container that holds one GPU usually sees it as index 0; an agent may also report every
    GPU of the machine, in which case the pod's own index is the one that counts.
    """
    if not isinstance(payload, Mapping) or "report" not in payload:
        raise ReportError("hardware answer is not a JSON object with a 'report' key")
    try:
        report = HardwareReport.model_validate(payload["report"])
    except ValidationError as exc:
        raise ReportError(f"hardware report is malformed: {exc.errors()[0].get('msg', exc)}") from exc
    if not report.devices:
        raise ReportError("hardware report lists no GPU: the agent sees no device")
    if len(report.devices) == 1:
        device = report.devices[0]
    else:
        found = next((d for d in report.devices if d.index == device_index), None)
        if found is None:
            indexes = [d.index for d in report.devices]
            raise ReportError(f"hardware report has GPUs {indexes} but not this pod's GPU {device_index}")
        device = found
    engine_part = payload.get("engine")
    engine = engine_part.get("engine") if isinstance(engine_part, Mapping) else None
    return report, device, (str(engine) if engine else None)


def observe(
    payload: Any,
    device_index: int,
    catalog: Catalog,
    node: NodeView | None,
    min_driver_version: str | None,
) -> Observation:
    report, device, engine = parse_agent_report(payload, device_index)
    result = validate_device(
        device,
        catalog,
        gfd_labels=dict(node.labels) if node is not None else None,
        driver_version=report.driver_version,
        min_driver_version=min_driver_version,
    )
    model = catalog.by_key(result.model) if result.model else None
    return Observation(
        device=device,
        driver_version=report.driver_version,
        verdict=Verdict(result.valid, result.reason, result.message),
        model=model,
        engine=engine,
    )


def effective_verdict(planned: PlannedDevice, observed: Observation | None) -> Verdict:
    """A plan-level block stands even if a report arrives; otherwise the report decides."""
    if observed is None:
        return planned.verdict
    if not planned.verdict.valid and not planned.verdict.pending:
        return planned.verdict
    return observed.verdict


def validated_vram_mib(observed: Observation | None, verdict: Verdict) -> int:
    """The VRAM this device contributes to its pool: nominal catalog VRAM if valid, else 0."""
    if not verdict.valid or observed is None:
        return 0
    if observed.model is not None:
        return observed.model.vram_mib
    return observed.device.memory_total_mib
