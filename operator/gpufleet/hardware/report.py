"""What a machine reports about its GPUs and host: the input of validation and engine selection.

Values are kept exactly as NVML reports them (names, MiB, "major.minor" compute capability) so
that a report recorded on a real machine and one produced by the live backend are comparable.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

_CC_RE = re.compile(r"^\d{1,2}\.\d$")
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")


def parse_version(text: str) -> tuple[int, ...]:
    """Turn a dotted version ("550.54.15", "12.4") into a comparable tuple; raise on anything else."""
    value = text.strip()
    if not _VERSION_RE.match(value):
        raise ValueError(f"not a dotted numeric version: {text!r} (expected e.g. '550.54.15' or '12.4')")
    return tuple(int(part) for part in value.split("."))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version a is older than, equal to or newer than b (missing parts count as 0)."""
    ta, tb = parse_version(a), parse_version(b)
    width = max(len(ta), len(tb))
    pa = ta + (0,) * (width - len(ta))
    pb = tb + (0,) * (width - len(tb))
    return (pa > pb) - (pa < pb)


def cc_tuple(compute_capability: str) -> tuple[int, int]:
    """("8.9") -> (8, 9); compute capabilities compare numerically, never as strings ("10.0" > "9.0")."""
    if not _CC_RE.match(compute_capability):
        raise ValueError(f"compute capability must look like '8.9', got {compute_capability!r}")
    major, minor = compute_capability.split(".")
    return int(major), int(minor)


class GPUDevice(BaseModel):
    """One physical GPU as NVML sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    uuid: str = Field(min_length=1)
    name: str = Field(min_length=1, description="nvmlDeviceGetName, e.g. 'NVIDIA GeForce RTX 4090'")
    pci_device_id: int = Field(ge=0, le=0xFFFF, description="16-bit PCI device id; vendor 0x10de implied")
    memory_total_mib: int = Field(ge=0, description="nvmlDeviceGetMemoryInfo().total in MiB")
    compute_capability: str = Field(description="'major.minor', e.g. '8.9'")
    architecture: str = Field(min_length=1, description="lower-case family: volta, turing, ampere, ...")
    mig_enabled: bool = False

    @field_validator("compute_capability")
    @classmethod
    def _cc_shape(cls, value: str) -> str:
        cc_tuple(value)
        return value

    @field_validator("pci_device_id", mode="before")
    @classmethod
    def _pci_from_hex(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return int(value, 16)
            except ValueError as exc:
                raise ValueError(
                    f"PCI device id must be an int or hex string like '0x2684': {value!r}"
                ) from exc
        return value


class HostInfo(BaseModel):
    """The CPU and memory of the machine the GPUs sit in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu_model: str = Field(min_length=1)
    cpu_cores: int = Field(ge=1, description="logical CPUs available")
    memory_mib: int = Field(ge=1, description="total system memory in MiB")


class HardwareReport(BaseModel):
    """Everything detection found on one machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    devices: list[GPUDevice]
    host: HostInfo
    driver_version: str = Field(description="e.g. '550.54.15'")
    cuda_driver_version: str = Field(description="CUDA version the driver supports, e.g. '12.4'")

    @field_validator("driver_version", "cuda_driver_version")
    @classmethod
    def _dotted(cls, value: str) -> str:
        parse_version(value)
        return value

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: list[GPUDevice]) -> list[GPUDevice]:
        indexes = [d.index for d in devices]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"device indexes must be unique, got {indexes}")
        uuids = [d.uuid for d in devices]
        if len(set(uuids)) != len(uuids):
            raise ValueError("device uuids must be unique")
        return devices
