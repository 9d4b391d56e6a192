"""Detection through a fake pynvml: values are converted like NVML reports them, errors are mapped."""

from __future__ import annotations

import ctypes.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gpufleet.hardware import detect as detect_mod
from gpufleet.hardware.detect import (
    DetectionError,
    DriverLibraryMismatch,
    DriverNotLoaded,
    GPULost,
    InsufficientPermissions,
    NoGPUsFound,
    NvmlBackend,
    NvmlError,
    NvmlLibraryNotFound,
    ProfileBackend,
    ProfileNotFound,
    architecture_for_cc,
    detect,
    read_host_info,
)
from gpufleet.hardware.profiles import load_profile
from gpufleet.hardware.report import HostInfo

HOST = HostInfo(cpu_model="Test CPU", cpu_cores=8, memory_mib=32768)


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return f"NVML error {self.value}"


class FakeNvml:
    """The subset of pynvml that NvmlBackend uses, driven by a recorded report."""

    NVMLError = FakeNVMLError
    NVML_ERROR_NO_PERMISSION = 4
    NVML_ERROR_DRIVER_NOT_LOADED = 9
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_ERROR_NOT_SUPPORTED = 3

    def __init__(self, profile: str, fail: dict[str, int] | None = None, bytes_names: bool = False) -> None:
        self.report = load_profile(profile)
        self.fail = fail or {}
        self.bytes_names = bytes_names
        self.shutdowns = 0

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise FakeNVMLError(self.fail[name])

    def nvmlInit(self) -> None:
        self._maybe_fail("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        v = self.report.driver_version
        return v.encode() if self.bytes_names else v

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        major, minor = self.report.cuda_driver_version.split(".")
        return int(major) * 1000 + int(minor) * 10

    def nvmlDeviceGetCount(self) -> int:
        self._maybe_fail("nvmlDeviceGetCount")
        return 0 if "empty" in self.fail else len(self.report.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._maybe_fail("nvmlDeviceGetHandleByIndex")
        return index

    def nvmlDeviceGetName(self, h: int) -> Any:
        n = self.report.devices[h].name
        return n.encode() if self.bytes_names else n

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.report.devices[h].uuid

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return types.SimpleNamespace(pciDeviceId=(self.report.devices[h].pci_device_id << 16) | 0x10DE)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return types.SimpleNamespace(total=self.report.devices[h].memory_total_mib * 1024 * 1024 + 4096)

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        major, minor = self.report.devices[h].compute_capability.split(".")
        return int(major), int(minor)

    def nvmlDeviceGetArchitecture(self, h: int) -> int:
        self._maybe_fail("nvmlDeviceGetArchitecture")
        return {"volta": 5, "turing": 6, "ampere": 7, "ada": 8, "hopper": 9, "blackwell": 10}[
            self.report.devices[h].architecture
        ]

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        self._maybe_fail("nvmlDeviceGetMigMode")
        return [int(self.report.devices[h].mig_enabled), 0]


@pytest.mark.parametrize("profile", ["rtx4090-x4", "h100-sxm-x8", "bad-a100-mig", "t4-x1", "b200-x8"])
def test_nvml_backend_reproduces_the_recorded_report(profile: str) -> None:
    fake = FakeNvml(profile)
    report = NvmlBackend(nvml=fake, host_reader=lambda: HOST).read()
    expected = load_profile(profile)
    assert report.devices == expected.devices
    assert report.driver_version == expected.driver_version
    assert report.cuda_driver_version == expected.cuda_driver_version
    assert report.host == HOST
    assert fake.shutdowns == 1


def test_bytes_from_old_pynvml_are_decoded() -> None:
    report = NvmlBackend(nvml=FakeNvml("l4-x1", bytes_names=True), host_reader=lambda: HOST).read()
    assert report.devices[0].name == "NVIDIA L4"
    assert report.driver_version == "550.54.15"


def test_architecture_and_mig_fall_back_when_not_supported() -> None:
    fake = FakeNvml("l4-x1", fail={"nvmlDeviceGetArchitecture": 3, "nvmlDeviceGetMigMode": 3})
    device = NvmlBackend(nvml=fake, host_reader=lambda: HOST).read().devices[0]
    assert device.architecture == "ada"
    assert device.mig_enabled is False


@pytest.mark.parametrize(
    ("fail", "error", "words"),
    [
        ({"nvmlInit": 12}, NvmlLibraryNotFound, "install the NVIDIA driver"),
        ({"nvmlInit": 9}, DriverNotLoaded, "modprobe nvidia"),
        ({"nvmlInit": 4}, InsufficientPermissions, "/dev/nvidia"),
        ({"nvmlDeviceGetHandleByIndex": 4}, InsufficientPermissions, "reading GPU 0"),
        ({"nvmlInit": 18}, DriverLibraryMismatch, "reboot"),
        ({"nvmlDeviceGetCount": 15}, GPULost, "Xid"),
        ({"nvmlInit": 13}, NvmlError, "update the driver"),
        ({"nvmlInit": 999}, NvmlError, "NVML error 999"),
        ({"empty": 0}, NoGPUsFound, "nvidia-smi -L"),
    ],
)
def test_nvml_errors_map_to_distinct_actionable_errors(
    fail: dict[str, int], error: type[DetectionError], words: str
) -> None:
    with pytest.raises(error) as info:
        NvmlBackend(nvml=FakeNvml("l4-x1", fail=fail), host_reader=lambda: HOST).read()
    assert words in str(info.value)
    assert info.value.code == error.__name__


def test_exit_codes_are_distinct() -> None:
    classes = [
        NvmlLibraryNotFound, DriverNotLoaded, InsufficientPermissions, DriverLibraryMismatch,
        GPULost, NoGPUsFound, NvmlError, ProfileNotFound, DetectionError,
    ]  # fmt: skip
    codes = [c.exit_code for c in classes]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes


def test_default_backend_uses_the_pynvml_module(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml("a10g-x1")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(detect_mod, "read_host_info", lambda: HOST)
    report = NvmlBackend(host_reader=lambda: HOST).read()
    assert report.devices[0].name == "NVIDIA A10G"


def test_missing_pynvml_package_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlLibraryNotFound, match="pip install nvidia-ml-py"):
        NvmlBackend().read()


def test_profile_backend_and_detect() -> None:
    assert detect(ProfileBackend("l4-x1")) == load_profile("l4-x1")
    report = load_profile("t4-x1")
    assert detect(ProfileBackend(report)) is report
    with pytest.raises(ProfileNotFound, match="rtx4090-x4"):
        detect(ProfileBackend("no-such-machine"))


def test_host_info_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC 7R32\n")
    (tmp_path / "meminfo").write_text("MemTotal:       32768000 kB\nMemFree: 1 kB\n")
    host = read_host_info(tmp_path)
    assert host.cpu_model == "AMD EPYC 7R32"
    assert host.memory_mib == 32000
    assert host.cpu_cores >= 1


def test_host_info_without_proc_still_answers(tmp_path: Path) -> None:
    host = read_host_info(tmp_path / "missing")
    assert host.cpu_model
    assert host.memory_mib >= 1


@pytest.mark.parametrize(
    ("cc", "family"),
    [((7, 0), "volta"), ((7, 5), "turing"), ((8, 0), "ampere"), ((8, 6), "ampere"), ((8, 9), "ada"),
     ((9, 0), "hopper"), ((10, 0), "blackwell"), ((12, 0), "blackwell"), ((6, 1), "pascal"),
     ((42, 0), "unknown")],
)  # fmt: skip
def test_architecture_for_cc(cc: tuple[int, int], family: str) -> None:
    assert architecture_for_cc(*cc) == family


@pytest.mark.gpu
@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is None, reason="needs an NVIDIA driver (NVML)")
def test_real_nvml_backend_on_this_machine(tmp_path: Path) -> None:
    """On a GPU machine: NVML answers, every GPU is in the catalog and valid; the report is recorded.

    Set GPUFLEET_RECORD_PROFILE=<dir> to keep the report as a new profile fixture.
    """
    from gpufleet.hardware.catalog import load_catalog
    from gpufleet.hardware.validation import validate_report

    report = detect()
    assert report.devices
    results = validate_report(report, load_catalog())
    record_dir = Path(os.environ.get("GPUFLEET_RECORD_PROFILE", tmp_path))
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / "detected.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2))
    assert [r.reason for r in results] == ["Valid"] * len(report.devices), [r.message for r in results]
