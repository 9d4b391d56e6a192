"""The per-node rollout state machine as a pure function.

``plan_rollout`` looks at the node's rollout record, its pods and the pool's unavailability and
returns the next record plus the actions that move the pods towards it. The record is always
written *before* the actions run (intent first), so an operator killed between the two redoes the
same actions on restart instead of forgetting them: deleting an old pod and creating the new one
are both idempotent given the record.

Phases: Idle -> PreCheck -> Progressing(batch n) -> PostCheck -> Succeeded, or on failure
RollingBack -> RolledBack. Succeeded and RolledBack are resting phases like Idle.

A device is *available* when it has a pod that is not terminating and is ready (the
``gpufleet.io/engine-ready`` gate is True). A device is *done* on a version when that pod runs the
version's image and has been ready for ``minReadySeconds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from gpufleet.rollout.limits import resolve_max_unavailable
from gpufleet.rollout.selection import ReleaseView
from gpufleet.rollout.state import (
    BUDGET_REASONS,
    REPLACING_PHASES,
    FailureReason,
    FailureRecord,
    Phase,
    RolloutStatus,
)

#: Without events to wake it, the planner wants to look again this often while a rollout runs.
ACTIVE_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class PodView:
    """What the planner needs of one engine pod."""

    name: str
    device_index: int
    image: str | None
    version: str | None = None
    ready: bool = False
    ready_since: datetime | None = None
    crash_looping: bool = False
    terminating: bool = False


@dataclass(frozen=True)
class UpdatePolicy:
    automatic: bool = True
    max_unavailable: int | str = 1
    progress_deadline_seconds: float = 600.0
    min_ready_seconds: float = 30.0
    update_unhealthy: bool = False


@dataclass(frozen=True)
class NodeState:
    """The InferenceNode as the planner sees it."""

    devices: tuple[int, ...]
    policy: UpdatePolicy = field(default_factory=UpdatePolicy)
    current_version: str | None = None
    last_stable_version: str | None = None
    rollout: RolloutStatus = field(default_factory=RolloutStatus)
    #: Devices whose GPU failed validation: they never serve, so their pods are moved to the new
    #: version without waiting for readiness and they count for no limit.
    blocked: frozenset[int] = frozenset()

    @property
    def serving(self) -> tuple[int, ...]:
        return tuple(d for d in self.devices if d not in self.blocked)


@dataclass(frozen=True)
class PoolCapacity:
    """Pool-wide unavailability seen from one node.

    ``unavailable_elsewhere`` counts devices of the pool's *other* nodes that are unavailable or
    reserved by their rollouts (about to be replaced).
    """

    total_devices: int
    max_unavailable: int | str = "10%"
    unavailable_elsewhere: int = 0
    #: How many more nodes may start replacing pods of the target release: its failure budget
    #: minus the nodes that already failed it minus the other nodes replacing its pods right now
    #: (each of those may still fail). ``None``: not limited. See docs/rollouts.md.
    release_slots: int | None = None


@dataclass(frozen=True)
class DeletePod:
    name: str
    device_index: int
    reason: str


@dataclass(frozen=True)
class CreatePod:
    device_index: int
    version: str
    image: str


Action = DeletePod | CreatePod


@dataclass(frozen=True)
class EventSpec:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class FailureReport:
    """A node failed a release; counts against that release's failure budget."""

    release: str | None
    version: str
    reason: FailureReason
    message: str


@dataclass(frozen=True)
class Outcome:
    """A rollout finished (for metrics)."""

    result: str  # "succeeded" | "rolled_back"
    version: str
    duration_seconds: float


@dataclass
class Plan:
    rollout: RolloutStatus
    current_version: str | None
    target_version: str | None
    last_stable_version: str | None
    actions: list[Action] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    failure: FailureReport | None = None
    outcome: Outcome | None = None
    requeue_after: float | None = None
    #: Devices of this node that are unavailable or reserved after this plan (for the pool ledger).
    unavailable_devices: frozenset[int] = frozenset()

    def changed_from(self, node: NodeState) -> bool:
        return (
            self.rollout != node.rollout
            or self.current_version != node.current_version
            or self.last_stable_version != node.last_stable_version
        )


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _by_device(pods: Iterable[PodView]) -> dict[int, list[PodView]]:
    grouped: dict[int, list[PodView]] = {}
    for pod in pods:
        grouped.setdefault(pod.device_index, []).append(pod)
    return grouped


