"""The router's counters from Prometheus: instant vectors -> RouterStats -> the same reputation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from gpufleet.controllers.reputation.promql import QUERIES, prometheus_stats_fetcher, stats_from_vectors

NOW = datetime(2026, 3, 1, 10, tzinfo=UTC)
LABELS = {
    "pod": "router-0",
    "namespace": "operators",
    "pool": "p",
    "inferencenode": "n",
    "device": "0",
    "model": "m",
}


def vec(value: float, **extra: str) -> dict[str, Any]:
    return {"metric": {**LABELS, **extra}, "value": [NOW.timestamp(), str(value)]}


RESULTS = {
    "completions": [vec(970), vec(5, pod="router-1"), {"metric": {"device": "x"}, "value": [0, "1"]}],
    "failures": [
        vec(20, cause="http_5xx"),
        vec(10, cause="timeout"),
        vec(3, cause="client_cancel"),
        vec(9, cause="bogus"),
    ],
    "tokens": [vec(97000)],
    "latency": [vec(2000.0)],
    "ttfb": [vec(60.0)],
}


def test_vectors_become_one_router_stats_per_replica() -> None:
    stats = stats_from_vectors(RESULTS, NOW)
    assert [s.router for s in stats] == ["router-0", "router-1"]
    [dev] = stats[0].devices
    assert (dev.key.namespace, dev.key.pool, dev.key.inference_node, dev.key.device, dev.key.model) == (
        "operators",
        "p",
        "n",
        0,
        "m",
    )
    assert (dev.completions, dev.failures.http_5xx, dev.failures.timeout, dev.failures.client_cancel) == (
        970,
        20,
        10,
        3,
    )
    assert dev.requests == 1003
    assert dev.tokens.completion == 97000
    assert (dev.latency.sum_seconds, dev.ttfb.sum_seconds) == (2000.0, 60.0)
    assert stats[0].observed_at == NOW
    assert stats[1].devices[0].completions == 5


def test_exported_namespace_wins_over_the_targets_namespace() -> None:
    stats = stats_from_vectors(
        {"completions": [vec(1, namespace="monitoring", exported_namespace="operators")]}, NOW
    )
    assert stats[0].devices[0].key.namespace == "operators"


@pytest.fixture
async def prometheus() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def query(request: web.Request) -> web.Response:
        q = request.query["query"]
        seen.append(q)
        name = next(k for k, v in QUERIES.items() if v == q)
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": RESULTS[name]}}
        )

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_the_fetcher_queries_each_counter(prometheus: tuple[str, list[str]]) -> None:
    url, seen = prometheus
    stats = await prometheus_stats_fetcher(url, clock=lambda: NOW)()
    assert sorted(seen) == sorted(QUERIES.values())
    assert stats[0].devices[0].completions == 970
    assert await prometheus_stats_fetcher("http://127.0.0.1:9")() == []  # unreachable: nothing, logged
