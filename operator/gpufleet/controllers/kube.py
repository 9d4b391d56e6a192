"""A small asyncio Kubernetes client for the writes and proxy reads the reconciler makes.

kopf owns the watches; this client owns everything else, sharing kopf's credentials (the
login handler hands the same ``ConnectionInfo`` to both). It is deliberately narrow: one
method per API call the operator makes, each listed in ``gpufleet.rbac``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
import yaml

from gpufleet import API_GROUP, API_VERSION
from gpufleet.metrics import METRICS

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer, with the API server's own reason and message."""

    def __init__(self, status: int, reason: str, message: str, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class ResponseTooLarge(Exception):
    """An answer above the size we read; it was discarded unread."""


async def _read_bounded(resp: aiohttp.ClientResponse, max_bytes: int, what: str) -> str:
    """The body if it is at most ``max_bytes``; never holds more than that in memory."""
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        resp.close()  # drop the connection: the rest is never read
        raise ResponseTooLarge(f"{what}: answer of {declared} bytes is above the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            resp.close()
            raise ResponseTooLarge(f"{what}: answer is above the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks).decode(resp.get_encoding() if resp.charset else "utf-8", errors="replace")


class AgentUnreachable(Exception):
    """The node agent behind the pod proxy did not answer in time or answered with an error."""


#: Failures of a request that are routine on a real network (API errors, timeouts, resets,
#: disconnects): logged as one line, never with a traceback (#21 F9).
ROUTINE_ERRORS: tuple[type[BaseException], ...] = (
    ApiError,
    AgentUnreachable,
    TimeoutError,
    OSError,
    aiohttp.ClientError,
)


#: Largest node-agent answer read through the pod proxy (a real 8-GPU /v1/hardware is ~5 KB).
MAX_AGENT_ANSWER_BYTES = 256 * 1024


def connection_from_kubeconfig(path: str | os.PathLike[str]) -> kopf.ConnectionInfo:
    """The current context of one kubeconfig file (token, client certificate or no auth)."""
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    current = config.get("current-context")
    if not current:
        raise kopf.LoginError(f"kubeconfig {path} has no current-context")
    try:
        context = next(c["context"] for c in config.get("contexts", []) if c["name"] == current)
        cluster = next(c["cluster"] for c in config.get("clusters", []) if c["name"] == context["cluster"])
        user = next(
            (u.get("user") or {} for u in config.get("users", []) if u["name"] == context.get("user")), {}
        )
    except (StopIteration, KeyError) as exc:
        raise kopf.LoginError(
            f"kubeconfig {path}: context {current!r} refers to a missing cluster/user"
        ) from exc
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"),
        private_key_data=user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=user.get("token"),
        default_namespace=context.get("namespace"),
    )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        return False
    ctx = ssl.create_default_context()
    if info.ca_path:
        ctx.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    elif info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        ctx.load_verify_locations(cadata=base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        # ssl only loads client certificates from files.
        tmp = tempfile.mkdtemp(prefix="gpufleet-tls-")
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, blob in ((cert, info.certificate_data), (key, info.private_key_data)):
            raw = blob.encode() if isinstance(blob, str) else blob
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(base64.b64decode(raw))
    if cert:
        ctx.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key else None)
    return ctx


def _resource_of(path: str) -> str:
    """``/api/v1/namespaces/x/pods/y/status`` -> ``pods/status`` (for request metrics)."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "namespaces" in parts:
        parts = parts[parts.index("namespaces") + 2 :]
    elif parts and parts[0] == "api":
        parts = parts[2:]
    else:
        parts = parts[3:]
    if not parts:
        return "?"
    name = parts[0]
    if len(parts) >= 3:
        sub = parts[2]
        return f"{name}/{'proxy' if sub == 'proxy' else sub}"
    return name


class KubeClient:
    """One aiohttp session, bounded concurrency, every request timed into the operator metrics."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        concurrency: int = 64,
        timeout: float = 30.0,
        user_agent: str = "gpufleet-operator",
    ) -> None:
        self.server = info.server.rstrip("/")
        self._ssl = _ssl_context(info)
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        self._auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(concurrency)
        self._agent_limit = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.writes = 0

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # API requests and agent requests each have their own slots (see proxy_get).
            connector = aiohttp.TCPConnector(limit=2 * self._concurrency, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                headers=self._headers, auth=self._auth, timeout=self._timeout, connector=connector
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        deadline: float | None = None,
        what: str = "",
        max_bytes: int | None = None,
        limit: asyncio.Semaphore | None = None,
    ) -> tuple[int, Any]:
        """Send one request; raise ApiError on non-2xx; return (status, decoded JSON or text).

        ``max_bytes``: read at most that much of the body (streamed; a larger answer is discarded
        and raises ``ResponseTooLarge``), for answers we do not control (node agents, #21 F5).
        ``limit``: the concurrency slot to take (default: the API's).
        """
        session = self._ensure()
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = {"Content-Type": content_type} if body is not None else None
        verb = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}[method]
        resource = _resource_of(path)
        started = time.perf_counter()
        code: int | None = None
        try:
            async with limit or self._limit:
                self.requests += 1
                if method != "GET":
                    self.writes += 1
                req_timeout = aiohttp.ClientTimeout(total=deadline) if deadline else None
                async with session.request(
                    method,
                    self.server + path,
                    data=data,
                    headers=headers,
                    timeout=req_timeout or self._timeout,
                ) as resp:
                    code = resp.status
                    if max_bytes is None:
                        text = await resp.text()
                    else:
                        text = await _read_bounded(resp, max_bytes, what or path)
        finally:
            METRICS.record_api_request(verb, resource, code, time.perf_counter() - started)
        payload: Any
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        if code >= 300:
            reason = payload.get("reason", "") if isinstance(payload, Mapping) else ""
            message = payload.get("message", text) if isinstance(payload, Mapping) else text
            raise ApiError(code, str(reason), str(message)[:500], what or f"{method} {path}")
        return code, payload

    async def stream_lines(self, path: str, *, inactivity: float = 330.0) -> AsyncIterator[bytes]:
        """A watch stream, line by line (one JSON event per line); outside the request semaphore."""
        session = self._ensure()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=inactivity)
        self.requests += 1
        async with session.get(self.server + path, timeout=timeout) as resp:
            if resp.status >= 300:
                text = await resp.text()
                raise ApiError(resp.status, "", text[:500], f"watch {path}")
            while True:
                line = await resp.content.readline()
                if not line:
                    return
                if line.strip():
                    yield line

    # --- pods ---------------------------------------------------------------------------

    @staticmethod
    def _pods(namespace: str) -> str:
        return f"/api/v1/namespaces/{quote(namespace)}/pods"

    async def create_pod(self, pod: Mapping[str, Any]) -> JSON | None:
        """Create; None when a pod of that name already exists (idempotent create)."""
        ns = pod["metadata"]["namespace"]
        try:
            _, body = await self.request(
                "POST", self._pods(ns), body=pod, what=f"create pod {ns}/{pod['metadata']['name']}"
            )
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise
        return dict(body)

    async def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (only that incarnation when uid is given); False when already gone."""
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self.request(
                "DELETE",
                f"{self._pods(namespace)}/{quote(name)}",
                body=body,
                what=f"delete pod {namespace}/{name}",
            )
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def patch_pod_labels(self, namespace: str, name: str, labels: Mapping[str, str]) -> JSON:
        _, body = await self.request(
            "PATCH",
            f"{self._pods(namespace)}/{quote(name)}",
            body={"metadata": {"labels": dict(labels)}},
            content_type=MERGE,
            what=f"label pod {namespace}/{name}",
        )
        return dict(body)

    async def set_pod_condition(self, namespace: str, name: str, condition: Mapping[str, Any]) -> JSON:
        """Strategic merge keyed by condition type: touches no other condition of the pod."""
        _, body = await self.request(
            "PATCH",
            f"{self._pods(namespace)}/{quote(name)}/status",
            body={"status": {"conditions": [dict(condition)]}},
            content_type=STRATEGIC,
            what=f"set {condition.get('type')} on {namespace}/{name}",
        )
        return dict(body)

    async def proxy_get(
        self, namespace: str, pod: str, port: int, path: str, deadline: float
    ) -> tuple[int, Any]:
        """GET through the API server's pod proxy; AgentUnreachable on timeouts and errors."""
        url = f"{self._pods(namespace)}/{quote(pod)}:{port}/proxy/{path.lstrip('/')}"
        try:
            return await self.request(
                "GET",
                url,
                deadline=deadline,
                what=f"agent of {namespace}/{pod} {path}",
                max_bytes=MAX_AGENT_ANSWER_BYTES,
                limit=self._agent_limit,  # hanging agents never take the API's slots (#21 F10)
            )
        except (ApiError, ResponseTooLarge) as exc:
            raise AgentUnreachable(str(exc)) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AgentUnreachable(
                f"agent of {namespace}/{pod} {path}: {type(exc).__name__} after {deadline:g}s {exc}"
            ) from exc

    # --- gpufleet.io status --------------------------------------------------------------

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> JSON:
        """Merge-patch a gpufleet.io object's status; ``namespace=""`` for cluster-scoped kinds."""
        scope = f"namespaces/{quote(namespace)}/" if namespace else ""
        path = f"/apis/{API_GROUP}/{API_VERSION}/{scope}{plural}/{quote(name)}/status"
        _, body = await self.request(
            "PATCH",
            path,
            body={"status": dict(status)},
            content_type=MERGE,
            what=f"status of {plural} {namespace + '/' if namespace else ''}{name}",
        )
        return dict(body) if isinstance(body, Mapping) else {}

    # --- events ---------------------------------------------------------------------------

    async def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'gpufleet')}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": ns,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": "gpufleet-operator"},
            "reportingComponent": "gpufleet.io/operator",
            "reportingInstance": os.environ.get("HOSTNAME", "gpufleet-operator"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.request(
            "POST",
            f"/api/v1/namespaces/{quote(ns)}/events",
            body=event,
            what=f"event {reason} on {obj.get('kind')} {ns}/{meta.get('name')}",
        )


def post_event_soon(
    client: KubeClient,
    obj: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    *,
    background: set[asyncio.Task[Any]],
) -> None:
    """Fire and forget: an Event must never hold up (or fail) a reconcile.

    The task is kept in ``background`` until it ends, so it is not garbage-collected mid-flight
    and its owner can wait for or cancel the ones still running when it stops.
    """

    async def post() -> None:
        try:
            await client.post_event(obj, type_, reason, message)
        except Exception as exc:  # best effort by design
            logger.debug("event %s not posted: %s", reason, exc)

    task = asyncio.create_task(post())
    background.add(task)
    task.add_done_callback(background.discard)