def _runs(pod: PodView, image: str | None, version: str | None) -> bool:
    if image is not None and pod.image is not None:
        return pod.image == image
    return version is not None and pod.version == version


def available_devices(devices: Sequence[int], pods: Iterable[PodView]) -> set[int]:
    grouped = _by_device(pods)
    return {d for d in devices if any(p.ready and not p.terminating for p in grouped.get(d, ()))}


def reserved_devices(rollout: RolloutStatus) -> set[int]:
    return set(rollout.batch_devices) if rollout.phase in REPLACING_PHASES else set()


def node_unavailable(
    devices: Sequence[int], pods: Iterable[PodView], rollout: RolloutStatus
) -> frozenset[int]:
    """Devices of a node that are down now or reserved by its rollout (about to go down).

    A reserved device whose new pod is already ready is available again and not counted.
    """
    pods = list(pods)
    available = available_devices(devices, pods)
    target_image = rollout.from_image if rollout.phase == Phase.ROLLING_BACK else rollout.target_image
    target_version = rollout.from_version if rollout.phase == Phase.ROLLING_BACK else rollout.target_version
    grouped = _by_device(pods)
    down = {d for d in devices if d not in available}
    for d in reserved_devices(rollout):
        ready_new = any(
            p.ready and not p.terminating and _runs(p, target_image, target_version)
            for p in grouped.get(d, ())
        )
        if not ready_new:
            down.add(d)
    return frozenset(down)


def choose_batch(
    remaining: Sequence[int],
    available: set[int],
    *,
    node_limit: int,
    node_unavailable_count: int,
    pool_limit: int,
    pool_unavailable_count: int,
) -> list[int]:
    """The next devices to replace.

    Devices that are already down cost nothing and are always taken; each available one taken
    makes one more device unavailable, so their number is bounded by what is left of both the
    node's and the pool's allowance.
    """
    free = [d for d in remaining if d not in available]
    costly = [d for d in remaining if d in available]
    allowance = min(node_limit - node_unavailable_count, pool_limit - pool_unavailable_count)
    return free + costly[: max(0, allowance)]


@dataclass
class _Ctx:
    node: NodeState
    pods: list[PodView]
    pool: PoolCapacity
    target: ReleaseView | None
    active_release: ReleaseView | None
    now: datetime
    plan: Plan
    timers: list[float] = field(default_factory=list)
    leave_current: bool = False

    @property
    def state(self) -> RolloutStatus:
        return self.plan.rollout

    def set(self, **changes: object) -> None:
        self.plan.rollout = self.plan.rollout.model_copy(update=changes)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(EventSpec(type_, reason, message))


def plan_rollout(
    node: NodeState,
    pods: Sequence[PodView],
    pool: PoolCapacity,
    *,
    target: ReleaseView | None,
    active_release: ReleaseView | None,
    now: datetime,
    leave_current: bool = False,
) -> Plan:
    """Next rollout record and actions for one node.

    ``target`` is the release selection's answer (``None``: nothing newer to run);
    ``active_release`` is the EngineRelease named in ``rollout.release`` (``None`` if it is gone),
    consulted for a fleet-wide halt while the rollout runs. ``leave_current``: the node's current
    release is halted, so a rollout to ``target`` (maybe older) starts even on an unhealthy node.
    """
    plan = Plan(
        rollout=node.rollout.model_copy(deep=True),
        current_version=node.current_version,
        target_version=node.current_version,
        last_stable_version=node.last_stable_version,
    )
    ctx = _Ctx(node, list(pods), pool, target, active_release, now, plan, leave_current=leave_current)
    for _ in range(8):  # chain transitions that need no pod action within one call
        before = plan.rollout
        n_actions = len(plan.actions)
        _STEP[plan.rollout.phase](ctx)
        if plan.rollout == before or len(plan.actions) != n_actions:
            break
    if plan.rollout.phase in (Phase.PRE_CHECK, Phase.PROGRESSING, Phase.POST_CHECK):
        plan.target_version = plan.rollout.target_version
    elif plan.rollout.phase == Phase.ROLLING_BACK:
        plan.target_version = plan.rollout.from_version
    else:
        plan.target_version = plan.current_version
    plan.unavailable_devices = node_unavailable(node.serving, ctx.pods, plan.rollout)
    if ctx.timers:
        plan.requeue_after = max(0.0, min(ctx.timers))
    elif plan.rollout.phase in (Phase.PRE_CHECK, Phase.PROGRESSING, Phase.POST_CHECK, Phase.ROLLING_BACK):
        plan.requeue_after = ACTIVE_POLL_SECONDS
    return plan


