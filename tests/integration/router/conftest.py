"""A real Envoy programmed by the real control plane, in front of in-process stub engines.

Stub engines are tiny aiohttp servers (OpenAI-shaped, streaming included) whose behaviour a test
switches (ok, 500, reset, slow, hang); the fake engine package is used where its real server
matters (test_fake_engine). The fleet is given to the control plane as raw Kubernetes bodies, as
its informers would deliver them; the devcluster test drives the watches for real.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpufleet.router import envoy
from gpufleet.router.controlplane import ControlPlane
from gpufleet.router.settings import RouterSettings

Body = dict[str, Any]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    """Poll an observable fact until it holds (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Stub:
    """One stub engine: a name, a port, a mode, and what it served."""

    name: str
    port: int
    models: tuple[str, ...] = ("m",)
    mode: str = "ok"  # ok | 500 | reset | slow | hang
    delay: float = 0.0
    served: int = 0
    seen: list[Body] = field(default_factory=list)
    runner: web.AppRunner | None = None
    inflight: int = 0
    max_inflight: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.mode == "500":
                return web.json_response({"error": {"message": "boom"}}, status=500)
            if self.mode == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)
            if self.mode == "hang":
                await asyncio.sleep(3600)
            if self.delay:
                await asyncio.sleep(self.delay)
            self.served += 1
            if body.get("stream"):
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                for i in range(int(body.get("chunks", 3))):
                    chunk = {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "who": self.name,
                        "i": i,
                        "choices": [{"index": 0, "delta": {"content": "ok"}}],
                    }
                    await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    await asyncio.sleep(float(body.get("gap", 0.05)))
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            return web.json_response(
                {
                    "id": "cmpl-x",
                    "object": "text_completion",
                    "model": body.get("model"),
                    "who": self.name,
                    "choices": [{"index": 0, "text": " ok", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
                }
            )
        finally:
            self.inflight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self.handle)
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@dataclass
class Device:
    """One engine pod's fleet description (what the operator would have written)."""

    name: str
    port: int
    stake_int: str = "0"
    pool: str = "pool-a"
    inode: str = "node-a"
    index: int = 0
    models: tuple[str, ...] = ("m",)
    running: bool = True
    gate: bool = True
    routable: bool = True
    annotations: dict[str, str] = field(default_factory=dict)


def fleet_bodies(
    devices: list[Device],
    pool_annotations: dict[str, dict[str, str]] | None = None,
    reputation: dict[str, str] | None = None,
) -> tuple[dict[Any, Body], dict[Any, Body], dict[Any, Body]]:
    """Pods, InferenceNodes and OperatorPools as raw bodies keyed like the informers key them."""
    ns = "fleet"
    pods: dict[Any, Body] = {}
    inodes: dict[Any, Body] = {}
    pools: dict[Any, Body] = {}
    for d in devices:
        pods[(ns, d.name)] = {
            "metadata": {
                "name": d.name,
                "namespace": ns,
                "annotations": dict(d.annotations),
                "labels": {
                    "app.kubernetes.io/managed-by": "gpufleet",
                    "gpufleet.io/pool": d.pool,
                    "gpufleet.io/inference-node": d.inode,
                    "gpufleet.io/device-index": str(d.index),
                    "gpufleet.io/routable": "true" if d.routable else "false",
                },
            },
            "spec": {
                "containers": [{"name": "engine", "ports": [{"name": "http", "containerPort": d.port}]}]
            },
            "status": {
                "phase": "Running" if d.running else "Pending",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "gpufleet.io/engine-ready", "status": "True" if d.gate else "False"}],
            },
        }
        inode = inodes.setdefault(
            (ns, d.inode),
            {
                "metadata": {"name": d.inode, "namespace": ns},
                "spec": {"poolRef": {"name": d.pool}, "models": []},
                "status": {"devices": []},
            },
        )
        for m in d.models:
            if {"name": m} not in inode["spec"]["models"]:
                inode["spec"]["models"].append({"name": m})
        inode["status"]["devices"].append({"index": d.index, "effectiveStake": d.stake_int})
        pools.setdefault(
            (ns, d.pool),
            {
                "metadata": {
                    "name": d.pool,
                    "namespace": ns,
                    "annotations": dict((pool_annotations or {}).get(d.pool, {})),
                },
                "spec": {"selfStake": "1", "reputationWeight": (reputation or {}).get(d.pool, "1")},
            },
        )
    return pods, inodes, pools


