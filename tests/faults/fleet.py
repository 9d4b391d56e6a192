"""A small GPU fleet on the emulator, the real operator as a process behind the fault proxy.

The operator runs as ``python -m gpufleet run`` (core + rollout controller), so that it can be
``kill -9``-ed and its memory read from ``/proc``; it reaches the emulator only through a
:class:`~tests.faults.proxy.FaultProxy`. End-state checks read the emulator's store directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from gpufleet_devcluster.kubelet import KubeletConfig
from tests.faults.proxy import FaultProxy

GROUP = "gpufleet.io/v1alpha1"
NS = "fleet"
IMAGE = "ghcr.io/gpufleet/engine@sha256:" + "e" * 64
PROFILE = "rtx-a6000-x2"  # two 48 GB GPUs per node, as in the issue's 20 x 2 fleet
GPUS_PER_NODE = 2
VRAM_MIB = 49140  # one RTX A6000 as NVML reports it (the profile's memory_total_mib)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"

#: Operator settings for a test fleet: short batching and re-check delays, no ports to bind.
FAST_ENV = {
    "GPUFLEET_WORKERS": "4",
    "GPUFLEET_POOL_SETTLE_SECONDS": "0.05",
    "GPUFLEET_EVENT_BATCH_SECONDS": "0.02",
    "GPUFLEET_READINESS_RECHECK_SECONDS": "0.1",
    "GPUFLEET_READINESS_RECHECK_MAX_SECONDS": "1",
    "GPUFLEET_AGENT_REQUEST_TIMEOUT_SECONDS": "2",
    "GPUFLEET_METRICS_PORT": "0",
    "GPUFLEET_LIVENESS_ENDPOINT": "",
    "GPUFLEET_LOG_LEVEL": "INFO",
}


def release(name: str = "engine-1-0-0", version: str = "1.0.0") -> dict[str, Any]:
    return {
        "apiVersion": GROUP,
        "kind": "EngineRelease",
        "metadata": {"name": name},
        "spec": {
            "version": version,
            "image": IMAGE,
            "channel": "stable",
            "minDriverVersion": "535.0.0",
            "minCUDAVersion": "12.2",
            "engines": ["vllm", "sglang"],
        },
    }


def pool(name: str, self_stake: str = "10000", delegated: str = "90000") -> dict[str, Any]:
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
        "spec": {"poolRef": {"name": pool_name}, "nodeName": node, "models": [{"name": MODEL}]},
    }


@dataclass(frozen=True)
class Layout:
    """``nodes`` Kubernetes nodes ``gpu-<i>``, InferenceNodes ``box-<i>`` spread over ``pools`` pools."""

    nodes: int = 8
    pools: int = 2

    def node_names(self) -> list[str]:
        return [f"gpu-{i}" for i in range(self.nodes)]

    def inode_names(self) -> list[str]:
        return [f"box-{i}" for i in range(self.nodes)]

    def pool_of(self, i: int) -> str:
        return f"pool-{i % self.pools}"

    def objects(self) -> list[dict[str, Any]]:
        objs = [release()]
        objs += [pool(f"pool-{p}") for p in range(self.pools)]
        objs += [inode(f"box-{i}", self.pool_of(i), f"gpu-{i}") for i in range(self.nodes)]
        return objs


# ------------------------------------------------------------------ end-state readers


def status_of(cluster: DevCluster, kind: str, name: str) -> dict[str, Any]:
    obj = cluster.get(GROUP, kind, name, NS)
    return dict((obj or {}).get("status") or {})


def engine_pods(cluster: DevCluster) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.pods(NS)
        if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "gpufleet"
    ]


def _env(pod: dict[str, Any], name: str) -> str | None:
    for c in pod.get("spec", {}).get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") == name:
                return str(e.get("value"))
    return None


def duplicate_gpu_pods(cluster: DevCluster) -> dict[tuple[str, str], int]:
    """(node, GPU index) held by more than one live engine pod: must always be empty."""
    counts: Counter[tuple[str, str]] = Counter()
    for p in engine_pods(cluster):
        if p["metadata"].get("deletionTimestamp") or (p.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):
            continue
        counts[(p["spec"].get("nodeName", ""), _env(p, "GPUFLEET_DEVICE_INDEX") or "?")] += 1
    return {k: n for k, n in counts.items() if n > 1}


def ready_devices(cluster: DevCluster, layout: Layout) -> int:
    names = layout.inode_names()
    return sum(int(status_of(cluster, "InferenceNode", n).get("readyDevices") or 0) for n in names)


def converged(cluster: DevCluster, layout: Layout, version: str | None = None) -> Callable[[], bool]:
    """Every InferenceNode reports all its GPUs ready (on ``version``, if given), one pod per GPU."""

    def check() -> bool:
        for name in layout.inode_names():
            st = status_of(cluster, "InferenceNode", name)
            if st.get("readyDevices") != GPUS_PER_NODE or st.get("totalDevices") != GPUS_PER_NODE:
                return False
            if version is not None and st.get("currentVersion") != version:
                return False
        pods = [p for p in engine_pods(cluster) if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == layout.nodes * GPUS_PER_NODE and not duplicate_gpu_pods(cluster)

    check.__name__ = f"all {layout.nodes * GPUS_PER_NODE} GPUs ready" + (f" on {version}" if version else "")
    return check


def events(cluster: DevCluster, reason: str | None = None) -> list[dict[str, Any]]:
    rtype = cluster.store.resolve("", "v1", "events")
    found = cluster.store.objects(rtype, None)
    return [e for e in found if reason is None or e.get("reason") == reason]


async def wait_for(predicate: Callable[[], bool], within: float, interval: float = 0.05) -> float:
    """Seconds until ``predicate()`` held; TimeoutError naming it after ``within`` seconds."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise TimeoutError(f"{getattr(predicate, '__name__', predicate)!r} not met in {within:.0f} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


