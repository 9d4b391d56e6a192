"""Pod planning, every decision with its exact reason and message (mutation survivors of fleet.py)."""

from __future__ import annotations

import copy
from typing import Any

from gpufleet.devices import observe, plan_devices
from gpufleet.fleet import Delete, GateCheck, GateClear, LabelPatch, PodPlan, plan_pods
from gpufleet.objects import InodeView, NodeView
from gpufleet.podspec import PodRelease
from tests.unit.operator.bodies import CATALOG, device_json, hardware_json, inode_body, node_body, pod_body
from tests.unit.operator.test_fleet import INODE, NODE, PLAN, RELEASE, SETTINGS, created, valid_obs, views

NEXT = PodRelease("1.1.0", "ghcr.io/gpufleet/engine@sha256:" + "c" * 64)


def ended(
    body: dict[str, Any], phase: str, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    out = pod_body(body, phase=phase)
    if reason is not None:
        out["status"]["reason"] = reason
    if message is not None:
        out["status"]["message"] = message
    return out


def test_plan_counts_writes_and_emptiness() -> None:
    assert PodPlan().empty
    assert PodPlan().writes == 0
    plan = PodPlan(
        creates=[{}],
        deletes=[Delete("a", "R", "m")],
        label_patches=[LabelPatch("b", {})],
        gate_clears=[GateClear("c", 0, "m")],
    )
    assert plan.writes == 4
    assert not plan.empty
    checks_only = PodPlan(gate_checks=[GateCheck("d", 0)])
    assert checks_only.writes == 0
    assert not checks_only.empty
    assert not PodPlan(waiting=["x"]).writes


def test_ended_pods_are_replaced_with_their_reason_in_the_message() -> None:
    bodies = created()
    bodies[0] = ended(bodies[0], "Failed", "OutOfnvidia.com/gpu", "Node didn't have enough resource")
    bodies[1] = ended(bodies[1], "Failed", "Evicted")
    bodies[2] = ended(bodies[2], "Succeeded")
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, {}, SETTINGS)
    assert plan.deletes == [
        Delete(
            "box1-gpu-0",
            "PodReplaced",
            "pod ended in phase Failed (OutOfnvidia.com/gpu: Node didn't have enough resource); "
            "a new one will be created",
        ),
        Delete("box1-gpu-1", "PodReplaced", "pod ended in phase Failed (Evicted); a new one will be created"),
        Delete("box1-gpu-2", "PodReplaced", "pod ended in phase Succeeded; a new one will be created"),
    ]
    # Each ended pod's GPU gets exactly one new pod of the same (canonical) name.
    assert [p["metadata"]["name"] for p in plan.creates] == ["box1-gpu-0", "box1-gpu-1", "box1-gpu-2"]


def test_removed_gpu_and_moved_node_messages() -> None:
    bodies = created()
    small = plan_devices(InodeView.from_body(inode_body(gpu_count=3)), NODE, CATALOG)
    moved = {**bodies[1], "spec": {**bodies[1]["spec"], "nodeName": "elsewhere"}}
    plan = plan_pods(INODE, small, views([bodies[0], moved, bodies[2], bodies[3]]), RELEASE, {}, SETTINGS)
    assert plan.deletes == [
        Delete(
            "box1-gpu-1", "NodeChanged", f"pod runs on elsewhere, InferenceNode now names {INODE.node_name}"
        ),
        Delete("box1-gpu-3", "GPURemoved", f"GPU 3 is no longer part of node {INODE.node_name}"),
    ]
    # The moved pod's GPU gets a new pod on the right node in the same pass.
    assert [p["metadata"]["name"] for p in plan.creates] == ["box1-gpu-1"]


def test_a_pod_without_a_device_label_counts_as_removed_only_on_an_observed_node() -> None:
    stray = pod_body(created()[0])
    del stray["metadata"]["labels"]["gpufleet.io/device-index"]
    stray["metadata"]["name"] = "box1-stray"
    plan = plan_pods(INODE, PLAN, views([stray, *created()]), RELEASE, {}, SETTINGS)
    assert plan.deletes == [
        Delete("box1-stray", "GPURemoved", f"GPU None is no longer part of node {INODE.node_name}")
    ]
    unseen = plan_devices(INODE, None, CATALOG)
    assert plan_pods(INODE, unseen, views([stray]), RELEASE, {}, SETTINGS).deletes == []


def test_duplicates_keep_the_canonical_name_whatever_the_order() -> None:
    bodies = created()
    dup = pod_body({**bodies[1], "metadata": {**bodies[1]["metadata"], "name": "box1-gpu-1-zz"}})
    first_dup = plan_pods(INODE, PLAN, views([dup, *bodies]), RELEASE, {}, SETTINGS)
    assert first_dup.deletes == [Delete("box1-gpu-1-zz", "DuplicatePod", "GPU 1 already has pod box1-gpu-1")]
    other = pod_body({**bodies[1], "metadata": {**bodies[1]["metadata"], "name": "box1-gpu-1-aa"}})
    no_canonical = [b for b in bodies if b["metadata"]["name"] != "box1-gpu-1"]
    plan = plan_pods(INODE, PLAN, views([*no_canonical, other, dup]), RELEASE, {}, SETTINGS)
    assert plan.deletes == [Delete("box1-gpu-1-zz", "DuplicatePod", "GPU 1 already has pod box1-gpu-1-aa")]
    assert plan.creates == []


