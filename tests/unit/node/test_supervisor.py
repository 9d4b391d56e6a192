"""The supervisor against the fake engine as a real child process: readiness, restarts, drain."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gpufleet_fakeengine.harness import child_env, fake_argv, free_port
from gpufleet_node.config import Timings
from gpufleet_node.engines import FLAVOURS
from gpufleet_node.metrics import AgentMetrics
from gpufleet_node.policy import RestartPolicy
from gpufleet_node.supervisor import EngineClient, State, Supervisor, check_completion, reap_orphans

MODEL = "Qwen/Qwen3-0.6B"
FAST = Timings(
    probe_interval=0.05,
    probe_timeout=0.5,
    startup_timeout=10.0,
    smoke_timeout=2.0,
    unhealthy_timeout=0.3,
    metrics_interval=0.1,
    drain_min=0.0,
    drain_timeout=5.0,
    kill_timeout=1.0,
)


class Harness:
    def __init__(self) -> None:
        self.supervisors: list[tuple[Supervisor, asyncio.Task[None]]] = []

    def start(
        self,
        flavour: str = "vllm",
        env: dict[str, str] | None = None,
        timings: Timings = FAST,
        policy: RestartPolicy | None = None,
    ) -> Supervisor:
        port = free_port()
        client = EngineClient(f"http://127.0.0.1:{port}", FLAVOURS[flavour], MODEL, timings)  # type: ignore[index]
        supervisor = Supervisor(
            fake_argv(flavour, MODEL, port),
            client,
            timings,
            policy or RestartPolicy(base_delay=0.05, factor=2.0, max_delay=0.2, crash_loop_limit=3),
            AgentMetrics(),
            env=child_env(env),
        )
        self.supervisors.append((supervisor, asyncio.create_task(supervisor.run())))
        return supervisor


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    for supervisor, task in h.supervisors:
        await supervisor.drain()
        await asyncio.wait_for(task, timeout=5)
        await supervisor.client.close()


async def until(predicate: Callable[[], bool], within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


class Probes:
    """Health checks and smoke completions the supervisor has finished (an observable clock)."""

    def __init__(self) -> None:
        self.health = 0
        self.health_failures = 0
        self.smokes = 0


def count_probes(supervisor: Supervisor) -> Probes:
    probes = Probes()
    healthy, smoke = supervisor.client.healthy, supervisor.client.smoke

    async def counted_healthy() -> bool:
        ok = await healthy()
        probes.health += 1
        probes.health_failures += not ok
        return ok

    async def counted_smoke() -> Any:
        result = await smoke()
        probes.smokes += 1
        return result

    supervisor.client.healthy = counted_healthy  # type: ignore[method-assign]
    supervisor.client.smoke = counted_smoke  # type: ignore[method-assign]
    return probes


def counter(supervisor: Supervisor, name: str, labels: dict[str, str] | None = None) -> float:
    value = supervisor.metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


@pytest.mark.parametrize("flavour", ["vllm", "sglang"])
async def test_ready_after_health_and_smoke(harness: Harness, flavour: str) -> None:
    supervisor = harness.start(flavour, {"FAKE_ENGINE_STARTUP_DELAY": "0.3"})
    started = time.monotonic()
    await until(lambda: supervisor.ready)
    assert time.monotonic() - started >= 0.3
    assert supervisor.state is State.READY
    assert counter(supervisor, "gpufleet_node_engine_ready") == 1.0
    assert counter(supervisor, "gpufleet_node_engine_starts_total") == 1.0
    assert counter(supervisor, "gpufleet_node_engine_state", {"state": "Ready"}) == 1.0


async def test_healthy_engine_is_not_ready_while_smoke_completion_fails(harness: Harness) -> None:
    supervisor = harness.start("sglang", {"FAKE_ENGINE_COMPLETION_FAIL": "1"})
    probes = count_probes(supervisor)
    await until(lambda: "HTTP 500" in supervisor.reason)
    assert await supervisor.client.healthy()
    seen = probes.smokes
    await until(lambda: probes.smokes >= seen + 3)  # three more failed smoke tests, however slow the machine
    assert not supervisor.ready
    assert supervisor.state is State.LOADING


async def test_failing_health_keeps_engine_not_ready(harness: Harness) -> None:
    supervisor = harness.start("vllm", {"FAKE_ENGINE_HEALTH_FAIL": "1"})
    probes = count_probes(supervisor)
    await until(lambda: counter(supervisor, "gpufleet_node_engine_starts_total") >= 1)
    await until(lambda: probes.health_failures >= 3)  # observed failing, not just given time to fail
    assert not supervisor.ready
    assert supervisor.state is State.LOADING


async def test_crash_restarts_with_backoff_then_reports_crash_loop(harness: Harness) -> None:
    supervisor = harness.start(
        "vllm",
        {"FAKE_ENGINE_CRASH_AFTER": "0", "FAKE_ENGINE_EXIT_CODE": "3"},
        policy=RestartPolicy(base_delay=0.05, factor=3.0, max_delay=0.1, crash_loop_limit=2),
    )
    backoffs: list[str] = []

    def seen() -> bool:
        if supervisor.state is State.BACKOFF and supervisor.reason not in backoffs:
            backoffs.append(supervisor.reason)
        return supervisor.state is State.CRASH_LOOP

    await until(seen, within=15)
    assert not supervisor.ready
    assert "failed 3 times in a row" in supervisor.reason
    assert "exit code 3" in supervisor.reason
    assert counter(supervisor, "gpufleet_node_engine_starts_total") == 3
    assert counter(supervisor, "gpufleet_node_engine_restarts_total", {"reason": "EngineExited"}) == 2
    # Exponential 0.05 * 3 = 0.15, capped at max_delay=0.1 (states are sampled, so some may be missed).
    delays = [r.split("restarting in ")[1].split("s")[0] for r in backoffs]
    assert delays
    assert set(delays) <= {"0.05", "0.10"}
    assert delays == sorted(delays)
    assert supervisor.status()["pid"] is None


async def test_engine_that_crashes_twice_then_starts_becomes_ready(harness: Harness, tmp_path: Path) -> None:
    supervisor = harness.start(
        "sglang",
        {
            "FAKE_ENGINE_CRASH_AFTER": "0",
            "FAKE_ENGINE_CRASH_TIMES": "2",
            "FAKE_ENGINE_STATE_DIR": str(tmp_path),
        },
    )
    await until(lambda: supervisor.ready, within=15)
    starts = [json.loads(line) for line in (tmp_path / "starts.jsonl").read_text().splitlines()]
    assert len(starts) == 3
    assert all(s["flavour"] == "sglang" and s["model"] == MODEL for s in starts)
    assert counter(supervisor, "gpufleet_node_engine_restarts_total", {"reason": "EngineExited"}) == 2


async def test_hung_startup_is_killed_and_restarted(harness: Harness, tmp_path: Path) -> None:
    timings = Timings(**{**FAST.__dict__, "startup_timeout": 0.8})
    supervisor = harness.start(
        "vllm",
        {"FAKE_ENGINE_HANG": "startup", "FAKE_ENGINE_STATE_DIR": str(tmp_path)},
        timings=timings,
        policy=RestartPolicy(base_delay=0.05, max_delay=0.05, crash_loop_limit=1),
    )
    await until(lambda: supervisor.state is State.CRASH_LOOP, within=10)
    assert "StartupTimeout" in supervisor.reason
    assert counter(supervisor, "gpufleet_node_engine_starts_total") == 2
    assert counter(supervisor, "gpufleet_node_engine_restarts_total", {"reason": "StartupTimeout"}) == 1


async def test_engine_that_turns_unhealthy_goes_not_ready_and_is_restarted(harness: Harness) -> None:
    supervisor = harness.start("vllm", {"FAKE_ENGINE_HEALTH_FAIL_AFTER": "1.5"})
    await until(lambda: supervisor.ready)
    await until(lambda: supervisor.state is State.UNHEALTHY)
    assert not supervisor.ready
    restarts = {"reason": "Unhealthy"}
    await until(lambda: counter(supervisor, "gpufleet_node_engine_restarts_total", restarts) == 1)


async def test_metrics_are_scraped_in_the_background(harness: Harness) -> None:
    supervisor = harness.start("sglang")
    scraper = asyncio.create_task(supervisor.scrape_forever())
    try:
        await until(lambda: supervisor.ready)
        await until(
            lambda: supervisor.metrics.engine.snapshot is not None
            and supervisor.metrics.engine.snapshot.requests.get("success", 0) >= 1
        )
        snapshot = supervisor.metrics.engine.snapshot
        assert snapshot is not None
        assert snapshot.engine == "sglang"
        # The smoke completion generated exactly one token.
        assert snapshot.counters["gpufleet_engine_generation_tokens"] == 1.0
    finally:
        scraper.cancel()


async def test_drain_waits_for_in_flight_requests(harness: Harness) -> None:
    # An engine that drops requests on SIGTERM: only the agent's waiting can save this request.
    supervisor = harness.start(
        "vllm", {"FAKE_ENGINE_COMPLETION_DELAY": "0.8", "FAKE_ENGINE_ABRUPT_SIGTERM": "1"}
    )
    await until(lambda: supervisor.ready, within=10)
    proc = supervisor.proc
    assert proc is not None
    url = supervisor.client.base_url + "/v1/completions"

    async def request() -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as session, session.post(
            url, json={"model": MODEL, "prompt": "drain me", "max_tokens": 5}
        ) as response:
            return response.status, await response.json()

    in_flight = asyncio.create_task(request())
    running: list[float] = []

    async def engine_running() -> float:
        snapshot = await supervisor.client.scrape()
        return snapshot.gauges.get("gpufleet_engine_requests_running", 0.0)

    while not running or running[-1] < 1:  # wait until the request is inside the engine
        running.append(await engine_running())
        await asyncio.sleep(0.02)
    drained_at = time.monotonic()
    await supervisor.drain()
    assert in_flight.done(), "drain returned before the in-flight request finished"
    status, body = in_flight.result()
    assert status == 200
    assert check_completion(body) is None
    assert time.monotonic() - drained_at >= 0.2
    assert proc.returncode == 143
    assert supervisor.state is State.STOPPED
    assert not supervisor.ready


async def test_drain_kills_an_engine_that_ignores_sigterm(harness: Harness) -> None:
    supervisor = harness.start("sglang", {"FAKE_ENGINE_IGNORE_SIGTERM": "1"})
    await until(lambda: supervisor.ready, within=10)
    proc = supervisor.proc
    assert proc is not None
    started = time.monotonic()
    await supervisor.drain()
    assert proc.returncode == -9
    assert 0.9 <= time.monotonic() - started < 4


def test_check_completion_rejects_unusable_answers() -> None:
    ok = {"choices": [{"text": "x"}], "usage": {"completion_tokens": 1}}
    assert check_completion(ok) is None
    assert check_completion([]) == "completion response is not a JSON object"
    assert check_completion({"choices": [], "usage": {}}) == "completion response has no choices"
    assert check_completion({"choices": [{}]}) == "completion response has no usage"
    assert "no tokens" in str(check_completion({"choices": [{}], "usage": {"completion_tokens": 0}}))


def test_reap_orphans_reaps_exited_children_but_not_managed_ones() -> None:
    kept = subprocess.Popen(["/bin/true"])
    orphan = os.posix_spawn("/bin/true", ["/bin/true"], dict(os.environ))
    deadline = time.monotonic() + 5
    # Wait until both have exited (peek without reaping).
    while time.monotonic() < deadline:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        states = [os.waitid(os.P_PID, pid, flags) for pid in (kept.pid, orphan)]
        if all(states):
            break
        time.sleep(0.01)
    # The managed child is first in line or not; either way it must survive for its owner to wait on.
    reaped = reap_orphans({kept.pid})
    assert kept.wait(timeout=5) == 0  # still reapable by its owner
    reaped += reap_orphans(set())
    assert reaped >= 1
    with pytest.raises(ChildProcessError):
        os.waitpid(orphan, os.WNOHANG)


async def test_missing_engine_executable_ends_in_crash_loop_with_the_reason() -> None:
    timings = FAST
    client = EngineClient(f"http://127.0.0.1:{free_port()}", FLAVOURS["vllm"], MODEL, timings)
    supervisor = Supervisor(
        ["/opt/venvs/vllm/bin/does-not-exist", "serve", MODEL],
        client,
        timings,
        RestartPolicy(base_delay=0.01, max_delay=0.01, crash_loop_limit=1),
        AgentMetrics(),
    )
    await asyncio.wait_for(supervisor.run(), timeout=5)
    await client.close()
    assert supervisor.state is State.CRASH_LOOP
    assert "SpawnFailed: cannot execute '/opt/venvs/vllm/bin/does-not-exist'" in supervisor.reason
    assert counter(supervisor, "gpufleet_node_engine_restarts_total", {"reason": "SpawnFailed"}) == 1
    assert counter(supervisor, "gpufleet_node_engine_starts_total") == 0


async def test_drain_during_startup_stops_without_ever_becoming_ready(harness: Harness) -> None:
    supervisor = harness.start("sglang", {"FAKE_ENGINE_STARTUP_DELAY": "0.4"})
    await until(lambda: supervisor.running())
    states: list[State] = []
    watcher = asyncio.create_task(_record_states(supervisor, states))
    await supervisor.drain()
    task = next(t for sup, t in harness.supervisors if sup is supervisor)
    await asyncio.wait_for(asyncio.shield(task), timeout=5)  # the probe loop has ended: nothing can flip now
    watcher.cancel()
    assert supervisor.state is State.STOPPED
    assert not supervisor.ready
    assert State.READY not in states
    assert State.BACKOFF not in states
    assert counter(supervisor, "gpufleet_node_engine_starts_total") == 1


async def _record_states(supervisor: Supervisor, states: list[State]) -> None:
    while True:
        states.append(supervisor.state)
        await asyncio.sleep(0.005)
