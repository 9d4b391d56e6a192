"""The emulator in a child process (two cores for fleet benchmarks), driven over its pipe."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, config

from gpufleet_devcluster import Behaviour, DevCluster, NodeSpec
from tests.integration.devcluster.conftest import CRDS, pod_body


def count_pods(cluster: DevCluster, namespace: str) -> int:
    return len(cluster.objects("v1", "Pod", namespace))


def test_process_cluster_serves_and_answers_rpc() -> None:
    dc = DevCluster(crd_dir=CRDS, nodes=[NodeSpec("gpu-0")])
    with dc.run_in_process() as pc:
        api = config.new_client_from_config(str(pc.kubeconfig_path))
        core = client.CoreV1Api(api)
        mark = pc.requests.mark()
        pc.kubelet.set_behaviour(Behaviour("never_ready"), image="stuck:1")
        core.create_namespaced_pod("default", pod_body("ok"))
        core.create_namespaced_pod("default", pod_body("stuck", image="stuck:1"))
        deadline = time.monotonic() + 10
        while True:
            pods = {p["metadata"]["name"]: p for p in pc.objects("v1", "Pod", "default")}
            if (
                pods["ok"].get("status", {}).get("phase") == "Running"
                and pods["stuck"].get("status", {}).get("phase") == "Running"
            ):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = {
            n: {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] for n, p in pods.items()
        }
        deadline = time.monotonic() + 10
        while ready["ok"] != "True":
            assert time.monotonic() < deadline
            time.sleep(0.05)
            ok = pc.get("v1", "Pod", "ok", "default")
            ready["ok"] = {c["type"]: c["status"] for c in ok["status"]["conditions"]}["Ready"]
        assert ready["stuck"] == "False"
        assert pc.requests.count("create", "pods", since=mark) == 2
        assert [(r.verb, r.resource) for r in pc.requests.writes(since=mark)] == [("create", "pods")] * 2
        assert pc.run(count_pods, "default") == 2
        with pytest.raises(RuntimeError, match="private attribute"):
            pc.rpc("_crd_dirs")
        api.close()


def test_threaded_cluster_run_has_the_same_shape() -> None:
    with DevCluster(crd_dir=None).run_in_thread() as tc:
        tc.call(tc.apply, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}})
        assert tc.run(lambda cluster, ns: len(cluster.objects("v1", "ConfigMap", ns)), "default") == 1
