"""The agent's status port: liveness, readiness, the hardware report and metrics.

Handlers only read state the supervisor keeps current; none of them touches the engine, so probes
stay fast and never fail because the engine is slow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gpufleet.hardware.agent import Readiness

ReadinessFn = Callable[[], Mapping[str, Any]]


def build_app(
    readiness: ReadinessFn,
    hardware_document: Callable[[], Mapping[str, Any]],
    registry: CollectorRegistry,
) -> web.Application:
    """An aiohttp application serving the status endpoints from the given state accessors."""

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        status = Readiness.model_validate(dict(readiness()))  # the protocol model (hardware.agent)
        return web.json_response(status.to_json(), status=200 if status.ready else 503)

    async def hardware(_: web.Request) -> web.Response:
        return web.json_response(dict(hardware_document()))

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/hardware", hardware)
    app.router.add_get("/metrics", metrics)
    return app


class StatusServer:
    """Runs the status app on a host/port inside the agent's event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self.host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        await self._runner.cleanup()
