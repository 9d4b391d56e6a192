"""The status endpoints and the probe sub-command the image's HEALTHCHECK uses."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from gpufleet_fakeengine.harness import free_port
from gpufleet_node.cli import main as node_main
from gpufleet_node.cmd_probe import handle as probe
from gpufleet_node.metrics import AgentMetrics
from gpufleet_node.server import StatusServer, build_app


class State:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {"ready": False, "state": "Loading", "reason": "loading weights"}
        self.document: dict[str, Any] = {"report": None, "validation": [], "engine": None}


Fixture = tuple[TestClient[Any, Any], State, AgentMetrics]


@pytest.fixture
async def client() -> AsyncIterator[Fixture]:
    state = State()
    metrics = AgentMetrics()
    app = build_app(lambda: state.status, lambda: state.document, metrics.registry)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, state, metrics


async def test_livez_always_answers(client: Fixture) -> None:
    test_client, _, _ = client
    response = await test_client.get("/livez")
    assert response.status == 200


async def test_readyz_follows_supervisor_state(client: Fixture) -> None:
    test_client, state, _ = client
    response = await test_client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reason"] == "loading weights"
    state.status = {"ready": True, "state": "Ready", "reason": "ok"}
    response = await test_client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["state"] == "Ready"


async def test_hardware_serves_the_plan_document(client: Fixture) -> None:
    test_client, state, _ = client
    state.document = {"report": {"devices": []}, "validation": [{"valid": True}], "engine": {"x": 1}}
    response = await test_client.get("/v1/hardware")
    assert response.status == 200
    assert await response.json() == state.document


async def test_metrics_is_prometheus_text(client: Fixture) -> None:
    test_client, _, metrics = client
    metrics.restarts.labels(reason="EngineExited").inc()
    response = await test_client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for f in text_string_to_metric_families(await response.text())
        for s in f.samples
    }
    assert samples[("gpufleet_node_engine_restarts_total", (("reason", "EngineExited"),))] == 1.0


async def test_unknown_path_is_404(client: Fixture) -> None:
    test_client, _, _ = client
    assert (await test_client.get("/nope")).status == 404


async def test_probe_reports_readiness_through_exit_code() -> None:
    state = State()
    port = free_port()
    app = build_app(lambda: state.status, lambda: state.document, AgentMetrics().registry)
    server = StatusServer(app, "127.0.0.1", port)
    await server.start()
    try:

        def run(path: str) -> int:
            return probe(argparse.Namespace(path=path, port=port, timeout=2.0))

        assert await asyncio.to_thread(run, "/readyz") == 1
        assert await asyncio.to_thread(run, "livez") == 0
        state.status = {"ready": True}
        assert await asyncio.to_thread(run, "/readyz") == 0
    finally:
        await server.stop()
    assert probe(argparse.Namespace(path="/livez", port=port, timeout=0.5)) == 1  # nothing listens now


def test_cli_lists_run_and_probe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        node_main(["--help"])
    out = capsys.readouterr().out
    assert "run" in out
    assert "probe" in out
