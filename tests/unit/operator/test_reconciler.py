"""The reconciler against in-memory caches and a recording fake API client (no cluster)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from gpufleet.controllers.reconciler import FleetCaches, PoolMember, Reconciler
from gpufleet.controllers.runtime import WorkQueue
from gpufleet.objects import NodeView, PodView
from gpufleet.settings import OperatorSettings
from tests.unit.operator.bodies import (
    CATALOG,
    device_json,
    hardware_json,
    inode_body,
    node_body,
    pod_body,
    pool_body,
)

IMAGE = "ghcr.io/gpufleet/engine@sha256:" + "d" * 64


class FakeClient:
    """Answers like an API server that accepts everything; remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.rv = 100

    def _next(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        body.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return body

    async def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", pod["metadata"]["name"]))
        return self._next({**pod, "metadata": {**pod["metadata"], "uid": "u-" + pod["metadata"]["name"]}})

    async def patch_status(self, plural: str, ns: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("status", name))
        return self._next({"metadata": {"name": name, "namespace": ns}, "status": status})

    async def proxy_get(self, ns: str, pod: str, port: int, path: str, deadline: float) -> tuple[int, Any]:
        self.calls.append(("proxy", f"{pod}{path}"))
        index = int(pod.rsplit("-", 1)[1])  # one GPU (own uuid) per pod, as the device plugin gives
        return 200, hardware_json(device_json(index)) if path == "/v1/hardware" else {"ready": True}

    async def set_pod_condition(self, ns: str, name: str, condition: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("gate", name))
        return {}

    async def post_event(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))

    async def close(self) -> None:
        return None


def fixed_now() -> datetime:
    return datetime(2026, 5, 1, tzinfo=UTC)


def make(
    status: dict[str, Any] | None = None, pods: list[PodView] | None = None
) -> tuple[Reconciler, FakeClient]:
    settings = OperatorSettings(default_engine_image=IMAGE, default_engine_version="1.0.0")
    rec = Reconciler(settings, catalog=CATALOG, now=fixed_now)
    body = inode_body("box", status=status)
    body["metadata"]["resourceVersion"] = "5"
    rec.caches = FleetCaches(
        inodes={("fleet", "box"): [body]},
        pool_members={("fleet", "pool-a"): [PoolMember("box", 0, 0, 0)]},
        nodes={"node-1": [NodeView.from_body(node_body(count=2))]},
        pools={("fleet", "pool-a"): [pool_body()]},
        pods={("fleet", "box"): pods or []},
    )
    client = FakeClient()
    rec.client = client  # type: ignore[assignment]
    return rec, client


async def test_first_pass_creates_pods_and_writes_status_once() -> None:
    rec, client = make()
    await rec.reconcile_inode(("fleet", "box"))
    await asyncio.sleep(0)
    assert [c for c in client.calls if c[0] != "event"] == [
        ("create", "box-gpu-0"),
        ("create", "box-gpu-1"),
        ("status", "box"),
    ]
    # A second pass before the watch echoes anything: no duplicate creates, no second status write.
    client.calls.clear()
    await rec.reconcile_inode(("fleet", "box"))
    assert [c for c in client.calls if c[0] != "event"] == []


async def test_converged_node_makes_no_call_at_all() -> None:
    rec, client = make()
    created = []
    # Two running, ready pods with the gate open, whose hardware the reconciler has already seen.
    from gpufleet.objects import InodeView
    from gpufleet.podspec import PodDevice, PodRelease, build_pod

    inode = InodeView.from_body(inode_body("box"))
    for index in (0, 1):
        manifest = build_pod(inode, PodDevice(index, True), PodRelease("1.0.0", IMAGE), rec.settings)
        created.append(PodView.from_body(pod_body(manifest, ready=True, gate="True")))
    rec.caches.pods = {("fleet", "box"): created}
    await rec.reconcile_inode(("fleet", "box"))  # fetches the reports, writes the status
    first = list(client.calls)
    assert ("proxy", "box-gpu-0/v1/hardware") in first
    assert ("status", "box") in first
    # Feed the written status back as the stored one (the watch echo) and reconcile again.
    overlay = rec.writer._written[("inferencenodes", "fleet", "box")]
    written = overlay.status
    body = inode_body("box", status=written)
    body["metadata"]["resourceVersion"] = overlay.rv
    rec.caches.inodes = {("fleet", "box"): [body]}
    client.calls.clear()
    await rec.reconcile_inode(("fleet", "box"))
    assert client.calls == []
    assert written["readyDevices"] == 2
    assert {d["effectiveStake"] for d in written["devices"]} == {"50000"}