# ------------------------------------------------------------------ the operator process


@dataclass
class OperatorProcess:
    """``python -m gpufleet run`` against ``kubeconfig``; its log goes to ``log_path``."""

    kubeconfig: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start(self) -> None:
        env = {**os.environ, **FAST_ENV, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("KUBECONFIG", None)
        log = self.log_path.open("ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gpufleet",
                "run",
                "--kubeconfig",
                str(self.kubeconfig),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            log.close()
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _status_kib(self, key: str) -> int:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        return int(m.group(1)) if m else 0

    def rss_mib(self) -> float:
        return self._status_kib("VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return self._status_kib("VmHWM") / 1024

    async def kill9(self) -> None:
        """``kill -9``: no shutdown handler runs, nothing is flushed."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int | None:
        if self.proc is None or self.proc.returncode is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            await self.kill9()
            return -9

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def tracebacks(self) -> int:
        return sum(1 for line in self.log_lines() if line.startswith("Traceback (most recent call last)"))


@dataclass
class Rig:
    """The emulator, the proxy in front of it, and the operator process behind the proxy."""

    cluster: DevCluster
    proxy: FaultProxy
    operator: OperatorProcess
    layout: Layout

    def converged(self, version: str | None = None) -> Callable[[], bool]:
        return converged(self.cluster, self.layout, version)

    async def start_operator(self, within: float = 120.0) -> float:
        """Start the operator and wait for its first API request (start-up alone takes seconds on a
        busy machine, so clocks of a case start here, not at the spawn)."""
        mark = len(self.proxy.log)
        await self.operator.start()

        def talking() -> bool:
            return len(self.proxy.log) > mark

        talking.__name__ = "the operator's first API request"
        return await wait_for(talking, within=within)

    async def restart_operator(self) -> float:
        await self.operator.kill9()
        return await self.start_operator()


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    layout: Layout = Layout(),
    *,
    env: dict[str, str] | None = None,
    objects: list[dict[str, Any]] | None = None,
    nodes: list[NodeSpec] | None = None,
    kubelet: KubeletConfig | None = None,
    start: bool = True,
    unique_uuids: bool = True,
) -> AsyncIterator[Rig]:
    """``async with rig(tmp_path) as r:`` — a fleet applied, the operator started behind the proxy."""
    specs = nodes if nodes is not None else [NodeSpec(n, profile=PROFILE) for n in layout.node_names()]
    async with DevCluster(nodes=specs, namespaces=("default", NS), kubelet_config=kubelet) as cluster:
        for obj in objects if objects is not None else layout.objects():
            cluster.apply(obj)
        async with FaultProxy(cluster.url) as proxy:
            if unique_uuids:  # every emulated node shares its profile's uuids; real GPUs do not
                from tests.faults.agents import unique_uuids as honest

                for i in range(layout.nodes):
                    for g in range(GPUS_PER_NODE):
                        proxy.agents[f"box-{i}-gpu-{g}"] = {"/v1/hardware": honest(i)}
            kubeconfig = proxy.write_kubeconfig(tmp_path / "kubeconfig")
            operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", env=dict(env or {}))
            the_rig = Rig(cluster, proxy, operator, layout)
            if start:
                await the_rig.start_operator()
            try:
                yield the_rig
            finally:
                await operator.stop()
            assert not proxy.errors, f"the fault proxy itself failed: {proxy.errors!r}"
