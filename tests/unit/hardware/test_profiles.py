"""Recorded-profile suite: real machines validate; misrepresented ones are blocked for the right reason."""

from __future__ import annotations

import pytest

from gpufleet.hardware.catalog import load_catalog
from gpufleet.hardware.profiles import (
    list_profiles,
    load_profile,
    load_profile_document,
    profile_gfd_labels,
)
from gpufleet.hardware.validation import validate_report

REAL = [p for p in list_profiles() if not p.startswith("bad-")]
BAD = [p for p in list_profiles() if p.startswith("bad-")]


def test_enough_profiles_including_the_demo_ones() -> None:
    assert len(REAL) >= 12
    assert len(BAD) >= 3
    for needed in ("rtx4090-x4", "a100-80gb-x1", "bad-unknown-gpu", "bad-rtx4090-48gb"):
        assert needed in list_profiles()
    assert any(len(load_profile(p).devices) > 1 for p in REAL)
    assert any(len(load_profile(p).devices) == 1 for p in REAL)


@pytest.mark.parametrize("name", REAL)
def test_real_profile_is_valid_with_its_gfd_labels(name: str) -> None:
    doc = load_profile_document(name)
    assert doc.metadata.source
    assert doc.metadata.expect.reason == "Valid"
    results = validate_report(doc.report, load_catalog(), gfd_labels=profile_gfd_labels(name))
    assert [r.reason for r in results] == ["Valid"] * len(doc.report.devices)
    for device in doc.report.devices:
        assert device.uuid.startswith("GPU-")


@pytest.mark.parametrize("name", BAD)
def test_bad_profile_is_blocked_for_its_stated_reason(name: str) -> None:
    doc = load_profile_document(name)
    assert doc.metadata.expect.reason != "Valid"
    results = validate_report(
        doc.report,
        load_catalog(),
        gfd_labels=profile_gfd_labels(name),
        min_driver_version=doc.metadata.expect.min_driver_version,
    )
    assert {r.reason for r in results} == {doc.metadata.expect.reason}
    assert not any(r.valid for r in results)


def test_unknown_profile_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="rtx4090-x4"):
        load_profile("no-such-machine")


def test_gfd_labels_derived_from_report() -> None:
    labels = profile_gfd_labels("h100-sxm-x8")
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert (labels["nvidia.com/gpu.compute.major"], labels["nvidia.com/gpu.compute.minor"]) == ("9", "0")
    assert labels["nvidia.com/cuda.driver.major"] == "550"
    assert profile_gfd_labels("bad-gfd-mismatch")["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_report_json_round_trip() -> None:
    report = load_profile("rtx4090-x4")
    data = report.model_dump(mode="json")
    assert data["devices"][0]["pci_device_id"] == 0x2684
    assert type(report).model_validate(data) == report
