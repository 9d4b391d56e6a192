from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from gpufleet.rollout.plan import (
    CreatePod,
    DeletePod,
    PodView,
    PoolCapacity,
    choose_batch,
    device_image,
    node_unavailable,
    plan_rollout,
)
from gpufleet.rollout.state import FailureReason, Phase, RolloutStatus
from tests.unit.rollout.sim import T0, Fleet, World, fresh_node, image, release

V1, V2 = release("1.0.0"), release("1.1.0")
RELEASES = {V1.name: V1, V2.name: V2}


def fleet(nodes: int, devices: int, *, pool_limit: int | str = "10%", **policy: object) -> Fleet:
    world = World()
    states = {}
    for i in range(nodes):
        world.add_node(f"n{i}", devices, "1.0.0")
        states[f"n{i}"] = fresh_node(
            devices, "1.0.0", min_ready_seconds=1, progress_deadline_seconds=60, **policy
        )
    return Fleet(world, states, pool_limit=pool_limit)


def test_good_release_rolls_out_within_node_and_pool_limits() -> None:
    f = fleet(10, 4, pool_limit="10%", max_unavailable=2)  # 40 devices, 4 at a time in the pool
    f.run(RELEASES, V2)
    assert {n.rollout.phase for n in f.nodes.values()} == {Phase.SUCCEEDED}
    assert {n.current_version for n in f.nodes.values()} == {"1.1.0"}
    assert {n.last_stable_version for n in f.nodes.values()} == {"1.1.0"}
    assert all(p.image == image("1.1.0") for pods in f.world.pods.values() for p in pods)
    assert f.max_pool_unavailable == 4  # reached, never exceeded
    assert max(f.max_node_unavailable.values()) == 2


def test_pool_limit_is_never_exceeded_when_nodes_compete() -> None:
    f = fleet(8, 8, pool_limit=3, max_unavailable="50%")
    f.run(RELEASES, V2)
    assert {n.current_version for n in f.nodes.values()} == {"1.1.0"}
    assert f.max_pool_unavailable == 3


def test_batches_wait_min_ready_seconds() -> None:
    f = fleet(1, 4, pool_limit="100%", max_unavailable=1)
    f.nodes["n0"] = replace(f.nodes["n0"], policy=replace(f.nodes["n0"].policy, min_ready_seconds=10))
    elapsed = f.run(RELEASES, V2)
    # 4 batches, each: terminate (1 s) + start (2 s) + minReady (10 s), at 0.5 s resolution.
    assert 4 * 13 <= elapsed <= 4 * 13 + 4 * 1.5
    assert f.nodes["n0"].rollout.batch == 4


def test_crash_looping_release_rolls_back_to_last_stable() -> None:
    f = fleet(1, 4, pool_limit="100%", max_unavailable=2)
    f.world.bad_images[image("1.1.0")] = "crash"
    f.run(RELEASES, V2)
    node = f.nodes["n0"]
    assert node.rollout.phase == Phase.ROLLED_BACK
    assert node.current_version == "1.0.0"
    assert node.rollout.failure is not None
    assert node.rollout.failure.reason == FailureReason.CRASH_LOOP
    assert all(p.image == image("1.0.0") for p in f.world.pods["n0"])
    assert len(f.world.pods["n0"]) == 4
    # Only the first batch was touched before the failure was seen.
    assert f.max_node_unavailable["n0"] <= 2
    phases = [phase for _, phase in f.history]
    assert phases.count(Phase.ROLLING_BACK) == 1
    assert phases.count(Phase.ROLLED_BACK) == 1


def test_never_ready_release_hits_the_progress_deadline() -> None:
    f = fleet(1, 2, pool_limit="100%", max_unavailable=1)
    f.world.bad_images[image("1.1.0")] = "never"
    f.run(RELEASES, V2)
    node = f.nodes["n0"]
    assert node.rollout.phase == Phase.ROLLED_BACK
    assert node.rollout.failure is not None
    assert node.rollout.failure.reason == FailureReason.PROGRESS_DEADLINE_EXCEEDED
    assert node.current_version == "1.0.0"
    assert all(p.image == image("1.0.0") for p in f.world.pods["n0"])


def test_failure_is_reported_once_for_the_budget() -> None:
    f = fleet(1, 2, pool_limit="100%")
    f.world.bad_images[image("1.1.0")] = "crash"
    reports = []
    for _ in range(200):
        f.step(RELEASES, V2)
        if f.plans["n0"].failure is not None:
            reports.append(f.plans["n0"].failure)
        f.world.tick(0.5)
    assert len(reports) == 1
    assert reports[0].reason == FailureReason.CRASH_LOOP
    assert reports[0].release == V2.name
    # Even if selection kept offering the failed release, the node does not start it again (that
    # would be a second rollback for one release) until the release is resumed.
    assert f.nodes["n0"].rollout.phase == Phase.ROLLED_BACK
    assert [p for _, p in f.history].count(Phase.ROLLING_BACK) == 1
    resumed = replace(V2, resume_count=1)
    f.step({**RELEASES, V2.name: resumed}, resumed)
    assert f.nodes["n0"].rollout.phase == Phase.PROGRESSING


