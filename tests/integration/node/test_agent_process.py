"""The real agent (``python -m gpufleet_node run``) as a subprocess, supervising the fake engine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.hardware.profiles import load_profile
from gpufleet_fakeengine.harness import LAUNCHER, REPO_ROOT, child_env, free_port

MODEL = "Qwen/Qwen3-0.6B"
FAST_ENV = {
    "GPUFLEET_PROBE_INTERVAL_SECONDS": "0.05",
    "GPUFLEET_PROBE_TIMEOUT_SECONDS": "0.5",
    "GPUFLEET_METRICS_INTERVAL_SECONDS": "0.1",
    "GPUFLEET_DRAIN_MIN_SECONDS": "0",
    "GPUFLEET_DRAIN_TIMEOUT_SECONDS": "10",
    "GPUFLEET_KILL_TIMEOUT_SECONDS": "2",
    "GPUFLEET_BACKOFF_BASE_SECONDS": "0.05",
    "GPUFLEET_BACKOFF_MAX_SECONDS": "0.2",
}


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Agent:
    def __init__(
        self, proc: subprocess.Popen[str], status_port: int, engine_port: int, state_dir: Path
    ) -> None:
        self.proc = proc
        self.status = f"http://127.0.0.1:{status_port}"
        self.engine = f"http://127.0.0.1:{engine_port}"
        self.state_dir = state_dir

    def get(self, path: str) -> tuple[int, str]:
        return http(self.status + path)

    def json(self, path: str) -> tuple[int, Any]:
        code, text = self.get(path)
        return code, json.loads(text)

    def wait(self, predicate: Callable[[], bool], within: float = 15) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                if predicate():
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            assert self.proc.poll() is None, f"agent exited early with {self.proc.returncode}"
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.05)

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, text = self.get("/metrics")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }

    def starts(self) -> list[dict[str, Any]]:
        path = self.state_dir / "starts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(profile: str = "h100-sxm-x8", engine: str = "vllm", **extra: str) -> Agent:
        status_port, engine_port = free_port(), free_port()
        state_dir = tmp_path / f"agent{len(agents)}"
        state_dir.mkdir()
        env = child_env(
            {
                **FAST_ENV,
                "GPUFLEET_MODEL": MODEL,
                "GPUFLEET_ENGINE": engine,
                "GPUFLEET_DEVICE_INDEX": "0",
                "GPUFLEET_HARDWARE_PROFILE": profile,
                "GPUFLEET_ENGINE_LAUNCHER": LAUNCHER,
                "FAKE_ENGINE_STATE_DIR": str(state_dir),
                **extra,
            }
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet_node", "run", "--status-port", str(status_port),
             "--engine-port", str(engine_port), "--status-host", "127.0.0.1"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        agent = Agent(proc, status_port, engine_port, state_dir)
        agents.append(agent)
        agent.wait(lambda: agent.get("/livez")[0] == 200)
        return agent

    yield start
    for agent in agents:
        if agent.proc.poll() is None:
            # SIGTERM, not SIGKILL: the agent must take its engine (own process group) down with it.
            agent.proc.send_signal(signal.SIGTERM)
        try:
            agent.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.communicate(timeout=5)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_ready_only_after_smoke_and_hardware_matches_profile(
    start_agent: Callable[..., Agent], engine: str
) -> None:
    agent = start_agent(engine=engine, FAKE_ENGINE_STARTUP_DELAY="0.6")
    code, body = agent.json("/readyz")
    assert code == 503
    assert body["state"] in {"Starting", "Loading"}
    agent.wait(agent.ready)
    # The engine's first completion was the agent's one-token smoke test.
    tokens = ("gpufleet_engine_generation_tokens_total", (("engine", engine),))
    agent.wait(lambda: tokens in agent.metrics())
    assert agent.metrics()[tokens] == 1.0

    code, doc = agent.json("/v1/hardware")
    assert code == 200
    assert doc["report"] == load_profile("h100-sxm-x8").model_dump(mode="json")
    assert len(doc["validation"]) == 8
    assert all(v["valid"] and v["reason"] == "Valid" for v in doc["validation"])
    assert doc["engine"]["engine"] == engine
    assert doc["engine"]["rule"] == "PreferenceHonoured"
    # The reported command is exactly what was started (behind the test launcher).
    starts = agent.starts()
    assert len(starts) == 1
    assert starts[0]["argv"] == doc["engine"]["command"]
    # The engine is pinned to the pod's GPU by UUID.
    assert starts[0]["cuda_visible_devices"] == doc["report"]["devices"][0]["uuid"]
    assert doc["agent"]["device"] == {"index": 0, "uuid": doc["report"]["devices"][0]["uuid"]}
    executable = "vllm" if engine == "vllm" else "python"
    assert doc["engine"]["command"][0] == f"/opt/venvs/{engine}/bin/{executable}"
    code, err = agent.stop()
    assert code == 0
    assert "launching through GPUFLEET_ENGINE_LAUNCHER" in err


def test_auto_engine_follows_the_selection_rules(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(profile="rtx4090-x4", engine="auto")
    agent.wait(agent.ready)
    _, doc = agent.json("/v1/hardware")
    assert doc["engine"]["engine"] == "vllm"
    assert doc["engine"]["rule"] == "DefaultVLLM"
    assert agent.starts()[0]["flavour"] == "vllm"


def _engine_series(agent: Agent) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (name, tuple((k, v) for k, v in labels if k != "engine")): value
        for (name, labels), value in agent.metrics().items()
        if name.startswith("gpufleet_engine_")
    }


def test_normalised_metrics_identical_for_both_engines(start_agent: Callable[..., Agent]) -> None:
    series = {}
    for engine in ("vllm", "sglang"):
        agent = start_agent(engine=engine)
        agent.wait(agent.ready)
        for _ in range(2):
            request = {"model": MODEL, "prompt": "a b c", "max_tokens": 3}
            code, _ = http(agent.engine + "/v1/completions", request)
            assert code == 200
        agent.wait(lambda a=agent: _engine_series(a).get(
            ("gpufleet_engine_requests_total", (("outcome", "success"),))) == 3.0)
        series[engine] = _engine_series(agent)
        agent.stop()
    vllm, sglang = series["vllm"], series["sglang"]
    assert set(vllm) == set(sglang)
    for key in (
        ("gpufleet_engine_generation_tokens_total", ()),
        ("gpufleet_engine_prompt_tokens_total", ()),
        ("gpufleet_engine_requests_waiting", ()),
        ("gpufleet_engine_requests_running", ()),
        ("gpufleet_engine_kv_cache_usage_ratio", ()),
        ("gpufleet_engine_time_to_first_token_seconds_count", ()),
    ):
        assert vllm[key] == sglang[key], key
    assert vllm[("gpufleet_engine_generation_tokens_total", ())] == 1 + 2 * 3
    assert vllm[("gpufleet_engine_time_to_first_token_seconds_count", ())] == 3


def test_crash_restart_backoff_then_crash_loop_not_ready(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(FAKE_ENGINE_CRASH_AFTER="0", GPUFLEET_CRASH_LOOP_LIMIT="2")
    agent.wait(lambda: agent.json("/readyz")[1]["state"] == "CrashLoop")
    code, body = agent.json("/readyz")
    assert code == 503
    assert "failed 3 times in a row" in body["reason"]
    assert agent.get("/livez")[0] == 200
    assert len(agent.starts()) == 3
    metrics = agent.metrics()
    assert metrics[("gpufleet_node_engine_restarts_total", (("reason", "EngineExited"),))] == 2
    assert metrics[("gpufleet_node_engine_ready", ())] == 0
    _, err = agent.stop()
    assert "restarting in 0.05s" in err
    assert "restarting in 0.10s" in err
    assert "crash loop" in err


def test_sigterm_drains_in_flight_requests_before_exit(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(engine="sglang", FAKE_ENGINE_COMPLETION_DELAY="1.0", FAKE_ENGINE_ABRUPT_SIGTERM="1")
    agent.wait(agent.ready)
    result: dict[str, Any] = {}

    def slow_request() -> None:
        request = {"model": MODEL, "prompt": "x", "max_tokens": 4}
        result["response"] = http(agent.engine + "/v1/completions", request)
        result["finished"] = time.monotonic()

    thread = threading.Thread(target=slow_request)
    thread.start()
    agent.wait(lambda: _engine_series(agent).get(("gpufleet_engine_requests_running", ())) == 1.0)
    agent.proc.send_signal(signal.SIGTERM)
    agent.wait(lambda: agent.json("/readyz")[1]["state"] == "Draining", within=2)
    code, err = agent.stop()
    exited = time.monotonic()
    thread.join(timeout=5)
    assert code == 0
    status, body = result["response"]
    assert status == 200, body
    assert json.loads(body)["usage"]["completion_tokens"] == 4
    assert result["finished"] <= exited
    assert "draining" in err


def test_blocked_device_refuses_to_start(start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(profile="bad-unknown-gpu")
    code, body = agent.json("/readyz")
    assert code == 503
    assert body["state"] == "Blocked"
    assert body["reason"] == "UnknownProduct"
    _, doc = agent.json("/v1/hardware")
    assert doc["blocked"]["reason"] == "UnknownProduct"
    assert doc["validation"][0]["valid"] is False
    assert doc["engine"] is None
    assert agent.metrics()[("gpufleet_node_device_valid", ())] == 0
    code, err = agent.stop()
    assert code == 0
    assert "refusing to start an engine: UnknownProduct" in err
    assert agent.starts() == []


def test_missing_model_is_a_clear_startup_error() -> None:
    env = child_env({"GPUFLEET_HARDWARE_PROFILE": "h100-sxm-x8"})
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet_node", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "GPUFLEET_MODEL is required" in proc.stderr
