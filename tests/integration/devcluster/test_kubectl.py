"""A real kubectl against the emulator: what the runbooks' troubleshooting commands rely on.

`create namespace` (protobuf bodies), `get events` with the standard columns, `get pods -o wide`
with READINESS GATES, `explain` from the CRDs' OpenAPI v3, `describe` of our kinds with Events.
Skipped where no kubectl binary exists (set KUBECTL to point at one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec, ThreadedCluster

ROOT = Path(__file__).resolve().parents[3]
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary (set KUBECTL)")
NS = "fleet"


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThreadedCluster]:
    dc = DevCluster(
        crd_dir=ROOT / "crds",
        nodes=[NodeSpec("gpu-0", profile="l4-x1")],
        namespaces=("default",),
        kubelet_config=KubeletConfig(start_delay=0.01, ready_delay=0.01),
    )
    with dc.run_in_thread() as tc:
        yield tc


def kubectl(cluster: ThreadedCluster, *args: str, ok: bool = True) -> str:
    assert KUBECTL is not None
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _header(out: str) -> list[str]:
    return [c.strip() for c in re.split(r"\s{2,}", out.splitlines()[0]) if c.strip()]


@pytest.fixture(scope="module")
def namespace(cluster: ThreadedCluster) -> str:
    out = kubectl(cluster, "create", "namespace", NS)
    assert out.strip() == f"namespace/{NS} created"
    return NS


def test_create_namespace_and_configmap_send_protobuf_and_work(
    cluster: ThreadedCluster, namespace: str
) -> None:
    assert NS in kubectl(cluster, "get", "namespaces", "-o", "name")
    kubectl(
        cluster,
        "create",
        "configmap",
        "settings",
        "-n",
        namespace,
        "--from-literal=k=v",
        "--from-literal=a=b",
    )
    cm = cluster.call(cluster.get, "v1", "ConfigMap", "settings", namespace)
    assert cm is not None
    assert cm["data"] == {"k": "v", "a": "b"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(
    name: str, reason: str, message: str, kind: str = "InferenceNode", count: int = 1
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "involvedObject": {
            "apiVersion": "gpufleet.io/v1alpha1",
            "kind": kind,
            "name": "box",
            "namespace": NS,
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if reason == "DeviceBlocked" else "Normal",
        "source": {"component": "gpufleet-operator"},
        "firstTimestamp": _now(),
        "lastTimestamp": _now(),
        "count": count,
    }


def test_get_events_has_the_standard_columns(cluster: ThreadedCluster, namespace: str) -> None:
    cluster.call(cluster.apply, _event("box.1", "PodCreated", "created pod box-gpu-0 for GPU 0"))
    cluster.call(
        cluster.apply, _event("box.2", "DeviceBlocked", "GPU 1 blocked (VRAMMismatch): 48 GB", count=3)
    )
    out = kubectl(cluster, "get", "events", "-n", namespace)
    assert _header(out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    rows = out.splitlines()[1:]
    assert any(
        "Normal" in r and "PodCreated" in r and "inferencenode/box" in r and "box-gpu-0" in r for r in rows
    )
    assert any("(x3 over" in r and "Warning" in r and "VRAMMismatch" in r for r in rows), rows
    wide = kubectl(cluster, "get", "events", "-n", namespace, "-o", "wide")
    assert _header(wide) == [
        "LAST SEEN",
        "TYPE",
        "REASON",
        "OBJECT",
        "SUBOBJECT",
        "SOURCE",
        "MESSAGE",
        "FIRST SEEN",
        "COUNT",
        "NAME",
    ]
    everywhere = kubectl(cluster, "get", "events", "-A")
    assert _header(everywhere)[:2] == ["NAMESPACE", "LAST SEEN"]


def test_get_pods_wide_shows_readiness_gates(cluster: ThreadedCluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "box-gpu-0", "namespace": namespace},
        "spec": {
            "nodeName": "gpu-0",
            "readinessGates": [{"conditionType": "gpufleet.io/engine-ready"}],
            "containers": [{"name": "engine", "image": "ghcr.io/x/engine@sha256:" + "0" * 64}],
        },
    }
    cluster.call(cluster.apply, pod)
    out = kubectl(cluster, "get", "pods", "-n", namespace, "-o", "wide")
    assert _header(out) == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert out.splitlines()[1].split()[-1] == "0/1"
    stored = cluster.call(cluster.get, "v1", "Pod", "box-gpu-0", namespace)
    assert stored is not None
    conditions = [
        c for c in stored["status"].get("conditions") or [] if c["type"] != "gpufleet.io/engine-ready"
    ]
    conditions.append({"type": "gpufleet.io/engine-ready", "status": "True"})
    stored["status"]["conditions"] = conditions
    rtype = cluster.store.resolve("", "v1", "pods")
    cluster.call(cluster.store.update, rtype, namespace, "box-gpu-0", stored, subresource="status")
    out = kubectl(cluster, "get", "pods", "-n", namespace, "-o", "wide")
    assert out.splitlines()[1].split()[-1] == "1/1"


def test_explain_reads_our_crd_schemas(cluster: ThreadedCluster) -> None:
    out = kubectl(cluster, "explain", "inferencenodes.spec.updatePolicy")
    assert "KIND:       InferenceNode" in out
    assert "maxUnavailable" in out
    assert "progressDeadlineSeconds" in out
    top = kubectl(cluster, "explain", "operatorpools")
    assert "spec" in top
    assert "status" in top
    rec = kubectl(cluster, "explain", "enginereleases.spec", "--recursive")
    assert "image" in rec
    assert "failureBudget" in rec


def test_describe_our_kinds_shows_spec_status_and_events(cluster: ThreadedCluster, namespace: str) -> None:
    for path in ("operatorpool.yaml", "inferencenodes.yaml"):
        kubectl(cluster, "apply", "-n", namespace, "-f", str(ROOT / "examples" / path))
    inode = cluster.call(cluster.get, "gpufleet.io/v1alpha1", "InferenceNode", "rtx4090-box", namespace)
    assert inode is not None
    event = _event("rtx.1", "PodCreated", "created pod rtx4090-box-gpu-0 for GPU 0")
    involved = dict(event["involvedObject"])  # type: ignore[call-overload]
    involved.update(name="rtx4090-box", uid=inode["metadata"]["uid"])
    event["involvedObject"] = involved
    cluster.call(cluster.apply, event)
    out = kubectl(cluster, "describe", "inferencenode", "rtx4090-box", "-n", namespace)
    assert "Kind:         InferenceNode" in out
    assert "Node Name:" in out
    assert "gpu-node-rtx4090" in out
    events = out.split("Events:", 1)[1]
    assert "PodCreated" in events
    assert "created pod rtx4090-box-gpu-0 for GPU 0" in events
    pool = kubectl(cluster, "describe", "operatorpool", "operator-a", "-n", namespace)
    assert "Self Stake:" in pool
