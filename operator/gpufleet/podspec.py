"""The engine pod of one GPU: a pure function of the InferenceNode, the device and the release.

Pod names are deterministic (``<inode>-gpu-<index>``) so that creating a pod twice (a restart,
a stale cache) fails with 409 instead of producing a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpufleet import API_GROUP, API_VERSION
from gpufleet.objects import (
    LABEL_DEVICE,
    LABEL_INODE,
    LABEL_MANAGED_BY,
    LABEL_POOL,
    LABEL_ROUTABLE,
    LABEL_VERSION,
    MANAGED_BY,
    READY_GATE,
    InodeView,
)
from gpufleet.settings import OperatorSettings

ENGINE_CONTAINER = "engine"
APP_NAME = "gpufleet-engine"
ANNOTATION_PRODUCT = "gpufleet.io/gpu-product"

_MAX_NAME = 253
_MAX_LABEL = 63


@dataclass(frozen=True)
class PodRelease:
    """The engine image and its version label (from an EngineRelease or the settings' default)."""

    version: str
    image: str


@dataclass(frozen=True)
class PodDevice:
    """The GPU a pod serves, as planned from the node's labels."""

    index: int
    routable: bool
    product: str | None = None


def pod_name(inode_name: str, index: int) -> str:
    name = f"{inode_name}-gpu-{index}"
    if len(name) > _MAX_NAME:
        raise ValueError(f"pod name {name!r} exceeds {_MAX_NAME} characters; shorten the InferenceNode name")
    return name


def _label_value(value: str, what: str) -> str:
    if len(value) > _MAX_LABEL:
        raise ValueError(
            f"{what} {value!r} is longer than {_MAX_LABEL} characters and cannot be a label value"
        )
    return value


def pod_labels(inode: InodeView, device: PodDevice, release: PodRelease) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": _label_value(inode.name, "InferenceNode name"),
        LABEL_MANAGED_BY: MANAGED_BY,
        "app.kubernetes.io/component": "engine",
        "app.kubernetes.io/version": _label_value(release.version, "engine version"),
        LABEL_POOL: _label_value(inode.pool, "pool name"),
        LABEL_INODE: inode.name,
        LABEL_DEVICE: str(device.index),
        LABEL_ROUTABLE: "true" if device.routable else "false",
        LABEL_VERSION: release.version,
    }


def _resources(inode: InodeView, settings: OperatorSettings) -> dict[str, dict[str, Any]]:
    """User overrides, with exactly one GPU forced: one engine per GPU is the design."""
    requests = {k: v for k, v in inode.requests.items() if k != settings.gpu_resource_name}
    limits = {k: v for k, v in inode.limits.items() if k != settings.gpu_resource_name}
    requests[settings.gpu_resource_name] = "1"
    limits[settings.gpu_resource_name] = "1"
    return {"requests": requests, "limits": limits}


def _env(inode: InodeView, device: PodDevice) -> list[dict[str, Any]]:
    model = inode.models[0]
    env: list[dict[str, Any]] = [
        {"name": "GPUFLEET_ENGINE", "value": inode.engine},
        {"name": "GPUFLEET_MODEL", "value": model.name},
        {"name": "GPUFLEET_DEVICE_INDEX", "value": str(device.index)},
        {"name": "GPUFLEET_POOL", "value": inode.pool},
        {"name": "GPUFLEET_NODE", "value": inode.name},
    ]
    if model.max_model_len is not None:
        env.append({"name": "GPUFLEET_MAX_MODEL_LEN", "value": str(model.max_model_len)})
    if model.quantization:
        env.append({"name": "GPUFLEET_QUANTIZATION", "value": model.quantization})
    env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return env


def build_pod(
    inode: InodeView, device: PodDevice, release: PodRelease, settings: OperatorSettings
) -> dict[str, Any]:
    """The full pod manifest; everything a reconcile compares against lives in labels."""
    agent = settings.agent_port
    probe_port: dict[str, Any] = {"port": agent, "scheme": "HTTP"}
    annotations = {ANNOTATION_PRODUCT: device.product} if device.product else {}
    spec: dict[str, Any] = {
        "nodeName": inode.node_name,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": settings.engine_termination_grace_seconds,
        "readinessGates": [{"conditionType": READY_GATE}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [inode.node_name]}
                        ]}
                    ]
                }
            }
        },
        "tolerations": [
            {"key": settings.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"},
        ],
        "containers": [
            {
                "name": ENGINE_CONTAINER,
                "image": release.image,
                "imagePullPolicy": "IfNotPresent",
                # No command: the image's entrypoint (tini, then `gpufleet-node run`) reaps the
                # engine's worker processes and forwards signals.
                "env": _env(inode, device),
                "ports": [
                    {"name": "status", "containerPort": agent, "protocol": "TCP"},
                    {"name": "http", "containerPort": settings.engine_port, "protocol": "TCP"},
                ],
                "resources": _resources(inode, settings),
                "startupProbe": {
                    "httpGet": {"path": "/livez", **probe_port},
                    "periodSeconds": 5,
                    "failureThreshold": 60,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/livez", **probe_port},
                    "periodSeconds": 10,
                    "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": {"path": "/readyz", **probe_port},
                    "periodSeconds": 5,
                    "failureThreshold": 3,
                },
            }
        ],
    }
    if settings.service_account_name:
        spec["serviceAccountName"] = settings.service_account_name
    metadata: dict[str, Any] = {
        "name": pod_name(inode.name, device.index),
        "namespace": inode.namespace,
        "labels": pod_labels(inode, device, release),
        "ownerReferences": [
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "InferenceNode",
                "name": inode.name,
                "uid": inode.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
