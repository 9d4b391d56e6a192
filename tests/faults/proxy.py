"""A fault-injecting HTTP proxy between the operator and the API server (127.0.0.1 only).

The operator's kubeconfig names the proxy; the proxy forwards every request to the upstream API
server (the emulator) and, at the rates of its current :class:`FaultPlan`, answers 500/429/503
itself, resets the connection, delays the request, or cuts a watch stream part-way. The upstream
can be switched while running (an API server restored from a backup: resourceVersions go
backwards), which also cuts every open watch. Decisions come from a seeded RNG, so a case sees the
same kind of faults on every run; every request is logged with its time and what was done to it,
so a test can bound the operator's request rate during the faults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

#: The API server's pod proxy, which is how the operator reaches a node agent.
POD_PROXY = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/:]+)(?::\d+)?/proxy(?P<path>/.*)$")

#: A hostile agent: (request, upstream_body) -> the response the operator gets instead of the agent's.
#: ``upstream_body()`` fetches what the real (simulated) agent would have answered.
AgentBehaviour = Callable[[web.Request, Callable[[], Awaitable[bytes]]], Awaitable[web.StreamResponse]]

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
)


class UpstreamAnswer(Exception):
    """The real agent answered an error: a hostile behaviour has nothing to distort."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


@dataclass(frozen=True)
class FaultPlan:
    """Rates (0..1) of each fault; they are tried in this order and at most one applies per request.

    ``error_codes`` are the statuses of an injected error answer (picked uniformly); ``delay_seconds``
    is how long a delayed request waits before being forwarded; a cut watch is closed after a
    uniform ``watch_cut_after`` seconds.
    """

    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 429, 503)
    reset_rate: float = 0.0
    delay_rate: float = 0.0
    delay_seconds: float = 2.0
    watch_cut_rate: float = 0.0
    watch_cut_after: tuple[float, float] = (0.2, 2.0)
    #: Only requests whose path contains one of these are faulted (empty: all).
    paths: tuple[str, ...] = ()
    #: Stop injecting after this many faults (None: never): "one transient 429".
    max_faults: int | None = None

    @classmethod
    def api_faults(cls, rate: float, **extra: Any) -> FaultPlan:
        """``rate`` of all requests faulted, split over errors, resets, delays and watch cuts."""
        return cls(
            error_rate=rate * 0.6,
            reset_rate=rate * 0.2,
            delay_rate=rate * 0.2,
            watch_cut_rate=rate,
            **extra,
        )


NO_FAULTS = FaultPlan()


@dataclass
class Logged:
    """One request the proxy saw: when, what, and what it did (``forwarded`` or a fault name)."""

    at: float
    method: str
    path: str
    watch: bool
    outcome: str
    status: int | None = None