def test_halted_release_rolls_back_in_flight_nodes_without_counting_a_failure() -> None:
    f = fleet(1, 4, pool_limit="100%", max_unavailable=1)
    f.nodes["n0"] = replace(f.nodes["n0"], policy=replace(f.nodes["n0"].policy, min_ready_seconds=5))
    for _ in range(20):  # part-way through
        f.step(RELEASES, V2)
        f.world.tick(0.5)
    assert f.nodes["n0"].rollout.phase == Phase.PROGRESSING
    halted = {**RELEASES, V2.name: replace(V2, halted=True)}
    f.run(halted, None)
    node = f.nodes["n0"]
    assert node.rollout.phase == Phase.ROLLED_BACK
    assert node.rollout.failure is not None
    assert node.rollout.failure.reason == FailureReason.RELEASE_HALTED
    assert all(p.failure is None for p in [f.plans["n0"]])
    assert all(p.image == image("1.0.0") for p in f.world.pods["n0"])


def test_unhealthy_node_waits_in_precheck_unless_configured() -> None:
    f = fleet(1, 2, pool_limit="100%")
    f.world.pods["n0"][0].ready_at = None
    f.step(RELEASES, V2)
    assert f.nodes["n0"].rollout.phase == Phase.PRE_CHECK
    assert f.nodes["n0"].rollout.reason == "NodeUnhealthy"
    assert not f.plans["n0"].actions
    g = fleet(1, 2, pool_limit="100%", update_unhealthy=True)
    g.world.pods["n0"][0].ready_at = None
    g.run(RELEASES, V2)
    assert g.nodes["n0"].current_version == "1.1.0"


@pytest.mark.parametrize("seed", range(6))
def test_killed_operator_converges_without_mixed_versions(seed: int) -> None:
    f = fleet(4, 4, pool_limit="25%", max_unavailable=2)
    f.drop_actions = 0.3
    f.rng.seed(seed)
    if seed % 2:
        f.world.bad_images[image("1.1.0")] = "crash"
    f.run(RELEASES, V2)
    for name, node in f.nodes.items():
        assert node.rollout.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK)
        versions = {p.version for p in f.world.pods[name]}
        assert versions == {node.current_version}, f"{name} runs {versions}"
        assert len(f.world.pods[name]) == 4
        assert [p for n, p in f.history if n == name].count(Phase.ROLLING_BACK) <= 1
    assert f.max_pool_unavailable <= 4


def test_first_install_sets_current_then_stable_once_ready() -> None:
    node = fresh_node(2, "1.0.0")
    node = replace(node, current_version=None, last_stable_version=None, rollout=RolloutStatus())
    plan = plan_rollout(node, [], PoolCapacity(2), target=V1, active_release=None, now=T0)
    assert plan.current_version == "1.0.0"
    assert plan.last_stable_version is None
    assert plan.rollout.current_image == V1.image
    assert not plan.actions
    node = replace(node, current_version="1.0.0", rollout=plan.rollout)
    pods = [PodView(f"p{d}", d, V1.image, "1.0.0", ready=True, ready_since=T0) for d in range(2)]
    later = plan_rollout(
        node, pods, PoolCapacity(2), target=None, active_release=None, now=T0 + timedelta(seconds=60)
    )
    assert later.last_stable_version == "1.0.0"
    assert later.rollout.stable_image == V1.image


def test_node_without_devices_switches_version_directly() -> None:
    node = replace(fresh_node(0, "1.0.0"))
    plan = plan_rollout(node, [], PoolCapacity(0), target=V2, active_release=V2, now=T0)
    assert plan.rollout.phase == Phase.SUCCEEDED
    assert plan.current_version == "1.1.0"


