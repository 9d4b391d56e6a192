"""The rollout planner replayed through recorded scenarios, and "never above maxUnavailable".

Every plan of every node at every tick (actions, events with their messages, the rollout record,
versions, the unavailability ledger, failure reports, outcomes, requeue delays) of a set of small
scenarios is compared with ``plan_journal.json``, recorded from this planner after test_plan.py
checked its rules. Regenerate after an intended change with
``GPUFLEET_REGENERATE_JOURNAL=1 .venv/bin/pytest tests/unit/rollout/test_plan_mutants.py`` and
review the diff. A hypothesis test drives random pool shapes, limits, bad releases and dropped
actions (an operator killed between its status write and its pod writes) and checks the node and
pool limits after every tick.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.rollout.limits import resolve_max_unavailable
from gpufleet.rollout.plan import (
    NodeState,
    PodView,
    PoolCapacity,
    parse_time,
    plan_rollout,
    reserved_devices,
    with_rollout,
)
from gpufleet.rollout.selection import ReleaseView
from gpufleet.rollout.state import Phase, RolloutStatus
from tests.unit.rollout.sim import Fleet, World, fresh_node, image, release

JOURNAL = Path(__file__).with_name("plan_journal.json")
V1, V2, V3 = release("1.0.0"), release("1.1.0"), release("1.2.0")
RELEASES = {r.name: r for r in (V1, V2, V3)}


def _plain(value: Any) -> Any:
    if hasattr(value, "to_status"):
        return value.to_status()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "_": type(value).__name__,
            **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    return value


class Recorder(Fleet):
    """A Fleet that records every node's plan at every tick."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.journal: list[dict[str, Any]] = []

    def step(self, releases: dict[str, ReleaseView], target: ReleaseView | None) -> None:
        """Fleet.step, but the pool ledger also counts devices other nodes' records reserve (as the
        controller does): after a dropped action a reservation is real while its pod still serves."""
        ledger = {
            name: set(self.world.unavailable(name)) | reserved_devices(node.rollout)
            for name, node in self.nodes.items()
        }
        for name, node in self.nodes.items():
            elsewhere = sum(len(v) for k, v in ledger.items() if k != name)
            plan = plan_rollout(
                node,
                self.world.views(name),
                PoolCapacity(self.total, self.pool_limit, elsewhere),
                target=target,
                active_release=releases.get(node.rollout.release or ""),
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
        tick = (self.world.now - T_START).total_seconds()
        for name, plan in sorted(self.plans.items()):
            self.journal.append({"t": tick, "node": name, "plan": _plain(plan)})


T_START = World().now


def fleet(
    nodes: int, devices: int, *, pool_limit: int | str = "10%", drop: float = 0.0, **policy: object
) -> Recorder:
    world = World()
    states = {}
    for i in range(nodes):
        world.add_node(f"n{i}", devices, "1.0.0")
        policy = {"min_ready_seconds": 1, "progress_deadline_seconds": 10, **policy}
        states[f"n{i}"] = fresh_node(devices, "1.0.0", **policy)
    return Recorder(world, states, pool_limit=pool_limit, drop_actions=drop)


def good_rollout() -> Recorder:
    f = fleet(3, 3, pool_limit=2, max_unavailable=2)
    f.run(RELEASES, V2, limit_s=120)
    return f


def crash_loop_rolls_back() -> Recorder:
    f = fleet(2, 2, pool_limit="100%", max_unavailable=1)
    f.world.bad_images[image("1.1.0")] = "crash"
    f.run(RELEASES, V2, limit_s=120)
    return f


def never_ready_deadline() -> Recorder:
    f = fleet(1, 2, pool_limit="100%", max_unavailable=2, progress_deadline_seconds=4)
    f.world.bad_images[image("1.1.0")] = "never"
    f.run(RELEASES, V2, limit_s=120)
    return f


def halted_mid_rollout() -> Recorder:
    f = fleet(2, 2, pool_limit=1, max_unavailable=1, min_ready_seconds=3)
    for _ in range(8):
        f.step(RELEASES, V2)
        f.world.tick(0.5)
    halted = {**RELEASES, V2.name: replace(V2, halted=True)}
    f.run(halted, V1, limit_s=120)
    return f


def unhealthy_node_waits() -> Recorder:
    f = fleet(2, 2, pool_limit="100%", max_unavailable=1)
    sick = f.world.pods["n1"][0]
    sick.ready_at = None
    sick.created = f.world.now
    f.world.bad_images[sick.image + "-sick"] = "never"
    sick.image = sick.image + "-sick"
    for _ in range(20):
        f.step(RELEASES, V2)
        f.world.tick(0.5)
    f.nodes["n1"] = replace(f.nodes["n1"], policy=replace(f.nodes["n1"].policy, update_unhealthy=True))
    f.run(RELEASES, V2, limit_s=120)
    return f


def blocked_devices_move_along() -> Recorder:
    f = fleet(1, 3, pool_limit=1, max_unavailable=1)
    f.nodes["n0"] = replace(f.nodes["n0"], blocked=frozenset({1}))
    f.run(RELEASES, V2, limit_s=120)
    return f


def killed_operator() -> Recorder:
    f = fleet(2, 2, pool_limit=2, max_unavailable=1, drop=0.3)
    f.run(RELEASES, V2, limit_s=200)
    return f


def two_releases_in_a_row() -> Recorder:
    f = fleet(1, 2, pool_limit="100%", max_unavailable="50%")
    f.run(RELEASES, V2, limit_s=120)
    f.run(RELEASES, V3, limit_s=120)
    return f


def manual_node_is_held() -> Recorder:
    f = fleet(1, 2, pool_limit="100%", max_unavailable=1, automatic=False)
    for _ in range(6):
        f.step(RELEASES, V2)
        f.world.tick(0.5)
    return f


def fresh_install() -> Recorder:
    world = World()
    world.add_node("n0", 2, "1.0.0")
    world.pods["n0"] = []
    node = replace(
        fresh_node(2, "1.0.0", min_ready_seconds=1), current_version=None, last_stable_version=None
    )
    node = replace(
        node, rollout=node.rollout.model_copy(update={"current_image": None, "stable_image": None})
    )
    f = Recorder(world, {"n0": node}, pool_limit="100%")
    f.run(RELEASES, V1, limit_s=60)
    return f


@dataclasses.dataclass
class Plans:
    journal: list[dict[str, Any]]


def post_check_paths() -> Plans:
    """PostCheck entered from a record (after a restart): wait out minReady, succeed, or regress."""
    node = fresh_node(2, "1.0.0", min_ready_seconds=0)
    state = RolloutStatus(
        phase=Phase.POST_CHECK,
        release=V2.name,
        from_version="1.0.0",
        from_image=V1.image,
        target_version="1.1.0",
        target_image=V2.image,
        updated_devices=[0, 1],
        started_at="2026-01-01T00:00:00Z",
    )
    soon = T_START + timedelta(milliseconds=400)
    ready = [PodView(f"p{d}", d, V2.image, "1.1.0", ready=True, ready_since=soon) for d in range(2)]
    cases = {
        "early": (ready, T_START),
        "later": (ready, soon),
        "regressed": ([ready[0], replace(ready[1], ready=False)], soon),
        "crashing": ([ready[0], replace(ready[1], ready=False, crash_looping=True)], soon),
        "old-image": ([ready[0], replace(ready[1], image=V1.image, version="1.0.0")], soon),
    }
    out = []
    for name, (pods, now) in cases.items():
        plan = plan_rollout(
            replace(node, rollout=state),
            pods,
            PoolCapacity(2, "100%"),
            target=None,
            active_release=V2,
            now=now,
        )
        out.append({"t": name, "node": "n0", "plan": _plain(plan)})
    return Plans(out)


def crafted_states() -> Plans:
    """Records a restarted operator finds: rollbacks with pods in every state, a halted pre-check,
    nothing to roll back to, past deadlines; each planned once (what one reconcile decides)."""
    node = fresh_node(3, "1.0.0", max_unavailable=2, min_ready_seconds=1, progress_deadline_seconds=5)
    base = RolloutStatus(
        phase=Phase.ROLLING_BACK,
        release=V2.name,
        from_version="1.0.0",
        from_image=V1.image,
        target_version="1.1.0",
        target_image=V2.image,
        started_at="2026-01-01T00:00:00Z",
        current_image=V2.image,
    )
    old = [PodView(f"old{d}", d, V1.image, "1.0.0", ready=True, ready_since=T_START) for d in range(3)]
    new = [PodView(f"new{d}", d, V2.image, "1.1.0", ready=True, ready_since=T_START) for d in range(3)]
    soon, late = T_START + timedelta(seconds=2), T_START + timedelta(seconds=60)
    first_look = base.model_copy(update={"batch": 0, "batch_devices": [], "updated_devices": []})
    in_batch = base.model_copy(
        update={
            "batch": 1,
            "batch_devices": [0, 1],
            "updated_devices": [2],
            "batch_started_at": "2026-01-01T00:00:00Z",
        }
    )
    cases: dict[str, tuple[NodeState, list[PodView], datetime, ReleaseView | None]] = {
        "first look, untouched devices on stable": (
            replace(node, rollout=first_look),
            [new[0], old[1], old[2]],
            soon,
            V2,
        ),
        "first look, one device still mixed": (
            replace(node, rollout=first_look),
            [new[0], old[1], replace(new[1], name="n1b"), old[2]],
            soon,
            V2,
        ),
        "first look, stable pod terminating": (
            replace(node, rollout=first_look),
            [new[0], replace(old[1], terminating=True), old[2]],
            soon,
            V2,
        ),
        "batch: new pods still up": (replace(node, rollout=in_batch), [new[0], new[1], old[2]], soon, V2),
        "batch: new pod terminating, nothing else": (
            replace(node, rollout=in_batch),
            [replace(new[0], terminating=True), old[2]],
            soon,
            V2,
        ),
        "batch: stable pods back and ready": (
            replace(node, rollout=in_batch),
            [old[0], old[1], old[2]],
            soon,
            V2,
        ),
        "batch: stable pods not ready yet": (
            replace(node, rollout=in_batch),
            [
                replace(old[0], ready=False, ready_since=None),
                replace(old[1], ready=False, ready_since=None),
                old[2],
            ],
            soon,
            V2,
        ),
        "batch: stable pods not ready, past the deadline": (
            replace(node, rollout=in_batch),
            [
                replace(old[0], ready=False, ready_since=None),
                replace(old[1], ready=False, ready_since=None),
                old[2],
            ],
            late,
            V2,
        ),
        "batch: past the deadline, one stable pod missing": (
            replace(node, rollout=in_batch),
            [replace(old[0], ready=False, ready_since=None), old[2]],
            late,
            V2,
        ),
        "batch: past the deadline, old and new pod together": (
            replace(node, rollout=in_batch),
            [replace(old[0], ready=False, ready_since=None), new[0], replace(old[1], ready=False), old[2]],
            late,
            V2,
        ),
        "nothing to roll back to": (
            replace(node, rollout=in_batch.model_copy(update={"from_image": None})),
            list(old),
            soon,
            V2,
        ),
        "no version to roll back to": (
            replace(node, rollout=in_batch.model_copy(update={"from_version": None})),
            list(old),
            soon,
            V2,
        ),
        "rolled back without a failure record": (
            replace(
                node, rollout=in_batch.model_copy(update={"updated_devices": [0, 1, 2], "batch_devices": []})
            ),
            list(old),
            soon,
            None,
        ),
        "pre-check of a halted release": (
            replace(node, rollout=base.model_copy(update={"phase": Phase.PRE_CHECK})),
            list(old),
            soon,
            replace(V2, halted=True),
        ),
        "pre-check of a resumed release": (
            replace(node, rollout=base.model_copy(update={"phase": Phase.PRE_CHECK})),
            list(old),
            soon,
            replace(V2, resume_count=2),
        ),
    }
    out = []
    for name, (state, pods, now, active) in cases.items():
        plan = plan_rollout(state, pods, PoolCapacity(9, 2), target=None, active_release=active, now=now)
        out.append({"t": name, "node": "n0", "plan": _plain(plan), "changed": plan.changed_from(state)})
    unchanged = plan_rollout(
        replace(node), list(old), PoolCapacity(9, 2), target=None, active_release=None, now=soon
    )
    out.append(
        {"t": "at rest", "node": "n0", "plan": _plain(unchanged), "changed": unchanged.changed_from(node)}
    )
    for field, value in (("current_version", "9.9.9"), ("last_stable_version", "9.9.9")):
        out.append(
            {
                "t": f"changed {field}",
                "node": "n0",
                "changed": replace(unchanged, **{field: value}).changed_from(node),
            }
        )
    out.append(
        {"t": "parse", "node": "-", "plan": [_plain(parse_time("2026-01-01T00:00:00Z")), parse_time(None)]}
    )
    out.append({"t": "with_rollout", "node": "-", "plan": _plain(with_rollout(node, in_batch))})
    return Plans(out)


def release_vanishes_mid_rollout() -> Recorder:
    """The EngineRelease is deleted while nodes crash on it: failures without an active release."""
    f = fleet(2, 2, pool_limit="100%", max_unavailable=1)
    f.world.bad_images[image("1.1.0")] = "crash"
    resumed = {**RELEASES, V2.name: replace(V2, resume_count=1)}
    for _ in range(6):
        f.step(resumed, V2)
        f.world.tick(0.5)
    f.run({k: v for k, v in RELEASES.items() if k != V2.name}, V2, limit_s=120)
    return f


SCENARIOS: dict[str, Callable[[], Recorder | Plans]] = {
    f.__name__: f
    for f in (
        good_rollout,
        crash_loop_rolls_back,
        never_ready_deadline,
        halted_mid_rollout,
        unhealthy_node_waits,
        blocked_devices_move_along,
        killed_operator,
        two_releases_in_a_row,
        manual_node_is_held,
        fresh_install,
        post_check_paths,
        crafted_states,
        release_vanishes_mid_rollout,
    )
}


def journal() -> dict[str, list[dict[str, Any]]]:
    return {name: json.loads(json.dumps(make().journal)) for name, make in SCENARIOS.items()}


def test_planner_journal_matches_the_recorded_one() -> None:
    got = journal()
    if os.environ.get("GPUFLEET_REGENERATE_JOURNAL") == "1":
        JOURNAL.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
    want = json.loads(JOURNAL.read_text())
    assert set(got) == set(want)
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for g, w in zip(got[name], want[name], strict=True):
            assert g == w, f"{name} at t={w['t']} {w['node']}"


def test_the_scenarios_reach_every_phase() -> None:
    """The journal is not vacuous: each rollout phase is entered by some scenario."""
    seen = {
        entry["plan"]["rollout"].get("phase")
        for entries in journal().values()
        for entry in entries
        if isinstance(entry.get("plan"), dict) and isinstance(entry["plan"].get("rollout"), dict)
    }
    assert {p.value for p in Phase} <= seen | {None}, sorted(str(s) for s in seen)


# ------------------------------------------------------------------ the limits, under any interleaving


#: Fewer examples under bench/mutation.py (every mutant runs this test); the same seed either way.
EXAMPLES = 10 if os.environ.get("GPUFLEET_MUTATION") == "1" else 40


@settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None)
@given(
    nodes=st.integers(1, 4),
    devices=st.integers(1, 4),
    pool_limit=st.sampled_from([1, 2, 3, "10%", "50%", "100%"]),
    node_limit=st.sampled_from([1, 2, "50%", "100%"]),
    bad=st.sampled_from([None, "crash", "never"]),
    drop=st.sampled_from([0.0, 0.2, 0.5]),
    seed=st.integers(0, 1000),
)
def test_rollout_never_exceeds_max_unavailable(
    nodes: int,
    devices: int,
    pool_limit: int | str,
    node_limit: int | str,
    bad: str | None,
    drop: float,
    seed: int,
) -> None:
    f = fleet(nodes, devices, pool_limit=pool_limit, drop=drop, max_unavailable=node_limit)
    f.rng.seed(seed)
    if bad:
        f.world.bad_images[image("1.1.0")] = bad
    f.run(RELEASES, V2, limit_s=300)
    assert f.max_pool_unavailable <= resolve_max_unavailable(pool_limit, nodes * devices)
    assert max(f.max_node_unavailable.values()) <= resolve_max_unavailable(node_limit, devices)
    final = {n.rollout.phase for n in f.nodes.values()}
    assert final <= {Phase.SUCCEEDED, Phase.ROLLED_BACK}, final
    if bad is None:
        assert {n.current_version for n in f.nodes.values()} == {"1.1.0"}
    else:
        assert {n.current_version for n in f.nodes.values()} == {"1.0.0"}


def test_capacity_of_other_nodes_is_respected() -> None:
    """A node whose pool is already at its limit elsewhere starts nothing."""
    node = fresh_node(2, "1.0.0", max_unavailable=2, min_ready_seconds=1)
    world = World()
    world.add_node("n0", 2, "1.0.0")
    plan = plan_rollout(
        node, world.views("n0"), PoolCapacity(10, 3, unavailable_elsewhere=3), target=V2, active_release=None,
        now=world.now + timedelta(seconds=1),
    )  # fmt: skip
    assert not plan.actions
    assert plan.unavailable_devices == frozenset()
