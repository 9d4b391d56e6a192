"""`gpufleet-node detect`: report this machine's GPUs, host and their validation verdicts.

Runs the same hardware layer the agent and operator use. Failures to detect print one actionable
line (never a traceback) and exit with the error's own code, so scripts can tell "no driver" (4)
from "no permission" (5) without parsing text.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="detect this machine's GPUs via NVML and validate them against the GPU catalog",
        description="Detect GPUs (NVML), CPU and memory, and validate every GPU against the catalog.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON {report, validation} instead of text")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="replay a recorded hardware profile instead of asking NVML (see gpufleet.hardware.profiles)",
    )
    parser.add_argument(
        "--min-driver-version", metavar="VERSION", help="block GPUs when the driver is older than this"
    )
    parser.set_defaults(func=handle)


def _text(report: Any, results: list[Any]) -> str:
    lines = [
        f"driver {report.driver_version} (CUDA {report.cuda_driver_version}); host: {report.host.cpu_model}, "
        f"{report.host.cpu_cores} CPUs, {report.host.memory_mib} MiB memory",
    ]
    for device, result in zip(report.devices, results, strict=True):
        verdict = "valid" if result.valid else f"BLOCKED ({result.reason})"
        lines.append(
            f"GPU {device.index}: {device.name} [0x{device.pci_device_id:04x}] {device.memory_total_mib} MiB "
            f"cc {device.compute_capability} {device.architecture}{' MIG' if device.mig_enabled else ''} "
            f"{device.uuid}: {verdict}"
        )
        if not result.valid:
            lines.append(f"    {result.message}")
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    from gpufleet.hardware.catalog import load_catalog
    from gpufleet.hardware.detect import DetectionBackend, DetectionError, NvmlBackend, ProfileBackend, detect
    from gpufleet.hardware.validation import validate_report

    backend: DetectionBackend = ProfileBackend(args.profile) if args.profile else NvmlBackend()
    try:
        report = detect(backend)
    except DetectionError as exc:
        if args.json:
            print(json.dumps({"error": {"code": exc.code, "message": str(exc)}}))
        print(f"gpufleet-node detect: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        results = validate_report(report, load_catalog(), min_driver_version=args.min_driver_version)
    except ValueError as exc:
        print(f"gpufleet-node detect: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document = {
            "report": report.model_dump(mode="json"),
            "validation": [r.model_dump(mode="json") for r in results],
        }
        print(json.dumps(document, indent=2))
    else:
        print(_text(report, results))
    return 0 if all(r.valid for r in results) else 1