async def test_invalid_spec_is_reported_once() -> None:
    rec, client = make()
    bad = inode_body("box")
    del bad["spec"]["nodeName"]
    rec.caches.inodes = {("fleet", "box"): [bad]}
    await rec.reconcile_inode(("fleet", "box"))
    await asyncio.sleep(0)
    assert ("status", "box") in client.calls
    assert ("event", "InvalidSpec") in client.calls


async def test_work_queue_dedups_and_requeues_dirty_keys() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 1
    key = await queue.get()
    queue.add("a")  # changed while being worked on: comes back after done()
    assert len(queue) == 0
    queue.done(key)
    assert len(queue) == 1
    queue.add_after("b", 0.01)
    assert len(queue) == 1  # not before its delay
    for _ in range(1000):  # polls for the delayed key (up to ~5 s), however slow the machine
        if len(queue) == 2:
            break
        await asyncio.sleep(0.005)
    assert len(queue) == 2
    queue.close()


def test_blocked_verdict_is_remembered_from_status_only_when_a_report_made_it() -> None:
    from gpufleet.controllers.reconciler import _blocked_in_status

    reported = {
        "index": 0, "uuid": "GPU-1", "product": "NVIDIA GeForce RTX 4090", "vramMiB": 49140,
        "computeCapability": "8.9", "architecture": "ada",
        "validation": {"valid": False, "reason": "VRAMMismatch", "message": "reports 49140 MiB"},
    }
    remembered = _blocked_in_status(reported)
    assert remembered is not None
    assert remembered.carried
    assert (remembered.verdict.valid, remembered.verdict.reason) == (False, "VRAMMismatch")
    assert remembered.device.uuid == "GPU-1"
    pending = {**reported, "validation": {"valid": False, "reason": "AwaitingHardwareReport", "message": ""}}
    valid = {**reported, "validation": {"valid": True, "reason": "Valid", "message": ""}}
    no_report = {k: v for k, v in reported.items() if k != "uuid"}
    assert [_blocked_in_status(e) for e in (pending, valid, no_report, None)] == [None] * 4


async def test_a_hanging_agent_does_not_hold_the_pass_for_its_timeout() -> None:
    """#21 F10: the pass waits a fraction of a second for agents, never their whole timeout."""
    from gpufleet.objects import InodeView
    from gpufleet.podspec import PodDevice, PodRelease, build_pod

    rec, client = make()
    hang = asyncio.Event()

    async def slow_proxy(ns: str, pod: str, port: int, path: str, deadline: float) -> tuple[int, Any]:
        if pod.endswith("-1"):
            await hang.wait()  # an agent that never answers (until the test lets it)
        index = int(pod.rsplit("-", 1)[1])
        return 200, hardware_json(device_json(index))

    client.proxy_get = slow_proxy  # type: ignore[method-assign]
    inode = InodeView.from_body(inode_body("box"))
    pods = []
    for index in (0, 1):
        manifest = build_pod(inode, PodDevice(index, True), PodRelease("1.0.0", IMAGE), rec.settings)
        pods.append(PodView.from_body(pod_body(manifest, ready=True, gate="True")))
    rec.caches.pods = {("fleet", "box"): pods}
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rec.reconcile_inode(("fleet", "box"))
    assert loop.time() - started < 1.5  # not the 5 s agent timeout
    device0 = rec.writer.current("inferencenodes", rec.caches.inodes[("fleet", "box")][0])["devices"][0]
    assert device0["validation"]["valid"]  # the healthy agent's answer was used in the same pass
    hang.set()
    await asyncio.sleep(0.05)
    assert ("inode", "fleet", "box") in rec.queue._queued  # the late answer brings the node back