def test_intent_is_written_before_pods_are_touched() -> None:
    node = fresh_node(2, "1.0.0", max_unavailable=1)
    pods = [PodView(f"p{d}", d, V1.image, "1.0.0", ready=True, ready_since=T0) for d in range(2)]
    plan = plan_rollout(node, pods, PoolCapacity(2, "100%"), target=V2, active_release=V2, now=T0)
    assert plan.rollout.phase == Phase.PROGRESSING
    assert plan.rollout.batch_devices == [0]
    assert plan.actions == [DeletePod("p0", 0, "replacing with 1.1.0")]
    assert plan.unavailable_devices == {0}  # reserved before the pod is even deleted
    # Replanning from the recorded state (operator restarted, delete never happened) repeats it.
    again = plan_rollout(
        replace(node, rollout=plan.rollout),
        pods,
        PoolCapacity(2, "100%"),
        target=V2,
        active_release=V2,
        now=T0 + timedelta(seconds=1),
    )
    assert again.actions == plan.actions
    assert again.events == []
    gone = [pods[1]]
    create = plan_rollout(
        replace(node, rollout=plan.rollout),
        gone,
        PoolCapacity(2, "100%"),
        target=V2,
        active_release=V2,
        now=T0 + timedelta(seconds=2),
    )
    assert create.actions == [CreatePod(0, "1.1.0", V2.image)]


def test_choose_batch_takes_down_devices_for_free() -> None:
    assert choose_batch(
        [0, 1, 2, 3],
        {0, 1, 3},
        node_limit=1,
        node_unavailable_count=1,
        pool_limit=5,
        pool_unavailable_count=1,
    ) == [2]
    assert choose_batch(
        [0, 1, 2, 3],
        {0, 1, 2, 3},
        node_limit=2,
        node_unavailable_count=0,
        pool_limit=5,
        pool_unavailable_count=4,
    ) == [0]
    assert (
        choose_batch(
            [0, 1], {0, 1}, node_limit=2, node_unavailable_count=0, pool_limit=3, pool_unavailable_count=3
        )
        == []
    )


def test_device_image_tells_pod_creators_which_version_each_device_runs() -> None:
    state = RolloutStatus(
        phase=Phase.PROGRESSING,
        from_version="1.0.0",
        from_image=V1.image,
        target_version="1.1.0",
        target_image=V2.image,
        batch_devices=[2],
        updated_devices=[0, 1],
        current_image=V1.image,
    )
    assert device_image(state, "1.0.0", 0) == ("1.1.0", V2.image)
    assert device_image(state, "1.0.0", 2) == ("1.1.0", V2.image)
    assert device_image(state, "1.0.0", 3) == ("1.0.0", V1.image)
    assert device_image(state.model_copy(update={"phase": Phase.ROLLING_BACK}), "1.0.0", 0) == (
        "1.0.0",
        V1.image,
    )
    assert device_image(RolloutStatus(current_image=V2.image), "1.1.0", 5) == ("1.1.0", V2.image)


def test_node_unavailable_counts_reserved_devices_until_their_new_pod_is_ready() -> None:
    state = RolloutStatus(
        phase=Phase.PROGRESSING,
        target_version="1.1.0",
        target_image=V2.image,
        from_image=V1.image,
        batch_devices=[0, 1],
    )
    pods = [
        PodView("old0", 0, V1.image, ready=True),
        PodView("new1", 1, V2.image, ready=True),
        PodView("old2", 2, V1.image, ready=False),
        PodView("old3", 3, V1.image, ready=True),
    ]
    assert node_unavailable((0, 1, 2, 3), pods, state) == {0, 2}


def test_status_round_trips_through_kubernetes_json() -> None:
    f = fleet(1, 2, pool_limit="100%")
    f.world.bad_images[image("1.1.0")] = "crash"
    f.run(RELEASES, V2)
    raw = f.nodes["n0"].rollout.to_status()
    assert raw["phase"] == "RolledBack"
    assert raw["failure"]["reason"] == "CrashLoop"  # type: ignore[index]
    assert RolloutStatus.from_status(raw) == f.nodes["n0"].rollout
    assert RolloutStatus.from_status(None) == RolloutStatus()


def test_halt_while_waiting_for_capacity_returns_to_idle_without_rollback() -> None:
    node = fresh_node(2, "1.0.0", max_unavailable=1)
    pods = [PodView(f"p{d}", d, V1.image, "1.0.0", ready=True, ready_since=T0) for d in range(2)]
    full = PoolCapacity(10, 2, unavailable_elsewhere=2)
    waiting = plan_rollout(node, pods, full, target=V2, active_release=V2, now=T0)
    assert waiting.rollout.phase == Phase.PROGRESSING
    assert waiting.rollout.reason == "WaitingForCapacity"
    assert waiting.actions == []
    assert waiting.unavailable_devices == frozenset()
    halted = replace(V2, halted=True)
    after = plan_rollout(
        replace(node, rollout=waiting.rollout),
        pods,
        full,
        target=None,
        active_release=halted,
        now=T0 + timedelta(seconds=1),
    )
    assert after.rollout.phase == Phase.IDLE
    assert after.rollout.reason == "ReleaseHalted"
    assert after.rollout.failure is None
    assert after.failure is None
    assert after.actions == []
    assert after.current_version == "1.0.0"


