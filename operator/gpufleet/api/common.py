"""Building blocks shared by every gpufleet kind: the base model, conditions, object metadata.

The models are the single source of truth for the CRDs (``gpufleet.api.crdgen``): descriptions
become ``kubectl explain`` text, bounds and patterns become OpenAPI validations and the
``x-kubernetes-*`` hints (CEL rules, list types, defaults for nested objects) ride along in
``json_schema_extra``. Cross-field rules exist twice, as CEL for the API server and as Python for
the models; the bad-input corpus in ``tests/fixtures/invalid`` keeps the two in agreement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

GROUP = "gpufleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: RFC 1123 DNS subdomain: what Kubernetes accepts for object and node names.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: Semantic version 2.0.0, exactly as semver.org defines it (no leading "v").
SEMVER_PATTERN = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-((0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
#: metav1.Condition's reason: CamelCase, machine-readable.
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
#: metav1.Condition's type (optionally prefixed with a DNS subdomain, e.g. gpufleet.io/Foo).
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
#: RFC 3339 date-time as Kubernetes writes it (``2025-06-06T12:00:00Z``).
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

_RFC3339_RE = re.compile(RFC3339_PATTERN)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry (a CEL rule the API server evaluates)."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def rule_error(field_name: str, message: str) -> PydanticCustomError:
    """Error for a cross-field rule that names the offending field, like a CEL ``fieldPath``.

    ``gpufleet.api.validation.pydantic_field_errors`` appends ``field`` to the error location so
    that the model and the API server report the same path.
    """
    return PydanticCustomError("gpufleet_rule", message, {"field": field_name})


@dataclass(frozen=True)
class PrinterColumn:
    """An ``additionalPrinterColumns`` entry (what ``kubectl get`` shows)."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class CRDInfo:
    """Naming and presentation of a kind; read by the CRD generator."""

    kind: str
    plural: str
    singular: str
    scope: Literal["Namespaced", "Cluster"]
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...] = ()
    categories: tuple[str, ...] = ("gpufleet",)
    group: str = GROUP
    version: str = VERSION
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, unknown fields refused.

    Unknown fields are refused because ``kubectl`` uses strict field validation by default, and
    types are strict (no ``"5"`` for 5) because the API server's schema check is strict too.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        validate_assignment=True,
    )


def _check_rfc3339(value: str) -> str:
    if not _RFC3339_RE.fullmatch(value):
        raise ValueError(f"must be an RFC 3339 date-time like 2025-06-06T12:00:00Z, got {value!r}")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {value!r} ({exc})") from None
    return value


Timestamp = Annotated[
    str,
    AfterValidator(_check_rfc3339),
    Field(json_schema_extra={"format": "date-time"}),
]


class Condition(ApiModel):
    """One observation of an object's state, in the shape of metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Type of condition in CamelCase, e.g. Ready, GPUValidated, MinimumSelfStake.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was set for; older means the condition "
        "may be out of date.",
    )
    last_transition_time: Timestamp = Field(
        description="When the condition last changed from one status to another (RFC 3339)."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        default="",
        max_length=32768,
        description="Human-readable details about the transition; may be empty.",
    )


def conditions_field(types: str) -> Any:
    """The ``conditions`` list of a status: a list-map keyed by ``type``."""
    return Field(
        default_factory=list,
        max_length=16,
        description=f"Current state of the object as conditions ({types}).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata gpufleet reads; the rest is kept as is."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
        serialize_by_alias=True, extra="allow",
    )

    name: str | None = Field(default=None, max_length=253, description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace of namespaced objects.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")
    generation: int | None = Field(default=None, description="Spec generation, set by the server.")
    uid: str | None = Field(default=None, description="Unique id, set by the server.")
    resource_version: str | None = Field(default=None, description="Resource version.")


class LocalObjectReference(ApiModel):
    """A reference to another object in the same namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the referenced object.",
    )


class Resource(ApiModel):
    """Base of the top-level kinds: apiVersion, kind, metadata, spec, status."""

    crd: ClassVar[CRDInfo]

    api_version: Literal["gpufleet.io/v1alpha1"] = Field(
        default="gpufleet.io/v1alpha1", description="API version: gpufleet.io/v1alpha1."
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
