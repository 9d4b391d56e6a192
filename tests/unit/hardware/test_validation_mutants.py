"""Device validation at its edges: exact bounds, exact verdicts, and "a spoofed device is never valid".

Written against the mutants that survived the original tests (bench/results/mutation.md): tolerance
boundaries off by one, the blocked verdict losing its model, messages losing their advice.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.hardware.catalog import GPUModel, load_catalog
from gpufleet.hardware.report import GPUDevice, HardwareReport, HostInfo
from gpufleet.hardware.validation import REASONS, validate_device, validate_report

CATALOG = load_catalog()
L4 = CATALOG.by_key("l4")
assert L4 is not None

L4_LABELS = {
    "nvidia.com/gpu.product": "NVIDIA-L4",
    "nvidia.com/gpu.memory": "23034",
    "nvidia.com/gpu.compute.major": "8",
    "nvidia.com/gpu.compute.minor": "9",
}


def _device(model: GPUModel = L4, **changes: Any) -> GPUDevice:
    base: dict[str, Any] = {
        "index": 0,
        "uuid": "GPU-5a1c3e0e-7c4b-4b1e-9d3a-1f2e3d4c5b6a",
        "name": model.nvml_names[0],
        "pci_device_id": model.pci_device_ids[0],
        "memory_total_mib": model.vram_mib,
        "compute_capability": model.compute_capability,
        "architecture": model.architecture,
        "mig_enabled": False,
    }
    base.update(changes)
    return GPUDevice(**base)


def test_the_catalog_tolerance_is_three_percent() -> None:
    """The anti-spoofing gate's width: tripling it (3% -> 9%) must fail a test."""
    assert CATALOG.vram_tolerance_pct == 3.0
    assert L4.vram_bounds(CATALOG.vram_tolerance_pct) == (22342, 23726)


@pytest.mark.parametrize(("mib", "valid"), [(22341, False), (22342, True), (23726, True), (23727, False)])
def test_vram_bounds_are_inclusive(mib: int, valid: bool) -> None:
    result = validate_device(_device(memory_total_mib=mib), CATALOG)
    assert result.valid is valid
    assert result.reason == ("Valid" if valid else "VRAMMismatch")


@pytest.mark.parametrize(
    ("label", "valid"),
    # 23000 MiB * 3% = 690 MiB exactly: 690 off is tolerated, 691 is not (the bound is inclusive).
    [("23690", True), ("23691", False), ("22310", True), ("22309", False), ("23000", True)],
)
def test_gfd_memory_tolerance_edges(label: str, valid: bool) -> None:
    result = validate_device(
        _device(memory_total_mib=23000), CATALOG, gfd_labels={"nvidia.com/gpu.memory": label}
    )
    assert result.valid is valid
    if not valid:
        assert result.reason == "GFDLabelMismatch"
        assert result.message == (
            f"GPU 0: GPU Feature Discovery labels nvidia.com/gpu.memory={label} MiB "
            "but NVML reports 23000 MiB"
        )


