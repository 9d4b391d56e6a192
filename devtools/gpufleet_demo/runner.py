"""Run a scenario: emulated cluster, the real operator, releases published one after another.

The emulated cluster (API server, kubelet, node agents) runs on its own thread; the operator runs
on this thread's event loop and talks to the cluster over HTTP exactly as it would to a real API
server. The demo only writes what a person would `kubectl apply`, and reads statuses back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet_demo.scenario import Rollout, Scenario, ScenarioError
from gpufleet_demo.snapshot import fleet_snapshot

JsonObj = dict[str, Any]
GROUP = "gpufleet.io/v1alpha1"
#: Rollout phases in which a node is still changing (the demo waits for them to end).
ACTIVE_PHASES = frozenset({"PreCheck", "Progressing", "PostCheck", "RollingBack"})


class DemoError(RuntimeError):
    """The scenario did not reach a state it expected, with what was seen instead."""


class DemoInterrupted(DemoError):
    """SIGINT/SIGTERM arrived while a phase was running."""


@dataclass
class Phase:
    name: str
    expected: str
    outcome: str = "pending"
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoResult:
    phases: list[Phase] = field(default_factory=list)
    snapshot: JsonObj = field(default_factory=dict)
    seconds: float = 0.0
    kubeconfig: str | None = None

    @property
    def ok(self) -> bool:
        return all(p.outcome == p.expected for p in self.phases)

    def to_json(self) -> JsonObj:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "kubeconfig": self.kubeconfig,
            "phases": [
                {
                    "name": p.name,
                    "expected": p.expected,
                    "outcome": p.outcome,
                    "seconds": round(p.seconds, 2),
                    "detail": p.detail,
                }
                for p in self.phases
            ],
            **self.snapshot,
        }


Refresh = Callable[[JsonObj, str, tuple[str, int, int] | None], None]


def _noop(_: JsonObj, __: str, ___: tuple[str, int, int] | None) -> None:
    return None


class Demo:
    """One run of a scenario. ``refresh`` is called with each new snapshot (the live view)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        kubeconfig_out: Path | None = None,
        refresh: Refresh = _noop,
        phase_timeout: float = 40.0,
        poll: float = 0.2,
        epochs: bool = False,
        traffic: bool = False,
    ) -> None:
        self.scenario = scenario
        self.epochs = epochs  # #19: close two short epochs after the rollouts (gpufleet_demo.epochs)
        self.traffic = traffic  # #16: requests through the real router (gpufleet_demo.traffic)
        self.kubeconfig_out = kubeconfig_out
        self.refresh = refresh
        self.phase_timeout = phase_timeout
        self.poll = poll
        self.result = DemoResult()
        self._phase = ""
        self._signalled = asyncio.Event()
        self._progress: tuple[str, int, int] | None = None

    # ------------------------------------------------------------------ cluster access (thread)

    def _objects(self, kind: str) -> list[JsonObj]:
        cluster = self._cluster
        ns = self.scenario.namespace

        def read() -> list[JsonObj]:
            api_version = "v1" if kind == "Event" else GROUP
            rtype = cluster.store.type_for(api_version, kind)
            return cluster.store.objects(rtype, ns if rtype.namespaced else None)

        result: list[JsonObj] = self._threaded.call(read)
        return result

    def snapshot(self) -> JsonObj:
        return fleet_snapshot(
            inodes=self._objects("InferenceNode"),
            pools=self._objects("OperatorPool"),
            releases=self._objects("EngineRelease"),
            events=self._objects("Event"),
            namespace=self.scenario.namespace,
        )

    def _apply(self, obj: JsonObj) -> None:
        obj = dict(obj)
        meta = dict(obj.get("metadata") or {})
        if obj["apiVersion"] == GROUP and obj["kind"] != "EngineRelease":
            meta.setdefault("namespace", self.scenario.namespace)
        obj["metadata"] = meta
        from gpufleet_devcluster.errors import APIError

        try:
            self._threaded.call(self._cluster.apply, obj, actor="demo")
        except APIError as exc:
            raise ScenarioError(f"{obj['kind']} {meta.get('name')!r}: {exc.message}") from exc

    # ------------------------------------------------------------------ waiting

    async def _wait(self, what: str, check: Callable[[JsonObj], tuple[bool, str]]) -> tuple[JsonObj, str]:
        """Poll snapshots until ``check`` passes; DemoError with the last detail on timeout."""
        deadline = time.monotonic() + self.phase_timeout
        detail = ""
        while True:
            snap = self.snapshot()
            done, detail = check(snap)
            self.refresh(snap, self._phase, self._progress)
            if done:
                return snap, detail
            if time.monotonic() > deadline:
                raise DemoError(f"{what}: not reached within {self.phase_timeout:.0f}s ({detail})")
            if self._signalled.is_set():
                raise DemoInterrupted(f"{what}: interrupted ({detail})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signalled.wait(), self.poll)

    # ------------------------------------------------------------------ phases

    def _healthy_nodes(self, snap: JsonObj) -> list[str]:
        """InferenceNodes with at least one valid device: the ones that take engine updates."""
        return sorted({d["inferenceNode"] for d in snap["devices"] if d["valid"]})

    async def _converge(self) -> None:
        expected_inodes = {o["metadata"]["name"] for o in self.scenario.of_kind("InferenceNode")}
        expected_pools = {o["metadata"]["name"] for o in self.scenario.of_kind("OperatorPool")}

        def converged(snap: JsonObj) -> tuple[bool, str]:
            valid = [d for d in snap["devices"] if d["valid"]]
            ready = [d for d in valid if d["ready"]]
            reported = {n["name"] for n in snap["inferenceNodes"] if n["totalDevices"]}
            shared = all(d["effectiveStake"] is not None for d in valid)
            pools_done = {p["name"] for p in snap["pools"] if p["totalStake"] is not None}
            self._progress = ("engine pods ready", len(ready), max(len(valid), 1))
            ok = (
                reported >= expected_inodes
                and pools_done >= expected_pools
                and bool(valid)
                and len(ready) == len(valid)
                and shared
            )
            return ok, (
                f"{len(reported)}/{len(expected_inodes)} nodes reported, {len(ready)}/{len(valid)} "
                f"valid devices ready, shares {'computed' if shared else 'pending'}"
            )

        await self._run_phase("fleet converges", "Converged", converged, "Converged")

    async def _rollout(self, rollout: Rollout, previous: str | None) -> str | None:
        self._threaded.call(self._set_behaviour, rollout)
        self._apply(rollout.release)
        version = rollout.version
        name = rollout.release["metadata"]["name"]

        def settled(snap: JsonObj) -> tuple[bool, str]:
            healthy = set(self._healthy_nodes(snap))
            nodes = [n for n in snap["inferenceNodes"] if n["name"] in healthy]
            on_new = [n for n in nodes if n["currentVersion"] == version]
            rolled_back = [n for n in nodes if n["rolledBack"] and n["currentVersion"] == previous]
            release = next((r for r in snap["releases"] if r["name"] == name), None)
            halted = bool(release and release["halted"])
            self._progress = (f"rollout {version}", len(on_new), len(nodes))
            if rollout.expect == "Succeeded":
                stable = all(n["lastStableVersion"] == version for n in on_new)
                done = len(on_new) == len(nodes) and stable
                return done, f"{len(on_new)}/{len(nodes)} serving nodes on {version}"
            mixed = [n["name"] for n in nodes if n["currentVersion"] not in (version, previous)]
            busy = [
                n["name"]
                for n in nodes
                if n["targetVersion"] not in (None, previous, n["currentVersion"])
                or (n["rollout"] or {}).get("phase") in ACTIVE_PHASES
            ]
            detail = (
                f"{len(rolled_back)} rolled back to {previous}, release "
                f"{'halted' if halted else 'active'}, {len(on_new)} serving nodes on {version}"
            )
            if rollout.expect == "Halted":
                return halted and bool(rolled_back) and not mixed and not busy, detail
            return bool(rolled_back) and not mixed and not busy, detail

        outcome = await self._run_phase(
            f"release {version} ({rollout.behaviour})", rollout.expect, settled, rollout.expect
        )
        return version if outcome == "Succeeded" else previous

    async def _run_phase(
        self, name: str, expected: str, check: Callable[[JsonObj], tuple[bool, str]], outcome: str
    ) -> str:
        phase = Phase(name=name, expected=expected)
        self.result.phases.append(phase)
        self._phase = name
        started = time.monotonic()
        try:
            _, phase.detail = await self._wait(name, check)
            phase.outcome = outcome
        except DemoInterrupted as exc:
            phase.outcome = "Interrupted"
            phase.detail = str(exc)
        except DemoError as exc:
            phase.outcome = "TimedOut"
            phase.detail = str(exc)
        finally:
            phase.seconds = time.monotonic() - started
        return phase.outcome

    def _set_behaviour(self, rollout: Rollout) -> None:
        from gpufleet_devcluster import Behaviour

        self._cluster.kubelet.set_behaviour(Behaviour(rollout.behaviour), image=rollout.image)

    async def _serve_until_signalled(self) -> None:
        """Keep cluster and operator up until SIGINT/SIGTERM."""
        while not self._signalled.is_set():
            self.refresh(self.snapshot(), "running (Ctrl-C to stop)", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signalled.wait(), self.poll)

    # ------------------------------------------------------------------ run

    async def run(self, *, keep_running: bool = False) -> DemoResult:
        from gpufleet_devcluster import DevCluster, KubeletConfig, NodeSpec

        started = time.monotonic()
        self._cluster = DevCluster(
            nodes=[NodeSpec(n.name, n.profile) for n in self.scenario.nodes],
            namespaces=("default", "kube-system", self.scenario.namespace),
            kubelet_config=KubeletConfig(start_delay=0.3, ready_delay=0.5, crash_backoff=0.2),
            kubeconfig_path=self.kubeconfig_out,
            keep_history=False,
        )
        with self._cluster.run_in_thread() as threaded:
            self._threaded = threaded
            self.result.kubeconfig = str(self.kubeconfig_out) if self.kubeconfig_out else None
            initial = [o for o in self.scenario.objects if o["kind"] == "EngineRelease"]
            for obj in initial:
                self._apply(obj)
            for obj in self.scenario.objects:
                if obj["kind"] != "EngineRelease":
                    self._apply(obj)
            async with operator_running(self._cluster.kubeconfig_path, self.scenario.namespace) as op:
                self._signalled = op.signalled
                await self._converge()
                previous = _newest_version(initial)
                if self.result.phases[-1].outcome == "Converged":
                    for rollout in self.scenario.rollouts:
                        if self._signalled.is_set():
                            self.result.phases.append(
                                Phase(
                                    name=f"release {rollout.version} ({rollout.behaviour})",
                                    expected=rollout.expect,
                                    outcome="Interrupted",
                                    detail="not started: interrupted",
                                )
                            )
                            continue
                        previous = await self._rollout(rollout, previous)
                    if self.traffic and not self._signalled.is_set():
                        from gpufleet_demo.traffic import run_traffic_phase

                        await run_traffic_phase(self)
                    if self.epochs and not self._signalled.is_set():  # after traffic: uses its counters
                        from gpufleet_demo.epochs import run_epochs_phase

                        await run_epochs_phase(self)
                epochs_snapshot = self.result.snapshot.get("epochs")
                self.result.snapshot = self.snapshot()
                if epochs_snapshot is not None:
                    self.result.snapshot["epochs"] = epochs_snapshot
                self.refresh(self.result.snapshot, "done", None)
                if keep_running:
                    await self._serve_until_signalled()
        self.result.seconds = time.monotonic() - started
        return self.result


def _newest_version(releases: list[JsonObj]) -> str | None:
    from gpufleet.rollout.semver import parse_version

    versions = [str(r["spec"]["version"]) for r in releases]
    return max(versions, key=parse_version) if versions else None


def operator_running(kubeconfig: Path, namespace: str) -> AbstractAsyncContextManager[Any]:
    """The real operator, in-process on this event loop, for as long as the context is open."""
    from gpufleet.controllers.operator import running_operator
    from gpufleet.settings import OperatorSettings

    # No liveness endpoint or metrics port: the demo must not need free well-known ports.
    # The epochs phase runs its own epoch controller on a simulated clock (gpufleet_demo.epochs).
    settings = OperatorSettings(
        namespace=namespace,
        pool_settle_seconds=0.2,
        liveness_endpoint=None,
        metrics_port=0,
        epochs_enabled=False,
    )
    running: AbstractAsyncContextManager[Any] = running_operator(settings, kubeconfig=str(kubeconfig))
    return running
