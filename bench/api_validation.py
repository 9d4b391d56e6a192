"""How fast validate_object checks a custom resource (the emulator runs it on every CR write).

Usage: .venv/bin/python bench/api_validation.py  -> bench/results/api_validation.json
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gpufleet.api.crdgen import load_crds
from gpufleet.api.v1alpha1 import InferenceNode
from gpufleet.api.validation import CompiledCRD, validate_object

ROOT = Path(__file__).resolve().parents[1]
CALLS = 2000
ROUNDS = 5


def _example(name: str) -> dict[str, Any]:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["metadata"]["name"] == name:
                return dict(doc)
    raise KeyError(name)


def _time(fn: Any, calls: int) -> list[float]:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append(time.perf_counter() - start)
    return rounds


def main() -> None:
    crds = load_crds(ROOT / "crds")
    crd = crds["InferenceNode"]
    node = _example("h100-box")
    node["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {"type": t, "status": "True", "reason": "Ok", "lastTransitionTime": "2025-06-06T00:00:00Z"}
            for t in ("Ready", "GPUValidated", "EngineSelected")
        ],
        "devices": [
            {
                "index": i,
                "vramMiB": 81559,
                "engine": "vllm",
                "vramShare": 0.125,
                "effectiveStake": "12500",
                "priorityScore": 1.5,
                "ready": True,
                "routable": True,
            }
            for i in range(8)
        ],
    }
    assert validate_object(crd, node) == []
    results: dict[str, Any] = {}
    for label, fn, calls in (
        ("validate_object_cached", lambda: validate_object(crd, node), CALLS),
        ("validate_object_update_with_old", lambda: validate_object(crd, node, old=node), CALLS),
        ("compile_crd_cold", lambda: CompiledCRD(crd), 20),
        ("pydantic_model_validate", lambda: InferenceNode.model_validate(node), CALLS),
    ):
        rounds = _time(fn, calls)
        results[label] = {
            "calls": calls,
            "best_seconds": round(min(rounds), 4),
            "median_seconds": round(statistics.median(rounds), 4),
            "per_call_microseconds": round(min(rounds) / calls * 1e6, 1),
        }
    report = {
        "benchmark": "api_validation",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "object": "InferenceNode h100-box with 8 devices and 3 conditions in status",
        "rounds": ROUNDS,
        **results,
    }
    out = ROOT / "bench" / "results" / "api_validation.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