def _rest(ctx: _Ctx) -> None:
    """Idle, Succeeded, RolledBack: start a rollout when a newer release is selected."""
    plan, state, node = ctx.plan, ctx.state, ctx.node
    if plan.current_version is None:
        if ctx.target is None:
            return
        # First install: nothing to roll from; the pods are created with this version.
        plan.current_version = str(ctx.target.version)
        ctx.set(
            current_image=ctx.target.image,
            release=ctx.target.name,
            reason="Installed",
            message=f"installing {ctx.target.version}",
        )
        ctx.event("Normal", "ReleaseInstalled", f"installing engine release {ctx.target.version}")
        return
    if plan.last_stable_version != plan.current_version and node.devices:
        available = available_devices(node.serving, ctx.pods)
        on_current = _done_devices(ctx, node.devices, state.current_image, plan.current_version)
        if available >= set(node.serving) and on_current >= set(node.devices):
            plan.last_stable_version = plan.current_version
            ctx.set(stable_image=state.current_image)
            return
    if ctx.target is None or str(ctx.target.version) == plan.current_version:
        return
    failure = state.failure
    if (
        failure is not None
        and failure.version == str(ctx.target.version)
        and failure.resume_count >= ctx.target.resume_count
    ):
        return  # already failed here: only a resume of the release lets this node try again
    ctx.set(
        phase=Phase.PRE_CHECK,
        release=ctx.target.name,
        from_version=plan.current_version,
        from_image=state.current_image,
        target_version=str(ctx.target.version),
        target_image=ctx.target.image,
        batch=0,
        batch_devices=[],
        updated_devices=[],
        batch_started_at=None,
        started_at=iso(ctx.now),
        finished_at=None,
        reason="Started",
        message=f"rolling out {ctx.target.version} (from {plan.current_version})",
    )
    ctx.event(
        "Normal", "RolloutStarted", f"rolling out engine {ctx.target.version} from {plan.current_version}"
    )


def _halted(ctx: _Ctx) -> bool:
    """The release this rollout moves to was halted (not the one a node is leaving)."""
    active = ctx.active_release
    return active is not None and active.halted and active.name == ctx.state.release


def _pre_check(ctx: _Ctx) -> None:
    state, node = ctx.state, ctx.node
    if _halted(ctx):
        ctx.set(
            phase=Phase.IDLE,
            reason="ReleaseHalted",
            message=f"release {state.target_version} was halted before this node started it",
        )
        return
    if ctx.target is not None and str(ctx.target.version) != state.target_version:
        # A newer release appeared before anything was touched: aim at it instead.
        ctx.set(
            release=ctx.target.name, target_version=str(ctx.target.version), target_image=ctx.target.image
        )
    available = available_devices(node.serving, ctx.pods)
    healthy = available >= set(node.serving)
    if not healthy and not node.policy.update_unhealthy and not ctx.leave_current:
        down = sorted(set(node.serving) - available)
        ctx.set(
            reason="NodeUnhealthy",
            message=f"waiting for devices {down} to be ready before updating (updateUnhealthy is false)",
        )
        return
    ctx.set(
        phase=Phase.PROGRESSING,
        reason=_precheck_reason(healthy, ctx.leave_current),
        message=f"replacing pods with {state.target_version}",
    )


def _precheck_reason(healthy: bool, leaving: bool) -> str:
    if healthy:
        return "PreCheckPassed"
    return "LeavingHaltedRelease" if leaving else "UpdatingUnhealthyNode"


