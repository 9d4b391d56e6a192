"""Resource types the emulator serves: built-ins plus CRDs registered at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """One REST resource (group/version/plural) and how the server treats it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Fields the real server lets field selectors use (besides metadata.name/namespace).
    selectable_fields: tuple[str, ...] = ()
    # Lists merged by key in strategic-merge patches: dotted path -> merge key ("" = set of scalars).
    merge_keys: tuple[tuple[str, str], ...] = ()
    # Custom resources carry their CRD version schema (openAPIV3Schema) for validation.
    schema: JsonObj | None = field(default=None, compare=False, hash=False)
    crd: JsonObj | None = field(default=None, compare=False, hash=False)
    # additionalPrinterColumns of a CRD version (what `kubectl get` shows as a Table).
    columns: tuple[JsonObj, ...] = field(default=(), compare=False, hash=False)
    crd_name: str = ""
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """`plural.group`, as the real server names resources (`pods`, `inferencenodes.gpufleet.io`)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_custom(self) -> bool:
        return bool(self.crd_name)


_META_FIELDS = ("metadata.name", "metadata.namespace")

_POD_MERGE_KEYS = (
    ("metadata.ownerReferences", "uid"),
    ("metadata.finalizers", ""),
    ("spec.containers", "name"),
    ("spec.initContainers", "name"),
    ("spec.containers.env", "name"),
    ("spec.containers.ports", "containerPort"),
    ("spec.containers.volumeMounts", "mountPath"),
    ("spec.initContainers.env", "name"),
    ("spec.volumes", "name"),
    ("spec.readinessGates", "conditionType"),
    ("status.conditions", "type"),
    ("status.containerStatuses", "name"),
    ("status.initContainerStatuses", "name"),
    ("status.podIPs", "ip"),
)
_NODE_MERGE_KEYS = (
    ("metadata.ownerReferences", "uid"),
    ("metadata.finalizers", ""),
    ("spec.taints", "key"),
    ("status.conditions", "type"),
    ("status.addresses", "type"),
)
_GENERIC_MERGE_KEYS = (
    ("metadata.ownerReferences", "uid"),
    ("metadata.finalizers", ""),
)


def builtin_types() -> list[ResourceType]:
    """The built-in resources the operator, kopf and the kubernetes client touch."""
    return [
        ResourceType(
            "",
            "v1",
            "pods",
            "Pod",
            True,
            "pod",
            ("po",),
            ("status", "proxy", "log"),
            selectable_fields=(
                *_META_FIELDS,
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ),
            merge_keys=_POD_MERGE_KEYS,
            categories=("all",),
        ),
        ResourceType(
            "",
            "v1",
            "nodes",
            "Node",
            False,
            "node",
            ("no",),
            ("status", "proxy"),
            selectable_fields=(*_META_FIELDS, "spec.unschedulable"),
            merge_keys=_NODE_MERGE_KEYS,
        ),
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            False,
            "namespace",
            ("ns",),
            ("status", "finalize"),
            selectable_fields=(*_META_FIELDS, "status.phase"),
            merge_keys=_GENERIC_MERGE_KEYS,
            verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        ),
        ResourceType(
            "",
            "v1",
            "events",
            "Event",
            True,
            "event",
            ("ev",),
            selectable_fields=(
                *_META_FIELDS,
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ),
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            True,
            "configmap",
            ("cm",),
            selectable_fields=_META_FIELDS,
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "",
            "v1",
            "secrets",
            "Secret",
            True,
            "secret",
            (),
            selectable_fields=(*_META_FIELDS, "type"),
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "",
            "v1",
            "services",
            "Service",
            True,
            "service",
            ("svc",),
            ("status", "proxy"),
            selectable_fields=_META_FIELDS,
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            True,
            "serviceaccount",
            ("sa",),
            selectable_fields=_META_FIELDS,
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            True,
            "lease",
            (),
            selectable_fields=_META_FIELDS,
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            True,
            "event",
            ("ev",),
            selectable_fields=(
                *_META_FIELDS,
                "reason",
                "type",
                "regarding.kind",
                "regarding.name",
                "regarding.namespace",
                "regarding.uid",
                "reportingController",
            ),
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            "customresourcedefinition",
            ("crd", "crds"),
            ("status",),
            selectable_fields=_META_FIELDS,
            merge_keys=_GENERIC_MERGE_KEYS,
        ),
    ]


class CRDError(ValueError):
    """A CustomResourceDefinition the emulator cannot serve."""


def types_from_crd(crd: JsonObj) -> list[ResourceType]:
    """Every served version of a CRD as a ResourceType (the real server serves each `served` version)."""
    try:
        spec = crd["spec"]
        group = spec["group"]
        names = spec["names"]
        plural = names["plural"]
        kind = names["kind"]
        scope = spec["scope"]
        versions = spec["versions"]
    except (KeyError, TypeError) as exc:
        raise CRDError(f"CRD {crd.get('metadata', {}).get('name')!r} lacks required field {exc}") from exc
    expected_name = f"{plural}.{group}"
    if crd.get("metadata", {}).get("name") != expected_name:
        raise CRDError(f"CRD metadata.name must be {expected_name!r} (spec.names.plural + '.' + spec.group)")
    if scope not in ("Namespaced", "Cluster"):
        raise CRDError(f"CRD {expected_name}: spec.scope must be Namespaced or Cluster, not {scope!r}")
    out = []
    for ver in versions:
        if not ver.get("served", True):
            continue
        subs = ver.get("subresources") or {}
        subresources = tuple(s for s in ("status", "scale") if s in subs)
        selectable = tuple(f["jsonPath"].lstrip(".") for f in ver.get("selectableFields") or [])
        out.append(
            ResourceType(
                group=group,
                version=ver["name"],
                plural=plural,
                kind=kind,
                namespaced=scope == "Namespaced",
                singular=names.get("singular", kind.lower()),
                short_names=tuple(names.get("shortNames") or ()),
                subresources=subresources,
                selectable_fields=(*_META_FIELDS, *selectable),
                merge_keys=_GENERIC_MERGE_KEYS,
                schema=(ver.get("schema") or {}).get("openAPIV3Schema"),
                crd=crd,
                columns=tuple(ver.get("additionalPrinterColumns") or ()),
                crd_name=expected_name,
                categories=tuple(names.get("categories") or ()),
            )
        )
    return out
