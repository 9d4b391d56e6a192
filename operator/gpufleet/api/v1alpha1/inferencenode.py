"""InferenceNode: one Kubernetes node's GPUs serving models for an operator pool."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from gpufleet.api.common import (
    DNS_SUBDOMAIN_PATTERN,
    SEMVER_PATTERN,
    ApiModel,
    Condition,
    CRDInfo,
    LocalObjectReference,
    PrinterColumn,
    Resource,
    cel,
    conditions_field,
    rule_error,
)
from gpufleet.api.quantity import IntAmount
from gpufleet.api.v1alpha1.rollout import RolloutStatus

Engine = Literal["auto", "vllm", "sglang"]
ConcreteEngine = Literal["vllm", "sglang"]
Channel = Literal["stable", "candidate", "nightly"]

#: Kubernetes resource quantity (``500m``, ``16Gi``, ``2``), as in the core OpenAPI schema.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
#: Hugging Face style model id: ``org/name`` or a bare name, no spaces.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"
PERCENT_PATTERN = r"^(100|[1-9][0-9]?)%$"

Quantity = Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=64)]
ResourceList = Annotated[dict[str, Quantity], Field(max_length=16)]


class ModelSpec(ApiModel):
    """A model to serve."""

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=MODEL_NAME_PATTERN,
        description="Model id as the engine loads it, e.g. meta-llama/Llama-3.1-8B-Instruct.",
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        le=4_194_304,
        description="Maximum context length in tokens; absent lets the engine pick from the model config.",
    )
    quantization: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Quantization method passed to the engine (e.g. fp8, awq, gptq); absent means none.",
    )


class ReleaseSelector(ApiModel):
    """Which engine release to run: follow a channel, or pin one version."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.channel) && has(self.version))",
                    "set either channel or version, not both",
                    reason="FieldValueForbidden",
                    field_path=".version",
                )
            ]
        }
    )

    channel: Channel | None = Field(
        default=None,
        description="Release channel to follow (stable, candidate, nightly). Neither channel nor "
        "version means stable.",
    )
    version: str | None = Field(
        default=None,
        max_length=64,
        pattern=SEMVER_PATTERN,
        description="Pinned EngineRelease semantic version (e.g. 0.11.0); disables channel following.",
    )

    @model_validator(mode="after")
    def _channel_xor_version(self) -> ReleaseSelector:
        if self.channel is not None and self.version is not None:
            raise rule_error("version", "set either channel or version, not both")
        return self

    @property
    def effective_channel(self) -> Channel | None:
        """The channel followed, or None when a version is pinned."""
        if self.version is not None:
            return None
        return self.channel or "stable"


MaxUnavailable = Annotated[int, Field(ge=1, le=1024)] | Annotated[str, Field(pattern=PERCENT_PATTERN)]


