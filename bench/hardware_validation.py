"""Benchmark: how fast the hardware layer validates devices and selects engines.

The operator validates every device of every node on each reconcile, so ``validate_device`` must
stay cheap for thousands of devices. Run: ``.venv/bin/python bench/hardware_validation.py``.
Writes ``bench/results/hardware_validation.json`` with the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gpufleet.hardware.catalog import load_catalog
from gpufleet.hardware.engine_select import model_requirements, select_engine_for_report
from gpufleet.hardware.profiles import list_profiles, load_profile_document, profile_gfd_labels
from gpufleet.hardware.validation import validate_device

DEVICES = 10_000
ROUNDS = 5


def main() -> int:
    catalog = load_catalog()
    samples = []
    for name in list_profiles():
        doc = load_profile_document(name)
        labels = profile_gfd_labels(name)
        for device in doc.report.devices:
            samples.append((device, labels, doc.report.driver_version))
    work = [samples[i % len(samples)] for i in range(DEVICES)]

    validate_times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for device, labels, driver in work:
            validate_device(
                device, catalog, gfd_labels=labels, driver_version=driver, min_driver_version="550.54.15"
            )
        validate_times.append(time.perf_counter() - start)

    reports = [load_profile_document(n).report for n in list_profiles()]
    model = model_requirements("meta-llama/Llama-3.1-8B-Instruct")
    select_times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for i in range(DEVICES):
            report = reports[i % len(reports)]
            select_engine_for_report(report, model, device_indexes=[0])
        select_times.append(time.perf_counter() - start)

    best_v, best_s = min(validate_times), min(select_times)
    result = {
        "benchmark": "hardware_validation",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "devices": DEVICES,
        "rounds": ROUNDS,
        "validate_device": {
            "best_seconds": round(best_v, 4),
            "median_seconds": round(statistics.median(validate_times), 4),
            "per_device_microseconds": round(best_v / DEVICES * 1e6, 2),
        },
        "select_engine": {
            "best_seconds": round(best_s, 4),
            "median_seconds": round(statistics.median(select_times), 4),
            "per_call_microseconds": round(best_s / DEVICES * 1e6, 2),
        },
    }
    out = Path(__file__).resolve().parent / "results" / "hardware_validation.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
