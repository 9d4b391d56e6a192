"""Run the real operator (kopf + reconciler) in-process against a DevCluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf

from gpufleet.controllers.handlers import kopf_settings, make_registry
from gpufleet.controllers.reconciler import Reconciler
from gpufleet.settings import OperatorSettings
from gpufleet_devcluster.cluster import DevCluster

GROUP = "gpufleet.io/v1alpha1"
NS = "fleet"
IMAGE = "ghcr.io/gpufleet/engine@sha256:" + "e" * 64


def fast_settings(**overrides: Any) -> OperatorSettings:
    values: dict[str, Any] = {
        "pool_settle_seconds": 0.05,
        "event_batch_seconds": 0.02,
        "readiness_recheck_seconds": 0.05,
        "readiness_recheck_max_seconds": 0.2,
        "agent_request_timeout_seconds": 2.0,
        "workers": 4,
        "liveness_endpoint": None,
        **overrides,
    }
    return OperatorSettings(**values)


@contextlib.asynccontextmanager
async def running_operator(
    cluster: DevCluster, settings: OperatorSettings | None = None
) -> AsyncIterator[Reconciler]:
    settings = settings or fast_settings()
    reconciler = Reconciler(settings)
    registry = make_registry(reconciler, kubeconfig=str(cluster.kubeconfig_path))
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield reconciler
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def release(name: str = "engine-1-0-0", version: str = "1.0.0", channel: str = "stable") -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "EngineRelease",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "image": IMAGE,
            "channel": channel,
            "minDriverVersion": "550.54.15",
            "minCUDAVersion": "12.4",
            "engines": ["vllm", "sglang"],
        },
    }


def pool(name: str, self_stake: str = "100000", delegated: str = "0") -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "OperatorPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selfStake": self_stake, "delegatedStake": delegated, "commissionBps": 500},
    }


def inode(name: str, pool_name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "poolRef": {"name": pool_name},
            "nodeName": node,
            "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
        },
    }


def status_of(cluster: DevCluster, kind: str, name: str) -> dict[str, Any]:
    obj = cluster.get(GROUP, kind, name, NS)
    return dict((obj or {}).get("status") or {})


def engine_pods(cluster: DevCluster) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.pods(NS)
        if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "gpufleet"
    ]


def events(cluster: DevCluster, involved: str | None = None) -> list[dict[str, Any]]:
    rtype = cluster.store.resolve("", "v1", "events")
    found = cluster.store.objects(rtype, NS)
    return [e for e in found if involved is None or e["involvedObject"]["name"] == involved]


def inode_settled(cluster: DevCluster, name: str, ready: int, total: int) -> Callable[[], bool]:
    def check() -> bool:
        status = status_of(cluster, "InferenceNode", name)
        devices = status.get("devices") or []
        pending = any(d["validation"]["reason"] == "AwaitingHardwareReport" for d in devices)
        return status.get("readyDevices") == ready and status.get("totalDevices") == total and not pending

    check.__name__ = f"{name} has {ready}/{total} ready GPUs"
    return check


async def quiet(cluster: DevCluster, seconds: float = 0.6) -> list[Any]:
    """Writes made during a pause (after convergence: must be none).

    A short grace period first lets fire-and-forget Events of the last transition land.
    """
    await asyncio.sleep(0.3)
    mark = cluster.requests.mark()
    await asyncio.sleep(seconds)
    return [(w.verb, w.resource, w.name) for w in cluster.requests.writes(since=mark)]
