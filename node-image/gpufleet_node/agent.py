"""The agent's lifecycle: plan, serve status, supervise the engine, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from prometheus_client import disable_created_metrics

from gpufleet_node.config import AgentConfig
from gpufleet_node.engines import FLAVOURS, apply_launcher
from gpufleet_node.metrics import AgentMetrics
from gpufleet_node.plan import Plan, make_plan
from gpufleet_node.server import StatusServer, build_app
from gpufleet_node.supervisor import EngineClient, State, Supervisor


def _say(message: str) -> None:
    print(f"gpufleet-node: {message}", file=sys.stderr, flush=True)


async def run_agent(config: AgentConfig, env: Mapping[str, str]) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # `_created` series add samples to every scrape and no dashboard reads them. Process-wide, so it
    # is done here (the agent's own process) and not in AgentMetrics, which tests share a process with.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = AgentMetrics()
    # Detection may touch NVML (blocking C calls): keep it off the event loop.
    plan: Plan = await asyncio.to_thread(make_plan, config, env)
    supervisor: Supervisor | None = None
    blocked_status: dict[str, Any] = {}

    if plan.engine is None or plan.command is None:
        blocked = plan.blocked or {"reason": "Blocked", "message": "no engine selected"}
        _say(f"refusing to start an engine: {blocked['reason']}: {blocked['message']}")
        metrics.device_valid.set(0.0)
        metrics.set_state(State.BLOCKED.value, (s.value for s in State))
        blocked_status = {"ready": False, "state": State.BLOCKED.value, **blocked}
    else:
        metrics.device_valid.set(1.0)
        device = str(config.device_index)
        metrics.info.labels(engine=plan.engine, model=config.model, device_index=device).set(1)
        argv = apply_launcher(plan.command, config.engine_launcher)
        _say(f"engine {plan.engine}: {' '.join(plan.command)}")
        if config.engine_launcher:
            _say(f"launching through GPUFLEET_ENGINE_LAUNCHER: {' '.join(argv)}")
        client = EngineClient(config.engine_url, FLAVOURS[plan.engine], config.model, config.timings)
        engine_env = plan.engine_env(os.environ)
        supervisor = Supervisor(argv, client, config.timings, config.policy, metrics, env=engine_env)

    def readiness() -> Mapping[str, Any]:
        return supervisor.status() if supervisor is not None else blocked_status

    app = build_app(readiness, lambda: plan.document, metrics.registry)
    server = StatusServer(app, config.status_host, config.status_port)
    await server.start()
    _say(f"status on {config.status_host}:{config.status_port}")

    tasks: list[asyncio.Task[None]] = []
    if supervisor is not None:
        tasks.append(asyncio.create_task(supervisor.run()))
        tasks.append(asyncio.create_task(supervisor.scrape_forever()))
        if os.getpid() == 1:
            tasks.append(asyncio.create_task(supervisor.reap_forever()))
    # A crash loop ends supervisor.run(); the agent keeps serving so the operator can read why.
    await stop.wait()
    _say("stop requested")
    if supervisor is not None:
        await supervisor.drain()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if supervisor is not None:
        await supervisor.client.close()
    await server.stop()
    return 0
