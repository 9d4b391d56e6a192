"""Simulated node agents behind the API server's pod proxy.

The operator reaches an engine pod's agent as it would in a cluster:
`GET /api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/v1/hardware` (and `/readyz`). Here the answer
comes from the node's recorded hardware profile and the pod's simulated kubelet state, or, for a
pod a test routed with `Agents.route`, from a real HTTP server (a real `gpufleet-node` process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from gpufleet.devcluster.errors import APIError
from gpufleet.devcluster.kubelet import Kubelet
from gpufleet.devcluster.resources import JsonObj
from gpufleet.devcluster.store import Store

PROFILE_ANNOTATION = "devcluster.gpufleet.io/profile"
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


class Agents:
    """Answers pod-proxy requests for engine pods."""

    def __init__(
        self,
        store: Store,
        kubelet: Kubelet | None,
        *,
        report_source: ReportSource = profile_report,
        document: DocumentBuilder = agent_document,
    ) -> None:
        self.store = store
        self.kubelet = kubelet
        self.report_source = report_source
        self.document = document
        self.routes: dict[tuple[str, str], str] = {}
        self.overrides: dict[tuple[str, str], Callable[[str], tuple[int, Any]]] = {}
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
        ip = (pod.get("status") or {}).get("podIP") or "<none>"
        if port != AGENT_PORT or self.kubelet is None or not self.kubelet.container_running(*key):
            raise APIError(
                503,
                "ServiceUnavailable",
                f"error trying to reach service: dial tcp {ip}:{port}: connect: connection refused",
            )
        if path == "/livez":
            return web.Response(text="ok\n")
        if path == "/readyz":
            up = self.kubelet.engine_up(*key)
            return web.json_response(
                {
                    "ready": up,
                    "engine": pod_env(pod, "GPUFLEET_ENGINE") or "auto",
                    "reason": "EngineReady" if up else "EngineNotReady",
                },
                status=200 if up else 503,
            )
        if path == "/v1/hardware":
            node = self.store.find(self._nodes, None, pod["spec"].get("nodeName", ""))
            if node is None:
                raise APIError(503, "ServiceUnavailable", "the pod's node no longer exists")
            profile = (node["metadata"].get("annotations") or {}).get(PROFILE_ANNOTATION)
            if not profile:
                return web.json_response({"error": "no hardware profile recorded for this node"}, status=500)
            return web.json_response(self.document(pod, node, self.report_source(profile)))
        if path == "/metrics":
            gauge = 1 if self.kubelet.engine_up(*key) else 0
            return web.Response(
                text=f"# TYPE gpufleet_agent_engine_up gauge\ngpufleet_agent_engine_up {gauge}\n",
                content_type="text/plain",
            )
        return web.Response(status=404, text="404 page not found\n")

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
