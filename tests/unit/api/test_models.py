"""The API models: wire names, defaults, derived values and Python-side rules."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from gpufleet.api.v1alpha1 import (
    EngineRelease,
    InferenceNode,
    InferenceNodeStatus,
    OperatorPool,
    OperatorPoolSpec,
    ReleaseSelector,
    UpdatePolicy,
)
from tests.unit.api.conftest import example


def _node(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"poolRef": {"name": "p"}, "nodeName": "n1", "models": [{"name": "org/m"}]}
    base.update(spec)
    return {
        "apiVersion": "gpufleet.io/v1alpha1",
        "kind": "InferenceNode",
        "metadata": {"name": "x"},
        "spec": base,
    }


def test_dump_uses_the_contract_wire_names() -> None:
    node = InferenceNode.model_validate(_node(gpuCount=2))
    node.status = InferenceNodeStatus.model_validate(
        {"devices": [{"index": 0, "vramMiB": 24564, "computeCapability": "8.9", "effectiveStake": "25000"}]}
    )
    wire = node.model_dump(by_alias=True, exclude_none=True)
    assert wire["spec"]["poolRef"] == {"name": "p"}
    assert wire["spec"]["gpuCount"] == 2
    assert wire["spec"]["updatePolicy"]["progressDeadlineSeconds"] == 600
    device = wire["status"]["devices"][0]
    assert device["vramMiB"] == 24564
    assert device["computeCapability"] == "8.9"
    assert device["effectiveStake"] == "25000"
    pool = OperatorPool.model_validate(
        {"spec": {"selfStake": "1"}, "status": {"validatedVRAMMiB": 98304, "totalStake": "1"}}
    )
    assert pool.model_dump(by_alias=True, exclude_none=True)["status"]["validatedVRAMMiB"] == 98304
    rel = EngineRelease.model_validate(example("engine-1.4.2"))
    assert "minCUDAVersion" in rel.model_dump(by_alias=True, exclude_none=True)["spec"]


def test_snake_case_names_are_accepted_in_python() -> None:
    spec = OperatorPoolSpec(self_stake="10", commission_bps=250)
    assert spec.commission == Fraction(1, 40)


def test_defaults_match_the_contract() -> None:
    spec = InferenceNode.model_validate(_node()).spec
    assert spec.engine == "auto"
    assert spec.gpu_count is None
    assert spec.release.effective_channel == "stable"
    policy = spec.update_policy
    assert (policy.automatic, policy.max_unavailable, policy.progress_deadline_seconds) == (True, 1, 600)
    assert (policy.min_ready_seconds, policy.update_unhealthy, policy.approved_major_version) == (
        30,
        False,
        None,
    )
    pool = OperatorPoolSpec.model_validate({"selfStake": "5"})
    assert (pool.delegated_stake, pool.commission_bps, pool.accepts_delegations) == ("0", 0, True)
    assert pool.reputation == 1


def test_pinned_version_follows_no_channel() -> None:
    assert ReleaseSelector(version="1.2.3").effective_channel is None
    assert ReleaseSelector(channel="nightly").effective_channel == "nightly"


@pytest.mark.parametrize(
    ("value", "devices", "expected"),
    [(1, 8, 1), (3, 8, 3), (20, 8, 8), ("25%", 8, 2), ("10%", 4, 1), ("100%", 8, 8), ("50%", 0, 1)],
)
def test_max_unavailable_count(value: int | str, devices: int, expected: int) -> None:
    assert UpdatePolicy(max_unavailable=value).max_unavailable_count(devices) == expected


def test_stake_is_converted_to_base_units_exactly() -> None:
    spec = OperatorPoolSpec.model_validate({"selfStake": "12.5", "delegatedStake": "0.000000001"})
    assert spec.self_stake_base_units == 12_500_000_000
    assert spec.delegated_stake_base_units == 1
    assert spec.total_stake_base_units == 12_500_000_001


@pytest.mark.parametrize(
    ("self_stake", "delegated", "meets"),
    [
        ("10", "90", True),
        ("10", "90.000000001", False),
        ("0", "0", True),
        ("100000", "0", True),
        ("1", "100", False),
    ],
)
def test_minimum_self_stake_is_ten_percent_of_total(self_stake: str, delegated: str, meets: bool) -> None:
    spec = OperatorPoolSpec.model_validate({"selfStake": self_stake, "delegatedStake": delegated})
    assert spec.meets_minimum_self_stake is meets


def test_amount_errors_explain_themselves() -> None:
    with pytest.raises(ValidationError, match="at most 9 decimals"):
        OperatorPoolSpec.model_validate({"selfStake": "1.0000000001"})
    with pytest.raises(ValidationError, match="exponents are not allowed"):
        OperatorPoolSpec.model_validate({"selfStake": "1e3"})


def test_assignment_is_validated() -> None:
    spec = OperatorPoolSpec.model_validate({"selfStake": "5"})
    with pytest.raises(ValidationError):
        spec.commission_bps = 10_001


def test_strict_types_refuse_coercion() -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        InferenceNode.model_validate(_node(gpuCount="2"))
    with pytest.raises(ValidationError, match="valid string"):
        OperatorPoolSpec.model_validate({"selfStake": 5})


def test_condition_lookup() -> None:
    status = InferenceNodeStatus.model_validate(
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "NoDevices",
                    "lastTransitionTime": "2025-06-06T00:00:00Z",
                }
            ]
        }
    )
    ready = status.condition("Ready")
    assert ready is not None
    assert ready.status == "False"
    assert status.condition("Updating") is None


def test_unparseable_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a valid date-time"):
        InferenceNodeStatus.model_validate(
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "R",
                        "lastTransitionTime": "2025-13-40T00:00:00Z",
                    }
                ]
            }
        )


def test_engine_release_defaults_to_both_engines() -> None:
    data = example("engine-1.4.2")
    spec = dict(data["spec"])
    del spec["engines"], spec["engineVersions"]
    rel = EngineRelease.model_validate({**data, "spec": spec})
    assert rel.spec.engines == ["vllm", "sglang"]
