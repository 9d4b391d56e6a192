"""Decide whether a detected GPU may join the fleet (Epoch 3: unknown or misrepresented GPUs are blocked).

``validate_device`` is pure and cheap (dict look-ups, no I/O) because the operator runs it for every
device of every node on each reconcile. Checks run in a fixed order and the first failure wins, so
a device always gets exactly one stable, machine-readable reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from gpufleet.hardware.catalog import Catalog, GPUModel
from gpufleet.hardware.report import GPUDevice, HardwareReport, compare_versions

Reason = Literal[
    "Valid",
    "UnknownProduct",
    "PCIIdMismatch",
    "ComputeCapabilityMismatch",
    "VRAMMismatch",
    "GFDLabelMismatch",
    "MIGSlice",
    "DriverTooOld",
]

#: Every reason, in the order the checks run (the Literal above lists them in that order).
REASONS: tuple[Reason, ...] = get_args(Reason)

GFD_PRODUCT = "nvidia.com/gpu.product"
GFD_MEMORY = "nvidia.com/gpu.memory"
GFD_CC_MAJOR = "nvidia.com/gpu.compute.major"
GFD_CC_MINOR = "nvidia.com/gpu.compute.minor"


class ValidationResult(BaseModel):
    """Verdict for one device: ``reason`` is for machines, ``message`` for the operator's human."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    valid: bool
    reason: Reason
    message: str
    model: str | None = None  # catalog key of the product the device was identified as


def _blocked(reason: Reason, message: str, model: GPUModel | None) -> ValidationResult:
    return ValidationResult(valid=False, reason=reason, message=message, model=model.key if model else None)


def _check_gfd(device: GPUDevice, model: GPUModel, labels: Mapping[str, str], tolerance: float) -> str | None:
    """A message when the node's GFD labels contradict NVML, else None. Absent labels are not checked."""
    product = labels.get(GFD_PRODUCT)
    if product is not None:
        base = product.removesuffix("-SHARED")
        if "-MIG-" in base:
            base = base.split("-MIG-", 1)[0]
        if base not in model.gfd_products():
            return (
                f"GPU Feature Discovery labels this node {GFD_PRODUCT}={product!r} but NVML reports "
                f"{device.name!r} (expected {model.gfd_product!r}); the node labels are stale or forged"
            )
    memory = labels.get(GFD_MEMORY)
    if memory is not None:
        try:
            labelled = int(memory)
        except ValueError:
            return f"GPU Feature Discovery label {GFD_MEMORY}={memory!r} is not a number of MiB"
        if abs(labelled - device.memory_total_mib) > device.memory_total_mib * tolerance / 100.0:
            return (
                f"GPU Feature Discovery labels {GFD_MEMORY}={labelled} MiB but NVML reports "
                f"{device.memory_total_mib} MiB"
            )
    major, minor = labels.get(GFD_CC_MAJOR), labels.get(GFD_CC_MINOR)
    if major is not None and minor is not None and f"{major}.{minor}" != device.compute_capability:
        return (
            f"GPU Feature Discovery labels compute capability {major}.{minor} but NVML reports "
            f"{device.compute_capability}"
        )
    return None


def validate_device(
    device: GPUDevice,
    catalog: Catalog,
    *,
    gfd_labels: Mapping[str, str] | None = None,
    driver_version: str | None = None,
    min_driver_version: str | None = None,
) -> ValidationResult:
    """Check one device against the catalog, the node's GFD labels and the release's driver floor."""
    model = catalog.by_name(device.name)
    if model is None:
        by_id = catalog.by_pci_id(device.pci_device_id)
        hint = (
            f"; its PCI id 0x{device.pci_device_id:04x} is a {by_id.nvml_names[0]}, so the driver is "
            "probably too old to name it: install the latest NVIDIA driver"
            if by_id is not None
            else "; ask for it to be added to the gpufleet GPU catalog (gpufleet gpus lists the known ones)"
        )
        return _blocked(
            "UnknownProduct",
            f"GPU {device.index} reports product {device.name!r}, which is not in GPU catalog "
            f"{catalog.catalog_version}{hint}",
            None,
        )
    if device.pci_device_id not in model.pci_device_ids:
        owner = catalog.by_pci_id(device.pci_device_id)
        known = ", ".join(f"0x{p:04x}" for p in model.pci_device_ids)
        belongs = f"belongs to {owner.nvml_names[0]}" if owner else "is not a known NVIDIA device id"
        return _blocked(
            "PCIIdMismatch",
            f"GPU {device.index} calls itself {device.name!r} (PCI id {known}) but its PCI device id "
            f"0x{device.pci_device_id:04x} {belongs}",
            model,
        )
    if device.compute_capability != model.compute_capability or device.architecture != model.architecture:
        return _blocked(
            "ComputeCapabilityMismatch",
            f"GPU {device.index} ({device.name}) reports compute capability {device.compute_capability} "
            f"({device.architecture}); the catalog's {model.nvml_names[0]} is {model.compute_capability} "
            f"({model.architecture})",
            model,
        )
    low, high = model.vram_bounds(catalog.vram_tolerance_pct)
    if not low <= device.memory_total_mib <= high:
        return _blocked(
            "VRAMMismatch",
            f"GPU {device.index} ({device.name}) reports {device.memory_total_mib} MiB of memory; "
            f"the catalog's {device.name} reports {model.vram_mib} MiB (accepted {low}..{high} MiB)",
            model,
        )
    if gfd_labels:
        problem = _check_gfd(device, model, gfd_labels, catalog.vram_tolerance_pct)
        if problem is not None:
            return _blocked("GFDLabelMismatch", f"GPU {device.index}: {problem}", model)
    if device.mig_enabled:
        return _blocked(
            "MIGSlice",
            f"GPU {device.index} ({device.name}) has MIG mode enabled; gpufleet runs one engine per whole "
            f"GPU: disable MIG (nvidia-smi -i {device.index} -mig 0) and reset the GPU",
            model,
        )
    if (
        driver_version is not None
        and min_driver_version is not None
        and compare_versions(driver_version, min_driver_version) < 0
    ):
        return _blocked(
            "DriverTooOld",
            f"NVIDIA driver {driver_version} is older than {min_driver_version}, the minimum of the "
            "engine release: install the latest NVIDIA driver",
            model,
        )
    return ValidationResult(
        valid=True,
        reason="Valid",
        message=f"GPU {device.index} identified as {model.nvml_names[0]} ({device.memory_total_mib} MiB, "
        f"compute capability {device.compute_capability})",
        model=model.key,
    )


def validate_report(
    report: HardwareReport,
    catalog: Catalog,
    *,
    gfd_labels: Mapping[str, str] | None = None,
    min_driver_version: str | None = None,
) -> list[ValidationResult]:
    """Validate every device of a report, in device order."""
    return [
        validate_device(
            device,
            catalog,
            gfd_labels=gfd_labels,
            driver_version=report.driver_version,
            min_driver_version=min_driver_version,
        )
        for device in report.devices
    ]
