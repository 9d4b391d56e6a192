"""Pod planning is level-based: same world -> same plan; converged world -> empty plan."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gpufleet.devices import Observation, observe, plan_devices
from gpufleet.fleet import plan_pods
from gpufleet.objects import InodeView, NodeView, PodView
from gpufleet.podspec import PodRelease
from gpufleet.settings import OperatorSettings
from tests.unit.operator.bodies import CATALOG, device_json, hardware_json, inode_body, node_body, pod_body

RELEASE = PodRelease("1.0.0", "ghcr.io/gpufleet/engine@sha256:" + "b" * 64)
SETTINGS = OperatorSettings()
INODE = InodeView.from_body(inode_body())
NODE = NodeView.from_body(node_body(count=4))
PLAN = plan_devices(INODE, NODE, CATALOG)


def created(**kw: Any) -> list[dict[str, Any]]:
    plan = plan_pods(INODE, PLAN, [], RELEASE, {}, SETTINGS)
    return [pod_body(p, **kw) for p in plan.creates]


def views(bodies: list[dict[str, Any]]) -> list[PodView]:
    return [PodView.from_body(b) for b in bodies]


def valid_obs(*indexes: int) -> dict[int, Observation]:
    return {i: observe(hardware_json(device_json(0)), i, CATALOG, NODE, None) for i in indexes}


def test_fresh_node_gets_one_pod_per_gpu_then_nothing() -> None:
    plan = plan_pods(INODE, PLAN, [], RELEASE, {}, SETTINGS)
    assert sorted(p["metadata"]["name"] for p in plan.creates) == [f"box1-gpu-{i}" for i in range(4)]
    # Pending pods: nothing to write, no readiness to check (no report yet).
    again = plan_pods(INODE, PLAN, views(created(phase="Pending")), RELEASE, {}, SETTINGS)
    assert again.empty


def test_deleted_pod_is_recreated_and_terminating_name_waits() -> None:
    bodies = created()
    plan = plan_pods(INODE, PLAN, views(bodies[1:]), RELEASE, {}, SETTINGS)
    assert [p["metadata"]["name"] for p in plan.creates] == ["box1-gpu-0"]
    gone = pod_body(plan.creates[0], deleting=True)
    plan = plan_pods(INODE, PLAN, views([gone, *bodies[1:]]), RELEASE, {}, SETTINGS)
    assert plan.creates == []
    assert plan.waiting == ["box1-gpu-0"]


def test_scale_down_finished_and_duplicate_pods_are_deleted() -> None:
    small = plan_devices(InodeView.from_body(inode_body(gpu_count=2)), NODE, CATALOG)
    bodies = created()
    bodies[0]["status"]["phase"] = "Failed"
    dup = pod_body({**bodies[1], "metadata": {**bodies[1]["metadata"], "name": "box1-gpu-1-old"}})
    plan = plan_pods(INODE, small, views([*bodies, dup]), RELEASE, {}, SETTINGS)
    reasons = {d.name: d.reason for d in plan.deletes}
    assert reasons == {
        "box1-gpu-0": "PodReplaced",
        "box1-gpu-2": "GPURemoved",
        "box1-gpu-3": "GPURemoved",
        "box1-gpu-1-old": "DuplicatePod",
    }


def test_unobserved_node_never_deletes_pods_for_gpus_gone() -> None:
    # A cold cache (node not listed yet) and a node that was never seen look alike: keep the pods.
    unseen = plan_devices(INODE, None, CATALOG)
    assert not unseen.node_observed
    bodies = [pod_body(b, gate="True", ready=True) for b in created()]
    plan = plan_pods(INODE, unseen, views(bodies), RELEASE, {}, SETTINGS)
    assert plan.deletes == []
    assert plan.creates == []
    # The node observed without GPUs: now the GPUs really are gone.
    bare = plan_devices(INODE, NodeView.from_body(node_body(count=0)), CATALOG)
    assert bare.node_observed
    gone = plan_pods(INODE, bare, views(bodies), RELEASE, {}, SETTINGS)
    assert sorted(d.reason for d in gone.deletes) == ["GPURemoved"] * 4


def test_carried_report_blocks_but_never_opens_a_gate() -> None:
    # The report came from a pod that was replaced: it still blocks the device (new pod created
    # unroutable), but a valid one does not open the new pod's gate before it reports itself.
    bodies = created()
    bad = observe(hardware_json(device_json(0, vram=49152)), 0, CATALOG, NODE, None)
    plan = plan_pods(INODE, PLAN, views(bodies[1:]), RELEASE, {0: replace(bad, carried=True)}, SETTINGS)
    assert [p["metadata"]["labels"]["gpufleet.io/routable"] for p in plan.creates] == ["false"]
    carried = {i: replace(o, carried=True) for i, o in valid_obs(0, 1).items()}
    assert plan_pods(INODE, PLAN, views(bodies), RELEASE, carried, SETTINGS).gate_checks == []


def test_no_release_creates_nothing_but_keeps_pods() -> None:
    plan = plan_pods(INODE, PLAN, views(created()[:2]), None, {}, SETTINGS)
    assert plan.creates == []
    assert plan.deletes == []


def test_valid_running_pods_get_gate_checks_until_gate_true() -> None:
    bodies = created()
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, valid_obs(0, 1), SETTINGS)
    assert [c.index for c in plan.gate_checks] == [0, 1]
    bodies[0] = pod_body(bodies[0], gate="True", ready=True)
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, valid_obs(0, 1), SETTINGS)
    assert [c.index for c in plan.gate_checks] == [1]


def test_blocked_device_loses_routable_label_and_gate() -> None:
    bodies = created()
    bodies[2] = pod_body(bodies[2], gate="True", ready=True)
    bad = {2: observe(hardware_json(device_json(0, vram=49152)), 2, CATALOG, NODE, None)}
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, bad, SETTINGS)
    assert [(p.name, dict(p.labels)) for p in plan.label_patches] == [
        ("box1-gpu-2", {"gpufleet.io/routable": "false"})
    ]
    assert [c.name for c in plan.gate_clears] == ["box1-gpu-2"]
    assert "VRAMMismatch" in plan.gate_clears[0].message


def test_restart_without_reports_does_not_clear_gates() -> None:
    bodies = [pod_body(b["metadata"] and b, gate="True", ready=True) for b in created()]
    plan = plan_pods(INODE, PLAN, views(bodies), RELEASE, {}, SETTINGS)
    assert plan.empty


def test_deleting_inode_plans_nothing() -> None:
    body = inode_body()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert plan_pods(InodeView.from_body(body), PLAN, [], RELEASE, {}, SETTINGS).empty
