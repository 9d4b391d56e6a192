"""The rollout step of the InferenceNode pass, and the EngineRelease (failure budget) controller.

Thin: the decisions are ``gpufleet.rollout``'s. This is not a controller of its own any more
(issue #14): it has no queue, no workers, no pod cache and no status writes of its own. The one
InferenceNode reconciler (``controllers.reconciler``) calls ``step`` in every pass of a node,
before it plans the node's pods, and

* ``step`` selects the release (``gpufleet.rollout.selection.select_release``, the ONE selector:
  channels, pins, driver gates, halts, failures, approvals) and plans the rollout; its status
  fields (``rollout``, ``currentVersion``/``targetVersion``/``lastStableVersion``, conditions
  ``Updating``/``RolledBack``/``ReleaseSkipped``) go through the shared ``StatusWriter``: at once
  when pods are to be deleted (the record is written *before* any pod is touched), else with the
  core's write of the same pass;
* the core then creates every missing pod with ``device_release``: the version and image the
  rollout record names for that device (also for new nodes, replacements and blocked GPUs);
* ``reconcile_release`` recomputes an EngineRelease's failure budget (``status.halted``,
  ``failedNodes``, condition ``Halted``), queued as ``("release", "", name)``.

Pool-wide unavailability is computed under a per-pool lock from the shared pod cache plus the
rollout records this process decided last, so two nodes of one pool never reserve the same
headroom.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from gpufleet.conditions import Clock, Status, set_condition, utcnow
from gpufleet.controllers.runtime.overlay import StatusWriter
from gpufleet.controllers.runtime.workqueue import WorkQueue
from gpufleet.metrics import METRICS
from gpufleet.objects import NodeView
from gpufleet.objects import PodView as CorePod
from gpufleet.podspec import PodRelease
from gpufleet.rollout.budget import HALTED, counts_against, evaluate_budget
from gpufleet.rollout.plan import (
    DeletePod,
    NodeState,
    Plan,
    PodView,
    PoolCapacity,
    device_image,
    node_unavailable,
)
from gpufleet.rollout.plan import plan_rollout as plan_step
from gpufleet.rollout.report import RELEASE_SKIPPED, ROLLED_BACK, UPDATING, progress, rollout_conditions
from gpufleet.rollout.selection import LEAVING_HALTED, ReleaseView, Selection, select_release
from gpufleet.rollout.state import ACTIVE_PHASES, FailureRecord, Phase, RolloutStatus
from gpufleet.rollout.views import (
    approved_major,
    node_engines,
    node_hardware,
    node_state,
    pod_view_of,
    pool_max_unavailable,
    release_view,
)
from gpufleet.settings import OperatorSettings


class Host(Protocol):
    """What the rollout step needs of the reconciler it runs in (no import of it: no cycle)."""

    settings: OperatorSettings
    caches: Any
    writer: StatusWriter
    queue: WorkQueue

    def pods_of(self, key: Key) -> list[CorePod]: ...

    def event(self, body: Body, type_: str, reason: str, message: str) -> None: ...

    def invalid_release(self, body: Body, message: str) -> None: ...

logger = logging.getLogger("gpufleet.rollout")

Body = Mapping[str, Any]
Key = tuple[str, str]
INODES = "inferencenodes"
RELEASES = "enginereleases"

#: Condition types the rollout step owns on an InferenceNode.
OWN_CONDITIONS = (UPDATING, ROLLED_BACK, RELEASE_SKIPPED)
#: Top-level InferenceNode status keys the rollout step owns.
OWN_KEYS = ("rollout", "currentVersion", "targetVersion", "lastStableVersion")


def _first(values: Iterable[Any] | None) -> Any:
    for value in values or ():
        return value
    return None


def _status_value(text: str) -> Status:
    if text == "True":
        return "True"
    if text == "False":
        return "False"
    return "Unknown"


def _condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


rollout_pod = pod_view_of  # the one derivation (gpufleet.rollout.views)


@dataclass
class Step:
    """What the rollout decided in one pass of a node."""

    plan: Plan
    selection: Selection
    node: NodeState
    #: Status fields still to write (with the core's write of this pass); empty once written.
    fields: dict[str, Any]
    conditions: list[dict[str, Any]]
    unavailable_before: int
    pool: Key

    @property
    def deletes(self) -> list[DeletePod]:
        return [a for a in self.plan.actions if isinstance(a, DeletePod)]


class RolloutController:
    """Rollout decisions inside the InferenceNode pass, plus the EngineRelease budget."""

    def __init__(self, host: Host, *, now: Clock = utcnow) -> None:
        self.host = host
        self.now = now
        self._pool_locks: dict[Key, asyncio.Lock] = {}
        self._waiting: dict[Key, set[Key]] = {}
        self._ready_seen: dict[str, datetime | None] = {}  # pod uid -> first seen ready (None: unready)
        self._views: dict[str, tuple[str, PodView]] = {}  # pod uid -> (resourceVersion/seen, view)
        # Per node: (devices, unavailable-or-reserved devices), recomputed only after a change.
        self._down: dict[Key, tuple[int, int]] = {}
        self._down_dirty: set[Key] = set()
        self._pool_of: dict[Key, Key] = {}
        self._members: dict[Key, set[Key]] = {}
        self._inflight: dict[Key, dict[str, Any]] = {}  # decided, not yet written
        self._release_epoch = 0
        self._release_cache: tuple[int, dict[str, ReleaseView]] | None = None
        self._pool_generation: dict[Key, object] = {}
        # The failure-budget ledger, per node: the release it is replacing pods of right now
        # (batch started, not finished), and its last failure record.
        self._in_flight: dict[Key, str] = {}
        self._failed: dict[Key, FailureRecord] = {}

    @property
    def settings(self) -> OperatorSettings:
        return self.host.settings

    # --- event intake (cheap, synchronous; called by the reconciler) ------------------------

    def inode_changed(self, namespace: str, name: str, body: Body | None, deleted: bool) -> None:
        key = (namespace, name)
        self._down_dirty.add(key)
        old_pool = self._pool_of.pop(key, None)
        if old_pool is not None:
            self._members.get(old_pool, set()).discard(key)
        if deleted or body is None:
            self._inflight.pop(key, None)
            self._down.pop(key, None)
            self._in_flight.pop(key, None)
            return
        pool = (namespace, str(((body.get("spec") or {}).get("poolRef") or {}).get("name") or ""))
        self._pool_of[key] = pool
        self._members.setdefault(pool, set()).add(key)
        with contextlib.suppress(ValueError):  # a hand-edited record: the node's own pass reports it
            self._ledger(key, RolloutStatus.from_status((body.get("status") or {}).get("rollout")))

    def pod_changed(self, namespace: str, inode: str, uid: str, view: CorePod | None) -> None:
        if view is None:
            self._ready_seen.pop(uid, None)
            self._views.pop(uid, None)
        else:
            ready = rollout_pod(view).ready
            if not ready:
                self._ready_seen[uid] = None
            elif self._ready_seen.get(uid, 0) is None:
                self._ready_seen[uid] = self.now()  # watched it turn ready: exact time
        if inode:
            self._down_dirty.add((namespace, inode))

    def releases_changed(self) -> None:
        self._release_epoch += 1

    def pool_changed(self, namespace: str, name: str, body: Body | None) -> list[Key]:
        """Members to re-plan when the pool's spec changed (its update policy or approvals)."""
        key = (namespace, name)
        generation = (
            None if body is None else ((body.get("metadata") or {}).get("generation"), body.get("spec"))
        )
        if self._pool_generation.get(key) == generation:
            return []
        self._pool_generation[key] = generation
        return self._pool_members(key)

    def _ledger(self, key: Key, rollout: RolloutStatus) -> None:
        # Unproven: replacing pods of the release, and no batch of it has completed yet.
        replacing = rollout.phase == Phase.PROGRESSING and rollout.batch > 0 and not rollout.updated_devices
        if replacing and rollout.release:
            self._in_flight[key] = rollout.release
        else:
            self._in_flight.pop(key, None)
        before = self._failed.get(key)
        if rollout.failure is not None:
            self._failed[key] = rollout.failure
        else:
            self._failed.pop(key, None)
        if self._failed.get(key) != before:
            self._release_epoch += 1  # the in-process halt (see releases()) may change

    def _failures_of(self, release: ReleaseView) -> int:
        return sum(
            1
            for record in self._failed.values()
            if record.release in (None, release.name)
            and counts_against(record, version=str(release.version), resume_count=release.resume_count)
        )

    def release_slots(self, me: Key, release: ReleaseView | None) -> int | None:
        """Nodes that may still start replacing pods of ``release`` (see ``PoolCapacity``).

        Unlimited while the release has not failed anywhere (a good release rolls out at the
        pace the unavailability limits allow); after its first failure, the budget left minus
        the *unproven* nodes in flight (replacing pods, no batch completed yet: each may still
        fail). docs/rollouts.md states what this bounds.
        """
        if release is None:
            return None
        failed = self._failures_of(release)
        if failed == 0:
            return None
        busy = sum(1 for key, name in self._in_flight.items() if name == release.name and key != me)
        return release.failure_budget - failed - busy

    # --- views over the shared caches -------------------------------------------------------

    def status(self, key: Key, body: Body) -> dict[str, Any]:
        """The node's status as this process knows it: its writes, then what it decided since."""
        status = self.host.writer.current(INODES, body)
        status.update(self._inflight.get(key) or {})
        return status

    def releases(self) -> dict[str, ReleaseView]:
        if self._release_cache is not None and self._release_cache[0] == self._release_epoch:
            return self._release_cache[1]
        epoch = self._release_epoch
        views: dict[str, ReleaseView] = {}
        for name, bodies in list(self.host.caches.releases.items()):
            body = _first(bodies)
            if body is None:
                continue
            try:
                view = release_view({**body, "status": self.host.writer.current(RELEASES, body)})
            except ValueError as exc:
                self.host.invalid_release(body, str(exc))
                continue
            if not view.halted and self._failures_of(view) >= view.failure_budget:
                # The budget is spent as this process counts it: halt here at once, before the
                # EngineRelease status round-trip, so nodes in flight roll back (ReleaseHalted,
                # not counted) instead of failing it one more time each.
                view = replace(view, halted=True)
            views[str(name)] = view
        self._release_cache = (epoch, views)
        return views

    def pods(self, key: Key) -> list[PodView]:
        out = []
        for pod in self.host.pods_of(key):
            if pod.device_index is None:
                continue
            seen = self._ready_seen.get(pod.uid)
            memo_key = f"{pod.resource_version}/{seen}"
            memo = self._views.get(pod.uid)
            if memo is not None and memo[0] == memo_key:
                view = memo[1]
            else:
                view = rollout_pod(pod, first_seen_ready=seen)
                if pod.uid:
                    self._views[pod.uid] = (memo_key, view)
            if view.ready and pod.uid and pod.uid not in self._ready_seen:
                # First sight of an already-ready pod (e.g. after a restart): trust its conditions.
                self._ready_seen[pod.uid] = view.ready_since
            out.append(view)
        return out

    def _pool_members(self, pool: Key) -> list[Key]:
        if not self._members and self.host.caches.inodes:
            for key, bodies in list(self.host.caches.inodes.items()):  # before any event (tests, restarts)
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
        body = _first(self.host.caches.inodes.get(key))
        if body is None:
            self._down.pop(key, None)
            return (0, 0)
        pods = self.pods(key)
        state = node_state(body.get("spec") or {}, self.status(key, body), pods)
        value = (len(state.serving), len(node_unavailable(state.serving, pods, state.rollout)))
        self._down[key] = value
        return value

    def _pool_capacity(self, pool: Key, me: Key, my_devices: int) -> PoolCapacity:
        pool_body = _first(self.host.caches.pools.get(pool))
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

    # --- the step ----------------------------------------------------------------------------

    async def step(self, key: Key, body: Body) -> Step | None:
        """Plan this node's rollout; writes the record first when pods are to be deleted."""
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return None
        pool = (key[0], str((spec.get("poolRef") or {}).get("name") or ""))
        lock = self._pool_locks.setdefault(pool, asyncio.Lock())
        async with lock:
            # Read again under the lock: a body captured before waiting may predate our last write.
            body = _first(self.host.caches.inodes.get(key)) or body
            spec = body.get("spec") or {}
            status = self.status(key, body)
            pods = self.pods(key)
            node = node_state(spec, status, pods)
            releases = self.releases()
            selection = self.select(spec, status, node, releases, pool)
            active = releases.get(node.rollout.release or "")
            target = selection.target
            resting = node.rollout.phase not in ACTIVE_PHASES
            if resting and (target is None or str(target.version) == node.current_version):
                # Nothing to start: the pool's headroom and the budget are not looked at (this is
                # every pass of a converged node, so it must stay cheap).
                capacity = PoolCapacity(len(node.serving))
            else:
                capacity = self._pool_capacity(pool, key, len(node.serving))
                heading = active if node.rollout.phase == Phase.PROGRESSING else None
                slots = self.release_slots(key, heading or selection.target)
                capacity = replace(capacity, release_slots=slots)
            plan = plan_step(
                node,
                pods,
                capacity,
                target=selection.target,
                active_release=active,
                now=self.now(),
                leave_current=selection.reason == LEAVING_HALTED,
            )
            before = len(node_unavailable(node.serving, pods, node.rollout))
            fields, conditions = self._fields(body, status, node, plan, selection)
            if fields:
                self._inflight[key] = dict(fields)
            # What other nodes of the pool count for this one from now on (reservations included).
            self._down[key] = (len(node.serving), len(plan.unavailable_devices))
            self._ledger(key, plan.rollout)
            self._down_dirty.discard(key)
        step = Step(plan, selection, node, fields, conditions, before, pool)
        if plan.actions and (fields or conditions):
            await self.write(key, body, step)  # intent first: the record before any pod changes
        return step

    async def write(self, key: Key, body: Body, step: Step) -> None:
        try:
            await self.host.writer.write(
                INODES,
                body,
                step.fields,
                conditions=step.conditions,
                owned=OWN_CONDITIONS if step.conditions else (),
            )
        finally:
            self.committed(key)
        step.fields, step.conditions = {}, []

    def committed(self, key: Key) -> None:
        """The decided fields are written (or failed to be): the writer's overlay has them now."""
        self._inflight.pop(key, None)
        self._down_dirty.add(key)

    def after(self, key: Key, body: Body, step: Step) -> None:
        """Events, wake-ups and metrics once the pass has done the step's pod work."""
        plan, pool = step.plan, step.pool
        queue = self.host.queue
        if plan.rollout.reason == "WaitingForCapacity":
            self._waiting.setdefault(pool, set()).add(key)
        if len(plan.unavailable_devices) < step.unavailable_before or plan.rollout.phase in (
            Phase.SUCCEEDED,
            Phase.ROLLED_BACK,
        ):
            for other in self._waiting.pop(pool, set()) - {key}:
                queue.add(("inode", *other))
        for event in plan.events:
            self.host.event(body, event.type, event.reason, event.message)
            if event.reason in _INFO_EVENTS:
                logger.info("InferenceNode %s/%s: %s: %s", key[0], key[1], event.reason, event.message)
        if plan.failure is not None and plan.failure.release:
            queue.add(("release", "", plan.failure.release))
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
            updated_devices=progress(plan.rollout, len(step.node.devices)),
            total_devices=len(step.node.devices),
        )
        if plan.requeue_after is not None:
            queue.add_after(("inode", *key), plan.requeue_after + 0.01)

    def select(
        self, spec: Body, status: Body, node: NodeState, releases: Mapping[str, ReleaseView], pool: Key
    ) -> Selection:
        release = spec.get("release") or {}
        pool_body = _first(self.host.caches.pools.get(pool))
        node_view: NodeView | None = _first(self.host.caches.nodes.get(spec.get("nodeName")))
        if node_view is None:
            # Say what is true (#21 F12): not "driver version unknown" but no node at all.
            return Selection(None, (), "NodeNotFound", f"Kubernetes node {spec.get('nodeName')!r} not found")
        labels = node_view.labels
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
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The status fields that change, and our three conditions when one of them changes."""
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
        old = list(status.get("conditions") or ())
        conditions = old
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
        mine = [c for c in conditions if c.get("type") in OWN_CONDITIONS]
        return fields, (mine if conditions != old else [])

    # --- for the core: which release each pod runs ------------------------------------------

    def device_release(self, key: Key, body: Body, index: int) -> PodRelease | None:
        """Version and image of the pod of device ``index`` now: the rollout record decides."""
        status = self.status(key, body)
        rollout = RolloutStatus.from_status(status.get("rollout"))
        version, image = device_image(rollout, status.get("currentVersion"), index)
        if version and image:
            return PodRelease(str(version), str(image))
        return None

    def release_of(self, version: str | None) -> ReleaseView | None:
        return next((r for r in self.releases().values() if str(r.version) == version), None)

    # --- EngineRelease ---------------------------------------------------------------------

    def _failures(self) -> dict[str, FailureRecord]:
        failures = {}
        for key, bodies in list(self.host.caches.inodes.items()):
            body = _first(bodies)
            if body is None:
                continue
            try:
                record = RolloutStatus.from_status(self.status(key, body).get("rollout")).failure
            except ValueError:
                continue  # a hand-edited record; the node's own pass reports it
            if record is not None:
                failures[f"{key[0]}/{key[1]}"] = record
        return failures

    async def reconcile_release(self, name: str) -> None:
        body = _first(self.host.caches.releases.get(name))
        if body is None:
            self.host.writer.forget(RELEASES, "", name)
            METRICS.forget_release(name)
            return
        spec = body.get("spec") or {}
        status = self.host.writer.current(RELEASES, body)
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
        generation = (body.get("metadata") or {}).get("generation")
        conditions = set_condition(
            status.get("conditions") or (),
            HALTED,
            _status_value(cstatus),
            reason,
            message,
            observed_generation=generation,
            now=self.now,
        )
        fields["observedGeneration"] = generation
        METRICS.set_release_halted(name, version, decision.halted)
        METRICS.record_engine_release(name, version, str(spec.get("channel") or ""))
        _, patch = await self.host.writer.write(
            RELEASES, body, fields, conditions=conditions, owned=(HALTED,)
        )
        if patch is None:
            return
        self._release_epoch += 1
        if decision.newly_halted:
            self.host.event(body, "Warning", "ReleaseHalted", message)
            logger.info("EngineRelease %s halted: %s", name, message)
            METRICS.record_rollout_result("cluster", "halted", 0.0, "FailureBudgetExhausted")
        elif decision.resumed:
            self.host.event(body, "Normal", "ReleaseResumed", message)
            logger.info("EngineRelease %s resumed: %s", name, message)
        if decision.newly_halted or decision.resumed or "halted" in patch:
            for key in list(self.host.caches.inodes):
                self.host.queue.add(("inode", *key))


#: Rollout Events a person acts on: also logged at INFO, one line naming the node.
_INFO_EVENTS = frozenset(
    {
        "ReleaseInstalled",
        "RolloutStarted",
        "RolloutSucceeded",
        "RolloutFailed",
        "RolledBack",
        "RolloutCancelled",
    }
)