class UpdatePolicy(ApiModel):
    """How engine updates roll out over this node's devices."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    # has(): kube-apiserver also checks this rule against the `default: {}` of
                    # updatePolicy, where the fields are not there yet (found on the real backend, #13).
                    "!has(self.minReadySeconds) || !has(self.progressDeadlineSeconds) || "
                    "self.minReadySeconds < self.progressDeadlineSeconds",
                    "minReadySeconds must be less than progressDeadlineSeconds",
                    field_path=".minReadySeconds",
                )
            ]
        }
    )

    automatic: bool = Field(
        default=True,
        description="Apply new minor and patch versions of the followed channel without operator "
        "action. Major versions always need approvedMajorVersion.",
    )
    max_unavailable: MaxUnavailable = Field(
        default=1,
        description="Devices that may be updating at once: a count >= 1 or a percentage (1%-100%) "
        "of the node's devices, rounded down but at least one.",
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=60,
        le=86_400,
        description="Seconds an updated device has to become ready before the update is rolled back.",
    )
    min_ready_seconds: int = Field(
        default=30,
        ge=0,
        le=3_600,
        description="Seconds an updated device must stay ready before the next device is updated.",
    )
    update_unhealthy: bool = Field(
        default=False,
        description="Also update devices that are not ready (normally they are skipped and reported).",
    )
    approved_major_version: int | None = Field(
        default=None,
        ge=0,
        description="Highest major version the platform engineer approved for automatic updates.",
    )

    @model_validator(mode="after")
    def _ready_before_deadline(self) -> UpdatePolicy:
        if self.min_ready_seconds >= self.progress_deadline_seconds:
            raise rule_error("minReadySeconds", "minReadySeconds must be less than progressDeadlineSeconds")
        return self

    def max_unavailable_count(self, devices: int) -> int:
        """Resolve maxUnavailable against a device count: at least 1, at most ``devices``."""
        value = self.max_unavailable
        count = devices * int(value.rstrip("%")) // 100 if isinstance(value, str) else value
        return max(1, min(count, max(devices, 1)))


class ResourceOverrides(ApiModel):
    """Requests and limits for the engine container, merged over the operator's defaults."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.requests) || !('nvidia.com/gpu' in self.requests)",
                    "requests must not set nvidia.com/gpu: the operator gives each engine pod one GPU",
                    field_path=".requests",
                ),
                cel(
                    "!has(self.limits) || !('nvidia.com/gpu' in self.limits)",
                    "limits must not set nvidia.com/gpu: the operator gives each engine pod one GPU",
                    field_path=".limits",
                ),
            ]
        }
    )

    requests: ResourceList = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: \"8\", memory: 64Gi}."
    )
    limits: ResourceList = Field(
        default_factory=dict,
        description="Maximum resources. nvidia.com/gpu is always 1 per engine pod and cannot be overridden.",
    )

    @model_validator(mode="after")
    def _no_gpu_override(self) -> ResourceOverrides:
        for which, values in (("requests", self.requests), ("limits", self.limits)):
            if "nvidia.com/gpu" in values:
                raise rule_error(
                    which, f"{which} must not set nvidia.com/gpu: the operator gives each engine pod one GPU"
                )
        return self


class InferenceNodeSpec(ApiModel):
    """Desired state of an InferenceNode."""

    pool_ref: LocalObjectReference = Field(
        description="The OperatorPool (same namespace) whose stake backs these GPUs."
    )
    node_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="The Kubernetes node whose GPUs this InferenceNode runs. Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [cel("self == oldSelf", "nodeName is immutable")]
        },
    )
    gpu_count: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="How many of the node's GPUs to use (lowest indices first); absent means all.",
    )
    engine: Engine = Field(
        default="auto",
        description="Inference engine: auto (chosen per GPU from its architecture, compute "
        "capability and VRAM), vllm or sglang.",
    )
    models: list[ModelSpec] = Field(
        min_length=1,
        max_length=8,
        description="Models to serve, at least one; model names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    release: ReleaseSelector = Field(
        default_factory=ReleaseSelector,
        description="Engine release to run: a channel or a pinned version.",
        json_schema_extra={"default": {}},
    )
    update_policy: UpdatePolicy = Field(
        default_factory=UpdatePolicy,
        description="How engine updates are applied.",
        json_schema_extra={"default": {}},
    )
    resources: ResourceOverrides | None = Field(
        default=None, description="Resource overrides for the engine container."
    )

    @model_validator(mode="after")
    def _unique_models(self) -> InferenceNodeSpec:
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise rule_error("models", f"duplicate model name {model.name!r}")
            seen.add(model.name)
        return self


class DeviceValidation(ApiModel):
    """Outcome of checking a GPU against the catalog (see gpufleet.hardware.validation)."""

    valid: bool = Field(description="True when the GPU was identified and matches the catalog.")
    reason: str = Field(
        max_length=64,
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        description="Machine-readable reason: Valid, UnknownProduct, PCIIdMismatch, VRAMMismatch, "
        "ComputeCapabilityMismatch, MIGSlice, DriverTooOld or GFDLabelMismatch.",
    )
    message: str = Field(default="", max_length=4096, description="Human-readable explanation.")


