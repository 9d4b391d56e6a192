"""Recorded hardware profiles: what detection reports on known machines, shipped as JSON data.

They let the emulator, the demo and tests run the real validation and selection code without a
GPU. Each file holds ``{"metadata": {...}, "report": HardwareReport}``; ``metadata.source`` says
where the values come from, ``metadata.gfd_labels`` (optional) overrides the GPU Feature Discovery
labels derived from the report, and ``metadata.expect`` states the validation verdict the profile
is meant to produce. Misrepresented profiles are named ``bad-*``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.hardware.report import HardwareReport, parse_version


class ProfileExpectation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    min_driver_version: str | None = None


class ProfileMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str
    source: str = Field(min_length=1)
    gfd_labels: dict[str, str] | None = None
    expect: ProfileExpectation


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metadata: ProfileMetadata
    report: HardwareReport


def _files() -> Any:
    return resources.files(__name__)


@functools.cache
def list_profiles() -> list[str]:
    """Names of every shipped profile, sorted."""
    return sorted(p.name.removesuffix(".json") for p in _files().iterdir() if p.name.endswith(".json"))


@functools.cache
def load_profile_document(name: str) -> Profile:
    """The whole profile (metadata and report)."""
    if name not in list_profiles():
        raise KeyError(f"no hardware profile named {name!r}; known: {', '.join(list_profiles())}")
    data = json.loads(_files().joinpath(f"{name}.json").read_text(encoding="utf-8"))
    profile = Profile.model_validate(data)
    if profile.metadata.name != name:
        raise ValueError(f"profile file {name}.json names itself {profile.metadata.name!r}")
    return profile


def load_profile(name: str) -> HardwareReport:
    """The recorded ``HardwareReport`` of a profile."""
    return load_profile_document(name).report


def gfd_labels_for(report: HardwareReport) -> dict[str, str]:
    """The node labels GPU Feature Discovery would publish for a machine (first GPU's product)."""
    if not report.devices:
        return {}
    first = report.devices[0]
    major, minor = first.compute_capability.split(".")
    driver = (*parse_version(report.driver_version), 0, 0)
    cuda = (*parse_version(report.cuda_driver_version), 0)
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "-".join(first.name.split()),
        "nvidia.com/gpu.memory": str(first.memory_total_mib),
        "nvidia.com/gpu.count": str(len(report.devices)),
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "nvidia.com/gpu.family": first.architecture,
        "nvidia.com/cuda.driver.major": str(driver[0]),
        "nvidia.com/cuda.driver.minor": str(driver[1]),
        "nvidia.com/cuda.driver.rev": str(driver[2]),
        "nvidia.com/cuda.runtime.major": str(cuda[0]),
        "nvidia.com/cuda.runtime.minor": str(cuda[1]),
    }


def profile_gfd_labels(name: str) -> dict[str, str]:
    """GFD labels for a profile's node: the recorded override merged over the derived labels."""
    profile = load_profile_document(name)
    labels = gfd_labels_for(profile.report)
    labels.update(profile.metadata.gfd_labels or {})
    return labels
