"""Every validation reason, from a valid baseline device changed in exactly one way."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.hardware.catalog import load_catalog
from gpufleet.hardware.report import GPUDevice
from gpufleet.hardware.validation import REASONS, validate_device

CATALOG = load_catalog()


def _l4(**changes: Any) -> GPUDevice:
    base: dict[str, Any] = {
        "index": 0,
        "uuid": "GPU-5a1c3e0e-7c4b-4b1e-9d3a-1f2e3d4c5b6a",
        "name": "NVIDIA L4",
        "pci_device_id": 0x27B8,
        "memory_total_mib": 23034,
        "compute_capability": "8.9",
        "architecture": "ada",
        "mig_enabled": False,
    }
    base.update(changes)
    return GPUDevice(**base)


L4_LABELS = {
    "nvidia.com/gpu.product": "NVIDIA-L4",
    "nvidia.com/gpu.memory": "23034",
    "nvidia.com/gpu.compute.major": "8",
    "nvidia.com/gpu.compute.minor": "9",
}


def test_valid_device() -> None:
    result = validate_device(
        _l4(), CATALOG, gfd_labels=L4_LABELS, driver_version="550.54.15", min_driver_version="550.54.15"
    )
    assert result.valid
    assert result.reason == "Valid"
    assert result.model == "l4"
    assert "NVIDIA L4" in result.message


CASES: list[tuple[GPUDevice, dict[str, Any], str, str]] = [
    (
        _l4(name="NVIDIA Graphics Device", pci_device_id=0x2B85),
        {},
        "UnknownProduct",
        "too old to name it",
    ),
    (_l4(name="NVIDIA GeForce GTX 1080 Ti", pci_device_id=0x1B06), {}, "UnknownProduct", "catalog"),
    (_l4(pci_device_id=0x2684), {}, "PCIIdMismatch", "NVIDIA GeForce RTX 4090"),
    (_l4(pci_device_id=0x0001), {}, "PCIIdMismatch", "not a known NVIDIA device id"),
    (_l4(compute_capability="8.6"), {}, "ComputeCapabilityMismatch", "8.9"),
    (_l4(architecture="ampere"), {}, "ComputeCapabilityMismatch", "ada"),
    (_l4(memory_total_mib=46068), {}, "VRAMMismatch", "46068 MiB"),
    (_l4(memory_total_mib=20000), {}, "VRAMMismatch", "accepted"),
    (
        _l4(),
        {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "GFDLabelMismatch",
        "NVIDIA-L40S",
    ),
    (_l4(), {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.memory": "46068"}}, "GFDLabelMismatch", "46068"),
    (_l4(), {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.memory": "lots"}}, "GFDLabelMismatch", "lots"),
    (
        _l4(),
        {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.compute.minor": "6"}},
        "GFDLabelMismatch",
        "8.6",
    ),
    (_l4(mig_enabled=True), {}, "MIGSlice", "-mig 0"),
    (
        _l4(),
        {"driver_version": "535.183.01", "min_driver_version": "550.54.15"},
        "DriverTooOld",
        "535.183.01",
    ),
]


@pytest.mark.parametrize(("device", "kwargs", "reason", "in_message"), CASES)
def test_each_reason(device: GPUDevice, kwargs: dict[str, Any], reason: str, in_message: str) -> None:
    result = validate_device(device, CATALOG, **kwargs)
    assert not result.valid
    assert result.reason == reason
    assert in_message in result.message


def test_every_reason_is_reachable() -> None:
    """Each reason the validator declares is produced by some input (not compared with a copied set)."""
    reached = {validate_device(d, CATALOG, **kw).reason for d, kw, _, _ in CASES}
    reached.add(validate_device(_l4(), CATALOG).reason)
    assert reached == set(REASONS)


def test_vram_inside_tolerance_is_accepted() -> None:
    # An A100 40GB on an old driver with ECC reports 40536 MiB (1% under); still valid.
    device = _l4(
        name="NVIDIA A100-SXM4-40GB",
        pci_device_id=0x20B0,
        memory_total_mib=40536,
        compute_capability="8.0",
        architecture="ampere",
    )
    assert validate_device(device, CATALOG).valid


def test_gfd_shared_and_mig_suffixes_and_partial_labels() -> None:
    assert validate_device(_l4(), CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-L4-SHARED"}).valid
    assert validate_device(_l4(), CATALOG, gfd_labels={"nvidia.com/gpu.count": "1"}).valid
    # MIG 'single' strategy appends the profile; the product part still has to match.
    result = validate_device(
        _l4(mig_enabled=True), CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-L4-MIG-1g.6gb"}
    )
    assert result.reason == "MIGSlice"


def test_newer_driver_and_no_floor_pass() -> None:
    assert validate_device(_l4(), CATALOG, driver_version="570.124.06", min_driver_version="550.54.15").valid
    assert validate_device(_l4(), CATALOG, driver_version="470.1").valid


def test_first_failing_check_wins() -> None:
    # Both the PCI id and VRAM are wrong: the identity problem is reported.
    result = validate_device(_l4(pci_device_id=0x2684, memory_total_mib=1), CATALOG)
    assert result.reason == "PCIIdMismatch"


def test_malformed_driver_version_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dotted numeric version"):
        validate_device(_l4(), CATALOG, driver_version="latest", min_driver_version="550")
