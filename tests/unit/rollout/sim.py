"""A tiny discrete-time world for driving ``plan_rollout`` without Kubernetes.

Pods start, become ready, crash or terminate after fixed delays; every node plans once per tick
and its actions are applied (or, to mimic an operator killed mid-step, dropped).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from gpufleet.rollout.plan import CreatePod, DeletePod, NodeState, Plan, PodView, PoolCapacity, plan_rollout
from gpufleet.rollout.selection import ReleaseView
from gpufleet.rollout.semver import Version
from gpufleet.rollout.state import Phase, RolloutStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def image(version: str) -> str:
    return f"registry.example/engine@sha256:{version.replace('.', '').ljust(64, 'a')[:64]}"


def release(version: str, **kw: object) -> ReleaseView:
    return ReleaseView(name=f"r-{version}", version=Version.parse(version), image=image(version), **kw)  # type: ignore[arg-type]


@dataclass
class SimPod:
    name: str
    device: int
    image: str
    version: str
    created: datetime
    deleted_at: datetime | None = None
    ready_at: datetime | None = None


@dataclass
class World:
    start_seconds: float = 2.0
    terminate_seconds: float = 1.0
    bad_images: dict[str, str] = field(default_factory=dict)  # image -> "crash" | "never"
    now: datetime = T0
    pods: dict[str, list[SimPod]] = field(default_factory=dict)  # node -> pods
    counter: int = 0
    sizes: dict[str, int] = field(default_factory=dict)

    def add_node(self, node: str, devices: int, version: str) -> None:
        self.sizes[node] = devices
        self.pods[node] = [
            SimPod(
                f"{node}-{d}-0",
                d,
                image(version),
                version,
                self.now - timedelta(hours=1),
                ready_at=self.now - timedelta(hours=1),
            )
            for d in range(devices)
        ]

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        for node, pods in self.pods.items():
            kept = []
            for pod in pods:
                if pod.deleted_at and self.now >= pod.deleted_at + timedelta(seconds=self.terminate_seconds):
                    continue
                if (
                    pod.ready_at is None
                    and pod.deleted_at is None
                    and self.bad_images.get(pod.image) is None
                    and self.now >= pod.created + timedelta(seconds=self.start_seconds)
                ):
                    pod.ready_at = pod.created + timedelta(seconds=self.start_seconds)
                kept.append(pod)
            self.pods[node] = kept

    def views(self, node: str) -> list[PodView]:
        out = []
        for pod in self.pods[node]:
            crashing = self.bad_images.get(pod.image) == "crash" and self.now >= pod.created + timedelta(
                seconds=self.start_seconds
            )
            out.append(
                PodView(
                    pod.name,
                    pod.device,
                    pod.image,
                    pod.version,
                    ready=pod.ready_at is not None and pod.deleted_at is None,
                    ready_since=pod.ready_at,
                    crash_looping=crashing,
                    terminating=pod.deleted_at is not None,
                )
            )
        return out

    def apply(self, node: str, plan: Plan) -> None:
        for action in plan.actions:
            if isinstance(action, DeletePod):
                for pod in self.pods[node]:
                    if pod.name == action.name and pod.deleted_at is None:
                        pod.deleted_at = self.now
            elif isinstance(action, CreatePod):
                live = [p for p in self.pods[node] if p.device == action.device_index]
                assert not live, f"{node}: created a pod on device {action.device_index} while {live} exist"
                self.counter += 1
                self.pods[node].append(
                    SimPod(
                        f"{node}-{action.device_index}-{self.counter}",
                        action.device_index,
                        action.image,
                        action.version,
                        self.now,
                    )
                )

    def unavailable(self, node: str) -> set[int]:
        devices = set(range(self.sizes[node]))
        ready = {p.device for p in self.pods[node] if p.ready_at is not None and p.deleted_at is None}
        return devices - ready


@dataclass
class Fleet:
    """Nodes of one pool rolling out together; checks the limits after every tick."""

    world: World
    nodes: dict[str, NodeState]
    pool_limit: int | str = "10%"
    drop_actions: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    plans: dict[str, Plan] = field(default_factory=dict)
    max_pool_unavailable: int = 0
    max_node_unavailable: dict[str, int] = field(default_factory=dict)
    history: list[tuple[str, Phase]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(n.devices) for n in self.nodes.values())

    def step(self, releases: dict[str, ReleaseView], target: ReleaseView | None) -> None:
        ledger = {name: set(self.world.unavailable(name)) for name in self.nodes}
        for name, node in self.nodes.items():
            elsewhere = sum(len(v) for k, v in ledger.items() if k != name)
            active = releases.get(node.rollout.release or "")
            plan = plan_rollout(
                node,
                self.world.views(name),
                PoolCapacity(self.total, self.pool_limit, elsewhere),
                target=target,
                active_release=active,
                now=self.world.now,
            )
            ledger[name] = set(plan.unavailable_devices)
            self.nodes[name] = replace(
                node,
                rollout=plan.rollout,
                current_version=plan.current_version,
                last_stable_version=plan.last_stable_version,
            )
            if plan.rollout.phase != node.rollout.phase:
                self.history.append((name, plan.rollout.phase))
            self.plans[name] = plan
            if self.drop_actions and self.rng.random() < self.drop_actions:
                continue  # the operator died after writing status, before acting
            self.world.apply(name, plan)

    def run(
        self,
        releases: dict[str, ReleaseView],
        target: ReleaseView | None,
        *,
        dt: float = 0.5,
        limit_s: float = 3600,
    ) -> float:
        start = self.world.now
        while (self.world.now - start).total_seconds() < limit_s:
            self.step(releases, target)
            self.world.tick(dt)
            self.check_limits()
            resting = all(
                n.rollout.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.IDLE)
                for n in self.nodes.values()
            )
            started = target is None or all(n.rollout.phase != Phase.IDLE for n in self.nodes.values())
            if resting and started and all(not p.actions for p in self.plans.values()):
                break
        return (self.world.now - start).total_seconds()

    def check_limits(self) -> None:
        pool_down = 0
        for name in self.nodes:
            down = len(self.world.unavailable(name))
            pool_down += down
            self.max_node_unavailable[name] = max(self.max_node_unavailable.get(name, 0), down)
        self.max_pool_unavailable = max(self.max_pool_unavailable, pool_down)


def fresh_node(devices: int, version: str, **policy: object) -> NodeState:
    from gpufleet.rollout.plan import UpdatePolicy

    return NodeState(
        devices=tuple(range(devices)),
        policy=UpdatePolicy(**policy),  # type: ignore[arg-type]
        current_version=version,
        last_stable_version=version,
        rollout=RolloutStatus(current_image=image(version), stable_image=image(version)),
    )
