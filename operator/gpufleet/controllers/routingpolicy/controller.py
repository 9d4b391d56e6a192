"""The k controller task: every ``spec.intervalSeconds`` read the routers, step k, write the status.

A small asyncio task like the reputation controller (same ``Api``), so it can be folded into the
operator's runtime as a periodic key. It creates the RoutingPolicy ``GPUFLEET_ROUTING_POLICY_NAME``
with default spec when none exists, and writes its status only when k, the reason or the
utilisation moved (one cluster-scoped object: at most one write per interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from gpufleet.controllers.routingpolicy import planner
from gpufleet.metrics import METRICS
from gpufleet.reputation.kcontrol import KStep
from gpufleet.router.stats import RouterStats

logger = logging.getLogger("gpufleet.routingpolicy")

GROUP_PATH = "/apis/gpufleet.io/v1alpha1"


class Api(Protocol):
    """What the k controller needs from the API server (the reputation controller's ``KubeApi`` fits)."""

    async def list(self, path: str) -> list[dict[str, Any]]: ...
    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


class RoutingPolicyController:
    def __init__(
        self,
        settings: Any,
        api: Api,
        fetch_stats: Callable[[], Awaitable[list[RouterStats]]] | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.api = api
        self.fetch_stats = fetch_stats
        self.clock = clock
        self.previous: Mapping[str, planner.Sample] = {}
        self.interval = 30.0
        self.last_step: KStep | None = None

    async def _namespaced(self, plural: str) -> list[dict[str, Any]]:
        """All objects of a namespaced kind: cluster-wide, or per watched namespace (namespace-mode RBAC)."""
        namespaces = list(getattr(self.settings, "namespaces", []) or [])
        if not namespaces:
            return await self.api.list(f"{GROUP_PATH}/{plural}")
        out: list[dict[str, Any]] = []
        for ns in namespaces:
            out.extend(await self.api.list(f"{GROUP_PATH}/namespaces/{quote(ns)}/{plural}"))
        return out

    async def _policy(self) -> dict[str, Any]:
        name = self.settings.routing_policy_name
        items = await self.api.list(f"{GROUP_PATH}/routingpolicies")
        found = next((p for p in items if (p.get("metadata") or {}).get("name") == name), None)
        if found is not None:
            return found
        body = {
            "apiVersion": "gpufleet.io/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {"name": name},
            "spec": {},
        }
        return await self.api.create(f"{GROUP_PATH}/routingpolicies", body)

    async def step(self) -> dict[str, Any] | None:
        """One interval; returns the status written (None when unchanged)."""
        now = self.clock()
        body = await self._policy()
        self.interval = float(((body.get("spec") or {}).get("intervalSeconds")) or 30)
        current: Mapping[str, planner.Sample] = {}
        if self.fetch_stats is not None:
            current = planner.samples(await self.fetch_stats())
        inodes = await self._namespaced("inferencenodes")
        status, step = planner.step_policy(
            body,
            self.settings.priority_k,
            self.previous,
            current,
            planner.routed_devices(inodes),
            self.settings.routing_device_capacity,
            now,
        )
        self.previous = current
        self.last_step = step
        METRICS.record_k(
            float(step.state.k),
            None if step.utilisation is None else float(step.utilisation),
            None if step.state.ema is None else float(step.state.ema),
        )
        old = body.get("status")
        if not planner.statuses_differ(old, status):
            return None
        name = (body.get("metadata") or {}).get("name") or self.settings.routing_policy_name
        await self.api.patch(f"{GROUP_PATH}/routingpolicies/{quote(str(name))}/status", {"status": status})
        if (old or {}).get("k") != status["k"]:
            logger.info("k %s -> %s (%s)", (old or {}).get("k"), status["k"], status["reason"])
            try:
                await self.api.event(
                    {"apiVersion": "gpufleet.io/v1alpha1", "kind": "RoutingPolicy", **body},
                    "Normal",
                    "KChanged",
                    f"k {(old or {}).get('k')} -> {status['k']}: {status['reason']}; {status['message']}",
                )
            except Exception as exc:
                logger.warning("KChanged event not posted: %s", exc)
        return status

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except Exception:
                logger.exception("k controller pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