def _fail(ctx: _Ctx, reason: FailureReason, message: str) -> None:
    state = ctx.state
    resume = ctx.active_release.resume_count if ctx.active_release is not None else 0
    record = FailureRecord(
        release=state.release,
        version=state.target_version or "",
        reason=reason,
        message=message,
        resume_count=resume,
        at=iso(ctx.now),
    )
    ctx.set(
        phase=Phase.ROLLING_BACK,
        failure=record,
        batch=0,
        batch_devices=[],
        updated_devices=[],
        batch_started_at=None,
        reason=reason.value,
        message=message,
    )
    if reason in BUDGET_REASONS:
        ctx.plan.failure = FailureReport(state.release, record.version, reason, message)
    ctx.event("Warning", "RolloutFailed", f"{state.target_version}: {message}")
    ctx.event("Warning", "RollbackStarted", f"rolling back to {state.from_version} ({reason.value})")


def _done_devices(ctx: _Ctx, devices: Iterable[int], image: str | None, version: str | None) -> set[int]:
    grouped = _by_device(ctx.pods)
    min_ready = timedelta(seconds=ctx.node.policy.min_ready_seconds)
    done: set[int] = set()
    for d in devices:
        for pod in grouped.get(d, ()):
            if d in ctx.node.blocked and not pod.terminating and _runs(pod, image, version):
                done.add(d)  # a blocked GPU never gets ready: its pod only has to be on the version
                continue
            if pod.terminating or not pod.ready or not _runs(pod, image, version):
                continue
            since = pod.ready_since or ctx.now
            if since + min_ready <= ctx.now:
                done.add(d)
            else:
                ctx.timers.append((since + min_ready - ctx.now).total_seconds())
    return done


def _drive_batch(ctx: _Ctx, image: str, version: str) -> set[int]:
    """Actions that move the batch's devices to ``image``; returns the devices already done."""
    grouped = _by_device(ctx.pods)
    for d in ctx.state.batch_devices:
        pods = grouped.get(d, [])
        for pod in pods:
            if not pod.terminating and not _runs(pod, image, version):
                ctx.plan.actions.append(DeletePod(pod.name, d, f"replacing with {version}"))
        has_new = any(not p.terminating and _runs(p, image, version) for p in pods)
        still_going = any(p.terminating or not _runs(p, image, version) for p in pods)
        if not has_new and not still_going:
            # The GPU is exclusive: the new pod is created only once the old one is gone.
            ctx.plan.actions.append(CreatePod(d, version, image))
    return _done_devices(ctx, ctx.state.batch_devices, image, version)


def _next_batch(ctx: _Ctx, remaining: list[int]) -> list[int]:
    node, pool = ctx.node, ctx.pool
    available = available_devices(node.serving, ctx.pods)
    node_down = len(set(node.serving) - available)
    return choose_batch(
        remaining,
        available,
        node_limit=resolve_max_unavailable(
            node.policy.max_unavailable, len(node.serving), field="spec.updatePolicy.maxUnavailable"
        ),
        node_unavailable_count=node_down,
        pool_limit=resolve_max_unavailable(
            pool.max_unavailable, pool.total_devices, field="OperatorPool spec.updatePolicy.maxUnavailable"
        ),
        pool_unavailable_count=pool.unavailable_elsewhere + node_down,
    )


def _deadline_passed(ctx: _Ctx) -> bool:
    started = parse_time(ctx.state.batch_started_at)
    if started is None:
        return False
    deadline = started + timedelta(seconds=ctx.node.policy.progress_deadline_seconds)
    if ctx.now >= deadline:
        return True
    ctx.timers.append((deadline - ctx.now).total_seconds())
    return False


