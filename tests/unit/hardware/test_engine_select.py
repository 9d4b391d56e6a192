"""Engine selection: one test per rule of the decision table, the command lines, and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.hardware.catalog import load_catalog
from gpufleet.hardware.engine_select import (
    REFUSAL_RULES,
    RULES,
    EngineDecision,
    ModelRequirements,
    engine_command,
    model_requirements,
    params_from_name,
    select_engine,
    select_engine_for_report,
)
from gpufleet.hardware.profiles import load_profile
from gpufleet.hardware.report import GPUDevice, HostInfo, cc_tuple

BIG_HOST = HostInfo(cpu_model="AMD EPYC 9354 32-Core Processor", cpu_cores=64, memory_mib=512 * 1024)
SMALL_MODEL = ModelRequirements(name="Qwen/Qwen3-0.6B", params_billion=0.75)
LLAMA_8B = model_requirements("meta-llama/Llama-3.1-8B-Instruct")
FP8 = SMALL_MODEL.model_copy(update={"quantization": "fp8"})
AWQ = SMALL_MODEL.model_copy(update={"quantization": "awq"})


def _host(cores: int, memory_mib: int) -> HostInfo:
    return HostInfo(cpu_model="x", cpu_cores=cores, memory_mib=memory_mib)


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
    devices: list[GPUDevice],
    model: ModelRequirements = SMALL_MODEL,
    host: HostInfo = BIG_HOST,
    cuda: str = "12.8",
    **kwargs: Any,
) -> EngineDecision:
    return select_engine(
        devices, host, model, driver_version="570.133.07", cuda_driver_version=cuda, **kwargs
    )


DECISION_TABLE: list[tuple[list[GPUDevice], dict[str, Any], str, str | None]] = [
        ([], {}, "NoDevices", None),
        ([_gpu("l4"), _gpu("t4", 1)], {}, "MixedDevices", None),
        ([_gpu("a100-sxm4-80gb", mig_enabled=True)], {}, "MIGEnabled", None),
        ([_gpu("l4", name="Tesla P100", compute_capability="6.0")], {}, "ComputeCapabilityTooLow", None),
        ([_gpu("l4")], {"cuda": "12.2"}, "CUDADriverTooOld", None),
        ([_gpu("b200")], {"cuda": "12.6"}, "BlackwellNeedsCUDA128", None),
        ([_gpu("rtx-5090")], {"cuda": "12.4"}, "BlackwellNeedsCUDA128", None),
        ([_gpu("l4")], {"host": _host(2, 64000)}, "HostTooSmall", None),
        ([_gpu("l4")], {"host": _host(8, 8000)}, "HostTooSmall", None),
        (
            [_gpu("h100-sxm")],
            {"model": ModelRequirements(name="big", params_billion=30), "host": HostInfo(
                cpu_model="x", cpu_cores=8, memory_mib=32000)},
            "HostMemoryBelowWeights",
            None,
        ),
        ([_gpu("v100-sxm2-16gb")], {"model": SMALL_MODEL.model_copy(update={"quantization": "fp8"})},
         "QuantizationUnsupported", None),
        ([_gpu("v100-sxm2-16gb")], {"model": SMALL_MODEL.model_copy(update={"quantization": "awq"})},
         "QuantizationUnsupported", None),
        ([_gpu("t4")], {"model": LLAMA_8B}, "InsufficientVRAM", None),
        ([_gpu("v100-sxm2-32gb")], {"preference": "sglang"}, "SGLangNeedsTuring", None),
        ([_gpu("a100-sxm4-80gb")], {"preference": "sglang", "model": SMALL_MODEL.model_copy(
            update={"quantization": "fp8"})}, "SGLangFP8NeedsAda", None),
        ([_gpu("l4")], {"preference": "sglang"}, "PreferenceHonoured", "sglang"),
        ([_gpu("h100-sxm")], {"preference": "vllm"}, "PreferenceHonoured", "vllm"),
        ([_gpu("a100-sxm4-80gb")], {"model": SMALL_MODEL.model_copy(update={"quantization": "fp8"})},
         "FP8WeightOnlyVLLM", "vllm"),
        ([_gpu("v100-sxm2-32gb")], {}, "VoltaVLLMOnly", "vllm"),
        ([_gpu("h100-sxm", i) for i in range(8)], {"model": model_requirements(
            "meta-llama/Llama-3.1-70B-Instruct")}, "SGLangOnHopperBlackwell", "sglang"),
        ([_gpu("b200")], {}, "SGLangOnHopperBlackwell", "sglang"),
        ([_gpu("h100-sxm")], {"host": _host(4, 64000)}, "SGLangOnHopperBlackwell", "sglang"),
        ([_gpu("h100-sxm", i) for i in range(2)], {"host": _host(6, 640000)}, "DefaultVLLM",
         "vllm"),
        ([_gpu("rtx-4090")], {"model": LLAMA_8B}, "DefaultVLLM", "vllm"),
        ([_gpu("l4")], {"model": FP8}, "DefaultVLLM", "vllm"),
        ([_gpu("rtx-5090")], {}, "DefaultVLLM", "vllm"),
]  # fmt: skip


@pytest.mark.parametrize(("devices", "kwargs", "rule", "engine"), DECISION_TABLE)
def test_decision_table(
    devices: list[GPUDevice], kwargs: dict[str, Any], rule: str, engine: str | None
) -> None:
    decision = _select(devices, **kwargs)
    assert decision.rule == rule, decision.reason
    assert decision.engine == engine
    assert decision.reason
    assert (decision.command is None) == (engine is None)


def test_every_rule_is_reached_by_the_table() -> None:
    """Each rule is the deciding one for some row (reachability, not a copy of RULES)."""
    reached = {_select(devices, **kwargs).rule for devices, kwargs, _, _ in DECISION_TABLE}
    assert reached == set(RULES)


def test_vram_requirement_arithmetic() -> None:
    device = _gpu("l4")
    available = int(device.memory_total_mib * 0.9)  # 20730 MiB
    # 8B bf16: 15259 MiB weights * 1.2 + 1024 MiB = 19335 MiB fits; 9B needs 21624 MiB and does not.
    fits = _select([device], ModelRequirements(name="m", params_billion=8))
    assert fits.required_vram_mib == 19335
    assert fits.available_vram_mib == available
    assert fits.required_vram_mib <= available
    assert _select([device], ModelRequirements(name="m", params_billion=9)).rule == "InsufficientVRAM"


def test_volta_gets_half_precision_and_ampere_keeps_bf16() -> None:
    volta = _select([_gpu("v100-sxm2-32gb")])
    assert volta.dtype == "half"
    assert volta.command is not None
    assert volta.command[-2:] == ["--dtype", "half"]
    ampere = _select([_gpu("a100-sxm4-80gb")])
    assert ampere.dtype is None
    assert ampere.command is not None
    assert "--dtype" not in ampere.command


def test_exact_vllm_command() -> None:
    assert engine_command("vllm", "Qwen/Qwen3-8B", 8000, max_model_len=8192) == [
        "vllm", "serve", "Qwen/Qwen3-8B", "--host", "0.0.0.0", "--port", "8000",
        "--gpu-memory-utilization", "0.90", "--max-model-len", "8192",
    ]  # fmt: skip
    tp = engine_command("vllm", "m", 9000, tensor_parallel_size=4, quantization="fp8", host="127.0.0.1")
    assert tp == [
        "vllm", "serve", "m", "--host", "127.0.0.1", "--port", "9000", "--gpu-memory-utilization", "0.90",
        "--tensor-parallel-size", "4", "--quantization", "fp8",
    ]  # fmt: skip


def test_exact_sglang_command() -> None:
    command = engine_command("sglang", "Qwen/Qwen3-8B", 8000, max_model_len=8192, gpu_memory_utilization=0.85)
    assert command == [
        "python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--host", "0.0.0.0",
        "--port", "8000", "--mem-fraction-static", "0.85", "--context-length", "8192",
    ]  # fmt: skip
    assert engine_command("sglang", "m", tensor_parallel_size=2)[-2:] == ["--tp-size", "2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "tgi"}, "unknown engine"),
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ({"port": 0}, "port"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size"),
    ],
)
def test_engine_command_rejects_bad_input(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"engine": "vllm", "model": "m", **kwargs}
    with pytest.raises(ValueError, match=message):
        engine_command(**args)


def test_bad_selection_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="preference"):
        _select([_gpu("l4")], preference="tgi")
    with pytest.raises(ValueError, match="dotted numeric version"):
        _select([_gpu("l4")], cuda="twelve")
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        _select([_gpu("l4")], gpu_memory_utilization=1.5)


def test_model_requirements() -> None:
    assert model_requirements("meta-llama/Llama-3.1-70B-Instruct").params_billion == 70.6
    assert model_requirements("someone/Cool-Model-13B-v2").params_billion == 13
    assert model_requirements("x/y", params_billion=3).params_billion == 3
    assert params_from_name("mistralai/Mixtral-8x7B-Instruct-v0.1") == 56
    assert params_from_name("Qwen/Qwen3-0.6B") == 0.6
    assert params_from_name("gpt2") is None
    with pytest.raises(ValueError, match="--params-billion"):
        model_requirements("openai-community/gpt2")
    bf16 = ModelRequirements(name="m", params_billion=8)
    assert bf16.weights_mib == 15259
    assert bf16.model_copy(update={"quantization": "fp8"}).weights_mib == 7630


def test_select_for_report_picks_the_pod_gpu() -> None:
    report = load_profile("rtx4090-x4")
    one = select_engine_for_report(report, LLAMA_8B, device_indexes=[2])
    assert one.tensor_parallel_size == 1
    assert one.engine == "vllm"
    four = select_engine_for_report(report, LLAMA_8B)
    assert four.tensor_parallel_size == 4
    with pytest.raises(ValueError, match="not in the report"):
        select_engine_for_report(report, LLAMA_8B, device_indexes=[7])


# ----------------------------------------------------------------------------- properties

CATALOG_KEYS = [g.key for g in load_catalog().gpus]


@st.composite
def devices_strategy(draw: st.DrawFn) -> list[GPUDevice]:
    count = draw(st.integers(min_value=0, max_value=8))
    key = draw(st.sampled_from(CATALOG_KEYS))
    mixed = draw(st.booleans())
    devices = []
    for i in range(count):
        k = draw(st.sampled_from(CATALOG_KEYS)) if mixed else key
        changes: dict[str, Any] = {}
        if draw(st.integers(0, 9)) == 0:
            changes["compute_capability"] = draw(
                st.sampled_from(["3.5", "6.1", "7.0", "7.5", "8.0", "9.0", "12.0"])
            )
        if draw(st.integers(0, 9)) == 0:
            changes["memory_total_mib"] = draw(st.integers(min_value=0, max_value=300_000))
        if draw(st.integers(0, 19)) == 0:
            changes["mig_enabled"] = True
        devices.append(_gpu(k, i, **changes))
    return devices


hosts = st.builds(
    HostInfo,
    cpu_model=st.just("cpu"),
    cpu_cores=st.integers(min_value=1, max_value=512),
    memory_mib=st.integers(min_value=1, max_value=4 * 1024 * 1024),
)
models = st.builds(
    ModelRequirements,
    name=st.sampled_from(["m/a-8B", "m/b", "Qwen/Qwen3-8B"]),
    params_billion=st.floats(min_value=0.1, max_value=700, allow_nan=False),
    quantization=st.sampled_from([None, "fp8", "awq", "gptq", "int8", "weird"]),
    max_model_len=st.one_of(st.none(), st.integers(min_value=1, max_value=1_000_000)),
)
versions = st.tuples(
    st.sampled_from(["470.256.02", "535.183.01", "550.54.15", "570.133.07", "580.65.06"]),
    st.sampled_from(["11.4", "12.2", "12.4", "12.6", "12.8", "13.0"]),
)


@settings(max_examples=300, deadline=None)
@given(
    devices=devices_strategy(),
    host=hosts,
    model=models,
    preference=st.sampled_from(["auto", "vllm", "sglang"]),
    version=versions,
)
def test_selection_is_total_deterministic_and_consistent(
    devices: list[GPUDevice],
    host: HostInfo,
    model: ModelRequirements,
    preference: Any,
    version: tuple[str, str],
) -> None:
    kwargs: dict[str, Any] = {
        "preference": preference,
        "driver_version": version[0],
        "cuda_driver_version": version[1],
    }
    first = select_engine(devices, host, model, **kwargs)
    again = select_engine([d.model_copy() for d in devices], host.model_copy(), model.model_copy(), **kwargs)
    assert first == again
    assert first.rule in RULES
    assert (first.engine is None) == (first.rule in REFUSAL_RULES)
    if first.engine is None:
        assert first.command is None
        return
    # Anything chosen satisfies the engine's documented floors and fits.
    cc = cc_tuple(devices[0].compute_capability)
    assert cc >= (7, 0)
    if first.engine == "sglang":
        assert cc >= (7, 5)
    if preference != "auto":
        assert first.engine == preference
    assert first.required_vram_mib <= first.available_vram_mib
    assert first.command is not None
    assert model.name in first.command
    assert first.tensor_parallel_size == len(devices)


def test_decision_table_doc_lists_every_rule_in_order() -> None:
    from pathlib import Path

    from gpufleet.hardware.validation import REASONS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "engine-selection.md").read_text()
    positions = [doc.index(f"| `{rule}` |") for rule in RULES]
    assert positions == sorted(positions)
    for reason in REASONS:
        assert f"`{reason}`" in doc