def test_gfd_mig_product_is_cut_at_the_first_mig_marker() -> None:
    ok = validate_device(_device(), CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-L4-MIG-1g.6gb"})
    assert ok.valid
    # Only the part before the first "-MIG-" names the product.
    twice = validate_device(
        _device(), CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-L4-MIG-1g-MIG-2g.12gb"}
    )
    assert twice.valid
    shared = validate_device(
        _device(), CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-L4-MIG-1g.6gb-SHARED"}
    )
    assert shared.valid


def test_gfd_compute_capability_needs_both_labels() -> None:
    only_major = {"nvidia.com/gpu.compute.major": "7"}
    assert validate_device(_device(), CATALOG, gfd_labels=only_major).valid
    only_minor = {"nvidia.com/gpu.compute.minor": "0"}
    assert validate_device(_device(), CATALOG, gfd_labels=only_minor).valid


EXACT: list[tuple[str, dict[str, Any], dict[str, Any], str, str | None, str]] = [
    (
        "renamed by an old driver",
        {"name": "NVIDIA Graphics Device", "pci_device_id": 0x2B85},
        {},
        "UnknownProduct",
        None,
        "GPU 0 reports product 'NVIDIA Graphics Device', which is not in GPU catalog 2025.11.0; its PCI id "
        "0x2b85 is a NVIDIA GeForce RTX 5090, so the driver is probably too old to name it: install the "
        "latest NVIDIA driver",
    ),
    (
        "not in the catalog",
        {"name": "NVIDIA GeForce GTX 1080 Ti", "pci_device_id": 0x1B06},
        {},
        "UnknownProduct",
        None,
        "GPU 0 reports product 'NVIDIA GeForce GTX 1080 Ti', which is not in GPU catalog 2025.11.0; ask for "
        "it to be added to the gpufleet GPU catalog (gpufleet gpus lists the known ones)",
    ),
    (
        "another product's PCI id",
        {"pci_device_id": 0x2684},
        {},
        "PCIIdMismatch",
        "l4",
        "GPU 0 calls itself 'NVIDIA L4' (PCI id 0x27b8) but its PCI device id 0x2684 belongs to NVIDIA "
        "GeForce RTX 4090",
    ),
    (
        "an unknown PCI id",
        {"pci_device_id": 0x0001},
        {},
        "PCIIdMismatch",
        "l4",
        "GPU 0 calls itself 'NVIDIA L4' (PCI id 0x27b8) but its PCI device id 0x0001 is not a known NVIDIA "
        "device id",
    ),
    (
        "wrong compute capability",
        {"compute_capability": "8.6"},
        {},
        "ComputeCapabilityMismatch",
        "l4",
        "GPU 0 (NVIDIA L4) reports compute capability 8.6 (ada); the catalog's NVIDIA L4 is 8.9 (ada)",
    ),
    (
        "too little VRAM",
        {"memory_total_mib": 20000},
        {},
        "VRAMMismatch",
        "l4",
        "GPU 0 (NVIDIA L4) reports 20000 MiB of memory; the catalog's NVIDIA L4 reports 23034 MiB "
        "(accepted 22342..23726 MiB)",
    ),
    (
        "forged product label",
        {},
        {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.product": "NVIDIA-L40S"}},
        "GFDLabelMismatch",
        "l4",
        "GPU 0: GPU Feature Discovery labels this node nvidia.com/gpu.product='NVIDIA-L40S' but NVML "
        "reports 'NVIDIA L4' (expected 'NVIDIA-L4'); the node labels are stale or forged",
    ),
    (
        "memory label not a number",
        {},
        {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.memory": "lots"}},
        "GFDLabelMismatch",
        "l4",
        "GPU 0: GPU Feature Discovery label nvidia.com/gpu.memory='lots' is not a number of MiB",
    ),
    (
        "compute capability label",
        {},
        {"gfd_labels": {**L4_LABELS, "nvidia.com/gpu.compute.minor": "6"}},
        "GFDLabelMismatch",
        "l4",
        "GPU 0: GPU Feature Discovery labels compute capability 8.6 but NVML reports 8.9",
    ),
    (
        "MIG enabled",
        {"mig_enabled": True},
        {},
        "MIGSlice",
        "l4",
        "GPU 0 (NVIDIA L4) has MIG mode enabled; gpufleet runs one engine per whole GPU: disable MIG "
        "(nvidia-smi -i 0 -mig 0) and reset the GPU",
    ),
    (
        "driver too old",
        {},
        {"driver_version": "535.183.01", "min_driver_version": "550.54.15"},
        "DriverTooOld",
        "l4",
        "NVIDIA driver 535.183.01 is older than 550.54.15, the minimum of the engine release: install the "
        "latest NVIDIA driver",
    ),
    (
        "valid",
        {},
        {"gfd_labels": L4_LABELS, "driver_version": "550.54.15", "min_driver_version": "550.54.15"},
        "Valid",
        "l4",
        "GPU 0 identified as NVIDIA L4 (23034 MiB, compute capability 8.9)",
    ),
]


@pytest.mark.parametrize(
    ("changes", "kwargs", "reason", "model", "message"), [c[1:] for c in EXACT], ids=[c[0] for c in EXACT]
)
def test_exact_verdict(
    changes: dict[str, Any], kwargs: dict[str, Any], reason: str, model: str | None, message: str
) -> None:
    """The whole verdict: reason for machines, model for the pool's VRAM, message with its advice."""
    result = validate_device(_device(**changes), CATALOG, **kwargs)
    assert result.model_dump() == {
        "valid": reason == "Valid",
        "reason": reason,
        "message": message,
        "model": model,
    }


def test_every_reason_is_reached_by_a_case() -> None:
    """Each reason the validator can give is produced by an input above (not a hand-copied list)."""
    reached = {validate_device(_device(**c[1]), CATALOG, **c[2]).reason for c in EXACT}
    assert reached == set(REASONS)


def test_validate_report_checks_each_device_in_order_with_the_reports_driver() -> None:
    devices = [
        _device(index=1, uuid="GPU-b"),
        _device(index=0, uuid="GPU-a", mig_enabled=True),
        _device(index=2, uuid="GPU-c", memory_total_mib=1),
    ]
    report = HardwareReport(
        devices=devices,
        host=HostInfo(cpu_model="x", cpu_cores=8, memory_mib=65536),
        driver_version="535.1",
        cuda_driver_version="12.2",
    )
    results = validate_report(report, CATALOG)
    assert [r.reason for r in results] == ["Valid", "MIGSlice", "VRAMMismatch"]
    assert [r.message.split()[1] for r in results] == ["1", "0", "2"]
    old = validate_report(report, CATALOG, min_driver_version="550.54.15")
    assert [r.reason for r in old] == ["DriverTooOld", "MIGSlice", "VRAMMismatch"]
    assert "NVIDIA driver 535.1 is older than 550.54.15" in old[0].message
    forged = validate_report(report, CATALOG, gfd_labels={"nvidia.com/gpu.product": "NVIDIA-A100"})
    assert forged[0].reason == "GFDLabelMismatch"
    assert validate_report(report.model_copy(update={"devices": []}), CATALOG) == []


# ------------------------------------------------------------------ invariant: spoofs are never valid

SPOOFS = ("pci", "cc", "arch", "vram", "mig", "gfd_product", "gfd_memory", "gfd_cc")


@st.composite
def _spoofed(draw: st.DrawFn) -> tuple[GPUDevice, dict[str, str], set[str]]:
    """A catalog device with a random subset of its identity claims falsified."""
    model = draw(st.sampled_from([g for g in CATALOG.gpus if g.vram_mib_range is None]))
    lies = draw(st.sets(st.sampled_from(SPOOFS)))
    low, high = model.vram_bounds(CATALOG.vram_tolerance_pct)
    mib = draw(st.integers(low, high))
    fields: dict[str, Any] = {"memory_total_mib": mib}
    others = [g for g in CATALOG.gpus if g.key != model.key]
    if "pci" in lies:
        pci = draw(st.integers(0, 0xFFFF).filter(lambda p: p not in model.pci_device_ids))
        fields["pci_device_id"] = pci
    if "cc" in lies:
        cc = draw(st.sampled_from(["3.5", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]))
        if cc == model.compute_capability:
            lies.discard("cc")
        fields["compute_capability"] = cc
    if "arch" in lies:
        arch = draw(st.sampled_from(["kepler", "pascal", "volta", "turing", "ampere", "ada", "hopper"]))
        if arch == model.architecture:
            lies.discard("arch")
        fields["architecture"] = arch
    if "vram" in lies:
        fields["memory_total_mib"] = draw(st.one_of(st.integers(1, low - 1), st.integers(high + 1, 4 * high)))
    if "mig" in lies:
        fields["mig_enabled"] = True
    labels: dict[str, str] = {}
    if "gfd_product" in lies:
        other = draw(st.sampled_from(others))
        if set(other.gfd_products()) & set(model.gfd_products()):
            lies.discard("gfd_product")
        labels["nvidia.com/gpu.product"] = other.gfd_products()[0]
    if "gfd_memory" in lies:
        actual = fields["memory_total_mib"]
        off = draw(st.integers(actual * 3 // 100 + 1, actual))
        labels["nvidia.com/gpu.memory"] = str(actual + draw(st.sampled_from([off, -off])))
    if "gfd_cc" in lies:
        major, minor = draw(st.integers(1, 12)), draw(st.integers(0, 9))
        if f"{major}.{minor}" == fields.get("compute_capability", model.compute_capability):
            lies.discard("gfd_cc")
        labels["nvidia.com/gpu.compute.major"] = str(major)
        labels["nvidia.com/gpu.compute.minor"] = str(minor)
    return _device(model, **fields), labels, lies


@settings(max_examples=400, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spoofed())
def test_a_spoofed_device_is_never_valid(case: tuple[GPUDevice, dict[str, str], set[str]]) -> None:
    device, labels, lies = case
    result = validate_device(device, CATALOG, gfd_labels=labels)
    assert result.valid is (not lies), (lies, result)
    assert result.valid is (result.reason == "Valid")
    if not result.valid:
        assert result.model is not None  # identified by name: the verdict names what it claimed to be


def test_pci_mismatch_lists_every_id_the_product_has() -> None:
    a100 = CATALOG.by_key("a100-pcie-40gb")
    assert a100 is not None
    result = validate_device(_device(a100, pci_device_id=0x27B8), CATALOG)
    assert result.reason == "PCIIdMismatch"
    assert result.message == (
        "GPU 0 calls itself 'NVIDIA A100-PCIE-40GB' (PCI id 0x20f1, 0x20b1) but its PCI device id 0x27b8 "
        "belongs to NVIDIA L4"
    )
