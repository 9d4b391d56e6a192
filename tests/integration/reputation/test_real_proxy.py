"""Reputation through the real proxy: real Envoy and control plane, stub engines failing at fixed rates.

The router's own counters (``ControlPlane.snapshot()``, what ``GET /v1/stats`` serves) feed the
reputation controller (in-memory API); the penalty it creates reaches the router as the pool
annotation and takes the pool's traffic to zero, and back after it expires.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpufleet.controllers.reputation.controller import PENALTY_ANNOTATION, ReputationController
from gpufleet.router.stats import RouterStats
from tests.integration.reputation.fakeapi import FakeApi
from tests.integration.reputation.test_controller import NS, Clock, add_pool, settings
from tests.integration.router.conftest import Device, Router, Stub, fleet_bodies, free_port, post

pytestmark = pytest.mark.timeout(120)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Flaky(Stub):
    """A stub engine that answers 500 to every ``every``-th attempt (deterministic failure rate)."""

    every: int = 0
    attempts: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.every and self.attempts % self.every == 0:
            await request.read()
            return web.json_response({"error": {"message": "flaky"}}, status=500)
        return await super().handle(request)


async def fire(router: Router, n: int, concurrency: int = 8) -> dict[int, int]:
    codes: dict[int, int] = {}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with sem:
                status, _, _ = await post(session, router.url, {"model": "m", "prompt": "hi"})
                codes[status] = codes.get(status, 0) + 1

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=90)
    return codes


def fleet_api(pools: list[str]) -> FakeApi:
    api = FakeApi()
    for pool in pools:
        add_pool(api, pool)
        # the router's fleet uses namespace "fleet" and inode "<pool>-node": match it
    for plural in ("operatorpools", "inferencenodes"):
        for obj in list(api.all(plural)):
            api.delete(plural, NS, obj["metadata"]["name"])
            obj["metadata"]["namespace"] = "fleet"
            api.put(plural, obj)
    return api


async def test_issue_failure_rates_through_envoy_give_the_issue_tiers(make_router: Any) -> None:
    router: Router = await make_router(outlier_consecutive_failures=1000)
    rates = {"p-0-1": 1000, "p-1-5": 67, "p-3": 33, "p-10": 10}  # fail every n-th attempt
    engines = {}
    for pool, every in rates.items():
        stub = Flaky(name=pool, port=free_port(), every=every)
        await stub.start()
        engines[pool] = stub
    try:
        devices = [Device(pool, s.port, "0", pool=pool, inode=f"{pool}-node") for pool, s in engines.items()]
        await router.program(devices)
        codes = await fire(router, 1400)
        # failed attempts are retried once elsewhere; a retry can meet another flaky engine's turn
        assert codes[200] >= 1390
        assert set(codes) <= {200, 500}
        snap = await router.scrape_until(lambda sn: sum(d.completions for d in sn.devices) >= codes[200])
        api = fleet_api(list(rates))
        clock = Clock(T0)
        stats = [RouterStats.model_validate(snap.model_dump())]
        base = stats[0].model_copy(update={"devices": ()})

        async def first() -> list[RouterStats]:
            return [base]  # the router as the operator first saw it: no device yet

        async def second() -> list[RouterStats]:
            return stats

        ctl = ReputationController(settings(), api, first, clock=clock, monotonic=clock.mono)
        await ctl.step()
        ctl.fetch_stats = second
        clock.now += timedelta(minutes=1)
        await ctl.step()
        got = {}
        for pool in rates:
            rep = dict(api.get("operatorpools", "fleet", pool)["status"]["reputation"])
            got[pool] = rep["multiplier"]
            assert rep["sample"] >= 200, rep
        assert got["p-0-1"] == "1"
        assert got["p-1-5"] == "0.9"
        assert got["p-3"] == "0.8"
        assert float(got["p-10"]) <= 0.5
    finally:
        for stub in engines.values():
            await stub.stop()


async def test_penalty_annotation_sends_traffic_to_zero_and_back(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    a, b = await stubs(2)
    devices = [
        Device("a", a.port, "0", pool="pool-a", inode="pool-a-node"),
        Device("b", b.port, "0", pool="pool-b", inode="pool-b-node"),
    ]
    api = fleet_api(["pool-a", "pool-b", "pool-c", "pool-d", "pool-e"])
    start = datetime.now(UTC).replace(microsecond=0)  # the router judges the annotation by its own clock
    clock = Clock(start)
    created = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    pen = {
        "metadata": {"name": "manual", "namespace": "fleet", "creationTimestamp": created},
        "spec": {"pool": "pool-b", "offense": "Manual", "reason": "test", "level": 1},
    }
    api.put("penalties", pen)
    ctl = ReputationController(settings(), api, None, clock=clock, monotonic=clock.mono)
    await ctl.step()
    annotations = {
        p: dict(api.get("operatorpools", "fleet", p)["metadata"].get("annotations") or {})
        for p in ("pool-a", "pool-b")
    }
    assert PENALTY_ANNOTATION in annotations["pool-b"]
    await router.program(devices, pool_annotations=annotations)
    before = (a.served, b.served)
    assert await fire(router, 40) == {200: 40}
    assert b.served == before[1]  # nothing reached the penalised pool
    assert a.served == before[0] + 40
    # the penalty ends (1 h): the controller removes the annotation, the router routes again
    clock.now = start + timedelta(hours=1, seconds=1)
    await ctl.step()
    annotations = {
        p: dict(api.get("operatorpools", "fleet", p)["metadata"].get("annotations") or {})
        for p in ("pool-a", "pool-b")
    }
    assert PENALTY_ANNOTATION not in annotations["pool-b"]
    await router.program(devices, pool_annotations=annotations)
    assert await fire(router, 40) == {200: 40}
    assert b.served > before[1]
    assert api.get("operatorpools", "fleet", "pool-b")["status"]["reputation"]["weight"] == "1"


async def test_a_lower_tier_lowers_the_routed_share_as_predicted(make_router: Any) -> None:
    """Measured tier -> reputation weight -> priority -> Envoy weight -> routed share, within bounds."""
    from gpufleet.reputation.routing import pool_reputation_weight
    from gpufleet.router.weights import plan_routing

    router: Router = await make_router(outlier_consecutive_failures=1000, priority_k="0.0001")
    good = Flaky(name="good", port=free_port(), every=0)
    flaky = Flaky(name="flaky", port=free_port(), every=33)  # ~3%: tier 3, multiplier 0.8
    for s in (good, flaky):
        await s.start()
    try:
        devices = [
            Device("good", good.port, "100000", pool="good", inode="good-node"),
            Device("flaky", flaky.port, "100000", pool="flaky", inode="flaky-node"),
        ]
        await router.program(devices)
        await fire(router, 600)
        snap = await router.scrape_until(lambda sn: sum(d.requests for d in sn.devices) >= 600)
        api = fleet_api(["good", "flaky", "p3", "p4", "p5"])
        clock = Clock(T0)
        empty = snap.model_copy(update={"devices": ()})
        feeds = iter([[empty], [snap]])

        async def fetch() -> list[RouterStats]:
            return next(feeds)

        ctl = ReputationController(settings(), api, fetch, clock=clock, monotonic=clock.mono)
        await ctl.step()
        clock.now += timedelta(minutes=1)
        await ctl.step()
        weights = {p: pool_reputation_weight(api.get("operatorpools", "fleet", p)) for p in ("good", "flaky")}
        assert weights["good"] == 1
        assert weights["flaky"] == Decimal("0.8")
        # The router reads the measured weight from the pools' status.reputation (no override).
        pods, inodes, pools = fleet_bodies(devices)
        for (_, name), body in pools.items():
            body["spec"].pop("reputationWeight", None)
            body["status"] = {"reputation": api.get("operatorpools", "fleet", name)["status"]["reputation"]}
        router.plane.set_state(pods, inodes, pools)
        router.plane.recompute()
        await router.wait_applied()
        # the shares the router intends: priority 1 + 0.0001 x 100000 x w = 11 and 9
        _, groups = plan_routing(list(router.plane.plan.eligible), router.plane.k)
        shares = {m.endpoint.pod: float(m.share) for m in groups["m"].endpoints}
        assert shares["flaky"] == pytest.approx(9 / 20)
        before = (good.served, flaky.served)
        n = 2000
        await fire(router, n, concurrency=1)
        got = flaky.served - before[1]
        # EDF weighted round robin is deterministic; retried failures move ~3% of flaky's picks to good
        expected = n * 9 / 20
        assert abs(got - expected * (1 - 1 / 33)) < 0.02 * n
    finally:
        for s in (good, flaky):
            await s.stop()
