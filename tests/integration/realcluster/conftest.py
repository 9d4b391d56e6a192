"""The `cluster` fixture over both backends, and one real control plane per test session.

`cluster` is parametrised over `emulator` (gpufleet_devcluster, a fresh one per test) and `real`
(kube-apiserver, etcd, controller-manager, scheduler and kwok built from source, shared by the
session; each test gets its own namespace). Without `go` the real half is skipped with one line
saying how to enable it; the binaries are built on first use (see docs/testing.md for how long).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from gpufleet_devcluster import Behaviour, DevCluster, KubeletConfig
from tests.integration.conftest import CRDS, FIXTURE_CRDS, NODES


@dataclass
class Backend:
    """What a differential test may use: both backends provide exactly this."""

    name: str
    kubeconfig_path: Path
    api: client.ApiClient
    namespace: str
    set_behaviour: Callable[[str, str], None]  # (kind, image)
    override_agent: Callable[[str, str, Callable[[str], tuple[int, Any]]], None]

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)


def _namespace(api: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(params=["emulator", "real"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A Kubernetes API with two GPU nodes (gpu-0: h100-sxm-x8, gpu-1: l4-x1), fresh namespace."""
    if request.param == "real":
        rc = request.getfixturevalue("real_cluster")
        api = config.new_client_from_config(str(rc.kubeconfig_path))
        ns = _namespace(api)
        try:
            yield Backend(
                "real",
                rc.kubeconfig_path,
                api,
                ns,
                lambda kind, image: rc.set_behaviour(kind, image=image),
                rc.override_agent,
            )
        finally:
            try:
                client.CoreV1Api(api).delete_namespace(ns)
            finally:
                api.close()
        return
    dc = DevCluster(
        crd_dir=[CRDS, FIXTURE_CRDS],
        nodes=NODES,
        kubelet_config=KubeletConfig(start_delay=0.05, ready_delay=0.05),
        bookmark_interval=0.2,
    )
    with dc.run_in_thread() as tc:
        api = config.new_client_from_config(str(tc.kubeconfig_path))
        try:
            ns = _namespace(api)

            def behave(kind: str, image: str) -> None:
                tc.call(lambda: tc.cluster.kubelet.set_behaviour(Behaviour(kind), image=image))

            def override(ns_: str, pod: str, fn: Callable[[str], tuple[int, Any]]) -> None:
                tc.call(lambda: tc.cluster.agents.override(ns_, pod, fn))

            yield Backend("emulator", tc.kubeconfig_path, api, ns, behave, override)
        finally:
            api.close()
