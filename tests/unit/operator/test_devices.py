"""GFD labels plan the devices; the agent's report confirms or blocks each one."""

from __future__ import annotations

import pytest

from gpufleet.devices import (
    PENDING_REASON,
    ReportError,
    effective_verdict,
    observe,
    parse_agent_report,
    plan_devices,
    validated_vram_mib,
)
from gpufleet.objects import InodeView, NodeView
from tests.unit.operator.bodies import CATALOG, device_json, hardware_json, inode_body, node_body


def node(**kw):  # type: ignore[no-untyped-def]
    return NodeView.from_body(node_body(**kw))


def test_plan_from_gfd_labels_is_pending_until_reported() -> None:
    plan = plan_devices(InodeView.from_body(inode_body()), node(count=4), CATALOG)
    assert [d.index for d in plan.devices] == [0, 1, 2, 3]
    assert all(d.verdict.reason == PENDING_REASON and not d.verdict.valid for d in plan.devices)
    assert plan.devices[0].model is not None
    assert plan.devices[0].model.key == "rtx-4090"
    assert plan.problem is None


def test_gpu_count_caps_and_explains() -> None:
    plan = plan_devices(InodeView.from_body(inode_body(gpu_count=2)), node(count=4), CATALOG)
    assert len(plan.devices) == 2
    plan = plan_devices(InodeView.from_body(inode_body(gpu_count=6)), node(count=4), CATALOG)
    assert len(plan.devices) == 4
    assert plan.problem is not None
    assert "gpuCount=6" in plan.problem
    plan = plan_devices(InodeView.from_body(inode_body()), node(count=8, allocatable=6), CATALOG)
    assert len(plan.devices) == 6
    assert "allocatable" in (plan.problem or "")


def test_missing_node_and_gpuless_node_plan_nothing() -> None:
    inode = InodeView.from_body(inode_body(node="ghost"))
    assert "not found" in (plan_devices(inode, None, CATALOG).problem or "")
    empty = NodeView(name="cpu-node", labels={}, allocatable_gpus=None)
    assert plan_devices(inode, empty, CATALOG).devices == ()


def test_unknown_gfd_product_is_blocked_at_plan_time_and_stays_blocked() -> None:
    body = node_body(count=1)
    body["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-Mystery-GPU-9000"
    n = NodeView.from_body(body)
    plan = plan_devices(InodeView.from_body(inode_body()), n, CATALOG)
    verdict = plan.devices[0].verdict
    assert verdict.reason == "UnknownProduct"
    assert "NVIDIA-Mystery-GPU-9000" in verdict.message
    obs = observe(hardware_json(device_json(0)), 0, CATALOG, None, None)
    assert effective_verdict(plan.devices[0], obs).reason == "UnknownProduct"


def test_report_confirms_valid_device_with_nominal_vram() -> None:
    n = node(count=4)
    plan = plan_devices(InodeView.from_body(inode_body()), n, CATALOG)
    obs = observe(hardware_json(device_json(0, vram=24210)), 2, CATALOG, n, "550.54.15")
    verdict = effective_verdict(plan.devices[2], obs)
    assert verdict.valid
    assert verdict.reason == "Valid"
    assert obs.engine == "vllm"
    assert validated_vram_mib(obs, verdict) == 24564  # catalog nominal, not the ECC-shaved report


def test_misreported_vram_is_blocked() -> None:
    n = node(count=4)
    obs = observe(hardware_json(device_json(0, vram=49152)), 0, CATALOG, n, None)
    assert not obs.verdict.valid
    assert obs.verdict.reason == "VRAMMismatch"
    assert validated_vram_mib(obs, obs.verdict) == 0


def test_old_driver_is_blocked_against_release_minimum() -> None:
    obs = observe(hardware_json(device_json(0), driver="535.1.1"), 0, CATALOG, node(), "550.54.15")
    assert obs.verdict.reason == "DriverTooOld"


def test_multi_device_report_picks_pod_index() -> None:
    payload = hardware_json(device_json(0), device_json(1), device_json(2))
    _, dev, _ = parse_agent_report(payload, 1)
    assert dev.uuid.endswith("0001")
    with pytest.raises(ReportError, match="not this pod's GPU 5"):
        parse_agent_report(payload, 5)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([], "JSON object"),
        ({"report": {"devices": []}}, "malformed"),
        (hardware_json(), "no GPU"),
    ],
)
def test_bad_reports_fail_clearly(payload: object, needle: str) -> None:
    with pytest.raises(ReportError, match=needle):
        parse_agent_report(payload, 0)
