"""The shipped GPU catalog is large enough, internally consistent, and its look-ups work."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from gpufleet.hardware.catalog import gfd_product_label, load_catalog, parse_catalog
from gpufleet.hardware.report import cc_tuple

FAMILY_CC = {
    "volta": {(7, 0), (7, 2)},
    "turing": {(7, 5)},
    "ampere": {(8, 0), (8, 6), (8, 7)},
    "ada": {(8, 9)},
    "hopper": {(9, 0)},
    "blackwell": {(10, 0), (10, 3), (11, 0), (12, 0), (12, 1)},
}


def _raw() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("gpufleet.hardware").joinpath("catalog.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def test_catalog_covers_volta_to_blackwell_with_at_least_30_gpus() -> None:
    catalog = load_catalog()
    assert len(catalog.gpus) >= 30
    assert {g.architecture for g in catalog.gpus} == set(FAMILY_CC)
    assert {g.segment for g in catalog.gpus} == {"datacenter", "workstation", "consumer"}
    required = [
        "Tesla V100-SXM2-16GB",
        "Tesla T4",
        "NVIDIA A10",
        "NVIDIA A10G",
        "NVIDIA A30",
        "NVIDIA A40",
        "NVIDIA A100-SXM4-40GB",
        "NVIDIA A100-SXM4-80GB",
        "NVIDIA A100-PCIE-40GB",
        "NVIDIA A100 80GB PCIe",
        "NVIDIA L4",
        "NVIDIA L40",
        "NVIDIA L40S",
        "NVIDIA H100 80GB HBM3",
        "NVIDIA H100 PCIe",
        "NVIDIA H100 NVL",
        "NVIDIA H200",
        "NVIDIA GH200 480GB",
        "NVIDIA B200",
        "NVIDIA GeForce RTX 3090",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA GeForce RTX 4090",
        "NVIDIA GeForce RTX 4080",
        "NVIDIA GeForce RTX 5090",
        "NVIDIA RTX A6000",
        "NVIDIA RTX 6000 Ada Generation",
    ]
    missing = [name for name in required if catalog.by_name(name) is None]
    assert not missing


def test_architecture_matches_compute_capability_independently_of_the_file() -> None:
    # The loader checks against the file's own table; this checks against CUDA's, so both must agree.
    for gpu in load_catalog().gpus:
        assert cc_tuple(gpu.compute_capability) in FAMILY_CC[gpu.architecture], gpu.key


def test_keys_names_ids_and_labels_are_unique() -> None:
    gpus = load_catalog().gpus
    keys = [g.key for g in gpus]
    names = [n.casefold() for g in gpus for n in g.nvml_names]
    ids = [p for g in gpus for p in g.pci_device_ids]
    labels = [label for g in gpus for label in g.gfd_products()]
    for values in (keys, names, ids, labels):
        assert len(values) == len(set(values))


def test_gfd_label_is_nvml_name_with_dashes() -> None:
    for gpu in load_catalog().gpus:
        assert gpu.gfd_product == gfd_product_label(gpu.nvml_names[0])
        assert " " not in gpu.gfd_product
    assert load_catalog().by_name("NVIDIA H100 80GB HBM3").gfd_product == "NVIDIA-H100-80GB-HBM3"  # type: ignore[union-attr]


def test_vram_is_plausible_for_the_marketed_size() -> None:
    # NVML totals sit a little under or at the marketed GiB; a typo (extra digit) would fail this.
    for gpu in load_catalog().gpus:
        assert 8 * 1024 <= gpu.vram_mib <= 200 * 1024, gpu.key
        low, high = gpu.vram_bounds(load_catalog().vram_tolerance_pct)
        assert low <= gpu.vram_mib <= high


def test_lookups() -> None:
    catalog = load_catalog()
    rtx4090 = catalog.by_pci_id(0x2684)
    assert rtx4090 is not None
    assert rtx4090.key == "rtx-4090"
    assert catalog.by_name("  nvidia geforce rtx 4090 ") is rtx4090
    assert catalog.by_gfd_product("NVIDIA-GeForce-RTX-4090") is rtx4090
    assert catalog.by_gfd_product("NVIDIA-GeForce-RTX-4090-SHARED") is rtx4090
    assert catalog.by_name("GeForce RTX 3090") is catalog.by_key("rtx-3090")  # pre-R470 spelling
    assert catalog.by_pci_id(0xFFFF) is None
    assert catalog.by_name("NVIDIA GeForce GTX 1080 Ti") is None
    assert catalog.find("l4") is catalog.by_name("NVIDIA L4")
    assert catalog.find("NVIDIA-L40S") is catalog.by_key("l40s")


def test_tolerance_percentage_and_explicit_range() -> None:
    catalog = load_catalog()
    h100 = catalog.by_key("h100-sxm")
    assert h100 is not None
    low, high = h100.vram_bounds(3.0)
    assert low == int(81559 * 0.97)
    assert high >= int(81559 * 1.03)
    a10 = catalog.by_key("a10")
    assert a10 is not None
    assert a10.vram_bounds(3.0) == (22500, 24576)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["gpus"][1].update(key=d["gpus"][0]["key"]), "duplicate key"),
        (lambda d: d["gpus"][1].update(nvml_names=d["gpus"][0]["nvml_names"]), "NVML name"),
        (lambda d: d["gpus"][1].update(pci_device_ids=d["gpus"][0]["pci_device_ids"]), "PCI id"),
        (lambda d: d["gpus"][0].update(compute_capability="8.9"), "is not volta"),
        (lambda d: d["gpus"][0].update(architecture="kepler"), "unknown architecture"),
        (lambda d: d["gpus"][0].update(pci_device_ids=["zz"]), "hex string"),
        (lambda d: d["gpus"][0].update(pci_device_ids=["0x12345"]), "16-bit"),
        (lambda d: d["gpus"][0].update(vram_mib_range=[1, 2]), "must contain vram_mib"),
        (lambda d: d["gpus"][0].update(compute_capability="eight"), "compute capability"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_inconsistent_catalog_is_rejected_with_a_specific_error(mutate: Any, message: str) -> None:
    data = copy.deepcopy(_raw())
    mutate(data)
    with pytest.raises(ValueError, match=message):
        parse_catalog(data)
