"""The metrics' projection of an InferenceNode status: states, running versions, release info."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.metrics import DEVICE_STATES, ROLLOUT_ACTIVE_PHASES, OperatorMetrics, device_samples


def _dev(
    index: int, *, ready: bool = True, valid: bool | None = True, reason: str = "Validated"
) -> dict[str, Any]:
    validation = {} if valid is None else {"valid": valid, "reason": reason, "message": ""}
    return {
        "index": index,
        "product": "NVIDIA L40S",
        "validation": validation,
        "podName": f"box-gpu-{index}",
        "engine": "vllm",
        "ready": ready,
        "vramShare": 0.25 if valid else None,
        "effectiveStake": "25000" if valid else None,
        "priorityScore": 3.5 if valid else None,
    }


def _status(phase: str | None, **rollout: Any) -> dict[str, Any]:
    devices = [
        _dev(0),
        _dev(1),
        _dev(2, ready=False),
        _dev(3, valid=False, reason="VRAMMismatch", ready=False),
    ]
    status: dict[str, Any] = {"devices": devices, "currentVersion": "1.0.0"}
    if phase is not None:
        status["rollout"] = {"phase": phase, "fromVersion": "1.0.0", "targetVersion": "1.1.0", **rollout}
    return status


def _by_index(status: dict[str, Any]) -> dict[int, tuple[str, str | None]]:
    return {s.index: (s.state, s.version) for s in device_samples(status)}


def test_without_a_rollout_every_device_runs_the_current_version() -> None:
    assert _by_index(_status(None)) == {
        0: ("ready", "1.0.0"),
        1: ("ready", "1.0.0"),
        2: ("unready", "1.0.0"),
        3: ("blocked", "1.0.0"),
    }
    assert _by_index(_status("Succeeded", updatedDevices=[0, 1, 2])) == _by_index(_status(None))


def test_progressing_rollout_labels_updated_updating_and_untouched_devices() -> None:
    got = _by_index(_status("Progressing", batchDevices=[1], updatedDevices=[0]))
    assert got == {
        0: ("ready", "1.1.0"),
        1: ("updating", "1.1.0"),
        2: ("unready", "1.0.0"),
        3: ("blocked", "1.0.0"),
    }


def test_rolling_back_moves_devices_back_to_the_version_it_started_from() -> None:
    got = _by_index(_status("RollingBack", batchDevices=[1], updatedDevices=[0]))
    assert got == {
        0: ("ready", "1.0.0"),
        1: ("updating", "1.0.0"),
        2: ("unready", "1.1.0"),
        3: ("blocked", "1.1.0"),
    }


def test_every_documented_state_can_occur() -> None:
    status = _status("Progressing", batchDevices=[1])
    status["devices"].append({"index": 4, "product": "NVIDIA L40S", "validation": {}, "ready": False})
    assert {s.state for s in device_samples(status)} == set(DEVICE_STATES)


def test_blocked_devices_have_no_routing_series_and_a_reason() -> None:
    blocked = next(s for s in device_samples(_status(None)) if s.index == 3)
    assert blocked.blocked_reason == "VRAMMismatch"
    assert (blocked.vram_share, blocked.priority_score, blocked.effective_stake_base_units) == (
        None,
        None,
        None,
    )
    ready = next(s for s in device_samples(_status(None)) if s.index == 0)
    assert ready.effective_stake_base_units == 25_000 * 10**9


def test_phases_match_the_rollout_state_machine() -> None:
    from gpufleet.rollout.state import ACTIVE_PHASES

    assert {str(p) for p in ACTIVE_PHASES} == set(ROLLOUT_ACTIVE_PHASES)


def _series(m: OperatorMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for f in m.registry.collect() for s in f.samples if s.name == name]


def test_record_status_labels_the_running_version() -> None:
    m = OperatorMetrics()
    m.record_inference_node_status(
        "fleet", "box", "op-a", _status("Progressing", batchDevices=[1], updatedDevices=[0])
    )
    got = {(lb["state"], lb["version"]): v for lb, v in _series(m, "gpufleet_devices")}
    assert got == {
        ("ready", "1.1.0"): 1.0,
        ("updating", "1.1.0"): 1.0,
        ("unready", "1.0.0"): 1.0,
        ("blocked", "1.0.0"): 1.0,
    }
    m.record_inference_node_status("fleet", "box", "op-a", {**_status(None), "currentVersion": "1.1.0"})
    assert {lb["version"] for lb, _ in _series(m, "gpufleet_devices")} == {"1.1.0"}


@pytest.mark.parametrize("channel", ["stable", "candidate"])
def test_engine_release_info_per_release(channel: str) -> None:
    m = OperatorMetrics()
    m.record_engine_release("engine-1-0-0", "1.0.0", "stable")
    m.record_engine_release("engine-1-1-0", "1.1.0", "stable")
    m.record_engine_release("engine-1-1-0", "1.1.0", channel)  # a channel change replaces the series
    assert sorted((lb["release"], lb["channel"]) for lb, _ in _series(m, "gpufleet_engine_release_info")) == [
        ("engine-1-0-0", "stable"),
        ("engine-1-1-0", channel),
    ]
    m.set_release_halted("engine-1-1-0", "1.1.0", True)
    m.forget_release("engine-1-1-0")
    assert [lb["release"] for lb, _ in _series(m, "gpufleet_engine_release_info")] == ["engine-1-0-0"]
    assert _series(m, "gpufleet_engine_release_halted") == []
