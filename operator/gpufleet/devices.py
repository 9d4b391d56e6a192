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
from gpufleet.api.v1alpha1.inferencenode import DeviceStatus
from gpufleet.hardware.agent import KNOWN_ENGINES, HardwareDocument
from gpufleet.hardware.catalog import Catalog, GPUModel
from gpufleet.hardware.report import GPUDevice, HardwareReport
from gpufleet.hardware.validation import validate_device
from gpufleet.objects import GFD_COUNT, GFD_MAJOR, GFD_MEMORY, GFD_MINOR, GFD_PRODUCT, InodeView, NodeView

PENDING_REASON = Reason.AWAITING_HARDWARE_REPORT


#: Verdict reason for a device whose agent names an engine gpufleet does not run.
UNKNOWN_ENGINE = "UnknownEngine"
#: Verdict reason for a device whose agent reports values the status schema cannot hold.
INVALID_AGENT_REPORT = "InvalidAgentReport"


def inadmissible(device: GPUDevice) -> str | None:
    """Why the reported device cannot be written into ``status.devices[]``, or ``None``."""
    fields = {
        "index": device.index,
        "uuid": device.uuid,
        "product": device.name,
        "architecture": device.architecture,
        "computeCapability": device.compute_capability,
        "vramMiB": device.memory_total_mib,
    }
    try:
        DeviceStatus.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"the agent reported an unusable {where}: {first.get('msg', '')}"[:512]
    return None


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
    #: The reported values fit the InferenceNode status schema (else they are never written).
    admissible: bool = True


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
        return NodePlan((), f"Kubernetes node {inode.node_name!r} not found", node_observed=False)
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
    """Pick this pod's GPU out of an agent's ``/v1/hardware`` JSON (``hardware.agent.HardwareDocument``).

    A container that holds one GPU usually sees it as index 0; an agent may also report every
    GPU of the machine, in which case the pod's own index is the one that counts.
    """
    if not isinstance(payload, Mapping) or "report" not in payload:
        raise ReportError("hardware answer is not a JSON object with a 'report' key")
    try:
        document = HardwareDocument.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ReportError(f"hardware report is malformed: {where}: {first.get('msg', exc)}") from exc
    report = document.report
    if report is None:
        why = f": {document.blocked.reason}: {document.blocked.message}" if document.blocked else ""
        raise ReportError(f"the agent could not detect its GPU{why}")
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
    engine = document.engine.engine if document.engine is not None else None
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
    verdict = Verdict(result.valid, result.reason, result.message)
    problem = inadmissible(device)
    if problem is not None:
        # Values the API would refuse in status.devices[] (#21 F4): never written; the device
        # is blocked with the reason instead of every status write failing with 422.
        return Observation(
            device=device,
            driver_version=report.driver_version,
            verdict=Verdict(False, INVALID_AGENT_REPORT, problem),
            model=None,
            engine=None,
            admissible=False,
        )
    if engine is not None and engine not in KNOWN_ENGINES:
        # An engine the API does not know cannot go into the status (the CRD would refuse the
        # whole write, #21 F4): the device is blocked, and says why.
        verdict = Verdict(
            False,
            UNKNOWN_ENGINE,
            f"the agent reports engine {engine[:64]!r}; gpufleet runs {sorted(KNOWN_ENGINES)}",
        )
        engine = None
    return Observation(
        device=device,
        driver_version=report.driver_version,
        verdict=verdict,
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
