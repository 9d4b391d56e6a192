"""The kopf side of the operator: indexes, watch-event hooks, login, startup and cleanup.

Handlers are thin and return None. Indexes keep the world in memory (kopf lists and watches
each kind once); on-event hooks only tell the ``Reconciler`` which keys became dirty. No
handler uses kopf's change-detection (on.create/update), so kopf writes no finalizers and no
progress/diff-base annotations: the only writes to the cluster are the reconciler's.

``make_registry`` builds a fresh registry per operator instance so that tests and benchmarks can
run several operators (one after another: a restart) in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import aiohttp
import kopf

from gpufleet import API_GROUP, API_VERSION
from gpufleet.controllers.kube import ApiError, KubeClient, connection_from_kubeconfig
from gpufleet.controllers.podwatch import PodInformer
from gpufleet.controllers.reconciler import FleetCaches, PoolMember, Reconciler
from gpufleet.controllers.runtime.backoff import Backoff
from gpufleet.hardware.catalog import Catalog
from gpufleet.objects import LABEL_INODE, LABEL_MANAGED_BY, MANAGED_BY, NodeView, PodView
from gpufleet.settings import GROUP_PREFIX, OperatorSettings
from gpufleet.status import inode_validated_vram

logger = logging.getLogger("gpufleet.operator")

POD_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


class NoDiffBase(kopf.DiffBaseStorage):
    """No change detection: every handler here is level-based (index/event), none needs a diff.

    kopf would otherwise deep-copy each object on every watch event to build a diff base, which
    is most of its per-event cost at fleet scale (measured: ~1 ms of ~2 ms per pod event).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    """kopf tuned for a large fleet: server-side pod filtering, no implicit writes, quiet events."""
    ks = kopf.OperatorSettings()
    ks.persistence.finalizer = settings.finalizer
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP_PREFIX)
    ks.persistence.diffbase_storage = NoDiffBase()
    ks.posting.level = logging.WARNING  # kopf's own Events only for problems; ours are explicit
    ks.posting.reporting_component = "gpufleet-operator"
    ks.posting.event_name_prefix = "gpufleet-"
    ks.watching.label_selectors["v1", "pods"] = POD_SELECTOR
    ks.networking.request_timeout = settings.api_request_timeout_seconds
    ks.peering.standalone = settings.peering_name is None
    if settings.peering_name is not None:
        ks.peering.name = settings.peering_name
        ks.peering.mandatory = True
    return ks


def connection(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """Explicit kubeconfig, else the in-cluster service account, else $KUBECONFIG/~/.kube/config."""
    if kubeconfig:
        return connection_from_kubeconfig(kubeconfig)
    ks = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=ks) or kopf.login_with_kubeconfig(settings=ks)
    if info is None:
        raise kopf.LoginError(
            "no credentials: not in a cluster, and neither $KUBECONFIG nor ~/.kube/config exists"
        )
    return info


def _copy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain snapshot: kopf's bodies are live views that change under the reconciler's feet."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.get("metadata") or {}),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


IndexFn = Callable[[Mapping[str, Any]], "dict[Any, Any] | None"]


class LocalIndex(Mapping[Any, Collection[Any]]):
    """The shape of a kopf index (key -> one value per object), fed from on-event handlers.

    kopf's own indexes make every object of every watched kind wait at start-up until all of them
    are indexed, and each indexed object wakes every waiter: O(N^2) wake-ups (measured: ~20 s
    of CPU for 1,000 Nodes + 1,000 InferenceNodes). The same index functions feed this instead;
    ``GPUFLEET_INDEXES=kopf`` switches back to ``@kopf.index``.
    """

    def __init__(self) -> None:
        self._values: dict[Any, dict[str, Any]] = {}
        self._keys: dict[str, list[Any]] = {}

    def put(self, uid: str, entries: Mapping[Any, Any] | None) -> None:
        self.drop(uid)
        if not entries:
            return
        for key, value in entries.items():
            self._values.setdefault(key, {})[uid] = value
        self._keys[uid] = list(entries)

    def drop(self, uid: str) -> None:
        for key in self._keys.pop(uid, ()):
            bucket = self._values.get(key)
            if bucket is not None:
                bucket.pop(uid, None)
                if not bucket:
                    del self._values[key]

    def __getitem__(self, key: Any) -> Collection[Any]:
        return list(self._values[key].values())

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)


