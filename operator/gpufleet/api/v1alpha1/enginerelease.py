"""EngineRelease: a published version of the unified engine image (cluster-scoped)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from gpufleet.api.common import (
    SEMVER_PATTERN,
    ApiModel,
    Condition,
    CRDInfo,
    PrinterColumn,
    Resource,
    cel,
    conditions_field,
    rule_error,
)
from gpufleet.api.v1alpha1.inferencenode import Channel, ConcreteEngine

#: ``repository@sha256:<64 hex>``: images are referenced by digest so a release is immutable.
IMAGE_DIGEST_PATTERN = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*@sha256:[a-f0-9]{64}$"
)
DRIVER_VERSION_PATTERN = r"^[0-9]{3,4}\.[0-9]{1,3}(\.[0-9]{1,3})?$"
CUDA_VERSION_PATTERN = r"^[0-9]{1,2}\.[0-9]{1,2}$"
ENGINE_VERSION_PATTERN = r"^[0-9]+\.[0-9]+(\.[0-9]+)?([.+-]?[0-9A-Za-z.]+)?$"


def _both_engines() -> list[ConcreteEngine]:
    return ["vllm", "sglang"]


class EngineVersions(ApiModel):
    """Versions of the engines bundled in the image."""

    vllm: str | None = Field(
        default=None, max_length=32, pattern=ENGINE_VERSION_PATTERN, description="vLLM version, e.g. 0.11.0."
    )
    sglang: str | None = Field(
        default=None, max_length=32, pattern=ENGINE_VERSION_PATTERN, description="SGLang version, e.g. 0.5.3."
    )


class EngineReleaseSpec(ApiModel):
    """What a release contains and what it needs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.engineVersions) || !has(self.engineVersions.vllm) || 'vllm' in self.engines",
                    "engineVersions.vllm is set but vllm is not in engines",
                    field_path=".engineVersions.vllm",
                ),
                cel(
                    "!has(self.engineVersions) || !has(self.engineVersions.sglang) "
                    "|| 'sglang' in self.engines",
                    "engineVersions.sglang is set but sglang is not in engines",
                    field_path=".engineVersions.sglang",
                ),
            ]
        }
    )

    version: str = Field(
        max_length=64,
        pattern=SEMVER_PATTERN,
        description="Semantic version of the release (e.g. 1.4.2); what InferenceNodes pin and compare.",
        json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "version is immutable")]},
    )
    image: str = Field(
        max_length=512,
        pattern=IMAGE_DIGEST_PATTERN,
        description="Engine image referenced by digest: repository@sha256:<64 hex digits>.",
        json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "image is immutable")]},
    )
    channel: Channel = Field(
        description="Channel the release is published on: stable, candidate or nightly. Promote a "
        "release by changing its channel."
    )
    min_driver_version: str | None = Field(
        default=None,
        max_length=16,
        pattern=DRIVER_VERSION_PATTERN,
        description="Lowest NVIDIA driver version the image runs on, e.g. 550.54.15.",
    )
    min_cuda_version: str | None = Field(
        default=None,
        alias="minCUDAVersion",
        max_length=8,
        pattern=CUDA_VERSION_PATTERN,
        description="Lowest CUDA version the driver must support, e.g. 12.4.",
    )
    engines: list[ConcreteEngine] = Field(
        default_factory=_both_engines,
        min_length=1,
        max_length=2,
        description="Engines the image contains (vllm, sglang).",
        json_schema_extra={"x-kubernetes-list-type": "set", "default": ["vllm", "sglang"]},
    )
    engine_versions: EngineVersions | None = Field(
        default=None, description="Version of each bundled engine."
    )
    notes: str | None = Field(default=None, max_length=4096, description="Release notes for humans.")
    failure_budget: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="How many InferenceNodes may fail this release and roll back before it is halted "
        "fleet-wide (no further node starts it until it is resumed).",
    )
    resume_count: int = Field(
        default=0,
        ge=0,
        description="Increment to resume a halted release: failures recorded before the increment no "
        "longer count against the budget and the nodes that failed may try again.",
    )

    @model_validator(mode="after")
    def _versions_match_engines(self) -> EngineReleaseSpec:
        if len(set(self.engines)) != len(self.engines):
            raise rule_error("engines", "engines must not repeat")
        if self.engine_versions is not None:
            for engine in ("vllm", "sglang"):
                if getattr(self.engine_versions, engine) is not None and engine not in self.engines:
                    raise rule_error(
                        f"engineVersions.{engine}",
                        f"engineVersions.{engine} is set but {engine} is not in engines",
                    )
        return self


class EngineReleaseStatus(ApiModel):
    """Fleet-wide rollout state of a release, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )
    halted: bool = Field(
        default=False, description="True when the failure budget is spent: no further node starts it."
    )
    halted_at: str | None = Field(default=None, max_length=64, description="When it was halted (RFC 3339).")
    failed_nodes: list[str] = Field(
        default_factory=list,
        max_length=1024,
        description="InferenceNodes (namespace/name) that failed this release and rolled back since the "
        "last resume; they count against failureBudget.",
    )
    observed_resume_count: int | None = Field(
        default=None, ge=0, description="The spec.resumeCount last acted upon."
    )
    conditions: list[Condition] = conditions_field("Halted")


class EngineRelease(Resource):
    """A published, immutable version of the unified engine image."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="EngineRelease",
        plural="enginereleases",
        singular="enginerelease",
        scope="Cluster",
        short_names=("erel",),
        printer_columns=(
            PrinterColumn("Version", ".spec.version", description="Semantic version"),
            PrinterColumn("Channel", ".spec.channel", description="Release channel"),
            PrinterColumn("Min Driver", ".spec.minDriverVersion", description="Lowest NVIDIA driver"),
            PrinterColumn("Halted", ".status.halted", "boolean", "Halted after its failure budget"),
            PrinterColumn("Image", ".spec.image", description="Image by digest", priority=1),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="EngineRelease is a published version of the unified vLLM/SGLang engine image, "
        "referenced by digest, on a release channel.",
    )

    kind: Literal["EngineRelease"] = Field(default="EngineRelease", description="EngineRelease.")
    spec: EngineReleaseSpec = Field(description="Desired state.")
    status: EngineReleaseStatus | None = Field(default=None, description="Observed state.")
