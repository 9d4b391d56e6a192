"""The one InferenceNode reconciler (plus the OperatorPool and EngineRelease passes it runs).

kopf watches and indexes everything (see ``handlers``); watch events only queue keys here.
Workers then reconcile one key at a time from the caches. One pass of an InferenceNode composes
the pure planners in a fixed order and is the only place that decides about its pods:

1. the rollout step (``controllers.rollout``: release selection + ``gpufleet.rollout.plan``)
   decides which version each device runs and which pods a batch replaces (its record is written
   before any pod is deleted);
2. devices (``devices``): plan from GFD labels, confirm with the agents' reports;
3. pods (``fleet.plan_pods``): create what is missing *with the version the rollout record names*
   (new nodes, replacements, blocked GPUs alike), delete what must go, labels, readiness gates;
4. status (``status.inode_status``) composed with the rollout's fields and written once, through
   the shared ``StatusWriter`` (each part owns its condition types; nothing is lost).

Writes are skipped when the computed state equals the stored one, so a converged fleet costs
nothing. Our own writes are remembered (the writer's overlay, ``_expected``) until the watch
echoes them, so a pass that runs before the echo neither re-creates a pod nor re-writes a status.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar, cast

import aiohttp

from gpufleet.api.conditions import device_blocked
from gpufleet.conditions import Clock, make_condition, utcnow
from gpufleet.controllers.kube import ROUTINE_ERRORS, AgentUnreachable, ApiError, KubeClient, post_event_soon
from gpufleet.controllers.podwatch import PodInformer
from gpufleet.controllers.rollout import RELEASES, RolloutController, Step
from gpufleet.controllers.runtime.backoff import Backoff
from gpufleet.controllers.runtime.overlay import StatusWriter
from gpufleet.controllers.runtime.workqueue import WorkQueue
from gpufleet.devices import (
    NodePlan,
    Observation,
    ReportError,
    Verdict,
    observe,
    parse_agent_report,
    plan_devices,
)
from gpufleet.fleet import PodPlan, plan_pods
from gpufleet.hardware.catalog import Catalog, load_catalog
from gpufleet.hardware.report import GPUDevice
from gpufleet.metrics import METRICS, device_samples
from gpufleet.objects import READY_GATE, InodeView, InvalidObject, NodeView, PodView, PoolView
from gpufleet.podspec import PodRelease
from gpufleet.rollout.views import node_state
from gpufleet.settings import OperatorSettings
from gpufleet.status import (
    INODE_CONDITIONS,
    INODE_KEYS,
    POOL_CONDITIONS,
    PoolContext,
    ReleaseInfo,
    inode_status,
    pool_status,
    share_events,
)

logger = logging.getLogger("gpufleet.reconciler")

Body = Mapping[str, Any]
Key = tuple[str, str]
T = TypeVar("T")

INODES = "inferencenodes"
POOLS = "operatorpools"
#: Transitions a person acts on: besides their Event, one INFO line naming the object.
INFO_TRANSITIONS = frozenset(
    {
        "PodCreated",
        "PodReplaced",
        "PodCreateFailed",
        "GPURemoved",
        "NodeChanged",
        "DeviceBlocked",
        "ShareChanged",
    }
)
#: Verdict reason of a device whose GPU uuid already counts for another InferenceNode (#21 F3).
DUPLICATE_GPU = "DuplicateGPU"
EXPECTATION_TTL = 30.0
#: How long one pass waits for its agent requests (healthy agents answer in milliseconds); the
#: rest finish in the background and queue the node again (#21 F10).
AGENT_WAIT_SECONDS = 0.25
UNREADY_PROBES = 3  # /readyz asks while the container is not ready yet (for clusters without probes)


@dataclass(frozen=True)
class PoolMember:
    """One InferenceNode's contribution to its pool, as read back from its written status."""

    name: str
    vram_mib: int
    devices: int
    ready: int


@dataclass
class FleetCaches:
    """Read-only views the reconciler plans from (kopf indexes in production, dicts in tests)."""

    inodes: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    pool_members: Mapping[Any, Collection[PoolMember]] = field(default_factory=dict)
    inodes_on_node: Mapping[Any, Collection[Key]] = field(default_factory=dict)
    pods: Mapping[Any, Collection[PodView]] = field(default_factory=dict)
    nodes: Mapping[Any, Collection[NodeView]] = field(default_factory=dict)
    pools: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    releases: Mapping[Any, Collection[Body]] = field(default_factory=dict)


def _first(values: Iterable[T] | None) -> T | None:
    for value in values or ():
        return value
    return None


