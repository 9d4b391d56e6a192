"""Pick the inference engine (vLLM or SGLang) for a machine, or refuse, and say which rule decided.

A pure, deterministic function of the detected devices, host, model, preference and driver/CUDA
versions, so the node agent and the operator reach the same answer and ``gpufleet explain-engine``
can show it. The rules are an ordered table (docs/engine-selection.md): the first rule whose
condition holds decides. Thresholds come from the engines' documented requirements:

* vLLM: compute capability >= 7.0; FP8 W8A8 needs >= 8.9, weight-only FP8 (Marlin) runs from 7.5;
  AWQ needs >= 7.5; prebuilt wheels are CUDA 12.x (12.8 in vLLM 0.11).
* SGLang: compute capability >= 7.5 ("sm75 and above"); CUDA 12.x builds.
* Blackwell (sm_100 / sm_120) kernels exist only from CUDA 12.8.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gpufleet.hardware.report import GPUDevice, HardwareReport, HostInfo, cc_tuple, compare_versions

Engine = Literal["vllm", "sglang"]
Preference = Literal["auto", "vllm", "sglang"]

#: CUDA version the driver must support for either engine's current CUDA 12 builds.
MIN_CUDA_DRIVER = "12.4"
#: Blackwell GPUs need kernels built with CUDA 12.8 or newer.
MIN_CUDA_DRIVER_BLACKWELL = "12.8"
MIN_CC_VLLM = (7, 0)
MIN_CC_SGLANG = (7, 5)
MIN_CC_FP8_COMPUTE = (8, 9)
MIN_CC_FP8_WEIGHT_ONLY = (7, 5)
MIN_CC_AWQ = (7, 5)
MIN_CC_BF16 = (8, 0)
#: Host floors (gpufleet policy): engine processes, tokenizer workers and weight loading need these.
MIN_HOST_CPU_CORES = 4
MIN_HOST_MEMORY_MIB = 15 * 1024  # a "16 GB" machine reports ~15.5 GiB MemTotal
#: SGLang is preferred on Hopper/Blackwell datacenter GPUs when the host can feed its CPU-side
#: scheduler: at least this many logical CPUs per GPU.
SGLANG_CPU_CORES_PER_GPU = 4
DEFAULT_GPU_MEMORY_UTILIZATION = 0.90
#: Headroom on top of the weights for KV cache and activations, and per-GPU CUDA context/graphs.
KV_HEADROOM_FRACTION = 0.20
PER_GPU_OVERHEAD_MIB = 1024
DEFAULT_ENGINE_PORT = 8000

#: Every rule, in evaluation order; ``None`` engine means the rule refuses.
RULES: tuple[str, ...] = (
    "NoDevices",
    "MixedDevices",
    "MIGEnabled",
    "ComputeCapabilityTooLow",
    "CUDADriverTooOld",
    "BlackwellNeedsCUDA128",
    "HostTooSmall",
    "HostMemoryBelowWeights",
    "QuantizationUnsupported",
    "InsufficientVRAM",
    "SGLangNeedsTuring",
    "SGLangFP8NeedsAda",
    "PreferenceHonoured",
    "FP8WeightOnlyVLLM",
    "VoltaVLLMOnly",
    "SGLangOnHopperBlackwell",
    "DefaultVLLM",
)
REFUSAL_RULES = frozenset(RULES[:12])

_BYTES_PER_PARAM = {
    None: 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "w8a8": 1.0,
    "awq": 0.55,
    "gptq": 0.55,
    "awq_marlin": 0.55,
    "gptq_marlin": 0.55,
    "bitsandbytes": 0.55,
    "int4": 0.55,
}

#: Parameter counts (billions) of models the fleet serves often; others are read from the name.
KNOWN_MODELS: dict[str, float] = {
    "meta-llama/llama-3.2-1b-instruct": 1.24,
    "meta-llama/llama-3.2-3b-instruct": 3.21,
    "meta-llama/llama-3.1-8b-instruct": 8.03,
    "meta-llama/meta-llama-3.1-8b-instruct": 8.03,
    "meta-llama/llama-3.1-70b-instruct": 70.6,
    "meta-llama/llama-3.3-70b-instruct": 70.6,
    "qwen/qwen2.5-7b-instruct": 7.62,
    "qwen/qwen2.5-32b-instruct": 32.8,
    "qwen/qwen2.5-72b-instruct": 72.7,
    "qwen/qwen3-0.6b": 0.75,
    "qwen/qwen3-8b": 8.19,
    "qwen/qwen3-32b": 32.8,
    "mistralai/mistral-7b-instruct-v0.3": 7.25,
    "google/gemma-2-9b-it": 9.24,
    "google/gemma-3-27b-it": 27.4,
    "deepseek-ai/deepseek-r1-distill-llama-8b": 8.03,
    "microsoft/phi-3-mini-4k-instruct": 3.82,
}

_SIZE_TOKEN = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)b$", re.IGNORECASE)


class ModelRequirements(BaseModel):
    """What the model needs: its size (for VRAM) and how it is quantized."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    params_billion: float = Field(gt=0, le=10_000)
    quantization: str | None = None
    max_model_len: int | None = Field(default=None, gt=0)

    @property
    def weights_mib(self) -> int:
        per_param = _BYTES_PER_PARAM.get(self.quantization, 2.0)
        return math.ceil(self.params_billion * 1e9 * per_param / (1024 * 1024))