def test_post_check_waits_out_min_ready_instead_of_failing() -> None:
    # After a restart the operator only knows when pods turned ready to the second, rounded up, so a
    # ready pod can look "not ready long enough" for a moment; that is a wait, never a failure.
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
    soon = T0 + timedelta(milliseconds=400)
    pods = [PodView(f"p{d}", d, V2.image, "1.1.0", ready=True, ready_since=soon) for d in range(2)]
    plan = plan_rollout(
        replace(node, rollout=state), pods, PoolCapacity(2, "100%"), target=None, active_release=V2, now=T0
    )
    assert plan.rollout.phase == Phase.POST_CHECK
    assert plan.failure is None
    assert plan.requeue_after == pytest.approx(0.4)
    later = plan_rollout(
        replace(node, rollout=state), pods, PoolCapacity(2, "100%"), target=None, active_release=V2, now=soon
    )
    assert later.rollout.phase == Phase.SUCCEEDED
    down = [pods[0], replace(pods[1], ready=False)]
    failed = plan_rollout(
        replace(node, rollout=state), down, PoolCapacity(2, "100%"), target=None, active_release=V2, now=soon
    )
    assert failed.rollout.phase == Phase.ROLLING_BACK
    assert failed.failure is not None
    assert failed.failure.reason == FailureReason.READINESS_REGRESSION


def test_blocked_gpus_are_moved_along_but_never_waited_for_or_counted() -> None:
    # Device 2's GPU failed validation: its pod never gets ready. It must neither stall the
    # pre-check, nor count against the pool, nor be required in the post-check.
    f = fleet(1, 3, pool_limit=1, max_unavailable=1)
    f.nodes["n0"] = replace(f.nodes["n0"], blocked=frozenset({2}))
    f.world.sizes["n0"] = 3
    f.world.pods["n0"][2].ready_at = None
    original = f.world.tick

    def tick(seconds: float) -> None:
        original(seconds)
        for pod in f.world.pods["n0"]:
            if pod.device == 2:
                pod.ready_at = None  # never ready, whatever its version

    f.world.tick = tick  # type: ignore[method-assign]
    f.run(RELEASES, V2)
    node = f.nodes["n0"]
    assert node.rollout.phase == Phase.SUCCEEDED, node.rollout.failure
    assert {p.version for p in f.world.pods["n0"]} == {"1.1.0"}
    plan = f.plans["n0"]
    assert 2 not in plan.unavailable_devices


def test_a_node_leaves_its_halted_release_even_when_unhealthy() -> None:
    bad = replace(release("1.1.0"), halted=True)
    node = replace(
        fresh_node(2, "1.1.0", min_ready_seconds=0),
        rollout=RolloutStatus(release=bad.name, current_image=image("1.1.0"), stable_image=image("1.1.0")),
    )
    crashing = [
        PodView(f"n-gpu-{d}", d, image("1.1.0"), "1.1.0", ready=False, crash_looping=True) for d in (0, 1)
    ]
    pool = PoolCapacity(2, "100%")
    # Without leave_current an unhealthy node waits in PreCheck ...
    waiting = plan_rollout(node, crashing, pool, target=V1, active_release=bad, now=T0)
    assert (waiting.rollout.phase, waiting.rollout.reason) == (Phase.PRE_CHECK, "NodeUnhealthy")
    # ... and the halt of the release it is *leaving* does not cancel the move.
    plan = plan_rollout(node, crashing, pool, target=V1, active_release=bad, now=T0, leave_current=True)
    assert plan.rollout.phase == Phase.PROGRESSING
    assert (plan.rollout.from_version, plan.rollout.target_version) == ("1.1.0", "1.0.0")
    assert {a.device_index for a in plan.actions if isinstance(a, DeletePod)} == {0, 1}


def test_no_new_node_starts_a_release_whose_failure_budget_is_taken_by_nodes_in_flight() -> None:
    node = fresh_node(2, "1.0.0", min_ready_seconds=0)
    pods = [PodView(f"n-gpu-{d}", d, image("1.0.0"), "1.0.0", ready=True, ready_since=T0) for d in (0, 1)]
    full = PoolCapacity(2, "100%", release_slots=0)
    plan = plan_rollout(node, pods, full, target=V2, active_release=None, now=T0)
    assert (plan.rollout.phase, plan.rollout.reason) == (Phase.PROGRESSING, "WaitingForFailureBudget")
    assert not plan.actions
    free = PoolCapacity(2, "100%", release_slots=1)
    started = plan_rollout(node, pods, free, target=V2, active_release=None, now=T0)
    assert started.rollout.batch == 1
    assert any(isinstance(a, DeletePod) for a in started.actions)