def _progressing(ctx: _Ctx) -> None:
    state, node = ctx.state, ctx.node
    assert state.target_image is not None
    assert state.target_version is not None
    if _halted(ctx) and state.batch == 0:
        # Still waiting for capacity: no pod was touched, so there is nothing to roll back.
        ctx.set(
            phase=Phase.IDLE,
            reason="ReleaseHalted",
            message=f"release {state.target_version} was halted before this node replaced any pod",
        )
        ctx.event(
            "Normal", "RolloutCancelled", f"release {state.target_version} halted before any pod changed"
        )
        return
    if _halted(ctx):
        _fail(
            ctx,
            FailureReason.RELEASE_HALTED,
            f"release {state.target_version} was halted fleet-wide during this node's rollout",
        )
        return
    grouped = _by_device(ctx.pods)
    touched = [d for d in (*state.updated_devices, *state.batch_devices) if d not in node.blocked]
    for d in touched:
        for pod in grouped.get(d, ()):
            if (
                pod.crash_looping
                and not pod.terminating
                and _runs(pod, state.target_image, state.target_version)
            ):
                _fail(ctx, FailureReason.CRASH_LOOP, f"pod {pod.name} (device {d}) is crash-looping")
                return
    available = available_devices(node.serving, ctx.pods)
    for d in state.updated_devices:
        if d not in available and d not in node.blocked:
            _fail(
                ctx,
                FailureReason.READINESS_REGRESSION,
                f"device {d} was updated and ready, then lost readiness",
            )
            return
    if state.batch_devices:
        done = _drive_batch(ctx, state.target_image, state.target_version)
        if done < set(state.batch_devices):
            if _deadline_passed(ctx):
                ctx.plan.actions.clear()
                waiting = sorted(set(state.batch_devices) - done)
                _fail(
                    ctx,
                    FailureReason.PROGRESS_DEADLINE_EXCEEDED,
                    f"devices {waiting} not ready within {node.policy.progress_deadline_seconds:g}s",
                )
            return
        updated = sorted({*state.updated_devices, *state.batch_devices})
        ctx.set(updated_devices=updated, batch_devices=[])
        ctx.event(
            "Normal",
            "RolloutBatchCompleted",
            f"batch {state.batch} ({len(done)} device(s)) ready on {state.target_version}",
        )
    remaining = [d for d in sorted(node.devices) if d not in ctx.state.updated_devices]
    if not remaining:
        ctx.set(
            phase=Phase.POST_CHECK,
            reason="AllBatchesReady",
            message=f"all devices run {state.target_version}; checking the node",
        )
        return
    if ctx.state.batch == 0 and ctx.pool.release_slots is not None and ctx.pool.release_slots <= 0:
        # Every node replacing pods of this release may still fail it; starting one more could
        # fail more nodes than the budget allows before the halt lands (#21).
        ctx.set(
            reason="WaitingForFailureBudget",
            message=f"waiting: the release's failure budget is taken by nodes already updating to "
            f"{state.target_version}",
        )
        return
    batch = _next_batch(ctx, remaining)
    if not batch:
        ctx.set(
            reason="WaitingForCapacity",
            message="waiting for the node's or the pool's unavailability allowance",
        )
        return
    n = ctx.state.batch + 1
    ctx.set(
        batch=n,
        batch_devices=batch,
        batch_started_at=iso(ctx.now),
        reason="BatchInProgress",
        message=f"batch {n}: replacing devices {batch}",
    )
    ctx.event(
        "Normal", "RolloutBatchStarted", f"batch {n}: replacing devices {batch} with {state.target_version}"
    )
    _drive_batch(ctx, state.target_image, state.target_version)


def _post_check(ctx: _Ctx) -> None:
    state, node = ctx.state, ctx.node
    grouped = _by_device(ctx.pods)
    serving = {
        d
        for d in node.serving
        if any(
            p.ready and not p.terminating and _runs(p, state.target_image, state.target_version)
            for p in grouped.get(d, ())
        )
    }
    missing = sorted(set(node.serving) - serving)
    if missing:
        _fail(
            ctx,
            FailureReason.READINESS_REGRESSION,
            f"post-check: devices {missing} are not ready on {state.target_version}",
        )
        return
    if _done_devices(ctx, node.devices, state.target_image, state.target_version) != set(node.devices):
        return  # ready, but not yet for minReadySeconds (e.g. first look after a restart)
    started = parse_time(state.started_at) or ctx.now
    ctx.plan.current_version = state.target_version
    ctx.plan.last_stable_version = state.target_version
    ctx.set(
        phase=Phase.SUCCEEDED,
        current_image=state.target_image,
        stable_image=state.target_image,
        batch_devices=[],
        finished_at=iso(ctx.now),
        reason="Succeeded",
        message=f"all {len(node.devices)} device(s) run {state.target_version}",
    )
    ctx.plan.outcome = Outcome("succeeded", state.target_version or "", (ctx.now - started).total_seconds())
    ctx.event("Normal", "RolloutSucceeded", f"engine {state.target_version} ready on all devices")


