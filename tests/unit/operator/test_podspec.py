"""The engine pod of one GPU."""

from __future__ import annotations

import pytest

from gpufleet.objects import InodeView
from gpufleet.podspec import PodDevice, PodRelease, build_pod, pod_name
from gpufleet.settings import OperatorSettings
from tests.unit.operator.bodies import inode_body

IMAGE = "ghcr.io/gpufleet/engine@sha256:" + "a" * 64
RELEASE = PodRelease(version="1.2.0", image=IMAGE)


def test_pod_carries_gpu_node_gate_owner_and_labels() -> None:
    body = inode_body("box1", pool="pool-a", node="node-7")
    body["spec"]["resources"] = {
        "requests": {"cpu": "4", "nvidia.com/gpu": "8"},
        "limits": {"memory": "64Gi"},
    }
    pod = build_pod(InodeView.from_body(body), PodDevice(index=3, routable=True), RELEASE, OperatorSettings())
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "box1-gpu-3"
    assert meta["namespace"] == "fleet"
    assert meta["labels"] == {
        "app.kubernetes.io/name": "gpufleet-engine",
        "app.kubernetes.io/instance": "box1",
        "app.kubernetes.io/managed-by": "gpufleet",
        "app.kubernetes.io/component": "engine",
        "app.kubernetes.io/version": "1.2.0",
        "gpufleet.io/pool": "pool-a",
        "gpufleet.io/inference-node": "box1",
        "gpufleet.io/device-index": "3",
        "gpufleet.io/routable": "true",
        "gpufleet.io/engine-version": "1.2.0",
    }
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "InferenceNode"
    assert owner["uid"] == "uid-box1"
    assert owner["controller"] is True
    assert spec["nodeName"] == "node-7"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["node-7"]
    assert spec["readinessGates"] == [{"conditionType": "gpufleet.io/engine-ready"}]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    (container,) = spec["containers"]
    assert container["image"] == IMAGE
    # One GPU per pod even if the user asked for more; other overrides survive.
    assert container["resources"]["requests"] == {"cpu": "4", "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "1"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8080, "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GPUFLEET_ENGINE"] == "auto"
    assert env["GPUFLEET_MODEL"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert env["GPUFLEET_DEVICE_INDEX"] == "3"
    assert env["GPUFLEET_POOL"] == "pool-a"
    assert env["GPUFLEET_NODE"] == "box1"
    assert env["GPUFLEET_MAX_MODEL_LEN"] == "8192"


def test_blocked_device_pod_is_not_routable() -> None:
    pod = build_pod(
        InodeView.from_body(inode_body()), PodDevice(index=0, routable=False), RELEASE, OperatorSettings()
    )
    assert pod["metadata"]["labels"]["gpufleet.io/routable"] == "false"


def test_too_long_names_fail_clearly() -> None:
    with pytest.raises(ValueError, match="shorten"):
        pod_name("x" * 250, 1)
    body = inode_body("y" * 70)
    with pytest.raises(ValueError, match="label value"):
        build_pod(InodeView.from_body(body), PodDevice(index=0, routable=True), RELEASE, OperatorSettings())


def test_engine_pod_leaves_time_to_drain_and_keeps_the_image_entrypoint() -> None:
    body = inode_body("box1", pool="pool-a", node="node-7")
    pod = build_pod(InodeView.from_body(body), PodDevice(index=0, routable=True), RELEASE, OperatorSettings())
    spec = pod["spec"]
    # The agent drains for up to 5 + 120 + 30 s by default; the kubelet must not kill it sooner.
    assert spec["terminationGracePeriodSeconds"] >= 155
    assert "command" not in spec["containers"][0]
