"""`gpufleet explain-engine`: which engine a GPU would run a model with, and the rule that decided."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_DRIVER = "570.133.07"
DEFAULT_CUDA = "12.8"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain-engine",
        help="explain which inference engine (vLLM or SGLang) a GPU and model get, and why",
        description=(
            "Run gpufleet's engine selection for a GPU from the catalog (or a recorded hardware profile) "
            "and a model, and print the deciding rule and the exact engine command line."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--gpu",
        help="catalog key, NVML name (with or without 'NVIDIA') or GFD label, e.g. 'NVIDIA L4', "
        "'GeForce RTX 4090', 'NVIDIA-H100-80GB-HBM3' or 'h100-sxm'",
    )
    source.add_argument("--profile", help="a recorded hardware profile (gpufleet-node detect --profile ...)")
    parser.add_argument("--model", required=True, help="model id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--count", type=int, default=1, help="GPUs for tensor parallelism (with --gpu)")
    parser.add_argument(
        "--engine", choices=["auto", "vllm", "sglang"], default="auto", help="engine preference"
    )
    parser.add_argument("--quantization", help="quantization passed to the engine (fp8, awq, gptq, ...)")
    parser.add_argument("--max-model-len", type=int, help="context length to serve")
    parser.add_argument(
        "--params-billion", type=float, help="model size when it cannot be read from its name"
    )
    parser.add_argument("--cpu-cores", type=int, default=16, help="host logical CPUs (with --gpu)")
    parser.add_argument("--memory-gib", type=int, default=64, help="host memory in GiB (with --gpu)")
    parser.add_argument("--driver", default=DEFAULT_DRIVER, help="NVIDIA driver version (with --gpu)")
    parser.add_argument("--cuda", default=DEFAULT_CUDA, help="CUDA version the driver supports (with --gpu)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.90, help="fraction of VRAM to use")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.set_defaults(func=handle)


def _fail(message: str) -> int:
    print(f"gpufleet explain-engine: {message}", file=sys.stderr)
    return 2


def handle(args: argparse.Namespace) -> int:
    from gpufleet.hardware.catalog import load_catalog, resolve_gpu, suggest_gpus
    from gpufleet.hardware.engine_select import RULES, model_requirements, select_engine
    from gpufleet.hardware.profiles import load_profile
    from gpufleet.hardware.report import GPUDevice, HostInfo

    try:
        model = model_requirements(
            args.model,
            quantization=args.quantization,
            max_model_len=args.max_model_len,
            params_billion=args.params_billion,
        )
    except ValueError as exc:
        return _fail(str(exc))
    if args.profile:
        try:
            report = load_profile(args.profile)
        except KeyError as exc:
            return _fail(str(exc.args[0]))
        devices, host = list(report.devices), report.host
        driver, cuda = report.driver_version, report.cuda_driver_version
    else:
        catalog = load_catalog()
        gpu = resolve_gpu(catalog, args.gpu)
        if gpu is None:
            close = suggest_gpus(catalog, args.gpu)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            return _fail(f"GPU {args.gpu!r} is not in the catalog (gpufleet gpus lists it){hint}")
        if args.count < 1 or args.cpu_cores < 1 or args.memory_gib < 1:
            return _fail("--count, --cpu-cores and --memory-gib must be positive")
        devices = [
            GPUDevice(
                index=i,
                uuid=f"GPU-explain-{i}",
                name=gpu.nvml_names[0],
                pci_device_id=gpu.pci_device_ids[0],
                memory_total_mib=gpu.vram_mib,
                compute_capability=gpu.compute_capability,
                architecture=gpu.architecture,
            )
            for i in range(args.count)
        ]
        host = HostInfo(cpu_model="(assumed)", cpu_cores=args.cpu_cores, memory_mib=args.memory_gib * 1024)
        driver, cuda = args.driver, args.cuda
    try:
        decision = select_engine(
            devices,
            host,
            model,
            preference=args.engine,
            driver_version=driver,
            cuda_driver_version=cuda,
            gpu_memory_utilization=args.gpu_memory_utilization,
        )
    except ValueError as exc:
        return _fail(str(exc))
    passed = list(RULES[: RULES.index(decision.rule)])
    if args.json:
        document: dict[str, Any] = decision.model_dump(mode="json")
        document["rulesPassed"] = passed
        document["inputs"] = {
            "devices": [d.model_dump(mode="json") for d in devices],
            "host": host.model_dump(mode="json"),
            "model": model.model_dump(mode="json"),
            "preference": args.engine,
            "driverVersion": driver,
            "cudaDriverVersion": cuda,
        }
        print(json.dumps(document, indent=2))
    else:
        print(f"engine:  {decision.engine or 'none (refused)'}")
        print(f"rule:    {decision.rule}")
        print(f"why:     {decision.reason}")
        if decision.required_vram_mib:
            print(
                f"vram:    needs ~{decision.required_vram_mib} MiB, {decision.available_vram_mib} MiB usable"
            )
        if decision.command:
            print(f"command: {' '.join(decision.command)}")
        print(f"checked: {', '.join(passed) if passed else '(first rule decided)'}")
        print("table:   docs/engine-selection.md")
    return 0 if decision.engine else 1
