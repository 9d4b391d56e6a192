"""Engine selection at its edges: each threshold on both sides, exact reasons, every argument passed on.

Written against the mutants that survived the decision-table tests (bench/results/mutation.md):
``<`` versus ``<=`` at compute capability 7.5 / 8.9, host memory equal to the floor or the weights,
VRAM required equal to available, the per-GPU overhead for more than one GPU, arguments dropped on
the way to the command line.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.hardware.catalog import load_catalog
from gpufleet.hardware.engine_select import (
    MIN_HOST_MEMORY_MIB,
    EngineDecision,
    ModelRequirements,
    engine_command,
    model_requirements,
    params_from_name,
    select_engine,
    select_engine_for_report,
)
from gpufleet.hardware.report import GPUDevice, HardwareReport, HostInfo

BIG_HOST = HostInfo(cpu_model="x", cpu_cores=64, memory_mib=512 * 1024)
SMALL = ModelRequirements(name="Qwen/Qwen3-0.6B", params_billion=0.75)


def _gpu(key: str, index: int = 0, **changes: Any) -> GPUDevice:
    model = load_catalog().by_key(key)
    assert model is not None
    fields: dict[str, Any] = {
        "index": index,
        "uuid": f"GPU-{key}-{index}",
        "name": model.nvml_names[0],
        "pci_device_id": model.pci_device_ids[0],
        "memory_total_mib": model.vram_mib,
        "compute_capability": model.compute_capability,
        "architecture": model.architecture,
    }
    fields.update(changes)
    return GPUDevice(**fields)


def _select(
    devices: list[GPUDevice], model: ModelRequirements = SMALL, host: HostInfo = BIG_HOST, **kw: Any
) -> EngineDecision:
    return select_engine(devices, host, model, driver_version="570.133.07", cuda_driver_version="12.8", **kw)


# ------------------------------------------------------------------ model sizes


def test_size_is_read_from_the_last_path_segment_only() -> None:
    assert params_from_name("org/x-7B-y/Model-8B") == 8
    assert params_from_name("a/x-7B-y/Model-8B") == 8
    assert params_from_name("x-7B-y/Model") is None
    assert params_from_name("Model-3B") == 3


def test_model_requirements_keep_quantization_and_context() -> None:
    req = model_requirements("x/Model-8B", quantization="awq", max_model_len=4096)
    assert req == ModelRequirements(
        name="x/Model-8B", params_billion=8, quantization="awq", max_model_len=4096
    )
    assert model_requirements("x/Model-8B", quantization="").quantization is None


def test_unknown_size_message() -> None:
    with pytest.raises(ValueError, match="cannot tell the size") as info:
        model_requirements("gpt2")
    assert str(info.value) == (
        "cannot tell the size of model 'gpt2': it is not in the known-model table and its name has no "
        "size such as '8B'; pass the parameter count explicitly (--params-billion)"
    )


# ------------------------------------------------------------------ command lines


def test_engine_command_bounds_are_inclusive() -> None:
    assert "1.00" in engine_command("vllm", "m", gpu_memory_utilization=1.0)
    assert engine_command("vllm", "m", 1)[6] == "1"
    assert engine_command("vllm", "m", 65535)[6] == "65535"
    bad_values = [({"gpu_memory_utilization": 1.01}, "gpu_memory_utilization"), ({"port": 65536}, "port")]
    bad_values.append(({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"))
    for bad, message in bad_values:
        with pytest.raises(ValueError, match=message):
            engine_command("vllm", "m", **bad)


def test_full_command_lines_with_every_option() -> None:
    options: dict[str, Any] = {"tensor_parallel_size": 2, "dtype": "half", "quantization": "awq"}
    assert engine_command("vllm", "m", 8001, **options) == [
        "vllm", "serve", "m", "--host", "0.0.0.0", "--port", "8001", "--gpu-memory-utilization", "0.90",
        "--tensor-parallel-size", "2", "--dtype", "half", "--quantization", "awq",
    ]  # fmt: skip
    assert engine_command("sglang", "m", 8001, **options) == [
        "python", "-m", "sglang.launch_server", "--model-path", "m", "--host", "0.0.0.0", "--port", "8001",
        "--mem-fraction-static", "0.90", "--tp-size", "2", "--dtype", "half", "--quantization", "awq",
    ]  # fmt: skip


# ------------------------------------------------------------------ selection thresholds


def test_utilisation_is_checked_before_any_rule() -> None:
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="gpu_memory_utilization"):
            _select([], gpu_memory_utilization=bad)
    assert _select([], gpu_memory_utilization=1.0).rule == "NoDevices"


def test_refusals_carry_the_utilisation_and_sizes() -> None:
    refused = _select([], gpu_memory_utilization=0.7)
    assert refused.gpu_memory_utilization == 0.7
    big = ModelRequirements(name="big", params_billion=30)
    short = _select([_gpu("t4"), _gpu("t4", 1)], big, gpu_memory_utilization=0.8)
    assert short.model_dump() == {
        "engine": None,
        "rule": "InsufficientVRAM",
        "reason": "big needs ~70714 MiB (weights 57221 MiB + 20% KV/activation headroom + 1024 MiB per GPU) "
        "but 2x Tesla T4 offer 24576 MiB at 80% utilisation",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "dtype": None,
        "required_vram_mib": 70714,
        "available_vram_mib": 24576,
        "command": None,
    }


def test_required_equal_to_available_fits() -> None:
    # 1B bf16: 1908 MiB weights -> ceil(1908 * 1.2) + 1024 = 3314 MiB; int(3683 * 0.9) = 3314 MiB.
    exact = _select([_gpu("l4", memory_total_mib=3683)], ModelRequirements(name="m", params_billion=1))
    assert (exact.required_vram_mib, exact.available_vram_mib) == (3314, 3314)
    assert exact.rule == "DefaultVLLM"
    short = _select([_gpu("l4", memory_total_mib=3682)], ModelRequirements(name="m", params_billion=1))
    assert short.rule == "InsufficientVRAM"


def test_host_floors_are_inclusive() -> None:
    at_floor = HostInfo(cpu_model="x", cpu_cores=4, memory_mib=MIN_HOST_MEMORY_MIB)
    assert _select([_gpu("l4")], host=at_floor).rule == "DefaultVLLM"
    below = HostInfo(cpu_model="x", cpu_cores=4, memory_mib=MIN_HOST_MEMORY_MIB - 1)
    assert _select([_gpu("l4")], host=below).rule == "HostTooSmall"
    ten_b = ModelRequirements(name="m", params_billion=10)
    assert ten_b.weights_mib == 19074
    just_enough = HostInfo(cpu_model="x", cpu_cores=8, memory_mib=19074)
    assert _select([_gpu("h100-sxm")], ten_b, host=just_enough).rule == "SGLangOnHopperBlackwell"
    one_short = HostInfo(cpu_model="x", cpu_cores=8, memory_mib=19073)
    assert _select([_gpu("h100-sxm")], ten_b, host=one_short).rule == "HostMemoryBelowWeights"


@pytest.mark.parametrize(
    ("key", "model", "preference", "rule", "engine"),
    [
        # FP8 weight-only from 7.5 (Turing) upwards; below it the GPU cannot run FP8 at all.
        ("t4", SMALL.model_copy(update={"quantization": "fp8"}), "auto", "FP8WeightOnlyVLLM", "vllm"),
        ("v100-sxm2-32gb", SMALL.model_copy(update={"quantization": "fp8"}), "auto",
         "QuantizationUnsupported", None),
        # AWQ (and its Marlin kernel) from 7.5.
        ("t4", SMALL.model_copy(update={"quantization": "awq"}), "auto", "DefaultVLLM", "vllm"),
        ("t4", SMALL.model_copy(update={"quantization": "awq_marlin"}), "auto", "DefaultVLLM", "vllm"),
        ("v100-sxm2-32gb", SMALL.model_copy(update={"quantization": "awq_marlin"}), "auto",
         "QuantizationUnsupported", None),
        # SGLang from 7.5; SGLang FP8 from 8.9.
        ("t4", SMALL, "sglang", "PreferenceHonoured", "sglang"),
        ("l4", SMALL.model_copy(update={"quantization": "fp8"}), "sglang", "PreferenceHonoured", "sglang"),
        # Turing is not Volta: auto picks the default, not the Volta-only rule.
        ("t4", SMALL, "auto", "DefaultVLLM", "vllm"),
    ],
)  # fmt: skip
def test_compute_capability_thresholds_at_the_boundary(
    key: str, model: ModelRequirements, preference: Any, rule: str, engine: str | None
) -> None:
    decision = _select([_gpu(key)], model, preference=preference)
    assert (decision.rule, decision.engine) == (rule, engine), decision.reason


@pytest.mark.parametrize(
    ("devices", "model", "reason"),
    [
        ([], SMALL, "no GPU was detected, so no engine can run"),
        (
            [_gpu("l4"), _gpu("t4", 1), _gpu("a100-sxm4-80gb", 2)],
            SMALL,
            "tensor parallelism needs identical GPUs, got NVIDIA A100-SXM4-80GB, NVIDIA L4, Tesla T4: "
            "run one engine per GPU model",
        ),
        (
            [_gpu("a100-sxm4-80gb", mig_enabled=True)],
            SMALL,
            "MIG mode is enabled; engines are started on whole GPUs only",
        ),
        (
            [_gpu("l4")],
            ModelRequirements(name="m", params_billion=1),
            "vLLM is the default engine for NVIDIA L4 (compute capability 8.9); m fits (3314 of 20730 MiB)",
        ),
    ],
)
def test_exact_reasons(devices: list[GPUDevice], model: ModelRequirements, reason: str) -> None:
    assert _select(devices, model).reason == reason


def test_exact_host_memory_and_sglang_fp8_reasons() -> None:
    host = HostInfo(cpu_model="x", cpu_cores=8, memory_mib=32000)
    big = _select([_gpu("h100-sxm")], ModelRequirements(name="big", params_billion=30), host=host)
    assert big.reason == (
        "big has 57221 MiB of weights but the host has only 32000 MiB of memory to load them through"
    )
    fp8 = _select(
        [_gpu("a100-sxm4-80gb")], SMALL.model_copy(update={"quantization": "fp8"}), preference="sglang"
    )
    assert fp8.reason == (
        "SGLang was requested with FP8, which needs FP8 hardware (compute capability >= 8.9); NVIDIA "
        "A100-SXM4-80GB (compute capability 8.0). vLLM can run it weight-only: use engine auto or vllm"
    )


def test_a_choice_passes_every_setting_to_the_command() -> None:
    model = ModelRequirements(name="Qwen/Qwen3-8B", params_billion=8, quantization="fp8", max_model_len=4096)
    decision = _select(
        [_gpu("l4"), _gpu("l4", 1)], model, preference="sglang", gpu_memory_utilization=0.85, port=9001
    )
    assert decision.model_dump() == {
        "engine": "sglang",
        "rule": "PreferenceHonoured",
        "reason": "sglang was requested and supports NVIDIA L4 (compute capability 8.9); Qwen/Qwen3-8B fits "
        "(11204 of 39157 MiB)",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.85,
        "dtype": None,
        "required_vram_mib": 11204,
        "available_vram_mib": 39157,
        "command": [
            "python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--host", "0.0.0.0",
            "--port", "9001", "--mem-fraction-static", "0.85", "--context-length", "4096", "--tp-size", "2",
            "--quantization", "fp8",
        ],
    }  # fmt: skip
    turing = _select([_gpu("t4"), _gpu("t4", 1)], model_requirements("meta-llama/Llama-3.1-8B-Instruct"))
    assert turing.command == [
        "vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--host", "0.0.0.0", "--port", "8000",
        "--gpu-memory-utilization", "0.90", "--tensor-parallel-size", "2", "--dtype", "half",
    ]  # fmt: skip


def test_select_for_report_passes_preference_utilisation_and_port() -> None:
    report = HardwareReport(
        devices=[_gpu("l4"), _gpu("l4", 1)],
        host=BIG_HOST,
        driver_version="570.133.07",
        cuda_driver_version="12.8",
    )
    decision = select_engine_for_report(
        report, SMALL, preference="sglang", device_indexes=[1], gpu_memory_utilization=0.5, port=9100
    )
    assert (decision.engine, decision.rule, decision.tensor_parallel_size) == (
        "sglang",
        "PreferenceHonoured",
        1,
    )
    assert decision.gpu_memory_utilization == 0.5
    assert decision.command is not None
    assert decision.command[decision.command.index("--port") + 1] == "9100"
    assert decision.command[decision.command.index("--mem-fraction-static") + 1] == "0.50"
    old_cuda = report.model_copy(update={"cuda_driver_version": "12.2", "driver_version": "535.1"})
    refused = select_engine_for_report(old_cuda, SMALL)
    assert refused.rule == "CUDADriverTooOld"
    assert "driver 535.1 supports CUDA 12.2" in refused.reason
