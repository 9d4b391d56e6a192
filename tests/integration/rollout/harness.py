"""The real operator (the one reconciler with its rollout step) against the emulator, in one event loop.

``Operator.kill()`` cancels every task of the operator wherever it is (between a status write and
a pod delete, say) without any cleanup, which is what a SIGKILL'd pod would leave behind; a new
``Operator`` then starts from the cluster's state alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from gpufleet.controllers.handlers import kopf_settings, make_registry
from gpufleet.controllers.reconciler import Reconciler
from gpufleet.controllers.rollout import RolloutController
from gpufleet.settings import OperatorSettings
from gpufleet_devcluster import DevCluster
from gpufleet_devcluster.store import Event

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "crds"
NS = "default"
GROUP = "gpufleet.io/v1alpha1"


def image(version: str) -> str:
    return f"ghcr.io/gpufleet/engine@sha256:{hashlib.sha256(version.encode()).hexdigest()}"


def release(version: str, *, channel: str = "stable", budget: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "EngineRelease",
        "metadata": {"name": "engine-" + version.replace(".", "-")},
        "spec": {
            "version": version,
            "image": image(version),
            "channel": channel,
            "failureBudget": budget,
            **spec,
        },
    }


def pool(name: str = "pool-a", max_unavailable: int | str = "10%", **policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "OperatorPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selfStake": "100000", "updatePolicy": {"maxUnavailable": max_unavailable, **policy}},
    }


def inode(name: str, node: str, *, pool_name: str = "pool-a", **policy: Any) -> dict[str, Any]:
    update = {"maxUnavailable": 1, "minReadySeconds": 0, "progressDeadlineSeconds": 60, **policy}
    return {
        "apiVersion": GROUP,
        "kind": "InferenceNode",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "poolRef": {"name": pool_name},
            "nodeName": node,
            "engine": "vllm",
            "models": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
            "updatePolicy": update,
        },
    }


def test_settings() -> OperatorSettings:
    return OperatorSettings(
        workers=8,
        readiness_recheck_seconds=0.05,
        readiness_recheck_max_seconds=0.2,
        event_batch_seconds=0.02,
        pool_settle_seconds=0.1,
        liveness_endpoint=None,
        metrics_port=0,
        agent_request_timeout_seconds=2.0,
    )


@dataclass
class Operator:
    kubeconfig: Path
    settings: OperatorSettings = field(default_factory=test_settings)
    task: asyncio.Task[None] | None = None
    reconciler: Reconciler | None = None
    rollout: RolloutController | None = None

    async def start(self) -> None:
        self.reconciler = Reconciler(self.settings)
        registry = make_registry(self.reconciler, kubeconfig=str(self.kubeconfig))
        self.rollout = self.reconciler.rollouts
        self._stop = asyncio.Event()
        ks = kopf_settings(self.settings)
        ks.watching.server_timeout = 30
        self.task = asyncio.create_task(
            kopf.operator(
                registry=registry, settings=ks, clusterwide=True, standalone=True, stop_flag=self._stop
            )
        )

    async def kill(self) -> None:
        """Stop everything at once, mid-flight, with no cleanup."""
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self.task = None

    async def stop(self) -> None:
        if self.task is not None:
            self._stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.task), 5)
        await self.kill()


def quiet_logs() -> None:
    for name in ("kopf", "aiohttp.access", "gpufleet.reconciler", "gpufleet.rollout"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.asynccontextmanager
async def running(cluster: DevCluster) -> Any:
    op = Operator(cluster.kubeconfig_path)
    await op.start()
    try:
        yield op
    finally:
        await op.kill()  # a graceful kopf shutdown costs seconds and proves nothing here


# --- reading the cluster --------------------------------------------------------------------


def inodes(cluster: DevCluster) -> list[dict[str, Any]]:
    rtype = cluster.store.resolve("gpufleet.io", "v1alpha1", "inferencenodes")
    return cluster.store.objects(rtype, NS)


def erel(cluster: DevCluster, name: str) -> dict[str, Any] | None:
    return cluster.get(GROUP, "EngineRelease", name)


def rollout_of(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("rollout") or {})


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == type_), {})


def pod_ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or ()
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conds
    )


def fleet_on(cluster: DevCluster, version: str, nodes: Iterable[str] | None = None) -> bool:
    """Every selected node reports ``version`` and every one of its pods runs it, ready."""
    wanted = set(nodes) if nodes is not None else None
    pods = cluster.pods(NS)
    for obj in inodes(cluster):
        name = obj["metadata"]["name"]
        if wanted is not None and name not in wanted:
            continue
        status = obj.get("status") or {}
        if status.get("currentVersion") != version or status.get("lastStableVersion") != version:
            return False
        mine = [p for p in pods if p["metadata"]["labels"].get("gpufleet.io/inference-node") == name]
        if not mine or len(mine) != status.get("totalDevices"):
            return False
        if not all(p["spec"]["containers"][0]["image"] == image(version) and pod_ready(p) for p in mine):
            return False
    return True


@dataclass
class Replay:
    """Walks the store's write history and tracks, after every single write, what was unavailable."""

    max_pool_down: dict[str, int] = field(default_factory=dict)
    max_node_down: dict[str, int] = field(default_factory=dict)
    mixed_versions_at_rest: list[str] = field(default_factory=list)
    rollbacks: dict[str, int] = field(default_factory=dict)
    writes: int = 0


