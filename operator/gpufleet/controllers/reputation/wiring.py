"""Start the reputation and k controllers with the operator and stop them with it.

The seam into the operator (#14's runtime): two kopf startup/cleanup handlers, registered after
the core's, that run ``ReputationController.run`` and ``RoutingPolicyController.run`` as asyncio
tasks on the reconciler's API client. Neither needs the runtime's queue or caches, so folding
them into the runtime later means calling their ``step()`` from a periodic key instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gpufleet.controllers.reputation.controller import KubeApi, ReputationController, router_stats_fetcher
from gpufleet.controllers.routingpolicy.controller import RoutingPolicyController

logger = logging.getLogger("gpufleet.reputation")


def router_urls(settings: Any) -> list[str]:
    return [u.strip() for u in (settings.reputation_router_urls or "").split(",") if u.strip()]


def register_reputation_controllers(registry: Any, settings: Any, reconciler: Any) -> None:
    """kopf startup/cleanup handlers that run both controllers on the reconciler's client."""
    import kopf

    holder: dict[str, Any] = {}

    @kopf.on.startup(registry=registry)
    async def start_reputation(**_: Any) -> None:
        client = reconciler.client
        if client is None:
            logger.warning("reputation controllers not started: the reconciler has no API client")
            return
        urls = router_urls(settings)
        fetch = router_stats_fetcher(urls) if urls else None
        if fetch is None and settings.reputation_prometheus_url:
            from gpufleet.controllers.reputation.promql import prometheus_stats_fetcher

            fetch = prometheus_stats_fetcher(settings.reputation_prometheus_url)
            urls = [f"{settings.reputation_prometheus_url} (PromQL)"]
        api = KubeApi(client)
        stop = asyncio.Event()
        reputation = ReputationController(settings, api, fetch)
        k = RoutingPolicyController(settings, api, fetch)
        tasks = [
            asyncio.create_task(reputation.run(stop), name="gpufleet-reputation"),
            asyncio.create_task(k.run(stop), name="gpufleet-k"),
        ]
        holder.update(stop=stop, tasks=tasks)
        logger.info("reputation and k controllers started; routers %s", urls or "none (nothing measured)")

    @kopf.on.cleanup(registry=registry)
    async def stop_reputation(**_: Any) -> None:
        if "stop" in holder:
            holder["stop"].set()
            for task in holder["tasks"]:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
