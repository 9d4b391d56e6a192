from __future__ import annotations

from datetime import timedelta

import pytest

from gpufleet.rollout.views import (
    approved_major,
    node_devices,
    node_hardware,
    node_state,
    pod_view,
    pool_max_unavailable,
    release_view,
)
from tests.unit.rollout.sim import T0, image

READY = [
    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
    {"type": "gpufleet.io/engine-ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:04Z"},
]


def pod(
    index: str | None = "0", *, conditions: list[dict[str, str]] | None = None, **status: object
) -> dict[str, object]:
    labels = {"gpufleet.io/engine-version": "1.0.0"}
    if index is not None:
        labels["gpufleet.io/device-index"] = index
    return {
        "metadata": {"name": "n-gpu-0", "uid": "u1", "labels": labels},
        "spec": {"containers": [{"name": "engine", "image": image("1.0.0")}]},
        "status": {"phase": "Running", "conditions": conditions or [], **status},
    }


def test_pod_is_ready_only_with_the_gate_and_ready_since_rounds_up() -> None:
    view = pod_view(pod(conditions=READY))
    assert view is not None
    assert view.ready
    assert view.device_index == 0
    assert view.image == image("1.0.0")
    # Later of the two transitions, plus one second: minReadySeconds stays a lower bound.
    assert view.ready_since == T0 + timedelta(seconds=6)
    precise = pod_view(pod(conditions=READY), first_seen_ready=T0 + timedelta(seconds=5.5))
    assert precise is not None
    assert precise.ready_since == T0 + timedelta(seconds=5.5)
    late = pod_view(pod(conditions=READY), first_seen_ready=T0 + timedelta(seconds=9))  # a slow watch
    assert late is not None
    assert late.ready_since == T0 + timedelta(seconds=6)
    no_gate = pod_view(pod(conditions=READY[:1]))
    assert no_gate is not None
    assert not no_gate.ready
    assert no_gate.ready_since is None
    assert pod_view(pod(None)) is None
    assert pod_view(pod("gpu0")) is None


@pytest.mark.parametrize(
    "container",
    [
        {"restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
        {"restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}},
        {"restartCount": 3, "state": {"running": {}}},
    ],
)
def test_crash_loops_are_recognised(container: dict[str, object]) -> None:
    view = pod_view(pod(containerStatuses=[container]))
    assert view is not None
    assert view.crash_looping


def test_a_failed_pod_counts_as_crashed_and_a_fresh_one_does_not() -> None:
    failed = pod_view(pod(phase="Failed"))
    fresh = pod_view(pod(containerStatuses=[{"restartCount": 1, "state": {"running": {}}}]))
    assert failed is not None
    assert failed.crash_looping
    assert fresh is not None
    assert not fresh.crash_looping


def test_release_view_reads_budget_and_halt_and_rejects_bad_input() -> None:
    body = {
        "metadata": {"name": "engine-1-1-0"},
        "spec": {
            "version": "1.1.0",
            "image": image("1.1.0"),
            "channel": "candidate",
            "failureBudget": 2,
            "resumeCount": 1,
            "minDriverVersion": "550.54.15",
            "engines": ["vllm"],
        },
        "status": {"halted": True, "observedResumeCount": 0},
    }
    view = release_view(body)
    assert view.failure_budget == 2
    assert view.channel == "candidate"
    assert view.engines == {"vllm"}
    # Halted at resumeCount 0, but spec.resumeCount is already 1: a resume is pending, not a halt.
    assert not view.halted
    halted = release_view({**body, "status": {"halted": True, "observedResumeCount": 1}})
    assert halted.halted
    with pytest.raises(
        ValueError, match=r"EngineRelease engine-1-1-0: spec.version: invalid semantic version"
    ):
        release_view({**body, "spec": {**body["spec"], "version": "v1.1"}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="must be referenced by digest"):
        release_view({**body, "spec": {**body["spec"], "image": "engine:latest"}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="'beta' is not one of"):
        release_view({**body, "spec": {**body["spec"], "channel": "beta"}})  # type: ignore[dict-item]


def test_driver_and_cuda_come_from_gfd_labels() -> None:
    labels = {
        "nvidia.com/cuda.driver.major": "550",
        "nvidia.com/cuda.driver.minor": "54",
        "nvidia.com/cuda.driver.rev": "15",
        "nvidia.com/cuda.runtime.major": "12",
        "nvidia.com/cuda.runtime.minor": "4",
    }
    hw = node_hardware(labels, ["vllm", ""])
    assert hw.driver_version == "550.54.15"
    assert hw.cuda_version == "12.4"
    assert hw.engines == {"vllm"}
    assert node_hardware(None).driver_version is None


def test_node_state_and_pool_settings() -> None:
    status = {
        "devices": [{"index": 0}, {"index": 2}],
        "currentVersion": "1.0.0",
        "rollout": {"phase": "Idle"},
    }
    views = [v for v in [pod_view(pod("5"))] if v is not None]
    assert node_devices(status, views) == (0, 2, 5)
    state = node_state({"updatePolicy": {"maxUnavailable": "50%", "minReadySeconds": 7}}, status, views)
    assert state.policy.max_unavailable == "50%"
    assert state.policy.min_ready_seconds == 7
    assert state.current_version == "1.0.0"
    assert (
        approved_major(
            {"updatePolicy": {"approvedMajorVersion": 2}}, {"updatePolicy": {"approvedMajorVersion": 3}}
        )
        == 3
    )
    assert approved_major({}, None) is None
    assert pool_max_unavailable(None) == "10%"
    assert pool_max_unavailable({"updatePolicy": {"maxUnavailable": 4}}) == 4


def test_only_a_validation_verdict_blocks_a_device() -> None:
    from gpufleet.rollout.views import blocked_devices

    status = {
        "devices": [
            {"index": 0, "validation": {"valid": True, "reason": "Valid"}},
            {"index": 1, "validation": {"valid": False, "reason": "AwaitingHardwareReport"}},
            {"index": 2, "validation": {"valid": False, "reason": "VRAMMismatch"}},
            {"index": 3},
        ]
    }
    assert blocked_devices(status) == {2}
    assert node_state({}, status, []).serving == (0, 1, 3)