def index_functions(settings: OperatorSettings, catalog: Catalog) -> dict[str, dict[str, IndexFn]]:
    """Plural -> index name -> function(body) -> {key: value} | None; shared by both index modes."""

    def namespaced(body: Mapping[str, Any]) -> tuple[str, str]:
        meta = body.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def inode_bodies(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        return {namespaced(body): _copy(body)}

    def pool_members(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        pool = ((body.get("spec") or {}).get("poolRef") or {}).get("name")
        if not pool:
            return None
        ns, name = namespaced(body)
        vram, devices, ready = inode_validated_vram(body.get("status") or {}, catalog)
        return {(ns, pool): PoolMember(name, vram, devices, ready)}

    def inodes_on_node(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        node = (body.get("spec") or {}).get("nodeName")
        return {node: namespaced(body)} if node else None

    def gpu_nodes(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        return {namespaced(body)[1]: NodeView.from_body(body, settings.gpu_resource_name)}

    def pool_bodies(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        return {namespaced(body): _copy(body)}

    def release_bodies(body: Mapping[str, Any]) -> dict[Any, Any] | None:
        return {namespaced(body)[1]: _copy(body)}

    return {
        "inferencenodes": {
            "inode_bodies": inode_bodies,
            "pool_members": pool_members,
            "inodes_on_node": inodes_on_node,
        },
        "nodes": {"gpu_nodes": gpu_nodes},
        "operatorpools": {"pool_bodies": pool_bodies},
        "enginereleases": {"release_bodies": release_bodies},
    }


LIST_PATHS = {
    "inferencenodes": f"/apis/{API_GROUP}/{API_VERSION}/inferencenodes",
    "operatorpools": f"/apis/{API_GROUP}/{API_VERSION}/operatorpools",
    "enginereleases": f"/apis/{API_GROUP}/{API_VERSION}/enginereleases",
    "nodes": "/api/v1/nodes",
}


def make_registry(reconciler: Reconciler, *, kubeconfig: str | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings = reconciler.settings
    functions = index_functions(settings, reconciler.catalog)
    local = {name: LocalIndex() for fns in functions.values() for name in fns}
    resources = {
        "inferencenodes": (API_GROUP, API_VERSION, "inferencenodes"),
        "operatorpools": (API_GROUP, API_VERSION, "operatorpools"),
        "enginereleases": (API_GROUP, API_VERSION, "enginereleases"),
        "nodes": ("v1", "nodes"),
    }

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # async like every handler here: kopf runs sync handlers in a thread pool (see docs).
        return connection(kubeconfig)

    if settings.indexes == "kopf":
        for plural, fns in functions.items():
            for name, fn in fns.items():
                _register_kopf_index(registry, resources[plural], name, fn)

    def feed(plural: str, body: Mapping[str, Any], deleted: bool) -> None:
        """Local mode: keep the indexes current before the reconciler hears of the change."""
        if settings.indexes != "local":
            return
        uid = str((body.get("metadata") or {}).get("uid") or "")
        for name, fn in functions[plural].items():
            if deleted:
                local[name].drop(uid)
            else:
                local[name].put(uid, fn(body))

    async def prime(client: KubeClient) -> None:
        """Local mode: list every kind once so the first reconcile sees the whole world.

        Each list is retried (jittered back-off) until it succeeds: one 429 or 503 during start-up
        must not stall the operator until kopf retries the whole start-up (#21 F7).
        """
        backoff = Backoff(base=0.2, cap=10.0)
        for plural, path in LIST_PATHS.items():
            scopes = settings.namespaces if plural in ("inferencenodes", "operatorpools") else []
            paths = [path.replace(f"/{plural}", f"/namespaces/{ns}/{plural}") for ns in scopes] or [path]
            for one in paths:
                while True:
                    try:
                        _, listing = await client.request("GET", one, what=f"list {plural}")
                        break
                    except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as exc:
                        delay = backoff.failed(one)
                        logger.warning("start-up list of %s failed (retry in %.1fs): %s", plural, delay, exc)
                        await asyncio.sleep(delay)
                for item in listing.get("items") or ():
                    feed(plural, item, deleted=False)

    # --- lifecycle -------------------------------------------------------------------------

    @kopf.on.startup(registry=registry)
    async def start(**kwargs: Any) -> None:
        source: Mapping[str, Any] = local if settings.indexes == "local" else kwargs
        reconciler.caches = FleetCaches(
            inodes=source["inode_bodies"],
            pool_members=source["pool_members"],
            inodes_on_node=source["inodes_on_node"],
            pods=kwargs.get("managed_pods", {}),
            nodes=source["gpu_nodes"],
            pools=source["pool_bodies"],
            releases=source["release_bodies"],
        )
        client = KubeClient(
            connection(kubeconfig),
            concurrency=settings.api_concurrency,
            timeout=settings.api_request_timeout_seconds,
        )
        # Other controllers in this registry (rollouts) find the same caches here in both modes.
        kwargs["memo"].gpufleet_caches = reconciler.caches
        if settings.indexes == "local":
            try:
                await prime(client)
            except BaseException:
                await client.close()  # kopf retries the start-up: never leak a session (#21 F7)
                raise
        informer = None
        if settings.pod_watch == "direct":
            informer = PodInformer(
                client,
                POD_SELECTOR,
                settings.namespaces,
                reconciler.pod_changed,
                on_relist=reconciler.relisted,
            )
        # kopf mode: the indexes fill while kopf lists each kind, concurrently with the pod
        # informer; they are complete only once kopf lets the first on-event handler run.
        reconciler.start(client, informer, wait_for_indexes=settings.indexes == "kopf")
        logger.info(
            "gpufleet operator started: %d workers, namespaces %s",
            settings.workers,
            settings.namespaces or "all",
        )

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await reconciler.stop()

    @kopf.on.probe(id="api_consistent", errors=kopf.ErrorsMode.PERMANENT, registry=registry)
    async def api_consistent(**_: Any) -> str:
        """Liveness fails once the API server's state went back in time (see Reconciler.relisted)."""
        if reconciler.api_restored:
            raise kopf.PermanentError("resourceVersions went backwards (API server restored?): restart")
        return "ok"

    # --- watch events: keep indexes current, mark keys dirty --------------------------------
    # kopf calls no resource handler before its start-up index barrier has passed (every watched
    # kind listed and every listed object indexed), so the first call of any of these handlers
    # proves that the kopf indexes are complete: only then may the reconciler plan from them.

    @kopf.on.event(*resources["inferencenodes"], registry=registry)
    async def inode_event(**kw: Any) -> None:
        reconciler.indexes_loaded()
        deleted = kw["type"] == "DELETED"
        feed("inferencenodes", kw["body"], deleted)
        reconciler.inode_changed(kw["namespace"], kw["name"], kw["body"], deleted=deleted)

    @kopf.on.event(*resources["nodes"], registry=registry)
    async def node_event(**kw: Any) -> None:
        reconciler.indexes_loaded()
        deleted = kw["type"] == "DELETED"
        feed("nodes", kw["body"], deleted)
        view = None if deleted else NodeView.from_body(kw["body"], settings.gpu_resource_name)
        reconciler.node_changed(kw["name"], view)

    @kopf.on.event(*resources["operatorpools"], registry=registry)
    async def pool_event(**kw: Any) -> None:
        reconciler.indexes_loaded()
        deleted = kw["type"] == "DELETED"
        feed("operatorpools", kw["body"], deleted)
        reconciler.pool_changed(kw["namespace"], kw["name"], None if deleted else kw["body"])

    @kopf.on.event(*resources["enginereleases"], registry=registry)
    async def release_event(**kw: Any) -> None:
        reconciler.indexes_loaded()
        deleted = kw["type"] == "DELETED"
        feed("enginereleases", kw["body"], deleted)
        reconciler.releases_changed(kw["name"], None if deleted else kw["body"])

    if settings.pod_watch == "kopf":
        _register_kopf_pod_watch(registry, reconciler)
    return registry


def _register_kopf_index(
    registry: kopf.OperatorRegistry, resource: tuple[str, ...], name: str, fn: IndexFn
) -> None:
    @kopf.index(*resource, id=name, registry=registry)
    async def index(**kw: Any) -> dict[Any, Any] | None:
        return fn(kw["body"])


def _register_kopf_pod_watch(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """The kopf alternative to ``PodInformer``: simpler, about twice the CPU per pod event."""
    managed = {LABEL_MANAGED_BY: MANAGED_BY}

    @kopf.index("v1", "pods", labels=managed, id="managed_pods", registry=registry)
    async def managed_pods(**kw: Any) -> dict[Any, Any] | None:
        inode = kw["labels"].get(LABEL_INODE)
        return {(kw["namespace"], inode): PodView.from_body(kw["body"])} if inode else None

    @kopf.on.event("v1", "pods", labels=managed, registry=registry)
    async def pod_event(**kw: Any) -> None:
        reconciler.indexes_loaded()  # behind kopf's index barrier too
        inode = str(kw["labels"].get(LABEL_INODE) or "")
        reconciler.pod_changed(kw["namespace"], inode, kw["uid"], deleted=kw["type"] == "DELETED")