def replay(
    events: Iterable[Event], devices: dict[str, int], pools: dict[str, str], *, since_rv: int
) -> Replay:
    """Unavailable devices per node/pool after every write since ``since_rv``.

    ``devices`` is each InferenceNode's device count; a device is available when a pod for it is
    Ready and not terminating (what a Service would route to).
    """
    result = Replay()
    ready: dict[str, dict[str, tuple[str, int, bool]]] = {n: {} for n in devices}
    phases: dict[str, str] = {}
    for event in events:
        rv = event.rv
        kind = event.resource.plural
        obj = event.obj
        if kind == "pods":
            labels = obj["metadata"].get("labels") or {}
            node = labels.get("gpufleet.io/inference-node")
            if node not in ready:
                continue
            name = obj["metadata"]["name"]
            if event.type == "DELETED":
                ready[node].pop(name, None)
            else:
                ready[node][name] = (
                    obj["spec"]["containers"][0]["image"],
                    int(labels.get("gpufleet.io/device-index", -1)),
                    pod_ready(obj),
                )
        elif kind == "inferencenodes" and event.type != "DELETED":
            name = obj["metadata"]["name"]
            phase = rollout_of(obj).get("phase", "")
            if phase == "RollingBack" and phases.get(name) != "RollingBack":
                result.rollbacks[name] = result.rollbacks.get(name, 0) + 1
            phases[name] = phase
        else:
            continue
        if rv <= since_rv:
            continue
        result.writes += 1
        pool_down: dict[str, int] = {}
        for node, pods in ready.items():
            up = {index for _, index, is_ready in pods.values() if is_ready}
            down = devices[node] - len(up)
            result.max_node_down[node] = max(result.max_node_down.get(node, 0), down)
            pool_down[pools[node]] = pool_down.get(pools[node], 0) + down
        for name, down in pool_down.items():
            result.max_pool_down[name] = max(result.max_pool_down.get(name, 0), down)
    return result


def history(cluster: DevCluster) -> Iterator[Event]:
    return iter(list(cluster.store.history))


def patch(
    cluster: DevCluster, kind: str, name: str, body: dict[str, Any], *, namespaced: bool = True
) -> None:
    """A merge patch, as ``kubectl patch --type merge`` would send it."""
    rtype = cluster.store.type_for(GROUP, kind)
    cluster.store.patch(rtype, NS if namespaced else None, name, "merge", body, actor="test")
