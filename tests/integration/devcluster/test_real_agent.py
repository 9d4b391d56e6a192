"""A real `gpufleet-node` agent behind the emulator's pod proxy, and the simulated agent beside it.

The operator reaches agents only through the pod proxy; routing a pod to a real agent process must
be invisible to it, and the simulated agent must answer what the real one answers.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

from kubernetes import client

from gpufleet_devcluster import ThreadedCluster
from gpufleet_devcluster.agents import node_unique_uuids
from gpufleet_fakeengine.harness import LAUNCHER, REPO_ROOT, child_env, free_port
from tests.integration.devcluster.conftest import pod_body

MODEL = "Qwen/Qwen3-0.6B"
ENV = {
    "GPUFLEET_MODEL": MODEL,
    "GPUFLEET_ENGINE": "vllm",
    "GPUFLEET_DEVICE_INDEX": "2",
    "GPUFLEET_POOL": "pool-a",
    "GPUFLEET_NODE": "box-0",
}


def proxied(api: client.ApiClient, pod: str, path: str) -> tuple[int, Any]:
    resp = api.rest_client.pool_manager.request(
        "GET", f"{api.configuration.host}/api/v1/namespaces/default/pods/{pod}:8080/proxy/{path}"
    )
    return resp.status, json.loads(resp.data)


def test_real_agent_behind_the_proxy_matches_the_simulated_agent(
    cluster: ThreadedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    status_port, engine_port = free_port(), free_port()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpufleet_node",
            "run",
            "--status-port",
            str(status_port),
            "--engine-port",
            str(engine_port),
            "--status-host",
            "127.0.0.1",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(
            {
                **ENV,
                "GPUFLEET_HARDWARE_PROFILE": "h100-sxm-x8",
                "GPUFLEET_ENGINE_LAUNCHER": LAUNCHER,
                "GPUFLEET_PROBE_INTERVAL_SECONDS": "0.05",
                "GPUFLEET_DRAIN_MIN_SECONDS": "0",
                "GPUFLEET_DRAIN_TIMEOUT_SECONDS": "2",
                "GPUFLEET_KILL_TIMEOUT_SECONDS": "1",
            }
        ),
    )
    try:
        for name in ("real", "simulated"):
            body = pod_body(name)
            body["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in ENV.items()]
            core.create_namespaced_pod("default", body)
        cluster.call(cluster.agents.route, "default", "real", f"http://127.0.0.1:{status_port}")
        deadline = time.monotonic() + 30
        while proxied(api, "real", "readyz")[0] != 200 or proxied(api, "simulated", "readyz")[0] != 200:
            assert agent.poll() is None, agent.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "agents never became ready"
            time.sleep(0.1)
        real = proxied(api, "real", "v1/hardware")[1]
        simulated = proxied(api, "simulated", "v1/hardware")[1]
        # The simulated agent's GPU uuids are the profile's made unique per machine (as real GPUs
        # are; the operator blocks cloned uuids): map the real agent's through the same function.
        machine = str(core.read_namespaced_pod("simulated", "default").spec.node_name or "")
        real = node_unique_uuids(real, machine)
        for key in ("report", "validation"):
            assert simulated[key] == real[key], key
        assert (
            simulated["agent"]["device"]
            == real["agent"]["device"]
            == {"index": 2, "uuid": real["report"]["devices"][2]["uuid"]}
        )
        assert simulated["agent"]["pool"] == real["agent"]["pool"] == "pool-a"
        assert simulated["engine"]["engine"] == real["engine"]["engine"] == "vllm"
        assert proxied(api, "real", "readyz")[1]["ready"] is True
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.communicate(timeout=5)
