"""Failure causes as the router counts them, and the real fake engine behind the router."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gpufleet_fakeengine.engine import FakeArgs, FakeEngine
from tests.integration.router.conftest import Device, Router, free_port, post

pytestmark = pytest.mark.timeout(120)


async def test_first_byte_timeout_is_a_timeout_and_504(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(first_byte_timeout_seconds=0.5, retries=0)
    (slow,) = await stubs(1)
    slow.mode = "hang"
    await router.program([Device("slow", slow.port, "0")])
    async with aiohttp.ClientSession() as session:
        status, body, _ = await post(session, router.url, {"model": "m"})
    assert status == 504
    assert body["error"]["type"] == "timeout"
    snap = await router.scrape_until(lambda sn: any(d.failures.timeout for d in sn.devices))
    [dev] = snap.devices
    assert (dev.requests, dev.failures.timeout, dev.completions) == (1, 1, 0)


async def test_client_cancel_is_counted_as_such(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    (a,) = await stubs(1)
    await router.program([Device("pa", a.port, "0")])
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            router.url + "/v1/chat/completions",
            data=json.dumps({"model": "m", "stream": True, "chunks": 100, "gap": 0.05}),
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200
        await r.content.readline()  # the first chunk arrived: now the client goes away
        r.close()
    snap = await router.scrape_until(lambda sn: any(d.requests for d in sn.devices))
    [dev] = snap.devices
    assert dev.failures.client_cancel == 1
    assert dev.failures.engine_faults == 0
    assert dev.completions == 0


@pytest.fixture
async def fake_engines() -> AsyncIterator[list[tuple[FakeEngine, int]]]:
    """Two real fake engines (the gpufleet_fakeengine app), one failing every completion."""
    out: list[tuple[FakeEngine, int]] = []
    runners: list[web.AppRunner] = []
    for env in ({}, {"FAKE_ENGINE_COMPLETION_FAIL": "1"}):
        port = free_port()
        engine = FakeEngine(
            FakeArgs(flavour="vllm", host="127.0.0.1", port=port, model="org/m", served_names=["org/m"]), env
        )
        runner = web.AppRunner(engine.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        out.append((engine, port))
    yield out
    for runner in runners:
        await runner.cleanup()


async def test_the_fake_engine_behind_the_router(make_router: Any, fake_engines: Any) -> None:
    """Usage tokens reach the counters; the failing engine's 500s are retried on the good one."""
    router: Router = await make_router(outlier_consecutive_failures=1000)
    (good, good_port), (_, bad_port) = fake_engines
    await router.program(
        [
            Device("good", good_port, "0", index=0, models=("org/m",)),
            Device("bad", bad_port, "0", index=1, models=("org/m",)),
        ]
    )
    n = 20
    async with aiohttp.ClientSession() as session:
        results = [
            await post(session, router.url, {"model": "org/m", "prompt": "one two three", "max_tokens": 5})
            for _ in range(n)
        ]
    assert [s for s, _, _ in results] == [200] * n
    snap = await router.scrape_until(lambda sn: sum(d.completions for d in sn.devices) >= n)
    d = {x.key.pod: x for x in snap.devices}
    assert d["good"].completions == n
    assert d["good"].tokens.prompt == 3 * n
    assert d["good"].tokens.completion == 5 * n
    generated = good.registry.get_sample_value("vllm:generation_tokens_total", good.model_label)
    assert generated == d["good"].tokens.completion  # the engine's own count agrees
    assert d["bad"].failures.http_5xx == d["bad"].requests == d["bad"].retries
