"""`gpufleet gpus`: list the GPU catalog (what may join the fleet, and how NVML and GFD name it)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gpus",
        help="list the GPU catalog: NVML names, PCI ids, VRAM, compute capability, GFD product label",
        description="List every GPU in gpufleet's catalog.",
    )
    parser.add_argument("--json", action="store_true", help="print the catalog as JSON")
    parser.add_argument(
        "--architecture", help="only this family (volta, turing, ampere, ada, hopper, blackwell)"
    )
    parser.set_defaults(func=handle)


def _entry(gpu: Any, tolerance: float) -> dict[str, Any]:
    low, high = gpu.vram_bounds(tolerance)
    return {
        "key": gpu.key,
        "nvmlNames": list(gpu.nvml_names),
        "pciDeviceIds": [f"0x{p:04x}" for p in gpu.pci_device_ids],
        "vramMiB": gpu.vram_mib,
        "vramAcceptedMiB": [low, high],
        "computeCapability": gpu.compute_capability,
        "architecture": gpu.architecture,
        "segment": gpu.segment,
        "migCapable": gpu.mig_capable,
        "gfdProduct": gpu.gfd_product,
    }


def handle(args: argparse.Namespace) -> int:
    from gpufleet.hardware.catalog import load_catalog

    catalog = load_catalog()
    gpus = list(catalog.gpus)
    if args.architecture:
        wanted = args.architecture.strip().lower()
        if wanted not in catalog.architectures:
            known = ", ".join(catalog.architectures)
            print(f"gpufleet gpus: unknown architecture {args.architecture!r}; known: {known}")
            return 2
        gpus = [g for g in gpus if g.architecture == wanted]
    entries = [_entry(g, catalog.vram_tolerance_pct) for g in gpus]
    if args.json:
        document = {
            "catalogVersion": catalog.catalog_version,
            "vramTolerancePct": catalog.vram_tolerance_pct,
            "gpus": entries,
        }
        print(json.dumps(document, indent=2))
        return 0
    headers = ["KEY", "NVML NAME", "PCI IDS", "VRAM MiB", "CC", "ARCH", "GFD PRODUCT"]
    rows = [
        [
            e["key"],
            " | ".join(e["nvmlNames"]),
            ",".join(e["pciDeviceIds"]),
            str(e["vramMiB"]),
            e["computeCapability"],
            e["architecture"],
            e["gfdProduct"],
        ]
        for e in entries
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [headers, *rows]]
    print("\n".join(lines))
    print(
        f"\n{len(entries)} GPUs, catalog {catalog.catalog_version}; detected VRAM is accepted within "
        f"±{catalog.vram_tolerance_pct:g}% unless an entry sets its own range (see --json vramAcceptedMiB)"
    )
    return 0
