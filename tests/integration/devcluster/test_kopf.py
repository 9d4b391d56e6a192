"""A tiny kopf operator in-process against the emulator: discovery, watch, patches, finalizers, events."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest

from gpufleet_devcluster import DevCluster

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "devcluster"


def _widget_status(cluster: DevCluster, name: str) -> dict[str, Any]:
    obj = cluster.get("example.com/v1", "Widget", name, "default")
    return (obj or {}).get("status") or {}


async def test_kopf_operator_handles_create_update_and_delete(caplog: pytest.LogCaptureFixture) -> None:
    # kopf needs discovery (namespaces and CRDs listed), list+watch with bookmarks, merge patches of
    # status and annotations, finalizers, and event creation; this operator uses all of them.
    caplog.set_level(logging.WARNING)
    async with DevCluster(crd_dir=FIXTURES, bookmark_interval=0.2) as cluster:
        registry = kopf.OperatorRegistry()
        calls: list[str] = []

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(
                server=cluster.url, token="devcluster", insecure=True, default_namespace="default"
            )

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.watching.server_timeout = 30
            settings.posting.level = logging.INFO

        @kopf.on.create("example.com", "v1", "widgets", registry=registry)
        def created(spec: dict[str, Any], patch: kopf.Patch, body: kopf.Body, **_: Any) -> None:
            calls.append(f"create:{spec['size']}")
            kopf.info(body, reason="Created", message="seen by the test operator")  # a core v1 Event
            patch.status["phase"] = f"Created{spec['size']}"

        @kopf.on.update("example.com", "v1", "widgets", field="spec.size", registry=registry)
        def resized(new: int, patch: kopf.Patch, **_: Any) -> None:
            calls.append(f"resize:{new}")
            patch.status["phase"] = f"Resized{new}"

        @kopf.on.delete("example.com", "v1", "widgets", registry=registry)
        def deleted(name: str, **_: Any) -> None:
            calls.append(f"delete:{name}")

        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(
            kopf.operator(
                registry=registry, standalone=True, clusterwide=True, stop_flag=stop, ready_flag=ready
            )
        )
        try:
            await asyncio.wait_for(ready.wait(), 10)
            widgets = cluster.store.resolve("example.com", "v1", "widgets")
            cluster.apply(
                {
                    "apiVersion": "example.com/v1",
                    "kind": "Widget",
                    "metadata": {"name": "w", "namespace": "default"},
                    "spec": {"size": 1},
                }
            )
            await cluster.wait_for(lambda: _widget_status(cluster, "w").get("phase") == "Created1", within=15)
            obj = cluster.get("example.com/v1", "Widget", "w", "default")
            assert obj is not None
            assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"].get("finalizers", [])
            assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"].get("annotations", {})

            cluster.store.patch(widgets, "default", "w", "merge", {"spec": {"size": 4}})
            await cluster.wait_for(lambda: _widget_status(cluster, "w").get("phase") == "Resized4", within=15)

            cluster.store.delete(widgets, "default", "w")
            await cluster.wait_for(
                lambda: cluster.get("example.com/v1", "Widget", "w", "default") is None, within=15
            )
            assert calls == ["create:1", "resize:4", "delete:w"]
            events = cluster.store.resolve("", "v1", "events")

            def kopf_posted_an_event() -> bool:
                return any(
                    e.get("involvedObject", {}).get("name") == "w"
                    for e in cluster.store.objects(events, "default")
                )

            await cluster.wait_for(kopf_posted_an_event, within=10)
            assert cluster.requests.count("create", "events") >= 1
            assert cluster.requests.count("watch", "widgets") >= 1
            assert cluster.requests.count("patch", "widgets") >= 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
