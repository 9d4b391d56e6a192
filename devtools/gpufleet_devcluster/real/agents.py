"""Simulated node agents for the real control plane, reached through kube-apiserver's pod proxy.

kube-apiserver refuses to proxy to loopback pod IPs ("address not allowed": only global unicast
addresses are proxyable), so kwok gives pods addresses from ordinary private ranges (each node's
`spec.podCIDR`) and the API server is started with an egress selector that sends its `cluster`
traffic (pod and node proxies) through an HTTP CONNECT proxy on a Unix socket: this server. It
tells pods apart by the address the API server asked to reach (`CONNECT 10.64.3.7:8080`), finds
the pod with that IP from a watch, and answers `/v1/hardware`, `/readyz`, `/livez` and `/metrics`
with the emulator's simulated-agent code (`gpufleet_devcluster.agents`). Nothing listens on TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gpufleet_devcluster.agents import (
    AGENT_PORT,
    PROFILE_ANNOTATION,
    agent_answer,
    planned_document,
    pod_env,
    pod_environment,
)

log = logging.getLogger(__name__)
JsonObj = dict[str, Any]
Override = Callable[[str], tuple[int, Any]]

_REASONS = {200: "OK", 404: "Not Found", 502: "Bad Gateway", 503: "Service Unavailable"}


def container_running(pod: JsonObj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in (s.get("state") or {}) for s in statuses)


def engine_up(pod: JsonObj) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(s.get("ready") for s in statuses)


class Watcher:
    """Pods by IP and nodes by name, kept current by list + watch against the API server."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext) -> None:
        self.server = server.rstrip("/")
        self.ssl = ssl_context
        self.pods_by_ip: dict[str, JsonObj] = {}
        self.pods: dict[tuple[str, str], JsonObj] = {}
        self.nodes: dict[str, JsonObj] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.synced = asyncio.Event()
        self._synced_kinds: set[str] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl), timeout=aiohttp.ClientTimeout(total=None)
        )
        self._tasks = [
            asyncio.create_task(self._loop("/api/v1/pods", self._on_pod, "pods")),
            asyncio.create_task(self._loop("/api/v1/nodes", self._on_node, "nodes")),
        ]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._session is not None:
            await self._session.close()

    def _on_pod(self, kind: str, pod: JsonObj) -> None:
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        old = self.pods.pop(key, None)
        if old is not None:
            old_ip = (old.get("status") or {}).get("podIP")
            if old_ip and self.pods_by_ip.get(old_ip) is old:
                del self.pods_by_ip[old_ip]
        if kind == "DELETED":
            return
        self.pods[key] = pod
        ip = (pod.get("status") or {}).get("podIP")
        if ip:
            self.pods_by_ip[ip] = pod

    def _on_node(self, kind: str, node: JsonObj) -> None:
        name = node["metadata"]["name"]
        if kind == "DELETED":
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = node

    async def _loop(self, path: str, on: Callable[[str, JsonObj], None], kind: str) -> None:
        assert self._session is not None
        while True:
            try:
                async with self._session.get(self.server + path) as resp:
                    resp.raise_for_status()
                    listing = await resp.json()
                rv = listing["metadata"]["resourceVersion"]
                seen = set()
                for item in listing.get("items") or []:
                    on("ADDED", item)
                    seen.add((item["metadata"].get("namespace", ""), item["metadata"]["name"]))
                stale = [
                    k
                    for k in (self.pods if kind == "pods" else {("", n): 0 for n in self.nodes})
                    if k not in seen
                ]
                for ns, name in stale:
                    on("DELETED", {"metadata": {"namespace": ns, "name": name}})
                self._synced_kinds.add(kind)
                if self._synced_kinds >= {"pods", "nodes"}:
                    self.synced.set()
                params = {
                    "watch": "1",
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "300",
                }
                async with self._session.get(self.server + path, params=params) as resp:
                    resp.raise_for_status()
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            on(event["type"], event["object"])
                        elif event["type"] == "ERROR":
                            break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server restarting, a 410: list again
                log.debug("agent watch %s: %s; relisting", path, exc)
                await asyncio.sleep(0.2)


class AgentProxy:
    """The HTTP CONNECT proxy on a Unix socket that answers as each pod's simulated agent."""

    def __init__(self, socket_path: Path, watcher: Watcher) -> None:
        self.socket_path = socket_path
        self.watcher = watcher
        self.overrides: dict[tuple[str, str], Override] = {}
        self.requests = 0
        self._plans: dict[tuple[str, str], JsonObj] = {}
        self._documents: dict[tuple[str, str, str, str], bytes] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._client, path=str(self.socket_path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def override(self, namespace: str, pod: str, handler: Override) -> None:
        """Answer this pod's agent paths with handler(path) -> (status, JSON body) (fault injection)."""
        self.overrides[(namespace, pod)] = handler

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            pod = self.watcher.pods_by_ip.get(host)
            if (
                int(port) != AGENT_PORT
                or pod is None
                or not (container_running(pod) or self._overridden(pod))
            ):
                # Nothing listens there: what a real network answers (the API server reports 503).
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await self._serve_http(host, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve_http(self, ip: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive over the tunnel (the API server's transport reuses it)."""
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            answer = self.answer(ip, target.split("?", 1)[0])
            if answer is None:
                return  # the container stopped: its connections die with it
            status, ctype, body = answer
            self.requests += 1
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body) if method != 'HEAD' else 0}\r\n"
                f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
            if close:
                return

    def _overridden(self, pod: JsonObj) -> bool:
        return (pod["metadata"].get("namespace", ""), pod["metadata"]["name"]) in self.overrides

    def answer(self, ip: str, path: str) -> tuple[int, str, bytes] | None:
        """The simulated agent's answer for the pod that currently has this IP (None: nothing listens)."""
        pod = self.watcher.pods_by_ip.get(ip)
        if pod is None:
            return None
        meta = pod["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if key in self.overrides:
            code, payload = self.overrides[key](path)
            return code, "application/json", json.dumps(payload).encode()
        if not container_running(pod):
            return None
        try:
            hardware = self._hardware(pod) if path in ("/readyz", "/v1/hardware") else b"{}"
        except LookupError as exc:
            return 503, "text/plain", str(exc).encode()
        return agent_answer(
            path, hardware, up=engine_up(pod), engine=pod_env(pod, "GPUFLEET_ENGINE") or "auto"
        )

    def _hardware(self, pod: JsonObj) -> bytes:
        node = self.watcher.nodes.get(pod["spec"].get("nodeName", ""))
        if node is None:
            raise LookupError("the pod's node no longer exists")
        profile = (node["metadata"].get("annotations") or {}).get(PROFILE_ANNOTATION)
        if not profile:
            raise LookupError(f"node has no {PROFILE_ANNOTATION} annotation")
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
            body = self._documents[key] = json.dumps(planned_document(self._plans, profile, env)).encode()
        return body
