"""The simulated kubelet and node agents, seen through the API like an operator sees them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufleet_devcluster import PROFILE_ANNOTATION, Behaviour, DevCluster, NodeSpec, ThreadedCluster
from tests.integration.devcluster.conftest import pod_body


def wait(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def conditions(core: client.CoreV1Api, name: str) -> dict[str, str]:
    pod = core.read_namespaced_pod(name, "default")
    return {c.type: c.status for c in pod.status.conditions or []}


def proxy(api: client.ApiClient, pod: str, path: str) -> tuple[int, Any]:
    resp = api.rest_client.pool_manager.request(
        "GET", f"{api.configuration.host}/api/v1/namespaces/default/pods/{pod}:8080/proxy/{path}"
    )
    body = resp.data.decode()
    try:
        return resp.status, json.loads(body)
    except json.JSONDecodeError:
        return resp.status, body


def test_nodes_carry_gfd_labels_gpu_capacity_and_profile(core: client.CoreV1Api) -> None:
    node = core.read_node("gpu-0")
    labels = node.metadata.labels
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.compute.major"] == "9"
    assert node.status.capacity["nvidia.com/gpu"] == "8"
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert node.metadata.annotations[PROFILE_ANNOTATION] == "h100-sxm-x8"
    assert core.read_node("gpu-1").status.allocatable["nvidia.com/gpu"] == "1"


def test_pod_goes_pending_running_ready_in_order(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    # Kubernetes: a bound pod is Pending (ContainerCreating), then Running, then Ready.
    core.create_namespaced_pod("default", pod_body("p"))
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    phases = cluster.call(
        lambda: [
            e.obj["status"].get("phase")
            for e in cluster.store.history
            if e.resource.plural == "pods" and e.actor == "kubelet"
        ]
    )
    assert phases[0] == "Pending"
    assert phases[-1] == "Running"
    pod = core.read_namespaced_pod("p", "default")
    assert pod.status.pod_ip
    assert pod.status.container_statuses[0].state.running is not None


def test_readiness_gate_holds_ready_until_condition_true(core: client.CoreV1Api) -> None:
    # Kubernetes: with readinessGates, Ready needs ContainersReady and every gate condition True.
    core.create_namespaced_pod("default", pod_body("p", gates=True))
    wait(lambda: conditions(core, "p").get("ContainersReady") == "True")
    time.sleep(0.05)
    assert conditions(core, "p")["Ready"] == "False"
    core.patch_namespaced_pod_status(
        "p", "default", {"status": {"conditions": [{"type": "gpufleet.io/engine-ready", "status": "True"}]}}
    )
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    core.patch_namespaced_pod_status(
        "p", "default", {"status": {"conditions": [{"type": "gpufleet.io/engine-ready", "status": "False"}]}}
    )
    wait(lambda: conditions(core, "p").get("Ready") == "False")


def test_crash_loop_increments_restart_count(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    cluster.call(cluster.kubelet.set_behaviour, Behaviour("crash_loop", crash_after=0.01), image="bad:1")
    core.create_namespaced_pod("default", pod_body("p", image="bad:1"))
    wait(
        lambda: (
            (core.read_namespaced_pod("p", "default").status.container_statuses or [None])[0] is not None
            and core.read_namespaced_pod("p", "default").status.container_statuses[0].restart_count >= 2
        )
    )
    cs = core.read_namespaced_pod("p", "default").status.container_statuses[0]
    assert cs.ready is False
    assert cs.last_state.terminated.exit_code == 1
    assert conditions(core, "p")["Ready"] == "False"


def test_oom_reports_oomkilled(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    cluster.call(cluster.kubelet.set_behaviour, Behaviour("oom", crash_after=0.01), label=("mem", "hog"))
    core.create_namespaced_pod("default", pod_body("p", labels={"mem": "hog"}))

    def oomed() -> bool:
        statuses = core.read_namespaced_pod("p", "default").status.container_statuses or []
        return bool(statuses and statuses[0].last_state and statuses[0].last_state.terminated)

    wait(oomed)
    term = core.read_namespaced_pod("p", "default").status.container_statuses[0].last_state.terminated
    assert term.reason == "OOMKilled"
    assert term.exit_code == 137


def test_never_ready_runs_but_is_not_ready(
    cluster: ThreadedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    cluster.call(cluster.kubelet.set_behaviour, "never_ready", image="stuck:1")
    core.create_namespaced_pod("default", pod_body("p", image="stuck:1"))
    wait(lambda: core.read_namespaced_pod("p", "default").status.phase == "Running")
    time.sleep(0.1)
    assert conditions(core, "p")["ContainersReady"] == "False"
    status, body = proxy(api, "p", "readyz")
    assert status == 503
    assert body["ready"] is False


def test_image_pull_error_stays_pending(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    cluster.call(cluster.kubelet.set_behaviour, "image_pull_error", image="missing:1")
    core.create_namespaced_pod("default", pod_body("p", image="missing:1"))
    wait(
        lambda: (core.read_namespaced_pod("p", "default").status.container_statuses or [None])[0] is not None
    )
    cs = core.read_namespaced_pod("p", "default").status.container_statuses[0]
    assert cs.state.waiting.reason == "ImagePullBackOff"
    assert core.read_namespaced_pod("p", "default").status.phase == "Pending"


def test_slow_start_takes_longer(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    cluster.call(cluster.kubelet.set_behaviour, Behaviour("slow_start", start_delay=0.5), image="slow:1")
    core.create_namespaced_pod("default", pod_body("slow", image="slow:1"))
    core.create_namespaced_pod("default", pod_body("fast"))
    wait(lambda: conditions(core, "fast").get("Ready") == "True")
    assert conditions(core, "slow").get("Ready") != "True"
    wait(lambda: conditions(core, "slow").get("Ready") == "True")


@pytest.mark.emulator_only("kwok has no kubelet admission (resources are not checked on kwok nodes)")
def test_more_gpus_than_allocatable_fails_admission(core: client.CoreV1Api) -> None:
    # Kubernetes: the kubelet rejects a pod whose extended resources exceed what is left on the node.
    core.create_namespaced_pod("default", pod_body("one", node="gpu-1"))
    wait(lambda: core.read_namespaced_pod("one", "default").status.phase == "Running")
    core.create_namespaced_pod("default", pod_body("two", node="gpu-1"))
    wait(lambda: core.read_namespaced_pod("two", "default").status.phase == "Failed")
    assert core.read_namespaced_pod("two", "default").status.reason == "OutOfnvidia.com/gpu"
    core.patch_namespaced_pod("two", "default", {"metadata": {"labels": {"touched": "yes"}}})
    time.sleep(0.05)
    assert core.read_namespaced_pod("two", "default").status.phase == "Failed"  # terminal


def test_deleting_a_bound_pod_is_graceful(cluster: ThreadedCluster, core: client.CoreV1Api) -> None:
    # Kubernetes: a running pod goes Terminating (deletionTimestamp) and the kubelet removes it.
    core.create_namespaced_pod("default", pod_body("p"))
    wait(lambda: core.read_namespaced_pod("p", "default").status.phase == "Running")
    core.delete_namespaced_pod("p", "default")
    wait(lambda: not _exists(core, "p"), within=2)
    types = cluster.call(
        lambda: [
            e.type for e in cluster.store.history if e.resource.plural == "pods" and e.key == ("default", "p")
        ]
    )
    assert types[-1] == "DELETED"
    deleting = cluster.call(
        lambda: [
            e.obj["metadata"].get("deletionTimestamp")
            for e in cluster.store.history
            if e.resource.plural == "pods" and e.type == "MODIFIED"
        ]
    )
    assert any(deleting)


def _exists(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, "default")
    except ApiException:
        return False
    return True


def test_image_change_restarts_container_with_new_behaviour(
    cluster: ThreadedCluster, core: client.CoreV1Api
) -> None:
    cluster.call(cluster.kubelet.set_behaviour, "never_ready", image="engine:2")
    core.create_namespaced_pod("default", pod_body("p"))
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "engine", "image": "engine:2"}]}}
    )
    wait(lambda: conditions(core, "p").get("Ready") == "False")
    assert core.read_namespaced_pod("p", "default").status.container_statuses[0].restart_count == 1


# ------------------------------------------------------------------------------ simulated agents


def test_agent_serves_the_real_agents_document_for_the_node_profile(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # The simulated agent runs gpufleet-node's own planning with the node's recorded profile.
    core.create_namespaced_pod("default", pod_body("p", device_index=3))
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    status, doc = proxy(api, "p", "v1/hardware")
    assert status == 200
    assert len(doc["report"]["devices"]) == 8
    assert doc["agent"]["device"]["index"] == 3
    assert doc["agent"]["source"] == "profile:h100-sxm-x8"
    assert all(v["valid"] for v in doc["validation"])
    assert doc["engine"]["engine"] in ("vllm", "sglang")
    status, ready = proxy(api, "p", "readyz")
    assert status == 200
    assert ready["state"] == "Ready"


def test_agent_without_model_is_blocked(api: client.ApiClient, core: client.CoreV1Api) -> None:
    body = pod_body("p")
    body["spec"]["containers"][0]["env"] = []
    core.create_namespaced_pod("default", body)
    wait(lambda: conditions(core, "p").get("ContainersReady") == "True")
    status, doc = proxy(api, "p", "v1/hardware")
    assert status == 200
    assert doc["blocked"]["reason"] == "InvalidConfiguration"
    status, ready = proxy(api, "p", "readyz")
    assert status == 503
    assert ready["state"] == "Blocked"


def test_agent_reports_misrepresented_hardware() -> None:
    with DevCluster(crd_dir=None, nodes=[NodeSpec("liar", profile="bad-pci-mismatch")]).run_in_thread() as tc:
        api = client.ApiClient(client.Configuration(host=tc.url))
        core = client.CoreV1Api(api)
        core.create_namespaced_pod("default", pod_body("p", node="liar"))
        wait(lambda: conditions(core, "p").get("Ready") == "True")
        status, doc = proxy(api, "p", "v1/hardware")
        assert status == 200
        assert {v["reason"] for v in doc["validation"]} == {"PCIIdMismatch"}
        assert doc["blocked"]["reason"] == "PCIIdMismatch"
        assert proxy(api, "p", "readyz")[0] == 503
        api.close()


def test_proxy_to_a_pod_without_an_ip_is_400(api: client.ApiClient, core: client.CoreV1Api) -> None:
    # kube-apiserver: a pod with no (global unicast) IP is "address not allowed", before any dial.
    core.create_namespaced_pod("default", pod_body("p", node="no-such-node"))
    status, body = proxy(api, "p", "v1/hardware")
    assert status == 400
    assert "address not allowed" in str(body)


def test_proxy_to_a_pod_that_is_not_running_is_503(api: client.ApiClient, core: client.CoreV1Api) -> None:
    # The pod has an IP but its container never started: nothing listens, the proxy answers 503.
    core.create_namespaced_pod(
        "default", pod_body("p", labels={"devcluster.gpufleet.io/behaviour": "image_pull_error"})
    )
    wait(lambda: bool(core.read_namespaced_pod("p", "default").status.pod_ip))
    status, body = proxy(api, "p", "v1/hardware")
    assert status == 503
    assert "error trying to reach service" in str(body)


@pytest.fixture
def real_agent() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on a random port standing in for a `gpufleet-node` process."""
    import asyncio
    import threading

    seen: list[str] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def hardware(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"report": {"devices": []}, "from": "real"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/v1/hardware", hardware)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    started.wait(5)
    yield f"http://127.0.0.1:{holder['port']}", seen
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_proxy_routes_a_pod_to_a_real_http_agent(
    cluster: ThreadedCluster, api: client.ApiClient, core: client.CoreV1Api, real_agent: tuple[str, list[str]]
) -> None:
    url, seen = real_agent
    core.create_namespaced_pod("default", pod_body("p"))
    cluster.call(cluster.agents.route, "default", "p", url)
    status, doc = proxy(api, "p", "v1/hardware")
    assert status == 200
    assert doc["from"] == "real"
    assert seen == ["/v1/hardware"]


def test_agent_override_injects_faults(
    cluster: ThreadedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    cluster.call(cluster.agents.override, "default", "p", lambda path: (500, {"error": f"boom {path}"}))
    assert proxy(api, "p", "v1/hardware") == (500, {"error": "boom /v1/hardware"})


def test_kubelet_writes_are_attributed_and_not_counted_as_api_requests(
    cluster: ThreadedCluster, core: client.CoreV1Api
) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    assert cluster.call(cluster.requests.count, None, "pods/status") == 0
    actors = cluster.call(lambda: {e.actor for e in cluster.store.history if e.resource.plural == "pods"})
    assert actors == {"api", "kubelet"}


@pytest.mark.emulator_only("real backend: the two pods' reports differ (GPU uuids); not investigated yet")
def test_agent_documents_name_each_pods_pool_and_node(api: client.ApiClient, core: client.CoreV1Api) -> None:
    # Plans are shared between pods that differ only in pool/node; each answer still names its own.
    for name, pool in (("a", "pool-a"), ("b", "pool-b")):
        body = pod_body(name)
        body["spec"]["containers"][0]["env"] += [
            {"name": "GPUFLEET_POOL", "value": pool},
            {"name": "GPUFLEET_NODE", "value": f"inode-{name}"},
        ]
        core.create_namespaced_pod("default", body)
    wait(
        lambda: conditions(core, "a").get("Ready") == "True" and conditions(core, "b").get("Ready") == "True"
    )
    docs = {n: proxy(api, n, "v1/hardware")[1] for n in ("a", "b")}
    assert docs["a"]["agent"]["pool"] == "pool-a"
    assert docs["b"]["agent"]["pool"] == "pool-b"
    assert docs["b"]["agent"]["node"] == "inode-b"
    assert docs["a"]["report"] == docs["b"]["report"]


def test_node_going_down_marks_its_pods_not_ready_and_recovers(
    cluster: ThreadedCluster, api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # Kubernetes: when a kubelet stops posting, the node is Ready=Unknown and its pods Ready=False.
    core.create_namespaced_pod("default", pod_body("p"))
    core.create_namespaced_pod("default", pod_body("other", node="gpu-1"))
    wait(
        lambda: (
            conditions(core, "p").get("Ready") == "True" and conditions(core, "other").get("Ready") == "True"
        )
    )
    cluster.call(cluster.kubelet.set_node_ready, "gpu-0", False)
    node_ready = {c.type: c.status for c in core.read_node("gpu-0").status.conditions}["Ready"]
    assert node_ready == "Unknown"
    assert conditions(core, "p")["Ready"] == "False"
    assert conditions(core, "other")["Ready"] == "True"
    assert proxy(api, "p", "readyz")[0] == 503
    core.create_namespaced_pod("default", pod_body("late"))  # bound to the dead node: stays Pending
    time.sleep(0.1)
    assert core.read_namespaced_pod("late", "default").status.phase == "Pending"
    cluster.call(cluster.kubelet.set_node_ready, "gpu-0", True)
    wait(lambda: conditions(core, "p").get("Ready") == "True")
    wait(lambda: conditions(core, "late").get("Ready") == "True")
    assert proxy(api, "p", "readyz")[0] == 200