class Router:
    """A started Envoy + control plane (no Kubernetes: the test hands it the fleet)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.settings = plane.settings
        self.url = f"http://127.0.0.1:{plane.settings.listen_port}"
        self.admin = f"http://127.0.0.1:{plane.settings.admin_port}"

    async def program(self, devices: list[Device], **kw: Any) -> None:
        """Recompute and wait until Envoy serves exactly the intended endpoints and weights."""
        self.plane.set_state(*fleet_bodies(devices, **kw))
        self.plane.recompute()
        await self.wait_applied()

    async def hosts(self) -> dict[str, dict[str, int]]:
        """cluster name -> {address: weight} as Envoy has them now."""
        async with aiohttp.ClientSession() as s, s.get(f"{self.admin}/clusters?format=json") as r:
            data = await r.json(content_type=None)
        out: dict[str, dict[str, int]] = {}
        for c in data.get("cluster_statuses", []):
            hosts = {}
            for h in c.get("host_statuses", []):
                sa = h["address"]["socket_address"]
                hosts[f"{sa['address']}:{sa['port_value']}"] = int(h.get("weight", 1))
            out[c["name"]] = hosts
        return out

    async def wait_applied(self, within: float = 10.0) -> None:
        async def applied() -> bool:
            hosts = await self.hosts()
            for model in self.plane.models or ():
                want = {
                    m.endpoint.address: m.weight
                    for m in (self.plane.groups[model].endpoints if model in self.plane.groups else ())
                }
                if hosts.get(envoy.cluster_name(model), None) != want:
                    return False
            return await self.listener_has(self.plane.models or ())

        try:
            await wait_for(applied, within, "Envoy to apply the endpoints")
        except AssertionError:
            log = Path(self.settings.state_dir, "envoy.log")
            tail = log.read_text()[-2000:] if log.exists() else ""  # noqa: ASYNC240 - failure path only
            raise AssertionError(
                f"Envoy has {await self.hosts()}, models listed: "
                f"{await self.listener_has(self.plane.models or ())}; envoy log: "
                f"{tail}"
            ) from None

    async def listener_has(self, models: tuple[str, ...]) -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{self.url}/v1/models") as r:
                data = await r.json(content_type=None)
        except aiohttp.ClientError:
            return False
        return tuple(sorted(m["id"] for m in data.get("data", []))) == tuple(sorted(models))

    async def counters(self) -> Any:
        """Force a scrape (after Envoy flushed its log) and return the snapshot."""
        self.plane.scrape()
        return self.plane.snapshot()

    async def scrape_until(self, check: Callable[[Any], bool], within: float = 10.0) -> Any:
        snap: list[Any] = []

        def done() -> bool:
            self.plane.scrape()
            snap[:] = [self.plane.snapshot()]
            return check(snap[0])

        await wait_for(done, within, "router counters")
        return snap[0]


def router_settings(tmp: Path, **kw: Any) -> RouterSettings:
    base: dict[str, Any] = {
        "listen_port": free_port(),
        "admin_port": free_port(),
        "metrics_port": 0,
        "state_dir": str(tmp),
        "envoy_concurrency": 1,
        "scrape_interval_seconds": 0.2,
        "connect_timeout_seconds": 0.5,
        "first_byte_timeout_seconds": 5.0,
        "idle_timeout_seconds": 5.0,
        "outlier_base_ejection_seconds": 1.0,
        "outlier_interval_seconds": 0.2,
        "outlier_consecutive_failures": 3,
        "outlier_max_ejection_percent": 100,
        "priority_k": "0.0001",
    }
    base.update(kw)
    return RouterSettings(**base)


@pytest.fixture
async def make_router(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Router]]]:
    planes: list[ControlPlane] = []

    async def make(**kw: Any) -> Router:
        state = tmp_path / f"router{len(planes)}"
        plane = ControlPlane(router_settings(state, **kw))
        plane.prepare()
        plane.start_envoy()
        planes.append(plane)
        await plane.wait_envoy_ready()
        return Router(plane)

    yield make
    for plane in planes:
        plane.stop_envoy()


@pytest.fixture
async def stubs() -> AsyncIterator[Callable[..., Awaitable[list[Stub]]]]:
    started: list[Stub] = []

    async def make(n: int, models: tuple[str, ...] = ("m",)) -> list[Stub]:
        out = []
        for _ in range(n):
            stub = Stub(name=f"s{len(started)}", port=free_port(), models=models)
            await stub.start()
            started.append(stub)
            out.append(stub)
        return out

    yield make
    for stub in started:
        await stub.stop()


async def post(
    session: aiohttp.ClientSession, url: str, body: Body | str, path: str = "/v1/completions"
) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, str) else json.dumps(body)
    async with session.post(url + path, data=data, headers={"Content-Type": "application/json"}) as r:
        text = await r.text()
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        return r.status, payload, dict(r.headers)
