"""kopf wiring for automatic engine updates. Thin: the decisions are ``gpufleet.rollout``'s.

``install(registry, ...)`` adds the rollout controller to the operator's kopf registry (the one
``handlers.make_registry`` builds). It reuses the operator's indexes for InferenceNodes, pools,
releases and nodes, adds one index of engine pod snapshots (it needs container states for crash
loops), and runs its own work queue:

- ``("inode", ns, name)``: select the release, plan the rollout step, write ``status.rollout``
  (and ``currentVersion``/``targetVersion``/``lastStableVersion`` and the ``Updating``,
  ``RolledBack``, ``ReleaseSkipped`` conditions) *before* deleting or creating pods;
- ``("release", name)``: recompute the release's failure budget from the nodes' failure records
  and write ``EngineRelease.status`` (halted, failedNodes).

Pool-wide unavailability is computed under a per-pool lock from the pod index plus the rollout
records this process wrote last (fresher than the watch), so two nodes of one pool never reserve
the same headroom.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf

from gpufleet import API_GROUP, API_VERSION
from gpufleet.conditions import Clock, Status, set_condition, utcnow
from gpufleet.controllers.kube import ApiError, KubeClient, post_event_soon
from gpufleet.controllers.workqueue import WorkQueue
from gpufleet.metrics import METRICS
from gpufleet.objects import LABEL_INODE, LABEL_MANAGED_BY, MANAGED_BY, InodeView, InvalidObject
from gpufleet.podspec import PodDevice, PodRelease, build_pod
from gpufleet.rollout.budget import HALTED, evaluate_budget
from gpufleet.rollout.plan import (
    CreatePod,
    DeletePod,
    NodeState,
    Plan,
    PodView,
    PoolCapacity,
    node_unavailable,
)
from gpufleet.rollout.plan import plan_rollout as plan_step
from gpufleet.rollout.report import progress, rollout_conditions
from gpufleet.rollout.selection import ReleaseView, Selection, select_release
from gpufleet.rollout.state import FailureRecord, Phase, RolloutStatus
from gpufleet.rollout.views import (
    approved_major,
    node_engines,
    node_hardware,
    node_state,
    pod_view,
    pool_max_unavailable,
    release_view,
)
from gpufleet.settings import OperatorSettings

logger = logging.getLogger("gpufleet.rollout")

Body = Mapping[str, Any]
Key = tuple[str, str]
INODES = "inferencenodes"
VERSION_KEYS = ("currentVersion", "targetVersion", "lastStableVersion")


def _first(values: Iterable[Any] | None) -> Any:
    for value in values or ():
        return value
    return None


def _rv(body: Body | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


#: Condition types this controller writes (a change to them by anyone else must be looked at).
OWN_CONDITIONS = ("Updating", "RolledBack", "ReleaseSkipped")


def _signature(body: Body) -> str:
    """What of an InferenceNode the rollout reads or writes; other status churn is not a reason to run."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    conditions = [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or ()
        if c.get("type") in OWN_CONDITIONS
    ]
    devices = sorted(
        (d.get("index"), d.get("engine"), (d.get("validation") or {}).get("valid"))
        for d in status.get("devices") or ()
        if isinstance(d, Mapping)
    )
    return json.dumps(
        [
            meta.get("generation"),
            meta.get("deletionTimestamp"),
            body.get("spec"),
            status.get("rollout"),
            [status.get(k) for k in VERSION_KEYS],
            conditions,
            devices,
        ],
        sort_keys=True,
        default=str,
    )


