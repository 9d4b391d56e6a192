"""Values an agent may send that the API cannot hold: a blocked device with a reason (#21 F4).

Before: an agent reporting engine ``trtllm`` made every status write fail with 422, forever,
while the pods served.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.api.v1alpha1.inferencenode import InferenceNodeStatus
from gpufleet.devices import INVALID_AGENT_REPORT, UNKNOWN_ENGINE, ReportError, observe, plan_devices
from gpufleet.objects import InodeView, NodeView
from gpufleet.status import PoolContext, inode_status
from tests.unit.operator.bodies import CATALOG, device_json, hardware_json, inode_body, node_body


def status_for(payload: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    inode = InodeView.from_body(inode_body("box", gpu_count=1))
    node = NodeView.from_body(node_body(count=1))
    obs = observe(payload, 0, CATALOG, node, None)
    status, _ = inode_status(
        inode, plan_devices(inode, node, CATALOG), [], {0: obs}, None,
        PoolContext(True, 0, 10**14, Decimal(1), Decimal("0.0001")),
    )
    InferenceNodeStatus.model_validate(status)  # what the API server's schema would say
    return status


def test_unknown_engine_blocks_the_device_and_the_status_stays_writable() -> None:
    payload = hardware_json(device_json(0))
    payload["engine"] = {"engine": "trtllm", "rule": "x", "reason": "y"}
    device = status_for(payload)["devices"][0]
    assert device["validation"]["reason"] == UNKNOWN_ENGINE
    assert "trtllm" in device["validation"]["message"]
    assert "engine" not in device or device["engine"] in ("vllm", "sglang")
    assert device["effectiveStake"] == "0"


@pytest.mark.parametrize(
    ("field", "value"),
    [("architecture", "x" * 200), ("uuid", "GPU-" + "f" * 300), ("name", "N" * 500)],
)
def test_values_the_schema_refuses_are_never_written(field: str, value: str) -> None:
    dev = device_json(0)
    dev[field] = value
    device = status_for(hardware_json(dev))["devices"][0]
    assert device["validation"]["reason"] == INVALID_AGENT_REPORT
    assert value not in str(device)


@pytest.mark.parametrize(
    "payload",
    [[], {"report": {"devices": "many"}}, {"report": None, "blocked": {"reason": "NoGPUsFound"}}, "x" * 10],
)
def test_garbage_is_a_report_error_not_a_crash(payload: Any) -> None:
    with pytest.raises(ReportError):
        observe(payload, 0, CATALOG, None, None)