class DeviceStatus(ApiModel):
    """Observed state of one GPU and its engine pod."""

    index: int = Field(ge=0, le=63, description="NVML device index on the node.")
    uuid: str | None = Field(default=None, max_length=64, description="NVML GPU UUID (GPU-...).")
    product: str | None = Field(default=None, max_length=128, description="Product name as NVML reports it.")
    architecture: str | None = Field(
        default=None, max_length=32, description="GPU architecture, e.g. hopper."
    )
    compute_capability: str | None = Field(
        default=None,
        pattern=r"^[0-9]+\.[0-9]+$",
        max_length=8,
        description="CUDA compute capability as major.minor, e.g. \"9.0\".",
    )
    vram_mib: int | None = Field(default=None, ge=0, alias="vramMiB", description="Total VRAM in MiB.")
    validation: DeviceValidation | None = Field(default=None, description="GPU validation outcome.")
    pod_name: str | None = Field(default=None, max_length=253, description="Engine pod serving this GPU.")
    engine: ConcreteEngine | None = Field(default=None, description="Engine selected for this GPU.")
    vram_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="This GPU's VRAM over the pool's total validated VRAM (0..1).",
    )
    effective_stake: IntAmount | None = Field(
        default=None,
        description="Pool stake times vramShare, as an INT decimal string.",
    )
    priority_score: float | None = Field(
        default=None,
        ge=0,
        description="Routing priority: 1 + k * vramShare * total stake * reputation weight.",
    )
    ready: bool = Field(default=False, description="True when the engine pod passed its readiness checks.")
    routable: bool = Field(default=False, description="True when the device receives inference traffic.")


class InferenceNodeStatus(ApiModel):
    """Observed state of an InferenceNode, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this status describes."
    )
    conditions: list[Condition] = conditions_field(
        "Ready, GPUValidated, EngineSelected, Updating, RolledBack"
    )
    devices: list[DeviceStatus] = Field(
        default_factory=list,
        max_length=64,
        description="One entry per GPU used, keyed by index.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["index"]},
    )
    ready_devices: int | None = Field(default=None, ge=0, description="Devices whose engine is ready.")
    total_devices: int | None = Field(default=None, ge=0, description="Devices managed.")
    current_version: str | None = Field(
        default=None, max_length=64, description="Engine version running on every device."
    )
    target_version: str | None = Field(
        default=None, max_length=64, description="Engine version being rolled out."
    )
    last_stable_version: str | None = Field(
        default=None,
        max_length=64,
        description="Last version that passed health checks; the rollback target.",
    )
    rollout: RolloutStatus | None = Field(
        default=None,
        description="Progress of the current rollout (written by the rollout step of the operator).",
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if set."""
        return next((c for c in self.conditions if c.type == type_), None)


class InferenceNode(Resource):
    """GPUs of one Kubernetes node, each running an engine pod that serves models for a pool."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        kind="InferenceNode",
        plural="inferencenodes",
        singular="inferencenode",
        scope="Namespaced",
        short_names=("inode",),
        printer_columns=(
            PrinterColumn("Pool", ".spec.poolRef.name", description="OperatorPool"),
            PrinterColumn("Node", ".spec.nodeName", description="Kubernetes node"),
            PrinterColumn("GPUs", ".status.totalDevices", "integer", "Devices managed"),
            PrinterColumn("Ready", ".status.readyDevices", "integer", "Devices ready"),
            PrinterColumn("Engine", ".spec.engine", description="Engine preference"),
            PrinterColumn("Version", ".status.currentVersion", description="Engine version running"),
            PrinterColumn("Target", ".status.targetVersion", description="Engine version being rolled out"),
            PrinterColumn("Rollout", ".status.rollout.phase", description="Engine rollout phase"),
            PrinterColumn(
                "Status", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"
            ),
            PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
        ),
        description="InferenceNode runs one engine pod per GPU of a Kubernetes node, serving "
        "models for an OperatorPool, and keeps the engine updated.",
    )

    kind: Literal["InferenceNode"] = Field(default="InferenceNode", description="InferenceNode.")
    spec: InferenceNodeSpec = Field(description="Desired state.")
    status: InferenceNodeStatus | None = Field(default=None, description="Observed state.")

