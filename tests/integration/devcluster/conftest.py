"""A fresh emulated cluster per test, on its own thread, and real `kubernetes` clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec, ThreadedCluster
from tests.integration.conftest import reset_real_cluster

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "crds"
FIXTURE_CRDS = ROOT / "tests" / "fixtures" / "devcluster"


@pytest.fixture
def cluster() -> Iterator[ThreadedCluster]:
    dc = DevCluster(
        crd_dir=[CRDS, FIXTURE_CRDS],
        nodes=[NodeSpec("gpu-0"), NodeSpec("gpu-1", profile="l4-x1")],
        kubelet_config=KubeletConfig(start_delay=0.01, ready_delay=0.01),
        bookmark_interval=0.2,
    )
    with dc.run_in_thread() as tc:
        yield tc


EMULATOR_ONLY = "uses the emulator's internals (store, kubelet, request log): emulator only"


@pytest.fixture(params=["emulator", "real"])
def api(request: pytest.FixtureRequest) -> Iterator[client.ApiClient]:
    """A client for the emulator or, differentially, for the session's real control plane.

    Tests that only talk through the API run on both backends; a test that also takes `cluster`
    (the emulator itself) runs on the emulator only.
    """
    if request.param == "real":
        if "cluster" in request.fixturenames:
            pytest.skip(EMULATOR_ONLY)
        marker = request.node.get_closest_marker("emulator_only")
        if marker is not None:
            pytest.skip(f"emulator only: {marker.args[0]}")
        rc = request.getfixturevalue("real_cluster")
        reset_real_cluster(rc)
        kubeconfig = rc.kubeconfig_path
    else:
        kubeconfig = request.getfixturevalue("cluster").kubeconfig_path
    api_client = config.new_client_from_config(str(kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def pod_body(
    name: str,
    *,
    node: str | None = "gpu-0",
    labels: dict[str, str] | None = None,
    image: str = "engine:1",
    gpus: int = 1,
    gates: bool = False,
    device_index: int = 0,
) -> dict[str, Any]:
    env = [
        {"name": "GPUFLEET_MODEL", "value": "Qwen/Qwen3-0.6B"},
        {"name": "GPUFLEET_DEVICE_INDEX", "value": str(device_index)},
    ]
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "engine",
                "image": image,
                "env": env,
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
            }
        ]
    }
    if node is not None:
        spec["nodeName"] = node
    if gates:
        spec["readinessGates"] = [{"conditionType": "gpufleet.io/engine-ready"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }
