"""Simulated node agents behind the API server's pod proxy.

The operator reaches an engine pod's agent as it would in a cluster:
`GET /api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/v1/hardware` (and `/readyz`). Here the answer
comes from the node's recorded hardware profile and the pod's simulated kubelet state, or, for a
pod a test routed with `Agents.route`, from a real HTTP server (a real `gpufleet-node` process).
"""

from __future__ import annotations

import json
import uuid as uuid_mod
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from gpufleet.hardware.agent import AgentInfo, Blocked, HardwareDocument, Readiness
from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.kubelet import Kubelet
from gpufleet_devcluster.resources import JsonObj
from gpufleet_devcluster.store import Store

PROFILE_ANNOTATION = "devcluster.gpufleet.io/profile"
_PER_POD_ENV = ("GPUFLEET_POOL", "GPUFLEET_NODE")
AGENT_PORT = 8080
# A report source maps a profile name to a HardwareReport as JSON (`model_dump(mode="json")`).
ReportSource = Callable[[str], JsonObj]
# A document builder turns (pod, node, report JSON) into the agent's /v1/hardware body.
DocumentBuilder = Callable[[JsonObj, JsonObj, JsonObj], JsonObj]


def profile_report(name: str) -> JsonObj:
    """The recorded profile's report, from `gpufleet.hardware.profiles`."""
    from gpufleet.hardware.profiles import load_profile

    report: JsonObj = load_profile(name).model_dump(mode="json")
    return report


