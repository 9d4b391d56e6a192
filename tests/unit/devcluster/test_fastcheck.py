"""The quick schema check never accepts what the full validation rejects (differential test)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.api.validation import CompiledCRD, apply_defaults
from gpufleet_devcluster.fastcheck import Unsupported, compile_check
from gpufleet_devcluster.validation import _status_only

CRD = yaml.safe_load(
    (Path(__file__).resolve().parents[3] / "crds" / "gpufleet.io_inferencenodes.yaml").read_text()
)
STATUS_CRD = _status_only(CRD)
SCHEMA = STATUS_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
FULL = CompiledCRD(STATUS_CRD)
CHECK = compile_check(SCHEMA)

BASE: dict[str, Any] = {
    "apiVersion": "gpufleet.io/v1alpha1",
    "kind": "InferenceNode",
    "metadata": {"name": "n", "namespace": "d"},
    "status": {
        "observedGeneration": 3,
        "readyDevices": 1,
        "totalDevices": 2,
        "currentVersion": "1.0.0",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AllReady",
                "message": "ok",
                "lastTransitionTime": "2026-11-25T15:00:00Z",
                "observedGeneration": 3,
            },
            {
                "type": "GPUValidated",
                "status": "False",
                "reason": "PCIIdMismatch",
                "lastTransitionTime": "2026-11-25T15:00:00+00:00",
            },
        ],
        "devices": [
            {
                "index": 0,
                "uuid": "GPU-1",
                "product": "NVIDIA H100",
                "architecture": "hopper",
                "computeCapability": "9.0",
                "vramMiB": 81559,
                "validation": {"valid": True, "reason": "Valid"},
                "podName": "p0",
                "engine": "vllm",
                "vramShare": 0.5,
                "effectiveStake": "12.5",
                "priorityScore": 1.5,
                "ready": True,
                "routable": True,
            },
            {"index": 1, "vramShare": None, "engine": None},
        ],
        "rollout": {"phase": "Idle"},  # typed in the CRD since #14 (was free-form)
    },
}


def full_errors(obj: dict[str, Any]) -> list[Any]:
    stored = copy.deepcopy(obj)
    apply_defaults(SCHEMA, stored)
    return FULL.validate(stored)


def quick(obj: dict[str, Any]) -> bool:
    stored = copy.deepcopy(obj)
    apply_defaults(SCHEMA, stored)
    return CHECK(stored)


def test_the_valid_base_takes_the_fast_path() -> None:
    assert full_errors(BASE) == []
    assert quick(BASE) is True


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


STATUS_PATHS = [p for p in paths(BASE) if p[:1] == ("status",) and len(p) > 1]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 100_000)
    | st.floats(-2, 2, allow_nan=False)
    | st.sampled_from(
        [
            "",
            "x",
            "True",
            "vllm",
            "9.0",
            "1.5",
            "Valid",
            "lower",
            "2026-11-25T15:00:00Z",
            "not a date",
            "Ready",
        ]
    )
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.sampled_from(["index", "type", "valid", "reason", "bogus"]), inner, max_size=2)
    ),
    max_leaves=4,
)


def mutate(obj: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    parent = out
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if action == "set":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "unknown" and isinstance(parent[last], dict):
        parent[last]["unknownField"] = value
    elif action == "duplicate" and isinstance(parent[last], list) and parent[last]:
        parent[last].append(copy.deepcopy(parent[last][0]))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(STATUS_PATHS), st.sampled_from(["set", "delete", "unknown", "duplicate"]), values
        ),
        min_size=1,
        max_size=3,
    )
)
def test_quick_check_never_accepts_an_invalid_status(
    mutations: list[tuple[tuple[Any, ...], str, Any]],
) -> None:
    obj = BASE
    for path, action, value in mutations:
        try:
            obj = mutate(obj, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue
    if quick(obj):
        assert full_errors(obj) == [], json.dumps(obj["status"])[:500]


def test_schemas_with_cel_or_unknown_keywords_are_not_compiled() -> None:
    with pytest.raises(Unsupported):
        compile_check({"type": "object", "allOf": [{"type": "object"}]})
