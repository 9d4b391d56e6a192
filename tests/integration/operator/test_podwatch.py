"""The pod informer: label-selected list+watch into a per-InferenceNode cache, with re-list."""

from __future__ import annotations

import asyncio
from typing import Any

from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
from gpufleet.controllers.podwatch import PodCache, PodInformer
from gpufleet.objects import PodView
from gpufleet_devcluster.cluster import DevCluster
from tests.integration.operator.harness import NS


def pod(name: str, inode: str | None) -> dict[str, Any]:
    labels = (
        {"app.kubernetes.io/managed-by": "gpufleet", "gpufleet.io/inference-node": inode} if inode else {}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "engine", "image": "x"}]},
    }


async def test_list_watch_delete_and_relist() -> None:
    async with DevCluster(namespaces=("default", NS), kubelet=False) as cluster:
        cluster.apply(pod("a-gpu-0", "a"))
        cluster.apply(pod("stranger", None))
        changes: list[tuple[str, str, bool]] = []
        client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
        informer = PodInformer(
            client,
            "app.kubernetes.io/managed-by=gpufleet",
            [],
            lambda ns, inode, uid, deleted: changes.append((ns, inode, deleted)),
        )
        task = asyncio.create_task(informer.run())
        try:
            await asyncio.wait_for(informer.synced.wait(), 5)
            assert [p.name for p in informer.cache[(NS, "a")]] == ["a-gpu-0"]
            assert len(informer.cache) == 1  # the unlabelled pod is not watched at all

            cluster.apply(pod("a-gpu-1", "a"))
            cluster.apply(pod("b-gpu-0", "b"))
            await cluster.wait_for(
                lambda: len(informer.cache.get((NS, "a"), ())) == 2 and (NS, "b") in informer.cache
            )
            pods = cluster.store.resolve("", "v1", "pods")
            cluster.store.delete(pods, NS, "b-gpu-0", {"gracePeriodSeconds": 0}, actor="test")
            await cluster.wait_for(lambda: (NS, "b") not in informer.cache)
            assert (NS, "b", True) in changes
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        # Deleted while nobody watched: a re-list notices and reports it.
        cluster.store.delete(pods, NS, "a-gpu-1", {"gracePeriodSeconds": 0}, actor="test")
        changes.clear()
        await informer._list(None, "/api/v1/pods")
        assert [p.name for p in informer.cache[(NS, "a")]] == ["a-gpu-0"]
        assert (NS, "a", True) in changes
        await client.close()


def test_pod_cache_moves_pods_between_nodes() -> None:
    cache = PodCache()
    body = pod("p", "a")
    cache.upsert(PodView.from_body(body))
    body["metadata"]["labels"]["gpufleet.io/inference-node"] = "b"
    cache.upsert(PodView.from_body(body))
    assert (NS, "a") not in cache
    assert [p.name for p in cache[(NS, "b")]] == ["p"]
    assert cache.remove(NS, "p") is not None
    assert cache.remove(NS, "p") is None
    assert len(cache) == 0