def _rv(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _newer(candidate: str | None, than: str | None) -> bool:
    """Whether resourceVersion ``candidate`` is strictly newer (only comparable when numeric)."""
    a, b = _rv(candidate), _rv(than)
    return a is not None and b is not None and a > b


Handler = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class _Release:
    pod: PodRelease
    info: ReleaseInfo
    min_driver_version: str | None
    per_device: Callable[[int], PodRelease | None] | None = None


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        *,
        catalog: Catalog | None = None,
        now: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        rollouts: bool = True,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog()
        self.now = now
        self.monotonic = monotonic
        self.queue = WorkQueue()
        self.caches = FleetCaches()
        self.client: KubeClient | None = None
        self.stats: Counter[str] = Counter()
        self._workers: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.backoff = Backoff(base=0.5, cap=60.0)
        self.writer = StatusWriter(self._send_status, monotonic=monotonic)
        #: Rollout decisions inside each InferenceNode pass (``rollouts=False``: the release is
        #: still chosen by the same selector, but no rollout record is kept: ``--core-only``).
        self.rollouts = RolloutController(self, now=now)
        self.rollouts_enabled = rollouts
        self._handlers: dict[str, Handler] = {
            "inode": self._reconcile_inode_key,
            "pool": self._reconcile_pool_key,
            "release": self._reconcile_release_key,
        }
        self._pod_watchers: list[Callable[[str, str, PodView | None], None]] = []
        self._reports: dict[str, Any] = {}  # pod uid -> the agent's /v1/hardware payload
        self._report_failures: Counter[str] = Counter()
        self._report_errors: dict[str, str] = {}  # pod uid -> why its agent's last answer failed
        self._obs_cache: dict[str, tuple[Hashable, Observation]] = {}
        # The last report judged for each device of each InferenceNode, (ns, inode, node, device
        # index) -> (GPU uuid, payload): it outlives the pod that sent it, so a device blocked by
        # its report stays blocked (and a valid one keeps its share) while a replacement pod has
        # not answered yet. Keyed by InferenceNode too: another InferenceNode naming the same
        # node never inherits these reports (#21 F3). A newer report replaces it.
        self._last_reports: dict[tuple[str, str, str, int], tuple[str, Any]] = {}
        self._last_obs: dict[tuple[str, str, str, int], tuple[Hashable, Observation]] = {}
        # One physical GPU (by uuid) validates for one InferenceNode device at a time (#21 F3):
        # uuid -> (InferenceNode key, device index) that counts it, and the reverse.
        self._uuid_owner: dict[str, tuple[Key, int]] = {}
        self._claims: dict[Key, dict[int, str]] = {}
        # Replacing pods that ended (e.g. rejected at admission: OutOfnvidia.com/gpu) backs off
        # per device (#21 F2): (ns, inode, index) -> monotonic time of the next replacement.
        self._replace_backoff = Backoff(base=1.0, cap=300.0)
        self._replace_at: dict[tuple[str, str, int], float] = {}
        self._gate_next: dict[str, tuple[int, float]] = {}  # pod uid -> (failures, next probe time)
        self._agent_tasks: dict[tuple[str, str], asyncio.Task[Any]] = {}  # (pod uid, path) in flight
        self._late_calls: set[tuple[str, str]] = set()  # in flight after their pass stopped waiting
        self._seen_nodes: dict[str, NodeView] = {}
        self._inode_pool: dict[Key, str] = {}
        self._basis: dict[Key, tuple[int, int, Decimal]] = {}
        self._fresh_pods: dict[Key, PodView] = {}
        self._expected: dict[Key, dict[str, tuple[float, PodView]]] = {}
        self._invalid_seen: dict[tuple[str, str], str] = {}
        self._waiting_for_api: set[Hashable] = set()  # keys backing off after transient API errors
        self._max_pod_rv: int | None = None  # highest pod resourceVersion seen (restore detection)
        #: The API server's resourceVersions went backwards (restored from a backup): liveness fails.
        self.api_restored = False
        self._ready = asyncio.Event()
        self._indexes_loaded = asyncio.Event()
        self._indexes_loaded.set()

    # --- lifecycle ------------------------------------------------------------------------

    def start(
        self, client: KubeClient, informer: PodInformer | None = None, *, wait_for_indexes: bool = False
    ) -> None:
        """Start the workers (and the pod informer).

        Workers wait until the pods are listed and, with ``wait_for_indexes``, until
        ``indexes_loaded()`` says the other caches hold their first full listing: a pass planned
        from a half-filled cache (pods known, their node not yet) would see GPUs "gone" and
        delete serving pods.
        """
        self.client = client
        if wait_for_indexes:
            self._indexes_loaded.clear()
        if informer is not None:
            self.caches.pods = informer.cache
            self._ready = informer.synced
            task = asyncio.create_task(informer.run(), name="gpufleet-pod-informer")
            self._background.add(task)
        else:
            self._ready.set()
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._worker(i), name=f"gpufleet-reconciler-{i}")
                for i in range(self.settings.workers)
            ]

    async def stop(self) -> None:
        self.queue.close()
        tasks = [*self._workers, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._background.clear()
        if self.client is not None:
            await self.client.close()

    def indexes_loaded(self) -> None:
        """The caches other than the pods now hold every object (kopf's index barrier passed)."""
        self._indexes_loaded.set()

    @property
    def warm(self) -> bool:
        """Whether workers may plan: pods listed and every index loaded."""
        return self._ready.is_set() and self._indexes_loaded.is_set()

    @property
    def busy(self) -> bool:
        return not self.queue.idle

    # --- event intake (called by the kopf handlers; cheap and synchronous) ----------------

    def inode_changed(self, namespace: str, name: str, body: Body, deleted: bool) -> None:
        key = (namespace, name)
        pool = str(((body.get("spec") or {}).get("poolRef") or {}).get("name") or "")
        old_pool = self._inode_pool.get(key)
        if old_pool and old_pool != pool:
            self._pool_later(namespace, old_pool)
        if pool:
            self._pool_later(namespace, pool)
        self.rollouts.inode_changed(namespace, name, body, deleted)
        if deleted:
            self._forget_inode(key)
            self.queue.add(("inode", namespace, name))  # the pool ledger forgets it too
            return
        if self.writer.is_echo(INODES, body):
            self.stats["own_echo_skipped"] += 1
            return  # the echo of our own status write: nothing new to plan from
        self.queue.add(("inode", namespace, name))

    def relisted(self, resource_version: str) -> None:
        """The pod watch had to list again: trust the server, not what we remember writing.

        After an API server restore (resourceVersions going backwards, #21 F6) the watched bodies
        carry smaller resourceVersions than our last writes, so the overlays would keep winning;
        they are dropped and every node is planned again from what the server says.
        """
        listed = _rv(resource_version)
        if listed is not None and self._max_pod_rv is not None and listed < self._max_pod_rv:
            # resourceVersions went backwards: an API server restored from a backup. The pod
            # cache is re-listed, but kopf's watches of the other kinds resume from versions this
            # server never reached and would stay silent: fail liveness so the operator restarts
            # and lists everything again (``api_consistent`` probe in handlers) (#21 F6).
            self.api_restored = True
            logger.error(
                "engine pods re-listed at resourceVersion %s, below %s seen before: the API server's "
                "state went back in time (restored?); failing liveness to restart",
                resource_version,
                self._max_pod_rv,
            )
        self._max_pod_rv = listed
        self.writer.clear()
        self._fresh_pods.clear()
        self._expected.clear()
        logger.info("engine pods re-listed at resourceVersion %s: re-planning every node", resource_version)
        for key in list(self.caches.inodes):
            self.queue.add(("inode", *key))

    def watch_pods(self, fn: Callable[[str, str, PodView | None], None]) -> None:
        """Subscribe ``fn(namespace, inode, view or None when deleted)`` to the shared pod watch."""
        self._pod_watchers.append(fn)

    def pod_changed(self, namespace: str, inode: str, uid: str, deleted: bool) -> None:
        view = None
        if deleted:
            self._reports.pop(uid, None)
            self._obs_cache.pop(uid, None)
            self._gate_next.pop(uid, None)
            self._report_failures.pop(uid, None)
            self._report_errors.pop(uid, None)
        elif inode:
            view = next((p for p in self.caches.pods.get((namespace, inode), ()) if p.uid == uid), None)
            seen = _rv(view.resource_version) if view is not None else None
            if seen is not None and (self._max_pod_rv is None or seen > self._max_pod_rv):
                self._max_pod_rv = seen
        self.rollouts.pod_changed(namespace, inode, uid, view)
        for fn in self._pod_watchers:
            fn(namespace, inode, view)
        if inode:
            self.queue.add_after(("inode", namespace, inode), self.settings.event_batch_seconds)

    def node_changed(self, name: str, view: NodeView | None) -> None:
        """Only GPU labels and capacity matter; heartbeats and other label churn are ignored."""
        if view is not None and self._seen_nodes.get(name) == view:
            return
        if view is None:
            self._seen_nodes.pop(name, None)
            for device in [k for k in self._last_reports if k[2] == name]:
                self._last_reports.pop(device, None)
                self._last_obs.pop(device, None)
        else:
            self._seen_nodes[name] = view
        for ns, inode in self.caches.inodes_on_node.get(name, ()):
            self.queue.add(("inode", ns, inode))

    def pool_changed(self, namespace: str, name: str, body: Body | None = None) -> None:
        self.queue.add(("pool", namespace, name))
        if body is not None and self.writer.is_echo(POOLS, body):
            return
        for key in self.rollouts.pool_changed(namespace, name, body):
            self.queue.add(("inode", *key))  # its update policy or approvals changed

    def releases_changed(self, name: str | None = None, body: Body | None = None) -> None:
        if body is not None and self.writer.is_echo(RELEASES, body):
            return  # our own budget write
        self.rollouts.releases_changed()
        if name:
            self.queue.add(("release", "", name))
        for store in list(self.caches.inodes.values()):
            for inode_body in store:
                meta = inode_body.get("metadata") or {}
                self.queue.add(("inode", str(meta.get("namespace")), str(meta.get("name"))))

    def _pool_later(self, namespace: str, pool: str) -> None:
        self.queue.add_after(("pool", namespace, pool), self.settings.pool_settle_seconds)

    def _forget_inode(self, key: Key) -> None:
        for index in list(self._claims.get(key, {})):
            self._release_claim(key, index)
        self._claims.pop(key, None)
        for device in [k for k in self._last_reports if k[:2] == key]:
            self._last_reports.pop(device, None)
            self._last_obs.pop(device, None)
        self._inode_pool.pop(key, None)
        self._expected.pop(key, None)
        self.writer.forget(INODES, *key)
        METRICS.forget_inference_node(*key)

    # --- workers ---------------------------------------------------------------------------

    def register(self, kind: str, handler: Handler) -> None:
        """Run ``handler(namespace, name)`` for queued keys ``(kind, namespace, name)``.

        The runtime API for other controllers (reputation, routing policy, epochs): they share
        this queue, its workers, its back-off and its cold-cache barrier.
        """
        if kind in self._handlers:
            raise ValueError(f"a handler for {kind!r} keys is already registered")
        self._handlers[kind] = handler

    async def _reconcile_inode_key(self, namespace: str, name: str) -> None:
        with METRICS.time_reconcile("inferencenode"):
            await self.reconcile_inode((namespace, name))

    async def _reconcile_pool_key(self, namespace: str, name: str) -> None:
        with METRICS.time_reconcile("operatorpool"):
            await self.reconcile_pool((namespace, name))

    async def _reconcile_release_key(self, namespace: str, name: str) -> None:
        with METRICS.time_reconcile("enginerelease"):
            await self.rollouts.reconcile_release(name)

    async def _worker(self, number: int) -> None:
        await self._ready.wait()
        await self._indexes_loaded.wait()
        while True:
            key = await self.queue.get()
            try:
                kind, namespace, name = cast(tuple[str, str, str], key)
                await self._handlers[kind](namespace, name)
                self.backoff.succeeded(key)
                if self._waiting_for_api:
                    self._api_recovered()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = self.backoff.failed(key)
                expected = isinstance(exc, ROUTINE_ERRORS)
                if _transient(exc):
                    self._waiting_for_api.add(key)
                logger.warning(
                    "reconcile of %s failed (attempt %d, retry in %.1fs): %s",
                    key,
                    self.backoff.attempts(key),
                    delay,
                    exc,
                    exc_info=not expected,  # tracebacks only for what we did not expect (#21 F9)
                )
                self.queue.add_after(key, delay)
            finally:
                self.stats["reconciles"] += 1
                self.queue.done(key)

    def _api_recovered(self) -> None:
        """A pass worked again after API errors: retry the keys that backed off now (#21 F11).

        Without this the last keys of a brownout waited out back-offs of up to a minute; spread
        over half a second so the recovered API server is not hit by all of them at once.
        """
        keys, self._waiting_for_api = self._waiting_for_api, set()
        for key in keys:
            self.queue.add_after(key, random.uniform(0.0, 0.5))

    def _client(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError("the reconciler has no API client: start() it from the operator's startup")
        return self.client

    def _events(self, body: Body, events: Iterable[tuple[str, str, str]]) -> None:
        """One Event per (type, reason) and reconcile: a node's 8 GPUs make one Event, not 8."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for type_, reason, message in events:
            grouped.setdefault((type_, reason), []).append(message)
        for (type_, reason), messages in grouped.items():
            text = messages[0] if len(messages) == 1 else f"{len(messages)} GPUs: " + "; ".join(messages)
            self._event(body, type_, reason, text)
            if reason in INFO_TRANSITIONS:
                meta = body.get("metadata") or {}
                kind = body.get("kind") or "InferenceNode"
                logger.info("%s %s/%s: %s: %s", kind, meta.get("namespace"), meta.get("name"), reason, text)

    def _event(self, body: Body, type_: str, reason: str, message: str) -> None:
        """Fire and forget: an Event must never hold up (or fail) a reconcile."""
        post_event_soon(self._client(), body, type_, reason, message, background=self._background)
        self.stats["events"] += 1

    def event(self, body: Body, type_: str, reason: str, message: str) -> None:
        """Post an Event about ``body`` (for the controllers that run in this reconciler)."""
        self._event(body, type_, reason, message)

    async def _send_status(
        self, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> Mapping[str, Any]:
        return await self._client().patch_status(plural, namespace, name, patch)

    def invalid_release(self, body: Body, message: str) -> None:
        """An EngineRelease the operator cannot use: a warning, once per distinct problem."""
        name = str((body.get("metadata") or {}).get("name") or "")
        if self._invalid_seen.get(("release", name)) == message:
            return
        self._invalid_seen[("release", name)] = message
        logger.warning("EngineRelease %s ignored: %s", name, message)
        self._event(body, "Warning", "InvalidSpec", message)

    # --- InferenceNode --------------------------------------------------------------------

    async def reconcile_inode(self, key: Key) -> None:
        body = _first(self.caches.inodes.get(key))
        if body is None:
            self._forget_inode(key)
            return
        try:
            inode = InodeView.from_body(body)
        except InvalidObject as exc:
            await self._invalid_inode(body, str(exc))
            return
        self._inode_pool[key] = inode.pool
        step: Step | None = None
        if self.rollouts_enabled:
            step = await self.rollouts.step(key, body)
            if step is not None and step.deletes:
                await self._rollout_deletes(key, body, step)
        inode = replace(inode, status=self.rollouts.status(key, body))
        node = _first(self.caches.nodes.get(inode.node_name))
        node_plan = plan_devices(inode, node, self.catalog)
        release = self._release_for(key, body, inode, step)
        pods = self._pods_for(key)
        if step is not None and step.deletes:
            gone = {d.name for d in step.deletes}
            pods = [replace(p, deleting=True) if p.name in gone else p for p in pods]
        observations, retry = await self._observe(inode, node_plan, pods, node, release)
        node_plan = self._with_agent_errors(node_plan, pods)
        plan = plan_pods(
            inode,
            node_plan,
            pods,
            release.pod if release else None,
            observations,
            self.settings,
            release_for=release.per_device if release else None,
        )
        retry_replace = self._hold_replacements(inode, plan, pods)
        pods, retry_gates = await self._execute(body, inode, plan, pods)
        info = release.info if release else None
        if info is None and step is not None and step.selection.message:
            # Say why nothing runs (held back by a driver gate, a halt, no release on the channel).
            info = ReleaseInfo(None, None, f"{step.selection.reason}: {step.selection.message}")
        status, _ = inode_status(
            inode,
            node_plan,
            pods,
            observations,
            info,
            self._pool_context(inode),
            now=self.now,
        )
        await self._write_inode_status(body, inode, status, step)
        if step is not None:
            self.rollouts.after(key, body, step)
        delays = [d for d in (retry, retry_gates, retry_replace) if d is not None]
        if delays:
            self.queue.add_after(("inode", *key), min(delays))

    def _hold_replacements(self, inode: InodeView, plan: PodPlan, pods: list[PodView]) -> float | None:
        """Replace an ended pod at once the first time, then with jittered back-off per device.

        A pod the kubelet rejects at admission (``OutOfnvidia.com/gpu``: two InferenceNodes on one
        node, a foreign pod holding the GPU) would otherwise be deleted and recreated in a tight
        loop (#21 F2: 222 creates/s for 100 such nodes). The pod stays (Failed, holding no GPU)
        until its device's turn; the Ready condition names the rejection meanwhile.
        """
        by_name = {p.name: p for p in pods}
        now = self.monotonic()
        retry: float | None = None
        kept: list[Any] = []
        for delete in plan.deletes:
            pod = by_name.get(delete.name)
            if delete.reason != "PodReplaced" or pod is None or pod.device_index is None:
                kept.append(delete)
                continue
            device = (inode.namespace, inode.name, pod.device_index)
            due = self._replace_at.get(device, 0.0)
            if now < due:
                retry = due - now if retry is None else min(retry, due - now)
                continue  # not yet: keep the ended pod, no create either (the name is taken)
            delay = self._replace_backoff.failed(device)
            self._replace_at[device] = now + delay
            kept.append(delete)
        plan.deletes = kept
        for pod in pods:
            if pod.device_index is not None and pod.running and pod.ready:
                device = (inode.namespace, inode.name, pod.device_index)
                if self._replace_at.pop(device, None) is not None:
                    self._replace_backoff.succeeded(device)
        return retry

    async def _rollout_deletes(self, key: Key, body: Body, step: Step) -> None:
        """Delete the pods a rollout batch replaces (its record is already written)."""
        client = self._client()
        uids = {p.name: p.uid for p in self._pods_for(key)}
        deletes = step.deletes
        results = await asyncio.gather(
            *(client.delete_pod(key[0], d.name, uids.get(d.name)) for d in deletes), return_exceptions=True
        )
        for delete, result in zip(deletes, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("rollout of %s/%s: deleting pod %s failed: %s", *key, delete.name, result)
                self.queue.add_after(("inode", *key), 1.0)
            else:
                self.stats["pods_deleted"] += 1

    async def _invalid_inode(self, body: Body, message: str) -> None:
        """A spec the operator cannot act on: Ready=False InvalidSpec, a warning Event and log line."""
        meta = body.get("metadata") or {}
        cond = make_condition(
            "Ready", "False", "InvalidSpec", message, observed_generation=meta.get("generation"), now=self.now
        )
        old = self.writer.current(INODES, body)
        previous = next((c for c in old.get("conditions") or () if c.get("type") == "Ready"), None)
        if previous and previous.get("reason") == "InvalidSpec" and previous.get("message") == message:
            return
        await self.writer.write(INODES, body, {}, conditions=[cond], owned=("Ready",))
        logger.warning(
            "InferenceNode %s/%s: invalid spec: %s", meta.get("namespace"), meta.get("name"), message
        )
        self._event(body, "Warning", "InvalidSpec", message)

    def _release_for(self, key: Key, body: Body, inode: InodeView, step: Step | None) -> _Release | None:
        """Which version/image each device's pod runs: the ONE selector's answer, via the record.

        With the rollout step (the default) the rollout record decides per device
        (``RolloutController.device_release``): a new node's first install, a replacement
        mid-rollout, a blocked GPU all get what the record names. Without it (``--core-only``),
        the same selector's choice for the node. The default image applies only when no
        EngineRelease exists at all.
        """
        ctl = self.rollouts
        status = ctl.status(key, body)
        if self.rollouts_enabled:

            def per_device(index: int) -> PodRelease | None:
                return ctl.device_release(key, body, index)

            shown = per_device(-1)  # what devices outside a batch run (at rest: the current version)
            if shown is not None:
                known = ctl.release_of(shown.version)
                source = f"EngineRelease {known.name}" if known else "rollout record"
                return _Release(
                    shown,
                    ReleaseInfo(shown.version, shown.image, source),
                    known.min_driver_version if known else None,
                    per_device,
                )
        else:
            spec = body.get("spec") or {}
            node = node_state(spec, status, [])
            selection = ctl.select(spec, status, node, ctl.releases(), (key[0], inode.pool))
            chosen = selection.target or ctl.release_of(status.get("currentVersion"))
            if chosen is not None:
                pod = PodRelease(str(chosen.version), chosen.image)
                info = ReleaseInfo(pod.version, pod.image, f"EngineRelease {chosen.name}")
                return _Release(pod, info, chosen.min_driver_version)
        if not ctl.releases():
            image = self.settings.default_engine_image
            if image:
                version = self.settings.default_engine_version
                return _Release(
                    PodRelease(version, image),
                    ReleaseInfo(version, image, "default image (GPUFLEET_DEFAULT_ENGINE_IMAGE)"),
                    None,
                )
        return None

    def pods_of(self, key: Key) -> list[PodView]:
        """This node's pods as the shared pod watch and our own writes know them."""
        return self._pods_for(key)

    def _pods_for(self, key: Key) -> list[PodView]:
        namespace = key[0]
        found = {p.name: p for p in self.caches.pods.get(key, ())}
        expected = self._expected.get(key)
        if expected:
            now = self.monotonic()
            for name, (born, view) in list(expected.items()):
                if name in found or now - born > EXPECTATION_TTL:
                    del expected[name]
                else:
                    found[name] = view
        for name, view in list(found.items()):
            fresh = self._fresh_pods.get((namespace, name))
            if fresh is None:
                continue
            if fresh.uid == view.uid and _newer(fresh.resource_version, view.resource_version):
                found[name] = fresh
            else:
                del self._fresh_pods[(namespace, name)]
        return list(found.values())

    async def _observe(
        self,
        inode: InodeView,
        node_plan: NodePlan,
        pods: list[PodView],
        node: NodeView | None,
        release: _Release | None,
    ) -> tuple[dict[int, Observation], float | None]:
        planned = {d.index for d in node_plan.devices}
        wanted = [p for p in pods if p.running and p.device_index in planned and p.uid not in self._reports]
        retry: float | None = None
        if wanted:
            fetches: list[tuple[PodView, str, Callable[[], Coroutine[Any, Any, Any]]]] = [
                (p, "/v1/hardware", functools.partial(self._report_task, inode, p)) for p in wanted
            ]
            results = await self._agent_calls(inode.key, fetches)
            for pod in wanted:
                if results.get(pod.uid) is False:
                    delay = min(
                        self.settings.readiness_recheck_seconds * 2 ** (self._report_failures[pod.uid] - 1),
                        self.settings.readiness_recheck_max_seconds,
                    )
                    retry = delay if retry is None else min(retry, delay)
        min_driver = release.min_driver_version if release else None
        labels = tuple(sorted(node.labels.items())) if node is not None else ()
        observations: dict[int, Observation] = {}
        for pod in pods:
            payload = self._reports.get(pod.uid)
            if payload is None or pod.device_index is None or pod.deleting:
                continue
            memo_key = (labels, min_driver, pod.device_index)
            cached = self._obs_cache.get(pod.uid)
            if cached is not None and cached[0] == memo_key:
                obs = cached[1]
            else:
                obs = observe(payload, pod.device_index, self.catalog, node, min_driver)
                self._obs_cache[pod.uid] = (memo_key, obs)
            observations[pod.device_index] = obs
            device = (inode.namespace, inode.name, inode.node_name, pod.device_index)
            self._last_reports[device] = (obs.device.uuid, payload)
            self._last_obs.pop(device, None)
        for planned_device in node_plan.devices:
            index = planned_device.index
            device = (inode.namespace, inode.name, inode.node_name, index)
            last = self._last_reports.get(device)
            if index in observations or last is None:
                continue
            # No pod has answered for this GPU since its last report (pod replaced, crash-looping,
            # or not recreated yet): that report still describes the device. Re-judge it against
            # the node's current labels and the release's minimum driver.
            uuid, payload = last
            memo = (labels, min_driver, uuid)
            cached_last = self._last_obs.get(device)
            if cached_last is not None and cached_last[0] == memo:
                observations[index] = cached_last[1]
                continue
            obs = replace(observe(payload, index, self.catalog, node, min_driver), carried=True)
            self._last_obs[device] = (memo, obs)
            observations[index] = obs
        written = {d.get("index"): d for d in inode.status.get("devices") or () if isinstance(d, Mapping)}
        for planned_device in node_plan.devices:
            if planned_device.index not in observations:
                remembered = _blocked_in_status(written.get(planned_device.index))
                if remembered is not None:
                    observations[planned_device.index] = remembered
        self._claim_gpus(inode.key, observations)
        return observations, retry

    def _with_agent_errors(self, node_plan: NodePlan, pods: list[PodView]) -> NodePlan:
        """Pending devices say why their agent has not reported (#21 F8: not only the INFO log)."""
        errors = {
            p.device_index: self._report_errors[p.uid]
            for p in pods
            if p.device_index is not None and p.uid in self._report_errors
        }
        if not errors:
            return node_plan
        def told(d: Any) -> Any:
            message = f"{d.verdict.message}; the agent's last answer: {errors[d.index]}"
            return replace(d, verdict=replace(d.verdict, message=message))

        devices = tuple(
            told(d) if d.index in errors and d.verdict.pending else d for d in node_plan.devices
        )
        return replace(node_plan, devices=devices)

    def _claim_gpus(self, key: Key, observations: dict[int, Observation]) -> None:
        """A GPU uuid counts for one InferenceNode device; a second claimant is blocked, naming the first."""
        claims = self._claims.setdefault(key, {})
        for index in [i for i in claims if i not in observations or not observations[i].verdict.valid]:
            self._release_claim(key, index)
        for index, obs in sorted(observations.items()):
            if not obs.verdict.valid:
                continue
            uuid = obs.device.uuid
            owner = self._uuid_owner.get(uuid)
            mine = (key, index)
            if owner is not None and owner != mine and self._claims.get(owner[0], {}).get(owner[1]) == uuid:
                (ns, name), other = owner
                message = (
                    f"GPU {uuid} is already counted for InferenceNode {ns}/{name} GPU {other}: one "
                    "physical GPU validates for one InferenceNode (same Kubernetes node named twice, "
                    "or a cloned GPU uuid)"
                )
                observations[index] = replace(obs, verdict=Verdict(False, DUPLICATE_GPU, message))
                self._release_claim(key, index)
                continue
            if claims.get(index) not in (None, uuid):
                self._release_claim(key, index)
            claims[index] = uuid
            self._uuid_owner[uuid] = mine

    def _release_claim(self, key: Key, index: int) -> None:
        uuid = self._claims.get(key, {}).pop(index, None)
        if uuid is not None and self._uuid_owner.get(uuid) == (key, index):
            del self._uuid_owner[uuid]

    async def _agent_calls(
        self, key: Key, calls: list[tuple[PodView, str, Callable[[], Coroutine[Any, Any, Any]]]]
    ) -> dict[str, Any]:
        """Run agent requests without holding this worker for their timeout (#21 F10).

        Each call runs as its own task (one per pod and path at a time); the pass waits at most
        ``AGENT_WAIT_SECONDS`` for them, which covers every healthy agent, and takes the results
        that are there. A call that outlives the wait finishes in the background and then queues
        the node again, so a hanging agent costs its node a second pass, not a worker for 5 s.
        """
        tasks: dict[str, asyncio.Task[Any]] = {}
        for pod, path, make in calls:
            slot = (pod.uid, path)
            task = self._agent_tasks.get(slot)
            if task is None:
                task = asyncio.create_task(make())
                self._agent_tasks[slot] = task
                self._background.add(task)

                def finished(t: asyncio.Task[Any], slot: tuple[str, str] = slot) -> None:
                    self._background.discard(t)
                    self._agent_tasks.pop(slot, None)
                    late = slot in self._late_calls
                    self._late_calls.discard(slot)
                    if not t.cancelled():
                        t.exception()  # retrieved: logged by the task itself
                        if late:  # no pass saw its result: bring the node back
                            self.queue.add(("inode", *key))

                task.add_done_callback(finished)
            tasks[pod.uid] = task
        if tasks:
            await asyncio.wait(set(tasks.values()), timeout=AGENT_WAIT_SECONDS)
        for pod, path, _ in calls:
            if not tasks[pod.uid].done():
                self._late_calls.add((pod.uid, path))
        done = {uid: t for uid, t in tasks.items() if t.done() and not t.cancelled()}
        return {uid: t.result() for uid, t in done.items() if t.exception() is None}

    async def _report_task(self, inode: InodeView, pod: PodView) -> bool:
        ok = await self._fetch_report(pod)
        if not ok and self._report_failures[pod.uid] == 3:
            cause = self._report_errors.get(pod.uid, "")
            self._event(
                _body_of(inode),
                "Warning",
                "HardwareReportFailed",
                f"pod {pod.name}: no hardware report after 3 attempts ({cause}); still retrying",
            )
        return ok

    async def _fetch_report(self, pod: PodView) -> bool:
        try:
            _, payload = await self._client().proxy_get(
                pod.namespace,
                pod.name,
                self.settings.agent_port,
                "/v1/hardware",
                self.settings.agent_request_timeout_seconds,
            )
            if pod.device_index is None:
                raise ReportError("pod has no device-index label")
            parse_agent_report(payload, pod.device_index)
        except (AgentUnreachable, ReportError) as exc:
            self._report_failures[pod.uid] += 1
            self._report_errors[pod.uid] = str(exc)[:300]
            self.stats["report_failures"] += 1
            logger.info("hardware report of %s/%s not available: %s", pod.namespace, pod.name, exc)
            return False
        self._reports[pod.uid] = payload
        self._report_failures.pop(pod.uid, None)
        self._report_errors.pop(pod.uid, None)
        self.stats["reports"] += 1
        return True

    async def _execute(
        self, body: Body, inode: InodeView, plan: PodPlan, pods: list[PodView]
    ) -> tuple[list[PodView], float | None]:
        client = self._client()
        by_name = {p.name: p for p in pods}
        retry: float | None = None
        ns = inode.namespace

        events: list[tuple[str, str, str]] = []
        if plan.creates:
            results = await asyncio.gather(
                *(client.create_pod(m) for m in plan.creates), return_exceptions=True
            )
            for manifest, result in zip(plan.creates, results, strict=True):
                name = manifest["metadata"]["name"]
                if isinstance(result, BaseException):
                    events.append(("Warning", "PodCreateFailed", f"pod {name}: {result}"))
                    retry = 5.0
                elif result is not None:
                    view = PodView.from_body(result)
                    by_name[name] = view
                    self._expected.setdefault(inode.key, {})[name] = (self.monotonic(), view)
                    self.stats["pods_created"] += 1
                    index = manifest["metadata"]["labels"]["gpufleet.io/device-index"]
                    events.append(("Normal", "PodCreated", f"created pod {name} for GPU {index}"))
        if plan.deletes:
            deleted = await asyncio.gather(
                *(
                    client.delete_pod(ns, d.name, by_name[d.name].uid if d.name in by_name else None)
                    for d in plan.deletes
                ),
                return_exceptions=True,
            )
            for delete, outcome in zip(plan.deletes, deleted, strict=True):
                if isinstance(outcome, BaseException):
                    events.append(("Warning", "PodDeleteFailed", f"pod {delete.name}: {outcome}"))
                    retry = 5.0
                    continue
                by_name.pop(delete.name, None)
                self.stats["pods_deleted"] += 1
                events.append(("Normal", delete.reason, f"deleted pod {delete.name}: {delete.message}"))
        self._events(body, events)
        for patch in plan.label_patches:
            self._remember_pod(by_name, await client.patch_pod_labels(ns, patch.name, patch.labels))
        for clear in plan.gate_clears:
            cond = {
                "type": READY_GATE,
                "status": "False",
                "reason": "DeviceBlocked",
                "message": clear.message,
            }
            cleared = await client.set_pod_condition(ns, clear.name, _pod_condition(cond, self.now))
            self._remember_pod(by_name, cleared)
        if plan.gate_checks:
            now = self.monotonic()
            due = []
            for check in plan.gate_checks:
                pod = by_name[check.name]
                failures, next_at = self._gate_next.get(pod.uid, (0, 0.0))
                if pod.container_ready or (failures < UNREADY_PROBES and now >= next_at):
                    due.append(pod)
                elif failures < UNREADY_PROBES:
                    retry = next_at - now if retry is None else min(retry, next_at - now)
                # else: the kubelet's readiness probe (the same /readyz) flips the container to
                # ready, and that pod event brings us back: no polling of agents that stay down.
            probes: list[tuple[PodView, str, Callable[[], Coroutine[Any, Any, Any]]]] = [
                (p, "/readyz", functools.partial(self._gate_task, p)) for p in due
            ]
            opened = await self._agent_calls(inode.key, probes)
            for pod in due:
                if pod.uid not in opened:
                    continue  # still asking in the background: its end queues the node again
                gated = opened[pod.uid]
                if gated is not None:
                    self._remember_pod(by_name, gated)
                    continue
                delay = max(0.0, self._gate_next.get(pod.uid, (0, 0.0))[1] - self.monotonic())
                retry = delay if retry is None else min(retry, delay)
        return list(by_name.values()), retry

    async def _gate_task(self, pod: PodView) -> dict[str, Any] | None:
        """Probe and open the gate; on failure, the next probe's time (back-off) is recorded."""
        gated = await self._probe_and_open_gate(pod)
        if gated is not None:
            self._fresh_pods[(pod.namespace, pod.name)] = PodView.from_body(gated)
            return gated
        failures = self._gate_next.get(pod.uid, (0, 0.0))[0] + 1
        delay = min(
            self.settings.readiness_recheck_seconds * 2 ** (failures - 1),
            self.settings.readiness_recheck_max_seconds,
        )
        self._gate_next[pod.uid] = (failures, self.monotonic() + delay)
        return None

    async def _probe_and_open_gate(self, pod: PodView) -> dict[str, Any] | None:
        client = self._client()
        how = "the kubelet's readiness probe of the node agent's /readyz passed"
        try:
            if not pod.container_ready:
                # The container is ready only once the kubelet's readiness probe (the same
                # /readyz, see podspec) answered 200: then there is nothing to ask. Otherwise ask
                # ourselves (a few times, then the container turning ready brings us back).
                how = "node agent /readyz answered 200"
                await client.proxy_get(
                    pod.namespace,
                    pod.name,
                    self.settings.agent_port,
                    "/readyz",
                    self.settings.agent_request_timeout_seconds,
                )
        except AgentUnreachable as exc:
            self.stats["readyz_not_ready"] += 1
            failures = self._gate_next.get(pod.uid, (0, 0.0))[0] + 1
            # The last probe before we wait for the kubelet's: say why, once (#21 F8).
            log = logger.info if failures == UNREADY_PROBES else logger.debug
            log("agent of %s/%s not ready (probe %d): %s", pod.namespace, pod.name, failures, exc)
            return None
        cond = {
            "type": READY_GATE,
            "status": "True",
            "reason": "EngineReady",
            "message": f"{how} and the GPU is validated",
        }
        updated = await client.set_pod_condition(pod.namespace, pod.name, _pod_condition(cond, self.now))
        self._gate_next.pop(pod.uid, None)
        self.stats["gates_opened"] += 1
        return updated

    def _remember_pod(self, by_name: dict[str, PodView], body: Body) -> None:
        view = PodView.from_body(body)
        by_name[view.name] = view
        self._fresh_pods[(view.namespace, view.name)] = view

    def _pool_context(self, inode: InodeView) -> PoolContext:
        pool_body = _first(self.caches.pools.get((inode.namespace, inode.pool)))
        k = self.settings.priority_k
        default_rep = self.settings.default_reputation_weight
        if pool_body is None:
            return PoolContext(False, 0, 0, default_rep, k)
        try:
            pool = PoolView.from_body(pool_body)
        except InvalidObject:
            return PoolContext(False, 0, 0, default_rep, k)
        members = self.caches.pool_members.get((inode.namespace, inode.pool), ())
        other = sum(m.vram_mib for m in members if m.name != inode.name)
        rep = pool.reputation_weight if pool.reputation_weight is not None else default_rep
        return PoolContext(True, other, pool.total_stake, rep, k)

    async def _write_inode_status(
        self, body: Body, inode: InodeView, status: dict[str, Any], step: Step | None
    ) -> None:
        """One write per pass: the device/pod part's keys and conditions plus the rollout's."""
        fields = {k: status[k] for k in INODE_KEYS if k != "conditions" and k in status}
        conditions = [c for c in status["conditions"] if c.get("type") in INODE_CONDITIONS]
        owned: tuple[str, ...] = INODE_CONDITIONS
        if step is not None:
            fields.update(step.fields)
            conditions += step.conditions
            if step.conditions:
                owned = (*owned, *{str(c.get("type")) for c in step.conditions})
        try:
            old, patch = await self.writer.write(INODES, body, fields, conditions=conditions, owned=owned)
        finally:
            if step is not None:
                self.rollouts.committed(inode.key)
                step.fields, step.conditions = {}, []
        if patch is None:
            return
        self.stats[f"status_writes_{INODES}"] += 1
        if "devices" in patch:
            self._events(
                body, share_events(old.get("devices"), status["devices"], self.settings.share_event_threshold)
            )
        self._pool_later(inode.namespace, inode.pool)
        written = self.writer.current(INODES, body)
        METRICS.record_inference_node(inode.namespace, inode.name, inode.pool, device_samples(written))

    # --- OperatorPool -----------------------------------------------------------------------

    async def reconcile_pool(self, key: Key) -> None:
        members = list(self.caches.pool_members.get(key, ()))
        body = _first(self.caches.pools.get(key))
        if body is None:
            if self._basis.pop(key, None) is not None:
                METRICS.forget_pool(*key)
                for member in members:
                    self.queue.add(("inode", key[0], member.name))
            return
        try:
            pool = PoolView.from_body(body)
        except InvalidObject as exc:
            if self._invalid_seen.get(("pool", f"{key[0]}/{key[1]}")) != str(exc):
                self._invalid_seen[("pool", f"{key[0]}/{key[1]}")] = str(exc)
                logger.warning("OperatorPool %s/%s: invalid spec: %s", *key, exc)
                self._event(body, "Warning", "InvalidSpec", str(exc))
            return
        vram = sum(m.vram_mib for m in members)
        devices = sum(m.devices for m in members)
        ready = sum(m.ready for m in members)
        pool = replace(pool, status=self.writer.current(POOLS, body))
        new = pool_status(pool, vram, devices, ready, self.settings.min_self_stake_bps, now=self.now)
        fields = {k: v for k, v in new.items() if k != "conditions"}
        old, patch = await self.writer.write(
            POOLS, body, fields, conditions=new["conditions"], owned=POOL_CONDITIONS
        )
        if patch is not None:
            self.stats[f"status_writes_{POOLS}"] += 1
            before = {c.get("type"): c.get("status") for c in old.get("conditions") or ()}
            for cond in new["conditions"]:
                if cond["type"] == "MinimumSelfStake" and before.get("MinimumSelfStake") != cond["status"]:
                    kind = "Normal" if cond["status"] == "True" else "Warning"
                    self._event(body, kind, cond["reason"], cond["message"])
            METRICS.record_pool(
                *key,
                self_stake_base_units=pool.self_stake,
                delegated_stake_base_units=pool.delegated_stake,
                validated_vram_mib=vram,
            )
        rep = (
            pool.reputation_weight
            if pool.reputation_weight is not None
            else self.settings.default_reputation_weight
        )
        basis = (vram, pool.total_stake, rep)
        if self._basis.get(key) != basis:
            self._basis[key] = basis
            for member in members:
                self.queue.add_after(("inode", key[0], member.name), self.settings.pool_settle_seconds)
            # Nodes that have not written a status yet are not members; they pick the basis up
            # when they do.


def _transient(exc: BaseException) -> bool:
    """An error that says the API server (or the way to it) is unwell, not that we are wrong."""
    if isinstance(exc, ApiError):
        return exc.status in (408, 429) or exc.status >= 500
    return isinstance(exc, TimeoutError | OSError | aiohttp.ClientError)


def _blocked_in_status(entry: Mapping[str, Any] | None) -> Observation | None:
    """A device that our written status shows blocked by a report (it has a GPU uuid).

    After an operator restart no report is in memory; if the device's pod cannot answer (crash
    loop, replaced) the device must not turn "pending" (routable again): it stays blocked with the
    reason we recorded until a new report says otherwise.
    """
    if not entry:
        return None
    validation = entry.get("validation") or {}
    reason = validation.get("reason")
    if not device_blocked(validation):
        return None
    try:
        device = GPUDevice(
            index=int(entry["index"]),
            uuid=str(entry["uuid"]),
            name=str(entry["product"]),
            pci_device_id=0,  # not recorded in the status; unused for a remembered verdict
            memory_total_mib=int(entry["vramMiB"]),
            compute_capability=str(entry["computeCapability"]),
            architecture=str(entry["architecture"]),
        )
    except (KeyError, TypeError, ValueError):
        return None  # not from a report (no uuid), or not ours
    engine = entry.get("engine")
    return Observation(
        device=device,
        driver_version="",
        verdict=Verdict(False, str(reason), str(validation.get("message") or "")),
        model=None,
        engine=str(engine) if engine else None,
        carried=True,
    )


def _pod_condition(cond: dict[str, Any], now: Clock) -> dict[str, Any]:
    built = make_condition(cond["type"], cond["status"], cond["reason"], cond["message"], now=now)
    built["lastProbeTime"] = None
    return built


def _body_of(inode: InodeView) -> dict[str, Any]:
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "InferenceNode",
        "metadata": {"name": inode.name, "namespace": inode.namespace, "uid": inode.uid},
    }
