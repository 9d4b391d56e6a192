"""Builders of raw Kubernetes bodies for the operator's pure functions."""

from __future__ import annotations

from typing import Any

from gpufleet.hardware.catalog import GPUModel, load_catalog

CATALOG = load_catalog()


def model(key: str) -> GPUModel:
    found = CATALOG.by_key(key)
    assert found is not None, key
    return found


def inode_body(
    name: str = "box1",
    *,
    pool: str = "pool-a",
    node: str = "node-1",
    ns: str = "fleet",
    gpu_count: int | None = None,
    engine: str = "auto",
    status: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "poolRef": {"name": pool},
        "nodeName": node,
        "engine": engine,
        "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 8192}],
        "release": {"channel": "stable"},
    }
    if gpu_count is not None:
        spec["gpuCount"] = gpu_count
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


def node_body(
    name: str = "node-1", gpu: str = "rtx-4090", count: int = 4, allocatable: int | None = None
) -> dict[str, Any]:
    m = model(gpu)
    major, minor = m.compute_capability.split(".")
    return {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": m.gfd_product,
                "nvidia.com/gpu.memory": str(m.vram_mib),
                "nvidia.com/gpu.count": str(count),
                "nvidia.com/gpu.compute.major": major,
                "nvidia.com/gpu.compute.minor": minor,
                "kubernetes.io/hostname": name,
            },
        },
        "status": {"allocatable": {"nvidia.com/gpu": str(count if allocatable is None else allocatable)}},
    }


def device_json(
    index: int, gpu: str = "rtx-4090", *, vram: int | None = None, name: str | None = None
) -> dict[str, Any]:
    m = model(gpu)
    return {
        "index": index,
        "uuid": f"GPU-{gpu}-{index:04d}",
        "name": name or m.nvml_names[0],
        "pci_device_id": m.pci_device_ids[0],
        "memory_total_mib": m.vram_mib if vram is None else vram,
        "compute_capability": m.compute_capability,
        "architecture": m.architecture,
        "mig_enabled": False,
    }


def hardware_json(*devices: dict[str, Any], driver: str = "570.86.15") -> dict[str, Any]:
    return {
        "report": {
            "devices": list(devices),
            "host": {"cpu_model": "AMD EPYC 7763", "cpu_cores": 64, "memory_mib": 515000},
            "driver_version": driver,
            "cuda_driver_version": "12.8",
        },
        "validation": [],
        "engine": {"engine": "vllm", "rule": "default", "reason": "test"},
    }


def pool_body(
    name: str = "pool-a",
    ns: str = "fleet",
    self_stake: str = "100000",
    delegated: str = "0",
    reputation: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"selfStake": self_stake, "delegatedStake": delegated, "commissionBps": 500}
    if reputation is not None:
        spec["reputationWeight"] = reputation
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
        "status": {},
    }


def pod_body(
    pod: dict[str, Any],
    *,
    phase: str = "Running",
    ready: bool = False,
    gate: str | None = None,
    deleting: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    """A created pod manifest as the API would return it later in its life."""
    body = {**pod, "metadata": {**pod["metadata"], "uid": uid or f"uid-{pod['metadata']['name']}"}}
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conds = [{"type": "Ready", "status": "True" if ready else "False"}]
    if gate is not None:
        conds.append({"type": "gpufleet.io/engine-ready", "status": gate})
    body["status"] = {
        "phase": phase,
        "conditions": conds,
        "containerStatuses": [{"name": "engine", "ready": ready}],
    }
    return body
