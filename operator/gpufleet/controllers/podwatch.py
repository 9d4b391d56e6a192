"""A lean list+watch informer for the engine pods (the operator's hottest watch).

kopf's generic per-event machinery (per-object tasks, causes, handler invocation) costs about a
millisecond of CPU per watch event; 8,000 engine pods produce ~50,000 events while a fleet comes
up, so the pod watch alone would need most of a core. This informer does only what the
reconciler needs: parse the event, update a cache of ``PodView`` grouped by InferenceNode, and
mark that node dirty. kopf still watches InferenceNodes, OperatorPools, EngineReleases and Nodes.
``GPUFLEET_POD_WATCH=kopf`` switches back to a kopf index (same cache interface).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from gpufleet.controllers.kube import ROUTINE_ERRORS, ApiError, KubeClient
from gpufleet.objects import PodView

logger = logging.getLogger("gpufleet.podwatch")

Key = tuple[str, str]
OnChange = Callable[[str, str, str, bool], None]  # (namespace, inode, pod uid, deleted)


class PodCache(Mapping[Key, Collection[PodView]]):
    """Pods by (namespace, InferenceNode name); what the reconciler reads as ``caches.pods``."""

    def __init__(self) -> None:
        self._by_inode: dict[Key, dict[str, PodView]] = {}
        self._where: dict[Key, Key] = {}  # (namespace, pod name) -> (namespace, inode)

    def upsert(self, view: PodView) -> None:
        pod_key = (view.namespace, view.name)
        key = (view.namespace, view.inode)
        old = self._where.get(pod_key)
        if old is not None and old != key:
            self._drop(old, view.name)
        self._by_inode.setdefault(key, {})[view.name] = view
        self._where[pod_key] = key

    def remove(self, namespace: str, name: str) -> PodView | None:
        key = self._where.pop((namespace, name), None)
        if key is None:
            return None
        return self._drop(key, name)

    def _drop(self, key: Key, name: str) -> PodView | None:
        pods = self._by_inode.get(key)
        if pods is None:
            return None
        view = pods.pop(name, None)
        if not pods:
            del self._by_inode[key]
        return view

    def names(self) -> set[Key]:
        return set(self._where)

    def __getitem__(self, key: Key) -> Collection[PodView]:
        return list(self._by_inode[key].values())

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._by_inode))

    def __len__(self) -> int:
        return len(self._by_inode)


class PodInformer:
    """List, then watch from the list's resourceVersion; re-list when the server says 410 Gone."""

    def __init__(
        self,
        client: KubeClient,
        selector: str,
        namespaces: list[str],
        on_change: OnChange,
        *,
        watch_timeout: int = 300,
        retry_seconds: float = 1.0,
        on_relist: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.selector = selector
        self.namespaces = namespaces
        self.on_change = on_change
        #: Called with the new list's resourceVersion on every re-list after the first: the
        #: server's state is the truth again (the reconciler drops its write overlays).
        self.on_relist = on_relist
        self.cache = PodCache()
        self.synced = asyncio.Event()
        self.events = 0
        self.relists = 0
        self._watch_timeout = watch_timeout
        self._retry = retry_seconds
        self._synced_scopes: set[str] = set()

    def _path(self, namespace: str | None) -> str:
        return f"/api/v1/namespaces/{quote(namespace)}/pods" if namespace else "/api/v1/pods"

    async def run(self) -> None:
        scopes: list[str | None] = list(self.namespaces) or [None]
        await asyncio.gather(*(self._run_scope(ns) for ns in scopes))

    async def _run_scope(self, namespace: str | None) -> None:
        path = self._path(namespace)
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list(namespace, path)
                    self._synced_scopes.add(namespace or "")
                    if len(self._synced_scopes) >= max(1, len(self.namespaces)):
                        self.synced.set()
                rv = await self._watch(path, rv)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Whatever broke the watch, the resourceVersion may be unusable now (compacted, or
                # newer than a restored API server has: "Too large resource version"): list again
                # instead of resuming from it (#21 F6). A list costs one request per scope.
                rv = None
                # A disconnect is routine too (#21 F9: it printed a traceback under API faults).
                quiet = isinstance(exc, (*ROUTINE_ERRORS, ValueError))
                logger.warning(
                    "pod watch %s failed, re-listing in %.0fs: %s", path, self._retry, exc, exc_info=not quiet
                )
                await asyncio.sleep(self._retry)

    async def _list(self, namespace: str | None, path: str) -> str:
        _, body = await self.client.request(
            "GET",
            f"{path}?{urlencode({'labelSelector': self.selector})}",
            what=f"list engine pods {namespace or '(all namespaces)'}",
        )
        self.relists += 1
        listed_rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if self.on_relist is not None and self.relists > 1:
            self.on_relist(listed_rv)
        seen: set[Key] = set()
        for item in body.get("items") or ():
            item.setdefault("kind", "Pod")
            view = PodView.from_body(item)
            seen.add((view.namespace, view.name))
            self.cache.upsert(view)
            self.on_change(view.namespace, view.inode, view.uid, False)
        for ns, name in self.cache.names() - seen:
            if namespace is None or ns == namespace:
                gone = self.cache.remove(ns, name)
                if gone is not None:
                    self.on_change(ns, gone.inode, gone.uid, True)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, path: str, rv: str) -> str | None:
        """Stream events until the server ends the watch; the rv to resume from, None to re-list."""
        query = urlencode(
            {
                "watch": "true",
                "labelSelector": self.selector,
                "resourceVersion": rv,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(self._watch_timeout),
            }
        )
        async for line in self.client.stream_lines(f"{path}?{query}"):
            event: dict[str, Any] = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    return None  # too old: list again
                raise ApiError(  # any other watch error: re-list too (see _run_scope)
                    int(obj.get("code") or 500),
                    str(obj.get("reason")),
                    str(obj.get("message")),
                    f"watch {path}",
                )
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if new_rv:
                rv = str(new_rv)
            if kind == "BOOKMARK":
                continue
            self.events += 1
            view = PodView.from_body(obj)
            if kind == "DELETED":
                self.cache.remove(view.namespace, view.name)
                self.on_change(view.namespace, view.inode, view.uid, True)
            else:
                self.cache.upsert(view)
                self.on_change(view.namespace, view.inode, view.uid, False)
        return rv
