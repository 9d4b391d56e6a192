"""Demo phase: two short epochs close, with rewards and points per pool from the traffic served.

After the fleet has converged, the real epoch controller (``gpufleet.controllers.epoch``) runs
against the demo cluster on a simulated clock (60-second epochs, five-second scrapes), so the
phase takes a few seconds of real time. Its counters come from a simulated router: each scrape,
jobs are drawn among the ready devices with probability proportional to their priority score
(what the stake-weighted router does), seeded so every run is the same, and served through the
router's own stats model (``gpufleet.router.stats``). When the router's traffic phase is part of
the demo (``--traffic``, which runs first), its counters replace this simulation: the router's
k = 0 step becomes epoch 1 and its stake-weighted step epoch 2.

In epoch 2 one pool is under a Penalty for 20 of the 60 seconds (no traffic, less eligibility),
and a PointsAward grants bonus points. The phase checks that each epoch's rewards sum to the
emission, that every proof verifies, and that the penalised pool's reward fell.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonObj = dict[str, Any]
GROUP = "gpufleet.io/v1alpha1"
EPOCH_SECONDS = 60
SCRAPE_SECONDS = 5
JOBS_PER_SCRAPE = 400
TOKENS_PER_JOB = 250


@dataclass
class SimulatedRouter:
    """Cumulative per-device counters of a router that routes by priority (deterministic)."""

    devices: list[tuple[str, str, str, int, str, float]]  # ns, pool, inode, device, model, priority
    seed: int = 19
    now: int = 0
    since: int = 0
    done: dict[tuple[str, str, int, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def serve(self, jobs: int, blocked_pools: frozenset[str] = frozenset()) -> None:
        eligible = [d for d in self.devices if d[1] not in blocked_pools]
        if not eligible:
            return
        picks = self.rng.choices(eligible, weights=[d[5] for d in eligible], k=jobs)
        for ns, pool, inode, device, model, _ in picks:
            key = (f"{ns}/{pool}", inode, device, model)
            self.done[key] = self.done.get(key, 0) + 1

    def stats(self) -> JsonObj:
        from gpufleet.router.stats import DeviceKey, DeviceStats, RouterStats, Tokens

        devices = []
        for (pool, inode, device, model), n in sorted(self.done.items()):
            ns, name = pool.split("/", 1)
            key = DeviceKey(namespace=ns, pool=name, inference_node=inode, device=device, model=model)
            tokens = n * TOKENS_PER_JOB
            devices.append(
                DeviceStats(
                    key=key,
                    requests=n,
                    completions=n,
                    tokens=Tokens(prompt=tokens // 5, completion=tokens - tokens // 5),
                )
            )
        return RouterStats(
            router="demo-router",
            since=datetime.fromtimestamp(self.since, UTC),
            observed_at=datetime.fromtimestamp(self.now, UTC),
            k="0.0001",
            devices=tuple(devices),
        ).model_dump(mode="json")


def ready_devices(inodes: list[JsonObj]) -> list[tuple[str, str, str, int, str, float]]:
    """(namespace, pool, inode, device index, model, priority) of every device that serves."""
    out = []
    for node in inodes:
        meta, spec, status = node["metadata"], node.get("spec") or {}, node.get("status") or {}
        model = ((spec.get("models") or [{}])[0]).get("name", "model")
        for d in status.get("devices") or []:
            priority = d.get("priorityScore")
            if d.get("ready") and priority:
                out.append(
                    (
                        meta.get("namespace", "default"),
                        spec["poolRef"]["name"],
                        meta["name"],
                        int(d["index"]),
                        model,
                        float(priority),
                    )
                )
    return out


def _table(epochs: list[JsonObj], points: Mapping[str, str]) -> str:
    lines = []
    for e in epochs:
        spec = e["spec"]
        lines.append(f"epoch {spec['number']} ({spec['rule']}, root {spec['merkleRoots'][0][:12]}…):")
        for p in spec["pools"]:
            lines.append(
                f"  {p['pool']:<20} jobs {p['completedJobs']:>5}  stake {p['stake']:>7}  "
                f"eligibility {p['eligibility']:<11}  reward {p['reward']:>18}  commission {p['commission']}"
            )
    lines.append("points: " + ", ".join(f"{pool} {total}" for pool, total in sorted(points.items())))
    return "\n".join(lines)


async def run_epochs_phase(demo: Any, *, router_urls: str | None = None) -> Any:
    """Run the phase on ``demo`` (a ``gpufleet_demo.runner.Demo``); returns the Phase appended."""
    from prometheus_client import CollectorRegistry

    from gpufleet.controllers.epoch.controller import EpochController
    from gpufleet.controllers.epoch.metrics import EpochMetrics
    from gpufleet.controllers.epoch.plan import read_epoch, rfc3339
    from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
    from gpufleet.settings import OperatorSettings
    from gpufleet_demo.runner import Phase

    phase = Phase(name="two epochs close (rewards and points)", expected="EpochsClosed")
    demo.result.phases.append(phase)
    started = time.monotonic()
    ns = demo.scenario.namespace
    cluster = demo._threaded
    genesis = (int(time.time()) // EPOCH_SECONDS) * EPOCH_SECONDS
    router = SimulatedRouter(ready_devices(demo._objects("InferenceNode")), now=genesis, since=genesis)
    pools = sorted({d[1] for d in router.devices})
    if len(pools) < 2:
        phase.outcome, phase.detail = "NotEnoughPools", f"ready pools: {pools}"
        return phase
    penalised = pools[-1]
    settings = OperatorSettings(
        namespace=ns,
        operator_namespace=ns,
        epoch_genesis=genesis,
        epoch_length_seconds=EPOCH_SECONDS,
        epoch_close_grace_seconds=SCRAPE_SECONDS,
        epoch_router_urls=router_urls or "simulated",
        epoch_state_configmap="gpufleet-demo-epoch-state",
        metrics_port=0,
    )

    replay: list[JsonObj] = []  # the traffic phase's counters, when it ran (see below)

    async def fetch(_: str) -> Mapping[str, Any]:
        return replay[-1] if replay else router.stats()

    client = KubeClient(connection_from_kubeconfig(cluster.kubeconfig_path))
    controller = EpochController(
        settings,
        client,
        now=lambda: float(router.now),
        fetch=None if router_urls else fetch,
        metrics=EpochMetrics(CollectorRegistry()),
    )
    pen_start, pen_end = genesis + EPOCH_SECONDS + 10, genesis + EPOCH_SECONDS + 30

    def apply(obj: JsonObj) -> None:
        cluster.call(cluster.apply, obj)

    try:
        apply(
            {
                "apiVersion": GROUP,
                "kind": "PointsAward",
                "metadata": {"name": f"{pools[0]}-guide", "namespace": ns},
                "spec": {
                    "pool": {"name": pools[0]},
                    "points": "25",
                    "reason": "wrote the demo's tuning guide",
                },
            }
        )
        apply(
            {
                "apiVersion": GROUP,
                "kind": "Penalty",
                "metadata": {"name": f"{penalised}-demo", "namespace": ns},
                "spec": {
                    "pool": penalised,
                    "offense": "Manual",
                    "reason": "demo: a 20 s timeout in epoch 2",
                    "start": rfc3339(pen_start),
                    "until": rfc3339(pen_end),
                },
            }
        )
        snapshots = list(getattr(demo, "router_snapshots", None) or [])
        if len(snapshots) >= 2:
            # The traffic phase's real router (Envoy) counted its two k steps: one epoch each.
            source = "the traffic phase's router (epoch 1: its k=0 step, epoch 2: its stake-weighted step)"
            since = datetime.fromtimestamp(genesis - 1, UTC)
            first, last = snapshots[0], snapshots[-1]
            timeline = [
                (genesis + 1, first.model_copy(update={"devices": ()})),
                (genesis + EPOCH_SECONDS - 5, first),
                (genesis + EPOCH_SECONDS + SCRAPE_SECONDS + 1, first),
                (genesis + 2 * EPOCH_SECONDS - 5, last),
                (genesis + 2 * EPOCH_SECONDS + SCRAPE_SECONDS + 1, last),
            ]
            for t, snap in timeline:
                router.now = t
                update = {"since": since, "observed_at": datetime.fromtimestamp(t, UTC)}
                replay.append(snap.model_copy(update=update).model_dump(mode="json"))
                await controller.step()
        else:
            source = "a simulated router drawing jobs by priority (run with --traffic for the real one)"
            await controller.step()  # baseline
            end = genesis + 2 * EPOCH_SECONDS + 2 * SCRAPE_SECONDS
            for t in range(genesis + SCRAPE_SECONDS, end, SCRAPE_SECONDS):
                blocked = frozenset({penalised}) if pen_start <= t - SCRAPE_SECONDS < pen_end else frozenset()
                if t <= genesis + 2 * EPOCH_SECONDS:
                    router.serve(JOBS_PER_SCRAPE, blocked)
                router.now = t
                await controller.step()
        await controller.drain_events()
        epochs = sorted(
            (e for e in demo._objects("Epoch")),
            key=lambda e: e["spec"]["number"],
        )[-2:]
        pool_status = {
            f"{p['metadata']['namespace']}/{p['metadata']['name']}": (
                (p.get("status") or {}).get("points") or {}
            ).get("total", "0")
            for p in demo._objects("OperatorPool")
        }
        problems = [f"epoch {read_epoch(e).number}: {x}" for e in epochs for x in read_epoch(e).problems()]
        if len(epochs) < 2:
            phase.outcome, phase.detail = "NotClosed", f"{len(epochs)} epoch(s) closed"
        elif problems:
            phase.outcome, phase.detail = "VerifyFailed", "; ".join(problems)
        else:
            key = f"{ns}/{penalised}"
            lines = [{p["pool"]: p for p in e["spec"]["pools"]} for e in epochs]
            cut = lines[1][key]["eligibility"] != "1"
            phase.outcome = "EpochsClosed" if cut else "PenaltyNotApplied"
            phase.detail = (
                f"jobs from {source}; rewards sum to the emission and every proof verifies; "
                f"{key} penalised 20 s in epoch 2 "
                f"(eligibility {lines[1][key]['eligibility']})\n{_table(epochs, pool_status)}"
            )
        demo.result.snapshot = {**demo.snapshot(), "epochs": [e["spec"] for e in epochs]}
    except Exception as exc:  # the demo reports a failed phase instead of a traceback
        phase.outcome, phase.detail = "Failed", f"{type(exc).__name__}: {exc}"
    finally:
        await controller.close()
        await client.close()
        phase.seconds = time.monotonic() - started
    return phase
