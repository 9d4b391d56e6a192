"""Detection, validation and engine selection as the agent wires them (recorded profiles, no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpufleet.hardware.engine_select import model_requirements, select_engine_for_report
from gpufleet.hardware.profiles import list_profiles, load_profile, load_profile_document
from gpufleet_node.config import load_config
from gpufleet_node.plan import make_plan, with_required_flags

MODEL = "Qwen/Qwen3-0.6B"
GOOD = [p for p in list_profiles() if not p.startswith("bad-")]
BAD = [p for p in list_profiles() if p.startswith("bad-")]


def plan_for(profile: str, **env: str):  # type: ignore[no-untyped-def]
    full = {
        "GPUFLEET_MODEL": MODEL,
        "GPUFLEET_HARDWARE_PROFILE": profile,
        "GPUFLEET_ENGINE_PORT": "8123",
        **env,
    }
    return make_plan(load_config(full), full)


@pytest.mark.parametrize("profile", BAD)
def test_misrepresented_hardware_is_blocked_with_its_reason(profile: str) -> None:
    expect = load_profile_document(profile).metadata.expect
    env = {"GPUFLEET_MIN_DRIVER_VERSION": expect.min_driver_version} if expect.min_driver_version else {}
    plan = plan_for(profile, **env)
    assert plan.engine is None
    assert plan.command is None
    assert plan.blocked is not None
    assert plan.blocked["reason"] == expect.reason
    assert plan.document["blocked"]["reason"] == expect.reason
    assert plan.document["validation"][0]["reason"] == expect.reason
    assert plan.document["report"] == load_profile(profile).model_dump(mode="json")


@pytest.mark.parametrize("profile", GOOD)
def test_valid_hardware_gets_the_hardware_layers_engine_and_command(profile: str) -> None:
    plan = plan_for(profile)
    report = load_profile(profile)
    decision = select_engine_for_report(
        report, model_requirements(MODEL), device_indexes=[0], port=8123
    )
    if decision.engine is None:  # the hardware layer refuses (e.g. host too small): so must we
        assert plan.blocked is not None
        assert plan.blocked["reason"] == decision.rule
        return
    assert plan.engine == decision.engine
    assert plan.command is not None
    assert decision.command is not None
    assert plan.command[0].startswith(f"/opt/venvs/{decision.engine}/bin/")
    assert plan.command[1:len(decision.command)] == decision.command[1:]
    assert plan.document["engine"]["rule"] == decision.rule
    assert plan.document["engine"]["command"] == plan.command
    assert "8123" in plan.command
    assert all(v["valid"] for v in plan.document["validation"])


def test_sglang_gets_metrics_enabled_once() -> None:
    plan = plan_for("h100-sxm-x8", GPUFLEET_ENGINE="sglang")
    assert plan.command is not None
    assert plan.command.count("--enable-metrics") == 1
    assert with_required_flags(["x", "--enable-metrics"], "sglang") == ["x", "--enable-metrics"]
    assert with_required_flags(["vllm", "serve"], "vllm") == ["vllm", "serve"]


def test_requested_engine_is_honoured() -> None:
    for engine in ("vllm", "sglang"):
        plan = plan_for("a100-80gb-x1", GPUFLEET_ENGINE=engine)
        assert plan.engine == engine
        assert plan.document["engine"]["rule"] == "PreferenceHonoured"


def test_device_index_outside_the_machine_is_blocked() -> None:
    plan = plan_for("rtx-a6000-x2", GPUFLEET_DEVICE_INDEX="3")
    assert plan.blocked is not None
    assert plan.blocked["reason"] == "DeviceNotFound"
    assert plan.blocked["message"].startswith("GPUFLEET_DEVICE_INDEX=3 but the visible GPUs are ['0:GPU-")


def test_single_visible_gpu_is_the_pods_gpu_whatever_its_host_index() -> None:
    # Under the device plugin the container sees only its GPU, renumbered 0 by NVML.
    plan = plan_for("a100-80gb-x1", GPUFLEET_DEVICE_INDEX="5")
    device = load_profile("a100-80gb-x1").devices[0]
    assert plan.engine is not None
    assert plan.document["agent"]["device"] == {"index": 0, "uuid": device.uuid}
    assert plan.engine_env({"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": device.uuid}


def test_device_can_be_chosen_by_uuid() -> None:
    device = load_profile("h100-sxm-x8").devices[6]
    plan = plan_for("h100-sxm-x8", GPUFLEET_DEVICE_UUID=device.uuid)
    assert plan.document["agent"]["device"] == {"index": 6, "uuid": device.uuid}
    assert plan.device_uuid == device.uuid
    missing = plan_for("h100-sxm-x8", GPUFLEET_DEVICE_UUID="GPU-nope")
    assert missing.blocked is not None
    assert missing.blocked["reason"] == "DeviceNotFound"
    assert "GPUFLEET_DEVICE_UUID=GPU-nope" in missing.blocked["message"]


def test_blocked_plan_leaves_the_engine_environment_alone() -> None:
    plan = plan_for("bad-unknown-gpu")
    assert plan.engine_env({"A": "1"}) == {"A": "1"}


def test_each_device_of_a_multi_gpu_machine_is_planned_alone() -> None:
    plan = plan_for("h100-sxm-x8", GPUFLEET_DEVICE_INDEX="5")
    assert plan.engine is not None
    assert plan.document["engine"]["tensor_parallel_size"] == 1
    assert plan.document["agent"]["deviceIndex"] == 5
    assert plan.document["agent"]["device"]["index"] == 5
    assert plan.device_uuid == load_profile("h100-sxm-x8").devices[5].uuid


def test_model_too_big_for_the_gpu_is_refused() -> None:
    # One 80 GB H100 of an eight-GPU machine cannot hold a 70B model in 16-bit (one engine per GPU).
    full = {"GPUFLEET_MODEL": "meta-llama/Llama-3.3-70B-Instruct", "GPUFLEET_HARDWARE_PROFILE": "h100-sxm-x8"}
    plan = make_plan(load_config(full), full)
    assert plan.blocked is not None
    assert plan.blocked["reason"] == "InsufficientVRAM"
    assert plan.document["engine"]["engine"] is None


def test_model_of_unknown_size_needs_its_parameter_count() -> None:
    plan = plan_for("a100-80gb-x1", GPUFLEET_MODEL="acme/house-model")
    assert plan.blocked is not None
    assert plan.blocked["reason"] == "ModelUnknown"
    full = {
        "GPUFLEET_MODEL": "acme/house-model",
        "GPUFLEET_HARDWARE_PROFILE": "a100-80gb-x1",
        "GPUFLEET_MODEL_PARAMS_BILLION": "7",
    }
    assert make_plan(load_config(full), full).engine is not None


def test_profile_can_be_a_json_file(tmp_path: Path) -> None:
    report = load_profile("l40s-x4").model_dump(mode="json")
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(report))
    doc = tmp_path / "doc.json"
    labels = {"nvidia.com/gpu.product": "Tesla-T4"}
    doc.write_text(json.dumps({"metadata": {"gfd_labels": labels}, "report": report}))
    assert plan_for(str(bare)).engine is not None
    # The recorded GFD labels contradict NVML: blocked, just as the operator would.
    blocked = plan_for(str(doc)).blocked
    assert blocked is not None
    assert blocked["reason"] == "GFDLabelMismatch"


def test_unreadable_profile_is_blocked_with_a_clear_message(tmp_path: Path) -> None:
    plan = plan_for(str(tmp_path / "missing.json"))
    assert plan.blocked is not None
    assert plan.blocked["reason"] == "ProfileUnreadable"
    assert "neither a recorded profile" in plan.blocked["message"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"devices": "nope"}))
    assert plan_for(str(broken)).blocked["reason"] == "ProfileUnreadable"  # type: ignore[index]


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a real GPU is present")
def test_without_a_profile_nvml_failure_blocks_with_an_actionable_reason() -> None:
    from gpufleet.hardware import detect

    env = {"GPUFLEET_MODEL": MODEL}
    plan = make_plan(load_config(env), env)
    assert plan.blocked is not None
    codes = {
        cls.code
        for cls in vars(detect).values()
        if isinstance(cls, type) and issubclass(cls, detect.DetectionError)
    }
    assert plan.blocked["reason"] in codes
    assert plan.document["report"] is None


@pytest.mark.parametrize(
    ("profile", "index"), [("h100-sxm-x8", 5), ("a100-80gb-x1", 0), ("bad-old-driver", 0)]
)
def test_operator_reads_the_agents_document(profile: str, index: int) -> None:
    """The operator's parser (gpufleet.devices) finds the same GPU and engine the agent used."""
    from gpufleet.devices import parse_agent_report

    plan = plan_for(profile, GPUFLEET_DEVICE_INDEX=str(index), GPUFLEET_MIN_DRIVER_VERSION="550.54.15")
    report, device, engine = parse_agent_report(json.loads(json.dumps(plan.document)), index)
    assert report == load_profile(profile)
    assert device.index == index
    if plan.engine is None:
        assert engine is None
    else:
        assert device.uuid == plan.device_uuid
        assert engine == plan.engine