@dataclass
class FaultProxy:
    """``async with FaultProxy(upstream_url) as proxy:``; ``proxy.plan = FaultPlan(...)`` at any time."""

    upstream: str
    seed: int = 20
    plan: FaultPlan = NO_FAULTS
    log: list[Logged] = field(default_factory=list)
    #: pod name -> {agent path ("/v1/hardware", "/readyz"): behaviour}; other paths pass through.
    agents: dict[str, dict[str, AgentBehaviour]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watches: set[web.StreamResponse] = set()
        self._watch_tasks: set[asyncio.Task[Any]] = set()
        self.port = 0
        self.injected = 0
        self.errors: list[BaseException] = []

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        # An injected reset raises in the handler on purpose; aiohttp would log each as an error.
        logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        assert server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
        )

    async def stop(self) -> None:
        self.cut_watches()
        for task in list(self._watch_tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def set_plan(self, plan: FaultPlan) -> None:
        """A new plan; its ``max_faults`` counts from now."""
        self.plan, self.injected = plan, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose server is this proxy (what the operator under test is given)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "faults",
            "clusters": [{"name": "faults", "cluster": {"server": self.url}}],
            "users": [{"name": "faults", "user": {"token": "devcluster"}}],
            "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "faults"}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def switch_upstream(self, url: str) -> None:
        """Send everything to another API server from now on; open watches are cut."""
        self.upstream = url
        self.cut_watches()

    def cut_watches(self) -> None:
        for resp in list(self._watches):
            transport = resp._req.transport if resp._req is not None else None
            if transport is not None:
                transport.abort()
        self._watches.clear()

    # ------------------------------------------------------------------ measurements
    def mark(self) -> float:
        return time.monotonic()

    def requests_between(self, start: float, end: float | None = None) -> list[Logged]:
        end = time.monotonic() if end is None else end
        return [r for r in self.log if start <= r.at <= end]

    def rate(self, start: float, end: float | None = None, *, watches: bool = False) -> float:
        """Requests per second the operator sent in [start, end] (watch requests left out unless asked)."""
        end = time.monotonic() if end is None else end
        picked = [r for r in self.requests_between(start, end) if watches or not r.watch]
        return len(picked) / max(end - start, 1e-9)

    def peak_rate(self, start: float, end: float | None = None, window: float = 1.0) -> float:
        """Most non-watch requests in any ``window`` seconds of [start, end], per second."""
        times = sorted(r.at for r in self.requests_between(start, end) if not r.watch)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] < t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best / window

    def outcomes(self, start: float = 0.0) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.log:
            if r.at >= start:
                out[r.outcome] = out.get(r.outcome, 0) + 1
        return out

    # ------------------------------------------------------------------ forwarding
    def _hostile(self, request: web.Request) -> AgentBehaviour | None:
        m = POD_PROXY.match(request.path)
        if m is None:
            return None
        return self.agents.get(m.group("pod"), {}).get(m.group("path"))

    def _faulted(self, path: str) -> bool:
        if self.plan.max_faults is not None and self.injected >= self.plan.max_faults:
            return False
        return not self.plan.paths or any(p in path for p in self.plan.paths)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._handle_inner(request)
        except (ConnectionError, asyncio.CancelledError, aiohttp.ClientConnectionError):
            raise  # a client that hung up is not a bug of the proxy
        except Exception as exc:  # the proxy's own bugs must fail the test, not look like a fault
            self.errors.append(exc)
            raise

    async def _handle_inner(self, request: web.Request) -> web.StreamResponse:
        plan, rng = self.plan, self._rng
        watch = request.query.get("watch", "").lower() in ("1", "true")
        entry = Logged(time.monotonic(), request.method, request.path, watch, "forwarded")
        self.log.append(entry)
        faulted = self._faulted(request.path)
        roll = rng.random() if faulted else 1.0
        if roll < plan.error_rate:
            code = rng.choice(plan.error_codes)
            entry.outcome, entry.status = f"error{code}", code
            self.injected += 1
            headers = {"Retry-After": "1"} if code == 429 else {}
            return web.json_response(_status_body(code), status=code, headers=headers)
        roll -= plan.error_rate
        if roll < plan.reset_rate:
            entry.outcome = "reset"
            self.injected += 1
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fault proxy: connection reset")
        roll -= plan.reset_rate
        if roll < plan.delay_rate:
            entry.outcome = "delayed"
            await asyncio.sleep(plan.delay_seconds)
        hostile = self._hostile(request)
        if hostile is not None:
            entry.outcome = "agent:" + entry.outcome

            async def upstream_body() -> bytes:
                assert self._session is not None
                async with self._session.get(self.upstream + request.path_qs, headers=_auth(request)) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise UpstreamAnswer(resp.status, body)
                    return body

            try:
                return await hostile(request, upstream_body)
            except UpstreamAnswer as answer:  # the agent is not up (yet): the honest error goes back
                entry.status = answer.status
                return web.Response(body=answer.body, status=answer.status, content_type="application/json")
        cut_after: float | None = None
        if watch and faulted and rng.random() < plan.watch_cut_rate:
            cut_after = rng.uniform(*plan.watch_cut_after)
            entry.outcome = "watch-cut"
        return await self._forward(request, entry, watch, cut_after)

    async def _forward(
        self, request: web.Request, entry: Logged, watch: bool, cut_after: float | None
    ) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = self.upstream + request.path_qs
        try:
            upstream = await self._session.request(request.method, url, data=body, headers=headers)
        except aiohttp.ClientError:
            entry.outcome, entry.status = "upstream-down", 503
            return web.json_response(_status_body(503), status=503)
        entry.status = upstream.status
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if not watch:
            try:
                data = await upstream.read()
            finally:
                upstream.release()
            return web.Response(body=data, status=upstream.status, headers=out_headers)
        resp = web.StreamResponse(status=upstream.status, headers=out_headers)
        await resp.prepare(request)
        self._watches.add(resp)
        deadline = None if cut_after is None else time.monotonic() + cut_after
        try:
            while True:
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), timeout)
                except TimeoutError:
                    if request.transport is not None:
                        request.transport.abort()  # the watch is cut mid-stream, as a dropped TCP link
                    break
                if not chunk:
                    break
                await resp.write(chunk)
        except (ConnectionResetError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            pass
        finally:
            self._watches.discard(resp)
            upstream.release()
        return resp


def _auth(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "accept")}


def _status_body(code: int) -> dict[str, Any]:
    reason = {500: "InternalError", 429: "TooManyRequests", 503: "ServiceUnavailable"}.get(code, "Unknown")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"fault proxy: injected {code}",
        "reason": reason,
        "code": code,
    }


def summary(entries: Iterable[Logged]) -> str:
    """``{outcome: count}`` as one JSON line (for failure messages)."""
    out: dict[str, int] = {}
    for r in entries:
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return json.dumps(out, sort_keys=True)