def _overlay(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Status fields as they read back once written (a merge patch drops the nulls)."""
    out = dict(fields)
    if isinstance(out.get("rollout"), Mapping):
        out["rollout"] = {k: v for k, v in out["rollout"].items() if v is not None}
    return out


def _status_value(text: str) -> Status:
    if text == "True":
        return "True"
    if text == "False":
        return "False"
    return "Unknown"


def _snapshot(body: Body) -> dict[str, Any]:
    return {
        "metadata": dict(body.get("metadata") or {}),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


@dataclass
class Caches:
    """Read-only views (kopf indexes in production, dicts in tests)."""

    inodes: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    pods: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    pools: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    releases: Mapping[Any, Collection[Body]] = field(default_factory=dict)
    nodes: Mapping[Any, Collection[Any]] = field(default_factory=dict)


@dataclass
class _Written:
    """Status fields this process wrote, with the resourceVersion the write produced."""

    rv: int
    fields: dict[str, Any]


class RolloutController:
    def __init__(
        self,
        settings: OperatorSettings | None = None,
        *,
        workers: int = 8,
        now: Clock = utcnow,
    ) -> None:
        self.settings = settings or OperatorSettings()
        self.now = now
        self.workers = workers
        self.queue = WorkQueue()
        self.caches = Caches()
        self.client: KubeClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._written: dict[Key, _Written] = {}
        self._inflight: dict[
            Key, dict[str, Any]
        ] = {}  # a status write on its way (decided, not yet sent back)
        self._release_written: dict[str, _Written] = {}
        self._pool_locks: dict[Key, asyncio.Lock] = {}
        self._waiting: dict[Key, set[Key]] = {}
        self._ready_seen: dict[str, datetime | None] = {}  # pod uid -> first seen ready (None: seen unready)
        self._errors: dict[Hashable, int] = {}
        self.stats: dict[str, int] = {}
        self._node_labels: dict[str, tuple[tuple[str, str], ...]] = {}
        # Per node: (devices, unavailable-or-reserved devices), recomputed only after a change.
        self._down: dict[Key, tuple[int, int]] = {}
        self._down_dirty: set[Key] = set()
        self._views: dict[str, tuple[str, PodView | None]] = {}  # pod uid -> (resourceVersion, view)
        self._pool_of: dict[Key, Key] = {}
        self._facts: dict[str, tuple[Any, ...] | None] = {}  # pod uid -> what the planner reads of it
        self._release_epoch = 0
        self._release_cache: tuple[int, dict[str, ReleaseView]] | None = None
        self._members: dict[Key, set[Key]] = {}
        self._seen: dict[Key, str] = {}  # the last InferenceNode state a reconcile was queued for

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, client: KubeClient) -> None:
        self.client = client
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"gpufleet-rollout-{i}") for i in range(self.workers)
            ]
        for key in list(self.caches.inodes):
            self.queue.add(("inode", *key))
        for name in list(self.caches.releases):
            self.queue.add(("release", name))

    async def stop(self) -> None:
        self.queue.close()
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._background.clear()
        if self.client is not None:
            await self.client.close()

    @property
    def idle(self) -> bool:
        return self.queue.idle

    # --- event intake (cheap, synchronous) ------------------------------------------------

    def inode_changed(self, namespace: str, name: str, body: Body | None, deleted: bool) -> None:
        key = (namespace, name)
        self._down_dirty.add(key)
        old_pool = self._pool_of.pop(key, None)
        if old_pool is not None:
            self._members.get(old_pool, set()).discard(key)
        if deleted or body is None:
            self._written.pop(key, None)
            self._seen.pop(key, None)
            METRICS.forget_inference_node(namespace, name)
            self.queue.add(("inode", namespace, name))
            return
        pool = (namespace, str(((body.get("spec") or {}).get("poolRef") or {}).get("name") or ""))
        self._pool_of[key] = pool
        self._members.setdefault(pool, set()).add(key)
        signature = _signature(body)
        if self._seen.get(key) == signature:
            return  # the echo of our own write, or a change to fields the rollout does not read
        self._seen[key] = signature
        self.queue.add(("inode", namespace, name))

    def pod_changed(self, namespace: str, inode: str, body: Body, deleted: bool) -> None:
        uid = str((body.get("metadata") or {}).get("uid") or "")
        if deleted:
            self._ready_seen.pop(uid, None)
            self._views.pop(uid, None)
            self._facts.pop(uid, None)
        elif uid:
            view = pod_view(body)
            if view is not None and not view.ready:
                self._ready_seen[uid] = None
            elif view is not None and self._ready_seen.get(uid, 0) is None:
                self._ready_seen[uid] = self.now()  # watched it turn ready: exact time
            facts = (
                None
                if view is None
                else (
                    view.device_index,
                    view.image,
                    view.version,
                    view.ready,
                    view.crash_looping,
                    view.terminating,
                )
            )
            if self._facts.get(uid, ()) == facts:
                return  # e.g. Pending -> ContainerCreating: nothing the rollout decides on
            self._facts[uid] = facts
        if inode:
            self._down_dirty.add((namespace, inode))
            self.queue.add(("inode", namespace, inode))

    def releases_changed(self, name: str) -> None:
        self._release_epoch += 1
        self.queue.add(("release", name))
        for key in list(self.caches.inodes):
            self.queue.add(("inode", *key))

    def pool_changed(self, namespace: str, name: str) -> None:
        for key in self._pool_members((namespace, name)):
            self.queue.add(("inode", *key))

    def node_changed(self, node_name: str, labels: Mapping[str, str] | None) -> None:
        """Only the driver/CUDA labels matter to release selection; other churn is ignored."""
        relevant = tuple(
            sorted((k, v) for k, v in (labels or {}).items() if k.startswith("nvidia.com/cuda."))
        )
        if self._node_labels.get(node_name) == relevant:
            return
        self._node_labels[node_name] = relevant
        for key, bodies in list(self.caches.inodes.items()):
            body = _first(bodies)
            if body is not None and (body.get("spec") or {}).get("nodeName") == node_name:
                self.queue.add(("inode", *key))

    # --- workers ---------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                if key[0] == "inode":  # type: ignore[index]
                    with METRICS.time_reconcile("rollout"):
                        await self.reconcile_inode((key[1], key[2]))  # type: ignore[index]
                else:
                    await self.reconcile_release(key[1])  # type: ignore[index]
                self._errors.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt = self._errors[key] = self._errors.get(key, 0) + 1
                delay = min(2.0**attempt * 0.25, 30.0)
                logger.warning(
                    "rollout reconcile of %s failed (attempt %d, retry in %.1fs): %s",
                    key,
                    attempt,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, ApiError),
                )
                self.queue.add_after(key, delay)
            finally:
                self.queue.done(key)

    def _client(self) -> KubeClient:
        if self.client is None:
            raise RuntimeError(
                "the rollout controller has no API client: start() it from the operator's startup"
            )
        return self.client

    def _event(self, body: Body, type_: str, reason: str, message: str) -> None:
        post_event_soon(self._client(), body, type_, reason, message, background=self._background)

    # --- views over the caches --------------------------------------------------------------

    def _status(self, key: Key, body: Body) -> dict[str, Any]:
        """The node's status as this process last knows it: its own write wins until echoed."""
        status = dict(body.get("status") or {})
        written = self._written.get(key)
        if written is not None:
            if _rv(body) >= written.rv:
                del self._written[key]
            else:
                status.update(written.fields)
        status.update(self._inflight.get(key) or {})
        return status

    def _release_status(self, name: str, body: Body) -> dict[str, Any]:
        status = dict(body.get("status") or {})
        written = self._release_written.get(name)
        if written is not None:
            if _rv(body) >= written.rv:
                del self._release_written[name]
            else:
                status.update(written.fields)
        return status

    def _releases(self) -> dict[str, ReleaseView]:
        if self._release_cache is not None and self._release_cache[0] == self._release_epoch:
            return self._release_cache[1]
        epoch = self._release_epoch
        views: dict[str, ReleaseView] = {}
        for name, bodies in list(self.caches.releases.items()):
            body = _first(bodies)
            if body is None:
                continue
            try:
                views[str(name)] = release_view({**body, "status": self._release_status(str(name), body)})
            except ValueError as exc:
                logger.debug("ignoring release: %s", exc)
        self._release_cache = (epoch, views)
        return views

    def _pods(self, key: Key) -> list[PodView]:
        out = []
        for body in self.caches.pods.get(key, ()):
            meta = body.get("metadata") or {}
            uid = str(meta.get("uid") or "")
            seen = self._ready_seen.get(uid)
            rv = f"{meta.get('resourceVersion')}/{seen}"
            memo = self._views.get(uid)
            if memo is not None and memo[0] == rv:
                view = memo[1]
            else:
                view = pod_view(body, first_seen_ready=seen)
                if uid:
                    self._views[uid] = (rv, view)
            if view is None:
                continue
            if view.ready and uid and uid not in self._ready_seen:
                # First sight of an already-ready pod (e.g. after a restart): trust its conditions.
                self._ready_seen[uid] = view.ready_since
            out.append(view)
        return out

    def _pool_members(self, pool: Key) -> list[Key]:
        if not self._members and self.caches.inodes:
            for key, bodies in list(self.caches.inodes.items()):  # before any event (tests, restarts)
                body = _first(bodies)
                if body is not None:
                    self.inode_changed(key[0], key[1], body, deleted=False)
        return list(self._members.get(pool, ()))

    def _node_down(self, key: Key) -> tuple[int, int]:
        """(devices, unavailable or reserved) of a node, recomputed only after one of its events."""
        cached = self._down.get(key)
        if cached is not None and key not in self._down_dirty:
            return cached
        self._down_dirty.discard(key)
        body = _first(self.caches.inodes.get(key))
        if body is None:
            self._down.pop(key, None)
            return (0, 0)
        pods = self._pods(key)
        state = node_state(body.get("spec") or {}, self._status(key, body), pods)
        value = (len(state.serving), len(node_unavailable(state.serving, pods, state.rollout)))
        self._down[key] = value
        return value

    def _pool_capacity(self, pool: Key, me: Key, my_devices: int) -> PoolCapacity:
        pool_body = _first(self.caches.pools.get(pool))
        total = my_devices
        elsewhere = 0
        for key in self._pool_members(pool):
            if key == me:
                continue
            devices, down = self._node_down(key)
            total += devices
            elsewhere += down
        spec = (pool_body or {}).get("spec") or {}
        return PoolCapacity(total, pool_max_unavailable(spec), elsewhere)

    # --- InferenceNode ------------------------------------------------------------------------

    async def reconcile_inode(self, key: Key) -> None:
        body = _first(self.caches.inodes.get(key))
        if body is None:
            self._written.pop(key, None)
            return
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        pool_name = str((spec.get("poolRef") or {}).get("name") or "")
        pool = (key[0], pool_name)
        lock = self._pool_locks.setdefault(pool, asyncio.Lock())
        async with lock:
            # Read again under the lock: a body captured before waiting may predate our last write.
            body = _first(self.caches.inodes.get(key))
            if body is None:
                return
            spec = body.get("spec") or {}
            status = self._status(key, body)
            pods = self._pods(key)
            node = node_state(spec, status, pods)
            releases = self._releases()
            selection = self._select(spec, status, node, releases, pool)
            active = releases.get(node.rollout.release or "")
            capacity = self._pool_capacity(pool, key, len(node.serving))
            plan = plan_step(
                node, pods, capacity, target=selection.target, active_release=active, now=self.now()
            )
            before = len(node_unavailable(node.serving, pods, node.rollout))
            fields = self._fields(body, status, node, plan, selection)
            if fields:
                self._inflight[key] = _overlay(fields)
            # What other nodes of the pool count for this one from now on (reservations included).
            # Recorded before the lock is released; the write itself need not hold up the pool.
            self._down[key] = (len(node.serving), len(plan.unavailable_devices))
            self._down_dirty.discard(key)
        if fields:
            await self._send(key, fields)
        if plan.rollout.reason == "WaitingForCapacity":
            self._waiting.setdefault(pool, set()).add(key)
        if len(plan.unavailable_devices) < before or plan.rollout.phase in (
            Phase.SUCCEEDED,
            Phase.ROLLED_BACK,
        ):
            for other in self._waiting.pop(pool, set()) - {key}:
                self.queue.add(("inode", *other))
        await self._act(key, body, status, plan, pods)
        for event in plan.events:
            self._event(body, event.type, event.reason, event.message)
        if plan.failure is not None and plan.failure.release:
            self.queue.add(("release", plan.failure.release))
        if plan.outcome is not None:
            failure = plan.rollout.failure
            reason = failure.reason.value if plan.outcome.result == "rolled_back" and failure else None
            METRICS.record_rollout_result(key[0], plan.outcome.result, plan.outcome.duration_seconds, reason)
        METRICS.record_rollout(
            key[0],
            key[1],
            state=plan.rollout.phase.value,
            current_version=plan.current_version or "",
            target_version=plan.target_version or "",
            updated_devices=progress(plan.rollout, len(node.devices)),
            total_devices=len(node.devices),
        )
        if plan.requeue_after is not None:
            self.queue.add_after(("inode", *key), plan.requeue_after + 0.01)

    def _select(
        self, spec: Body, status: Body, node: NodeState, releases: Mapping[str, ReleaseView], pool: Key
    ) -> Selection:
        release = spec.get("release") or {}
        pool_body = _first(self.caches.pools.get(pool))
        node_view = _first(self.caches.nodes.get(spec.get("nodeName")))
        labels = getattr(node_view, "labels", None)
        if labels is None and isinstance(node_view, Mapping):
            labels = (node_view.get("metadata") or {}).get("labels")
        try:
            return select_release(
                releases.values(),
                current_version=node.current_version,
                channel=None if release.get("version") else release.get("channel"),
                pinned_version=release.get("version"),
                automatic=node.policy.automatic,
                approved_major=approved_major(spec, (pool_body or {}).get("spec")),
                hardware=node_hardware(labels, node_engines(status)),
                failure=node.rollout.failure,
            )
        except ValueError as exc:
            return Selection(None, (), "InvalidReleaseSelector", str(exc))

    def _fields(
        self, body: Body, status: dict[str, Any], node: NodeState, plan: Plan, selection: Selection
    ) -> dict[str, Any]:
        """The status fields that change: the record, the versions, our three conditions."""
        fields: dict[str, Any] = {}
        if plan.rollout != node.rollout:
            # Every field, nulls included: a merge patch removes keys only when told to.
            fields["rollout"] = plan.rollout.model_dump(by_alias=True, mode="json")
        versions = {
            "currentVersion": plan.current_version,
            "targetVersion": plan.target_version,
            "lastStableVersion": plan.last_stable_version,
        }
        for name, value in versions.items():
            if status.get(name) != value:
                fields[name] = value
        conditions = list(status.get("conditions") or ())
        generation = (body.get("metadata") or {}).get("generation")
        for cond in rollout_conditions(plan.rollout, selection):
            conditions = set_condition(
                conditions,
                cond.type,
                _status_value(cond.status),
                cond.reason,
                cond.message,
                observed_generation=generation,
                now=self.now,
            )
        if conditions != list(status.get("conditions") or ()):
            fields["conditions"] = conditions
        return fields

    async def _send(self, key: Key, fields: dict[str, Any]) -> None:
        """Write the record; pods are only touched after this succeeded."""
        try:
            result = await self._client().patch_status(INODES, key[0], key[1], fields)
        except BaseException:
            self._inflight.pop(key, None)
            self._down_dirty.add(key)
            raise
        previous = self._written.get(key)
        # Until the watch catches up, the overlay must hold every write since, not just this one.
        merged = {**previous.fields, **_overlay(fields)} if previous is not None else _overlay(fields)
        self._written[key] = _Written(_rv(result), merged)
        self._inflight.pop(key, None)
        if isinstance(result, Mapping) and result:
            self._seen[key] = _signature(result)
        self.stats["status_writes"] = self.stats.get("status_writes", 0) + 1

    async def _act(self, key: Key, body: Body, status: Body, plan: Plan, pods: list[PodView]) -> None:
        if not plan.actions:
            return
        client = self._client()
        uids = {
            str((p.get("metadata") or {}).get("name")): (p.get("metadata") or {}).get("uid")
            for p in self.caches.pods.get(key, ())
        }
        jobs: list[Awaitable[Any]] = []
        for action in plan.actions:
            if isinstance(action, DeletePod):
                jobs.append(client.delete_pod(key[0], action.name, uids.get(action.name)))
            elif isinstance(action, CreatePod):
                manifest = self._manifest(body, status, action)
                if manifest is not None:
                    jobs.append(client.create_pod(manifest))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("rollout of %s/%s: pod write failed: %s", *key, result)
                self.queue.add_after(("inode", *key), 1.0)

    def _manifest(self, body: Body, status: Body, action: CreatePod) -> dict[str, Any] | None:
        try:
            inode = InodeView.from_body(body)
        except InvalidObject as exc:
            logger.warning("cannot build pod: %s", exc)
            return None
        entry: Mapping[str, Any] = next(
            (d for d in status.get("devices") or () if d.get("index") == action.device_index), {}
        )
        validation = entry.get("validation") or {}
        device = PodDevice(
            index=action.device_index,
            routable=bool(validation.get("valid", False)),
            product=entry.get("product"),
        )
        return build_pod(inode, device, PodRelease(action.version, action.image), self.settings)

    # --- EngineRelease ---------------------------------------------------------------------------

    def _failures(self) -> dict[str, FailureRecord]:
        failures = {}
        for key, bodies in list(self.caches.inodes.items()):
            body = _first(bodies)
            if body is None:
                continue
            record = RolloutStatus.from_status(self._status(key, body).get("rollout")).failure
            if record is not None:
                failures[f"{key[0]}/{key[1]}"] = record
        return failures

    async def reconcile_release(self, name: str) -> None:
        body = _first(self.caches.releases.get(name))
        if body is None:
            self._release_written.pop(name, None)
            METRICS.forget_release(name)
            return
        spec = body.get("spec") or {}
        status = self._release_status(name, body)
        version = str(spec.get("version") or "")
        failures = {n: f for n, f in self._failures().items() if f.release in (None, name)}
        decision = evaluate_budget(
            version=version,
            failure_budget=int(spec.get("failureBudget") or 3),
            resume_count=int(spec.get("resumeCount") or 0),
            old_status=status,
            failures=failures,
            now=self.now(),
        )
        fields = decision.status_fields()
        cstatus, reason, message = decision.condition
        conditions = set_condition(
            status.get("conditions") or (),
            HALTED,
            _status_value(cstatus),
            reason,
            message,
            observed_generation=(body.get("metadata") or {}).get("generation"),
            now=self.now,
        )
        fields["conditions"] = conditions
        fields["observedGeneration"] = (body.get("metadata") or {}).get("generation")
        changed = {k: v for k, v in fields.items() if status.get(k) != v}
        METRICS.set_release_halted(name, version, decision.halted)
        if not changed:
            return
        path = f"/apis/{API_GROUP}/{API_VERSION}/enginereleases/{name}/status"
        _, result = await self._client().request(
            "PATCH",
            path,
            body={"status": changed},
            content_type="application/merge-patch+json",
            what=f"status of EngineRelease {name}",
        )
        previous = self._release_written.get(name)
        merged = {**previous.fields, **changed} if previous is not None else changed
        self._release_written[name] = _Written(_rv(result if isinstance(result, Mapping) else None), merged)
        self._release_epoch += 1
        if decision.newly_halted:
            self._event(body, "Warning", "ReleaseHalted", message)
            METRICS.record_rollout_result("cluster", "halted", 0.0, "FailureBudgetExhausted")
        elif decision.resumed:
            self._event(body, "Normal", "ReleaseResumed", message)
        if decision.newly_halted or decision.resumed or "halted" in changed:
            for key in list(self.caches.inodes):
                self.queue.add(("inode", *key))


def install(
    registry: kopf.OperatorRegistry,
    *,
    settings: OperatorSettings | None = None,
    connection: Callable[[], kopf.ConnectionInfo],
    controller: RolloutController | None = None,
) -> RolloutController:
    """Add the rollout controller to an operator registry built by ``handlers.make_registry``.

    It reads that registry's ``inode_bodies``, ``pool_bodies``, ``release_bodies`` and
    ``gpu_nodes`` indexes and adds ``rollout_pods``.
    """
    ctl = controller or RolloutController(settings)
    inodes = (API_GROUP, API_VERSION, "inferencenodes")
    managed = {LABEL_MANAGED_BY: MANAGED_BY}

    @kopf.index("v1", "pods", labels=managed, id="rollout_pods", registry=registry)
    async def rollout_pods(**kw: Any) -> dict[Any, Any] | None:
        inode = kw["labels"].get(LABEL_INODE)
        return {(kw["namespace"], inode): _snapshot(kw["body"])} if inode else None

    @kopf.on.startup(id="rollout_start", registry=registry)
    async def rollout_start(**kw: Any) -> None:
        # The core publishes its caches on the memo in both index modes; with
        # GPUFLEET_INDEXES=local there are no kopf index kwargs for them.
        if "inode_bodies" in kw:
            source: Mapping[str, Any] = kw
        else:
            core: Any = getattr(kw["memo"], "gpufleet_caches", None)
            if core is None:
                raise RuntimeError(
                    "the rollout controller needs the core's caches: install it into a registry "
                    "built by handlers.make_registry"
                )
            source = {
                "inode_bodies": core.inodes,
                "pool_bodies": core.pools,
                "release_bodies": core.releases,
                "gpu_nodes": core.nodes,
            }
        ctl.caches = Caches(
            inodes=source["inode_bodies"],
            pods=kw["rollout_pods"],
            pools=source["pool_bodies"],
            releases=source["release_bodies"],
            nodes=source["gpu_nodes"],
        )
        ctl.start(
            KubeClient(
                connection(),
                concurrency=ctl.settings.api_concurrency,
                timeout=ctl.settings.api_request_timeout_seconds,
            )
        )

    @kopf.on.cleanup(id="rollout_stop", registry=registry)
    async def rollout_stop(**_: Any) -> None:
        await ctl.stop()

    @kopf.on.event(*inodes, id="rollout_inode_event", registry=registry)
    async def rollout_inode_event(**kw: Any) -> None:
        ctl.inode_changed(kw["namespace"], kw["name"], kw["body"], deleted=kw["type"] == "DELETED")

    @kopf.on.event("v1", "pods", labels=managed, id="rollout_pod_event", registry=registry)
    async def rollout_pod_event(**kw: Any) -> None:
        inode = str(kw["labels"].get(LABEL_INODE) or "")
        ctl.pod_changed(kw["namespace"], inode, kw["body"], deleted=kw["type"] == "DELETED")

    @kopf.on.event(API_GROUP, API_VERSION, "enginereleases", id="rollout_release_event", registry=registry)
    async def rollout_release_event(**kw: Any) -> None:
        ctl.releases_changed(kw["name"])

    @kopf.on.event(API_GROUP, API_VERSION, "operatorpools", id="rollout_pool_event", registry=registry)
    async def rollout_pool_event(**kw: Any) -> None:
        ctl.pool_changed(kw["namespace"], kw["name"])

    @kopf.on.event("v1", "nodes", id="rollout_node_event", registry=registry)
    async def rollout_node_event(**kw: Any) -> None:
        ctl.node_changed(kw["name"], kw["labels"])

    return ctl