def test_new_pods_take_the_release_named_for_their_device() -> None:
    def release_for(index: int) -> PodRelease | None:
        return {0: NEXT, 1: RELEASE}.get(index)

    plan = plan_pods(INODE, PLAN, [], RELEASE, {}, SETTINGS, release_for=release_for)
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in plan.creates}
    assert images == {"box1-gpu-0": NEXT.image, "box1-gpu-1": RELEASE.image}
    # Without release_for every new pod takes the node's release.
    plain = plan_pods(INODE, PLAN, [], NEXT, {}, SETTINGS)
    assert {p["spec"]["containers"][0]["image"] for p in plain.creates} == {NEXT.image}
    assert len(plain.creates) == 4


def test_terminating_canonical_name_waits_and_others_are_created() -> None:
    bodies = created()
    gone = pod_body(bodies[0], deleting=True)
    plan = plan_pods(INODE, PLAN, views([gone]), RELEASE, {}, SETTINGS)
    assert plan.waiting == ["box1-gpu-0"]
    assert sorted(p["metadata"]["name"] for p in plan.creates) == ["box1-gpu-1", "box1-gpu-2", "box1-gpu-3"]
    assert plan.deletes == []


def test_labels_follow_the_verdict_both_ways() -> None:
    bodies = created()
    unroutable = copy.deepcopy(bodies[0])
    unroutable["metadata"]["labels"]["gpufleet.io/routable"] = "false"
    plan = plan_pods(INODE, PLAN, views([unroutable, *bodies[1:]]), RELEASE, valid_obs(0), SETTINGS)
    assert plan.label_patches == [LabelPatch("box1-gpu-0", {"gpufleet.io/routable": "true"})]
    # Pending (no report yet) is not blocked: the label stays "true", no gate is touched.
    pending = plan_pods(INODE, PLAN, views(bodies), RELEASE, {}, SETTINGS)
    assert pending.label_patches == []
    assert pending.gate_clears == []


def test_gate_checks_need_a_running_pod_and_the_pods_own_report() -> None:
    bodies = created(phase="Pending")
    assert plan_pods(INODE, PLAN, views(bodies), RELEASE, valid_obs(0), SETTINGS).gate_checks == []
    running = created()
    plan = plan_pods(INODE, PLAN, views(running), RELEASE, valid_obs(0, 2), SETTINGS)
    assert plan.gate_checks == [GateCheck("box1-gpu-0", 0), GateCheck("box1-gpu-2", 2)]
    gate_false = [pod_body(b, gate="False") for b in running]
    assert [
        c.index
        for c in plan_pods(INODE, PLAN, views(gate_false), RELEASE, valid_obs(1), SETTINGS).gate_checks
    ] == [1]


def test_gate_clear_message_names_the_verdict() -> None:
    bodies = created()
    bodies[3] = pod_body(bodies[3], gate="True", ready=True)
    bad = observe(hardware_json(device_json(0, vram=49152)), 3, CATALOG, NODE, None)
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, {3: bad}, SETTINGS)
    assert len(plan.gate_clears) == 1
    clear = plan.gate_clears[0]
    assert (clear.name, clear.index) == ("box1-gpu-3", 3)
    assert clear.message.startswith("GPU 3: VRAMMismatch: ")
    assert bad.verdict.message in clear.message
    # A blocked pod whose gate is already closed needs no clear; a valid open gate none either.
    closed = [pod_body(b, gate="False") for b in created()]
    assert plan_pods(INODE, PLAN, views(closed), RELEASE, {3: bad}, SETTINGS).gate_clears == []


def test_node_observed_with_fewer_gpus_deletes_exactly_the_gone_ones() -> None:
    two = plan_devices(INODE, NodeView.from_body(node_body(count=2)), CATALOG)
    plan = plan_pods(INODE, two, views(created()), RELEASE, {}, SETTINGS)
    assert [(d.name, d.reason) for d in plan.deletes] == [
        ("box1-gpu-2", "GPURemoved"),
        ("box1-gpu-3", "GPURemoved"),
    ]
    assert plan.creates == []


def test_a_device_without_a_release_does_not_stop_the_others() -> None:
    def release_for(index: int) -> PodRelease | None:
        return None if index == 1 else RELEASE

    plan = plan_pods(INODE, PLAN, [], None, {}, SETTINGS, release_for=release_for)
    assert sorted(p["metadata"]["name"] for p in plan.creates) == ["box1-gpu-0", "box1-gpu-2", "box1-gpu-3"]


def test_new_pods_carry_the_product_the_node_advertises() -> None:
    plan = plan_pods(INODE, PLAN, [], RELEASE, {}, SETTINGS)
    products = {p["metadata"].get("annotations", {}).get("gpufleet.io/gpu-product") for p in plan.creates}
    assert products == {PLAN.devices[0].product}
    assert PLAN.devices[0].product