def params_from_name(name: str) -> float | None:
    """Parameter count in billions from a model id like 'Qwen/Qwen3-8B' or 'Mixtral-8x7B' (None if absent)."""
    tail = name.rsplit("/", 1)[-1]
    for token in re.split(r"[-_]", tail):
        match = _SIZE_TOKEN.match(token)
        if match:
            experts = int(match.group(1)) if match.group(1) else 1
            return experts * float(match.group(2))
    return None


def model_requirements(
    name: str,
    *,
    quantization: str | None = None,
    max_model_len: int | None = None,
    params_billion: float | None = None,
) -> ModelRequirements:
    """Build requirements for a model id: explicit size, else the known table, else the size in its name."""
    size = params_billion or KNOWN_MODELS.get(name.strip().lower()) or params_from_name(name)
    if size is None:
        raise ValueError(
            f"cannot tell the size of model {name!r}: it is not in the known-model table and its name has no "
            "size such as '8B'; pass the parameter count explicitly (--params-billion)"
        )
    return ModelRequirements(
        name=name, params_billion=size, quantization=quantization or None, max_model_len=max_model_len
    )


class EngineDecision(BaseModel):
    """The engine to run (None: refused), the rule that decided, why, and how to start it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: Engine | None
    rule: str
    reason: str
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    dtype: str | None = None
    required_vram_mib: int = 0
    available_vram_mib: int = 0
    command: list[str] | None = None


def engine_command(
    engine: Engine,
    model: str,
    port: int = DEFAULT_ENGINE_PORT,
    *,
    host: str = "0.0.0.0",
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    dtype: str | None = None,
    quantization: str | None = None,
) -> list[str]:
    """The exact command line that starts ``engine`` serving ``model`` (OpenAI-compatible API on ``port``)."""
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port}")
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
    fraction = f"{gpu_memory_utilization:.2f}"
    if engine == "vllm":
        cmd = ["vllm", "serve", model, "--host", host, "--port", str(port)]
        cmd += ["--gpu-memory-utilization", fraction]
        if max_model_len is not None:
            cmd += ["--max-model-len", str(max_model_len)]
        if tensor_parallel_size > 1:
            cmd += ["--tensor-parallel-size", str(tensor_parallel_size)]
    elif engine == "sglang":
        cmd = [
            "python",
            "-m",
            "sglang.launch_server",
            "--model-path",
            model,
            "--host",
            host,
            "--port",
            str(port),
        ]
        cmd += ["--mem-fraction-static", fraction]
        if max_model_len is not None:
            cmd += ["--context-length", str(max_model_len)]
        if tensor_parallel_size > 1:
            cmd += ["--tp-size", str(tensor_parallel_size)]
    else:
        raise ValueError(f"unknown engine {engine!r}: expected 'vllm' or 'sglang'")
    if dtype is not None:
        cmd += ["--dtype", dtype]
    if quantization is not None:
        cmd += ["--quantization", quantization]
    return cmd


def select_engine(
    devices: Sequence[GPUDevice],
    host: HostInfo,
    model: ModelRequirements,
    *,
    preference: Preference = "auto",
    driver_version: str,
    cuda_driver_version: str,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    port: int = DEFAULT_ENGINE_PORT,
) -> EngineDecision:
    """Decide the engine for ``model`` on ``devices`` (one engine, tensor-parallel over all of them)."""
    if preference not in ("auto", "vllm", "sglang"):
        raise ValueError(f"engine preference must be auto, vllm or sglang, got {preference!r}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    # Validate version strings up front: a malformed one is a caller bug, not a refusal.
    compare_versions(driver_version, driver_version)
    compare_versions(cuda_driver_version, cuda_driver_version)

    def refuse(rule: str, reason: str, **extra: int) -> EngineDecision:
        return EngineDecision(
            engine=None, rule=rule, reason=reason, gpu_memory_utilization=gpu_memory_utilization, **extra
        )

    if not devices:
        return refuse("NoDevices", "no GPU was detected, so no engine can run")
    first = devices[0]
    if any(
        (d.name, d.compute_capability, d.memory_total_mib)
        != (first.name, first.compute_capability, first.memory_total_mib)
        for d in devices
    ):
        names = sorted({d.name for d in devices})
        return refuse(
            "MixedDevices",
            f"tensor parallelism needs identical GPUs, got {', '.join(names)}: run one engine per GPU model",
        )
    if any(d.mig_enabled for d in devices):
        return refuse("MIGEnabled", "MIG mode is enabled; engines are started on whole GPUs only")
    cc = cc_tuple(first.compute_capability)
    gpu = f"{first.name} (compute capability {first.compute_capability})"
    if cc < MIN_CC_VLLM:
        return refuse(
            "ComputeCapabilityTooLow",
            f"{gpu}: vLLM needs compute capability >= 7.0 and SGLang >= 7.5",
        )
    if compare_versions(cuda_driver_version, MIN_CUDA_DRIVER) < 0:
        return refuse(
            "CUDADriverTooOld",
            f"driver {driver_version} supports CUDA {cuda_driver_version}; the engines' CUDA 12 builds need "
            f">= {MIN_CUDA_DRIVER}: update the NVIDIA driver",
        )
    if cc >= (10, 0) and compare_versions(cuda_driver_version, MIN_CUDA_DRIVER_BLACKWELL) < 0:
        return refuse(
            "BlackwellNeedsCUDA128",
            f"{gpu} is Blackwell, whose kernels need CUDA >= {MIN_CUDA_DRIVER_BLACKWELL}; driver "
            f"{driver_version} supports {cuda_driver_version}: update the NVIDIA driver (R570 or newer)",
        )
    if host.cpu_cores < MIN_HOST_CPU_CORES or host.memory_mib < MIN_HOST_MEMORY_MIB:
        return refuse(
            "HostTooSmall",
            f"host has {host.cpu_cores} CPUs and {host.memory_mib} MiB memory; an engine needs at least "
            f"{MIN_HOST_CPU_CORES} CPUs and {MIN_HOST_MEMORY_MIB} MiB",
        )
    weights = model.weights_mib
    if host.memory_mib < weights:
        return refuse(
            "HostMemoryBelowWeights",
            f"{model.name} has {weights} MiB of weights but the host has only {host.memory_mib} MiB of "
            "memory to load them through",
        )
    quant = model.quantization
    if (quant == "fp8" and cc < MIN_CC_FP8_WEIGHT_ONLY) or (
        quant in ("awq", "awq_marlin") and cc < MIN_CC_AWQ
    ):
        return refuse(
            "QuantizationUnsupported",
            f"{gpu} cannot run {quant} quantization (needs compute capability >= 7.5)",
        )
    count = len(devices)
    total_vram = first.memory_total_mib * count
    available = int(total_vram * gpu_memory_utilization)
    required = math.ceil(weights * (1 + KV_HEADROOM_FRACTION)) + PER_GPU_OVERHEAD_MIB * count
    sizes = {"required_vram_mib": required, "available_vram_mib": available, "tensor_parallel_size": count}
    if required > available:
        return refuse(
            "InsufficientVRAM",
            f"{model.name} needs ~{required} MiB (weights {weights} MiB + {int(KV_HEADROOM_FRACTION * 100)}% "
            f"KV/activation headroom + {PER_GPU_OVERHEAD_MIB} MiB per GPU) but {count}x {first.name} offer "
            f"{available} MiB at {gpu_memory_utilization:.0%} utilisation",
            **sizes,
        )
    if preference == "sglang" and cc < MIN_CC_SGLANG:
        return refuse("SGLangNeedsTuring", f"SGLang was requested but needs compute capability >= 7.5; {gpu}")
    if preference == "sglang" and quant == "fp8" and cc < MIN_CC_FP8_COMPUTE:
        return refuse(
            "SGLangFP8NeedsAda",
            f"SGLang was requested with FP8, which needs FP8 hardware (compute capability >= 8.9); {gpu}. "
            "vLLM can run it weight-only: use engine auto or vllm",
        )

    dtype = "half" if cc < MIN_CC_BF16 else None

    def choose(engine: Engine, rule: str, reason: str) -> EngineDecision:
        command = engine_command(
            engine,
            model.name,
            port,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=model.max_model_len,
            tensor_parallel_size=count,
            dtype=dtype,
            quantization=quant,
        )
        return EngineDecision(
            engine=engine,
            rule=rule,
            reason=reason,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            command=command,
            **sizes,
        )

    fits = f"{model.name} fits ({required} of {available} MiB)"
    if preference != "auto":
        return choose(
            preference, "PreferenceHonoured", f"{preference} was requested and supports {gpu}; {fits}"
        )
    if quant == "fp8" and cc < MIN_CC_FP8_COMPUTE:
        return choose(
            "vllm",
            "FP8WeightOnlyVLLM",
            f"{gpu} has no FP8 hardware; vLLM runs FP8 weight-only (Marlin W8A16); {fits}",
        )
    if cc < MIN_CC_SGLANG:
        return choose(
            "vllm", "VoltaVLLMOnly", f"{gpu} is below SGLang's 7.5 minimum; vLLM supports it; {fits}"
        )
    if cc[0] in (9, 10) and host.cpu_cores >= SGLANG_CPU_CORES_PER_GPU * count:
        return choose(
            "sglang",
            "SGLangOnHopperBlackwell",
            f"{gpu} is a Hopper/Blackwell datacenter GPU and the host has {host.cpu_cores} CPUs "
            f"(>= {SGLANG_CPU_CORES_PER_GPU} per GPU) for SGLang's scheduler; {fits}",
        )
    return choose("vllm", "DefaultVLLM", f"vLLM is the default engine for {gpu}; {fits}")


def select_engine_for_report(
    report: HardwareReport,
    model: ModelRequirements,
    *,
    preference: Preference = "auto",
    device_indexes: Sequence[int] | None = None,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    port: int = DEFAULT_ENGINE_PORT,
) -> EngineDecision:
    """``select_engine`` over a detected report (optionally only some of its GPUs, e.g. the pod's one)."""
    devices = report.devices
    if device_indexes is not None:
        wanted = set(device_indexes)
        missing = wanted - {d.index for d in devices}
        if missing:
            raise ValueError(
                f"GPU index(es) {sorted(missing)} not in the report ({[d.index for d in devices]})"
            )
        devices = [d for d in devices if d.index in wanted]
    return select_engine(
        devices,
        report.host,
        model,
        preference=preference,
        driver_version=report.driver_version,
        cuda_driver_version=report.cuda_driver_version,
        gpu_memory_utilization=gpu_memory_utilization,
        port=port,
    )