def pod_env(pod: JsonObj, name: str) -> str | None:
    for c in pod.get("spec", {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") == name and "value" in env:
                return str(env["value"])
    return None


def pod_environment(pod: JsonObj) -> dict[str, str]:
    """The literal `env` values of the pod's first container (what the agent process would see)."""
    containers = pod.get("spec", {}).get("containers") or [{}]
    return {
        e["name"]: str(e["value"]) for e in containers[0].get("env") or [] if "name" in e and "value" in e
    }


def node_agent_document(pod: JsonObj, profile: str) -> JsonObj:
    """The /v1/hardware document of a real `gpufleet-node` agent run with this node's profile.

    It runs the agent's own planning code (detection from the recorded profile, validation, engine
    selection) with the pod's environment plus GPUFLEET_HARDWARE_PROFILE, so the simulated answer
    is what the real agent would serve; a configuration the agent rejects is reported as
    `blocked: InvalidConfiguration` (the real agent would exit instead).
    """
    from gpufleet_node.config import ConfigError, load_config
    from gpufleet_node.plan import make_plan

    env = {**pod_environment(pod), "GPUFLEET_HARDWARE_PROFILE": profile}
    try:
        config = load_config(env)
    except ConfigError as exc:
        return HardwareDocument(
            report=None,
            validation=[],
            engine=None,
            agent=AgentInfo(source=f"profile:{profile}"),
            blocked=Blocked(reason="InvalidConfiguration", message=str(exc)),
        ).to_json()
    document: JsonObj = make_plan(config, env).document
    return document


def agent_document(pod: JsonObj, node: JsonObj, report: JsonObj) -> JsonObj:
    """What the node agent serves on /v1/hardware for one engine pod.

    Like a container that the NVIDIA device plugin gave one GPU, the agent sees only the device
    named by GPUFLEET_DEVICE_INDEX (all devices when the variable is absent). Validation runs the
    real `gpufleet.hardware.validation` against the node's GFD labels.
    """
    index = pod_env(pod, "GPUFLEET_DEVICE_INDEX")
    devices = report.get("devices") or []
    if index is not None and index.isdigit():
        devices = [d for d in devices if d.get("index") == int(index)]
    visible = {**report, "devices": devices}
    validation: list[Any] = []
    try:
        from gpufleet.hardware.catalog import load_catalog
        from gpufleet.hardware.report import HardwareReport
        from gpufleet.hardware.validation import validate_device

        parsed = HardwareReport.model_validate(visible)
        catalog = load_catalog()
        labels = node.get("metadata", {}).get("labels") or {}
        validation = [
            validate_device(d, catalog, gfd_labels=labels, driver_version=parsed.driver_version).model_dump(
                mode="json"
            )
            for d in parsed.devices
        ]
    except ImportError:  # pragma: no cover - the hardware package ships with gpufleet
        validation = []
    engine_env = pod_env(pod, "GPUFLEET_ENGINE") or "auto"
    return {"report": visible, "validation": validation, "engine": {"requested": engine_env}}


def agent_answer(path: str, hardware: bytes, *, up: bool, engine: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a running simulated agent for `path`.

    Shared by the emulator's pod proxy and the real control plane's agent server, so both
    backends answer alike. `hardware` is the pod's /v1/hardware body; `up` says whether the
    simulated engine is up (its container ready).
    """
    if path == "/livez":
        return 200, "text/plain", b"ok\n"
    if path == "/readyz":
        blocked = json.loads(hardware).get("blocked")
        ready = up and not blocked
        state = "Ready" if ready else ("Blocked" if blocked else "Starting")
        reason = blocked["reason"] if blocked else ("EngineReady" if ready else "EngineNotReady")
        body = Readiness(ready=ready, state=state, reason=reason, engine=engine).to_json()
        return (200 if ready else 503), "application/json", json.dumps(body).encode()
    if path == "/v1/hardware":
        return 200, "application/json", hardware
    if path == "/metrics":
        gauge = 1 if up else 0
        text = f"# TYPE gpufleet_agent_engine_up gauge\ngpufleet_agent_engine_up {gauge}\n"
        return 200, "text/plain", text.encode()
    return 404, "text/plain", b"404 page not found\n"


def planned_document(
    plans: dict[tuple[str, str], JsonObj], profile: str, env: dict[str, str], *, machine: str = ""
) -> JsonObj:
    """The agent's plan, shared by pods that differ only in pool and node name (the expensive
    part, detection + validation + engine selection, does not depend on them); `plans` is the cache."""
    shared = {k: v for k, v in env.items() if k not in _PER_POD_ENV}
    key = (profile, json.dumps(shared, sort_keys=True))
    plan = plans.get(key)
    if plan is None:
        if len(plans) > 10_000:
            plans.clear()
        plan = plans[key] = node_agent_document(
            {"spec": {"containers": [{"env": [{"name": k, "value": v} for k, v in shared.items()]}]}},
            profile,
        )
    # GPU uuids are per machine (the Kubernetes node the pod is bound to).
    plan = node_unique_uuids(plan, machine or env.get("GPUFLEET_NODE") or "")
    agent = plan.get("agent")
    if not isinstance(agent, dict) or "pool" not in agent:
        return plan
    return {
        **plan,
        "agent": {
            **agent,
            "pool": env.get("GPUFLEET_POOL") or None,
            "node": env.get("GPUFLEET_NODE") or None,
        },
    }


def node_uuid(node: str, uuid: str) -> str:
    """The recorded profile's GPU uuid made unique per simulated node, as real GPUs are.

    Every node of one profile would otherwise report the same uuids, which the operator rightly
    treats as cloned GPUs (#21 F3). Deterministic, so restarts and re-reads agree.
    """
    return "GPU-" + str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, f"gpufleet-devcluster/{node}/{uuid}"))


def node_unique_uuids(plan: JsonObj, node: str) -> JsonObj:
    report = plan.get("report")
    if not node or not isinstance(report, dict):
        return plan
    devices = [
        {**d, "uuid": node_uuid(node, str(d.get("uuid")))} if isinstance(d, dict) and d.get("uuid") else d
        for d in report.get("devices") or ()
    ]
    out = {**plan, "report": {**report, "devices": devices}}
    agent = plan.get("agent")
    if isinstance(agent, dict) and isinstance(agent.get("device"), dict) and agent["device"].get("uuid"):
        device = agent["device"]
        out["agent"] = {**agent, "device": {**device, "uuid": node_uuid(node, str(device["uuid"]))}}
    return out


class Agents:
    """Answers pod-proxy requests for engine pods."""

    def __init__(
        self,
        store: Store,
        kubelet: Kubelet | None,
        *,
        report_source: ReportSource | None = None,
        document: DocumentBuilder = agent_document,
    ) -> None:
        self.store = store
        self.kubelet = kubelet
        self.report_source = report_source
        self.document = document
        self.routes: dict[tuple[str, str], str] = {}
        self.overrides: dict[tuple[str, str], Callable[[str], tuple[int, Any]]] = {}
        # /v1/hardware bodies by (node, node resourceVersion, profile, device index, engine):
        # validation against the catalog is deterministic, and the operator asks for it a lot.
        self._documents: dict[tuple[str, str, str, str], bytes] = {}
        self._plans: dict[tuple[str, str], JsonObj] = {}
        self._session: aiohttp.ClientSession | None = None
        self._nodes = store.resolve("", "v1", "nodes")

    def route(self, namespace: str, pod: str, base_url: str) -> None:
        """Send this pod's proxy traffic to a real HTTP server (e.g. a `gpufleet-node` process)."""
        self.routes[(namespace, pod)] = base_url.rstrip("/")

    def override(self, namespace: str, pod: str, handler: Callable[[str], tuple[int, Any]]) -> None:
        """Answer this pod's agent paths with handler(path) -> (status, JSON body) (fault injection)."""
        self.overrides[(namespace, pod)] = handler

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def handle(
        self, request: web.Request, pod: JsonObj, port: int | None, path: str
    ) -> web.StreamResponse:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if key in self.routes:
            return await self._forward(request, self.routes[key] + path)
        if key in self.overrides:
            code, body = self.overrides[key](path)
            return web.json_response(body, status=code)
        port = port or AGENT_PORT
        ip = (pod.get("status") or {}).get("podIP")
        if not ip:
            # kube-apiserver refuses before dialling: only a global unicast pod IP is proxyable.
            raise APIError(400, "BadRequest", "address not allowed")
        if port != AGENT_PORT or self.kubelet is None or not self.kubelet.container_running(*key):
            raise APIError(
                503,
                "ServiceUnavailable",
                f"error trying to reach service: dial tcp {ip}:{port}: connect: connection refused",
            )
        status, content_type, body = agent_answer(
            path,
            self._hardware(pod) if path in ("/readyz", "/v1/hardware") else b"{}",
            up=self.kubelet.engine_up(*key),
            engine=pod_env(pod, "GPUFLEET_ENGINE") or "auto",
        )
        return web.Response(body=body, status=status, content_type=content_type)

    def _hardware(self, pod: JsonObj) -> bytes:
        """The pod's /v1/hardware body, cached per node version, profile and pod environment."""
        node = self.store.find(self._nodes, None, pod["spec"].get("nodeName", ""))
        if node is None:
            raise APIError(503, "ServiceUnavailable", "the pod's node no longer exists")
        profile = (node["metadata"].get("annotations") or {}).get(PROFILE_ANNOTATION)
        if not profile:
            raise APIError(503, "ServiceUnavailable", f"node has no {PROFILE_ANNOTATION} annotation")
        env = pod_environment(pod)
        key = (
            node["metadata"]["name"],
            node["metadata"]["resourceVersion"],
            profile,
            json.dumps(env, sort_keys=True),
        )
        body = self._documents.get(key)
        if body is None:
            if len(self._documents) > 100_000:
                self._documents.clear()
            if self.report_source is None:
                doc = self._planned(pod, profile, env)
            else:
                doc = self.document(pod, node, self.report_source(profile))
            body = json.dumps(doc).encode()
            self._documents[key] = body
        return body

    def _planned(self, pod: JsonObj, profile: str, env: dict[str, str]) -> JsonObj:
        machine = str((pod.get("spec") or {}).get("nodeName") or "")
        return planned_document(self._plans, profile, env, machine=machine)

    async def _forward(self, request: web.Request, url: str) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        try:
            async with self._session.request(
                request.method, url, params=request.query, data=body, headers=headers
            ) as upstream:
                payload = await upstream.read()
                return web.Response(
                    body=payload,
                    status=upstream.status,
                    content_type=upstream.content_type or "application/octet-stream",
                )
        except aiohttp.ClientError as exc:
            raise APIError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from exc
