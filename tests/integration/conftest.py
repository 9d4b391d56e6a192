"""Fixtures shared by the integration suites: one real control plane per test session.

`real_cluster` starts kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok
(built from source by gpufleet_devcluster.real.build on first use, cached outside the repository)
with two kwok GPU nodes, gpu-0 (h100-sxm-x8) and gpu-1 (l4-x1), the same as the emulator fixtures.
Without `go` it skips with one line saying how to enable it. `clean_real_default` empties the
`default` namespace between tests that share the session's cluster.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpufleet_devcluster import NodeSpec
from gpufleet_devcluster.real import build as cpbuild

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
FIXTURE_CRDS = ROOT / "tests" / "fixtures" / "devcluster"
NODES = [NodeSpec("gpu-0"), NodeSpec("gpu-1", profile="l4-x1")]

SKIP_REASON = (
    "real control plane: `go` (>= 1.26, with the module proxy) is not on PATH; install it and the "
    "real-backend tests build kube-apiserver/etcd/kwok on first use (docs/testing.md)"
)


def real_unavailable() -> str | None:
    """Why the real backend cannot run here, or None."""
    if os.environ.get("GPUFLEET_REAL") == "0":
        return "real control plane disabled by GPUFLEET_REAL=0"
    if cpbuild.is_built():
        return None
    if cpbuild.find_go() is None:
        return SKIP_REASON
    return None


_not_run: list[int] = []


def _uses_real(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "real" in (callspec.params.get("api"), callspec.params.get("cluster")):
        return True
    return "real_cluster" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a real control plane, its tests are left out and reported once, not skipped one by one.

    With `go` on PATH and no cached binaries, the control plane is built here, before any test runs:
    a cold build takes ~20 min on 2 cores, far beyond pytest-timeout's per-test limit, which would
    kill it inside a fixture."""
    if real_unavailable() is None:
        if not cpbuild.is_built() and any(_uses_real(i) for i in items):
            capture = config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                cpbuild.build()
        return
    left_out = [i for i in items if _uses_real(i)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [i for i in items if not _uses_real(i)]
        _not_run.append(len(left_out))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    reason = real_unavailable()
    if _not_run and reason is not None:
        terminalreporter.write_line(f"SKIPPED {sum(_not_run)} real-backend tests: {reason}", yellow=True)


@pytest.fixture(scope="session")
def real_cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One real control plane for the whole session (started in well under a minute once built)."""
    reason = real_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from gpufleet_devcluster.real.cluster import RealCluster
    from gpufleet_devcluster.real.stages import Timings

    capture = request.config.pluginmanager.getplugin("capturemanager")
    if not cpbuild.is_built():
        # A cold build takes a long while: show its progress instead of a silent pause.
        with capture.global_and_fixture_disabled():
            cpbuild.build()
    rc = RealCluster(
        nodes=NODES,
        crd_dir=[CRDS, FIXTURE_CRDS],
        timings=Timings(start_ms=50, ready_ms=50, slow_start_ms=2000, crash_after_ms=50, backoff_ms=100),
        audit=True,  # tests/integration/realcluster/test_operator_rbac.py counts 403 answers
    )
    rc.start()
    try:
        yield rc
    finally:
        rc.stop()


SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
CORE_NAMESPACED = ("pods", "configmaps", "secrets", "services", "events", "serviceaccounts")


def reset_real_cluster(rc: Any) -> None:
    """Put the shared real cluster back to "fresh" for the next test: empty `default` (finalizers
    stripped, pods force-deleted), delete test namespaces, cluster-scoped custom objects and Stage
    behaviour images. Waits only for what the next test could collide with (names in `default`)."""
    from kubernetes import client

    from gpufleet_devcluster.cluster import load_crds

    api = rc.api()
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    ns = "default"
    for pod in core.list_namespaced_pod(ns).items:
        if pod.metadata.finalizers:
            core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": None}})
    core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
    for cm in core.list_namespaced_config_map(ns).items:
        if cm.metadata.name == "kube-root-ca.crt":
            continue
        if cm.metadata.finalizers:
            core.patch_namespaced_config_map(cm.metadata.name, ns, {"metadata": {"finalizers": None}})
        core.delete_namespaced_config_map(cm.metadata.name, ns)
    core.delete_collection_namespaced_secret(ns)
    core.delete_collection_namespaced_event(ns)
    for svc in core.list_namespaced_service(ns).items:
        if svc.metadata.name != "kubernetes":
            core.delete_namespaced_service(svc.metadata.name, ns)
    for sa in core.list_namespaced_service_account(ns).items:
        if sa.metadata.name != "default":
            core.delete_namespaced_service_account(sa.metadata.name, ns)
    client.CoordinationV1Api(api).delete_collection_namespaced_lease(ns)
    for crd in [c for d in (CRDS, FIXTURE_CRDS) for c in load_crds(d)]:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        version = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        namespaced = crd["spec"]["scope"] == "Namespaced"
        try:
            items = (
                custom.list_namespaced_custom_object(group, version, ns, plural)
                if namespaced
                else custom.list_cluster_custom_object(group, version, plural)
            )["items"]
        except client.ApiException as exc:
            if exc.status == 404:  # a CRD the API server refused (rc.crd_errors) or added since
                continue
            raise
        for obj in items:
            name = obj["metadata"]["name"]
            args = (group, version, ns, plural, name) if namespaced else (group, version, plural, name)
            try:
                if obj["metadata"].get("finalizers"):
                    (
                        custom.patch_namespaced_custom_object
                        if namespaced
                        else custom.patch_cluster_custom_object
                    )(*args, {"metadata": {"finalizers": None}})
                (
                    custom.delete_namespaced_custom_object
                    if namespaced
                    else custom.delete_cluster_custom_object
                )(*args)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
    for namespace in core.list_namespace().items:
        name = namespace.metadata.name
        if name not in SYSTEM_NAMESPACES and not namespace.metadata.deletion_timestamp:
            core.delete_namespace(name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
        left += [
            c.metadata.name
            for c in core.list_namespaced_config_map(ns).items
            if c.metadata.name != "kube-root-ca.crt"
        ]
        if not left:
            break
        time.sleep(0.05)
    rc.clear_behaviours()