def _rolling_back(ctx: _Ctx) -> None:
    state, node = ctx.state, ctx.node
    image, version = state.from_image, state.from_version
    if image is None or version is None:
        # Nothing to go back to (should not happen: a rollout always starts from a version).
        ctx.set(phase=Phase.ROLLED_BACK, finished_at=iso(ctx.now), batch_devices=[])
        return
    grouped = _by_device(ctx.pods)
    reverted = set(state.updated_devices)
    if state.batch == 0 and not state.batch_devices:
        # First look after the failure: devices never touched already run the stable version.
        reverted |= {
            d
            for d in node.devices
            if any(not p.terminating and _runs(p, image, version) for p in grouped.get(d, ()))
            and not any(not p.terminating and not _runs(p, image, version) for p in grouped.get(d, ()))
        }
        ctx.set(updated_devices=sorted(reverted))
    if state.batch_devices:
        done = _drive_batch(ctx, image, version)
        if done < set(state.batch_devices):
            if not _deadline_passed(ctx):
                return
            # Past the deadline the rollback moves on once the stable pods exist: their readiness
            # is the node's ordinary health from here, and a stuck rollback would block the node.
            done |= {
                d
                for d in state.batch_devices
                if any(not p.terminating and _runs(p, image, version) for p in grouped.get(d, ()))
                and not any(not p.terminating and not _runs(p, image, version) for p in grouped.get(d, ()))
            }
            if done < set(state.batch_devices):
                return
        ctx.set(updated_devices=sorted({*ctx.state.updated_devices, *state.batch_devices}), batch_devices=[])
    remaining = [d for d in sorted(node.devices) if d not in ctx.state.updated_devices]
    if not remaining:
        failure = state.failure
        reason = failure.reason.value if failure else "RolledBack"
        started = parse_time(state.started_at) or ctx.now
        ctx.plan.current_version = version
        ctx.set(
            phase=Phase.ROLLED_BACK,
            current_image=image,
            batch_devices=[],
            finished_at=iso(ctx.now),
            reason=reason,
            message=f"rolled back to {version}: {failure.message if failure else ''}".rstrip(": "),
        )
        ctx.plan.outcome = Outcome(
            "rolled_back", state.target_version or "", (ctx.now - started).total_seconds()
        )
        ctx.event("Warning", "RolledBack", f"rolled back from {state.target_version} to {version} ({reason})")
        return
    batch = _next_batch(ctx, remaining)
    if not batch:
        ctx.set(reason="WaitingForCapacity", message="rollback waiting for the unavailability allowance")
        return
    n = ctx.state.batch + 1
    ctx.set(
        batch=n,
        batch_devices=batch,
        batch_started_at=iso(ctx.now),
        message=f"rollback batch {n}: restoring {version} on devices {batch}",
    )
    _drive_batch(ctx, image, version)


_STEP = {
    Phase.IDLE: _rest,
    Phase.SUCCEEDED: _rest,
    Phase.ROLLED_BACK: _rest,
    Phase.PRE_CHECK: _pre_check,
    Phase.PROGRESSING: _progressing,
    Phase.POST_CHECK: _post_check,
    Phase.ROLLING_BACK: _rolling_back,
}


def device_image(
    rollout: RolloutStatus, current_version: str | None, device_index: int
) -> tuple[str | None, str | None]:
    """(version, image) a device's pod should run right now, for whoever (re)creates pods.

    During a rollout, the devices of the current batch and those already updated run the target;
    every other device keeps the version the rollout started from. While rolling back, every device
    goes back to that version. At rest, the node's current version.
    """
    if rollout.phase in (Phase.PROGRESSING, Phase.POST_CHECK):
        if device_index in rollout.batch_devices or device_index in rollout.updated_devices:
            return rollout.target_version, rollout.target_image
        return rollout.from_version, rollout.from_image
    if rollout.phase in (Phase.PRE_CHECK, Phase.ROLLING_BACK):
        return rollout.from_version, rollout.from_image
    return current_version, rollout.current_image


def with_rollout(node: NodeState, rollout: RolloutStatus) -> NodeState:
    return replace(node, rollout=rollout)
