"""Operator metrics: names, values, replacement of stale series and input validation."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.metrics import (
    METRICS,
    DeviceSample,
    MetricsInputError,
    OperatorMetrics,
)


def _samples(m: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _value(m: OperatorMetrics, name: str, **labels: str) -> float | None:
    return _samples(m).get((name, frozenset(labels.items())))


def _names_with_series(m: OperatorMetrics, name: str) -> list[dict[str, str]]:
    return [dict(lbl) for (n, lbl) in _samples(m) if n == name]


def _h100(index: int, state: str = "ready", **kw: object) -> DeviceSample:
    return DeviceSample(index=index, product="NVIDIA-H100-80GB-HBM3", state=state, **kw)  # type: ignore[arg-type]


def test_registry_is_private_per_instance() -> None:
    a, b = OperatorMetrics(), OperatorMetrics()
    a.record_pool("ns", "p", self_stake_base_units=10**9, delegated_stake_base_units=0, validated_vram_mib=1)
    assert _value(a, "gpufleet_pool_stake_int", namespace="ns", pool="p", source="self") == 1.0
    assert _value(b, "gpufleet_pool_stake_int", namespace="ns", pool="p", source="self") is None
    assert a.registry is not METRICS.registry


def test_names_follow_conventions() -> None:
    names = OperatorMetrics().sample_names()
    assert all(n.startswith("gpufleet_") for n in names)
    for required in (
        "gpufleet_devices",
        "gpufleet_blocked_devices",
        "gpufleet_device_vram_share_ratio",
        "gpufleet_device_priority_score",
        "gpufleet_pool_stake_int",
        "gpufleet_pool_self_stake_ratio",
        "gpufleet_reconcile_duration_seconds_bucket",
        "gpufleet_reconcile_errors_total",
        "gpufleet_api_requests_total",
        "gpufleet_rollout_state",
        "gpufleet_rollout_results_total",
        "gpufleet_rollout_duration_seconds_count",
    ):
        assert required in names


def test_inference_node_devices_grouped_by_state_product_engine_version() -> None:
    m = OperatorMetrics()
    m.record_inference_node(
        "fleet",
        "box-1",
        "pool-a",
        [
            _h100(0, engine="vllm", version="1.2.0", vram_share=0.25, priority_score=3.5),
            _h100(1, engine="vllm", version="1.2.0", vram_share=0.25, priority_score=3.5),
            _h100(2, state="blocked", blocked_reason="VRAMMismatch"),
            DeviceSample(index=3, product="NVIDIA-GeForce-RTX-4090", state="pending", engine="sglang"),
        ],
    )
    base = {"namespace": "fleet", "pool": "pool-a", "inference_node": "box-1"}
    assert (
        _value(
            m,
            "gpufleet_devices",
            **base,
            state="ready",
            product="NVIDIA-H100-80GB-HBM3",
            engine="vllm",
            version="1.2.0",
        )
        == 2.0
    )
    assert (
        _value(
            m,
            "gpufleet_devices",
            **base,
            state="blocked",
            product="NVIDIA-H100-80GB-HBM3",
            engine="none",
            version="none",
        )
        == 1.0
    )
    assert (
        _value(m, "gpufleet_blocked_devices", **base, reason="VRAMMismatch", product="NVIDIA-H100-80GB-HBM3")
        == 1.0
    )
    share = _value(
        m, "gpufleet_device_vram_share_ratio", **base, device_index="1", product="NVIDIA-H100-80GB-HBM3"
    )
    assert share == 0.25
    # Devices without a share (blocked, pending) have no share series at all.
    assert len(_names_with_series(m, "gpufleet_device_vram_share_ratio")) == 2


def test_rerecord_replaces_stale_series_and_forget_drops_all() -> None:
    m = OperatorMetrics()
    m.record_inference_node("ns", "n", "p", [_h100(0, state="unready"), _h100(1, state="unready")])
    m.record_inference_node("ns", "n", "p", [_h100(0, engine="vllm", priority_score=2.0)])
    states = [lbl["state"] for lbl in _names_with_series(m, "gpufleet_devices")]
    assert states == ["ready"]
    m.record_inference_node("ns", "other", "p", [_h100(0)])
    m.forget_inference_node("ns", "n")
    remaining = _names_with_series(m, "gpufleet_devices")
    assert [lbl["inference_node"] for lbl in remaining] == ["other"]
    assert _names_with_series(m, "gpufleet_device_priority_score") == []


def test_pool_stake_in_int_and_self_stake_ratio_derived_exactly() -> None:
    m = OperatorMetrics()
    m.record_pool(
        "ns",
        "p",
        self_stake_base_units=12_500_000_000,  # 12.5 INT
        delegated_stake_base_units=112_500_000_000,
        validated_vram_mib=81559,
    )
    assert _value(m, "gpufleet_pool_stake_int", namespace="ns", pool="p", source="self") == 12.5
    assert _value(m, "gpufleet_pool_stake_int", namespace="ns", pool="p", source="delegated") == 112.5
    assert _value(m, "gpufleet_pool_self_stake_ratio", namespace="ns", pool="p") == 0.1
    assert _value(m, "gpufleet_pool_validated_vram_bytes", namespace="ns", pool="p") == 81559 * 1024 * 1024
    m.record_pool("ns", "empty", self_stake_base_units=0, delegated_stake_base_units=0, validated_vram_mib=0)
    assert _value(m, "gpufleet_pool_self_stake_ratio", namespace="ns", pool="empty") == 0.0
    m.forget_pool("ns", "p")
    assert _value(m, "gpufleet_pool_self_stake_ratio", namespace="ns", pool="p") is None


def test_time_reconcile_counts_errors_by_type_and_reraises() -> None:
    m = OperatorMetrics()
    with m.time_reconcile("inferencenode"):
        pass
    with pytest.raises(KeyError), m.time_reconcile("inferencenode"):
        raise KeyError("boom")
    assert _value(m, "gpufleet_reconcile_duration_seconds_count", controller="inferencenode") == 2.0
    assert _value(m, "gpufleet_reconcile_errors_total", controller="inferencenode", error="KeyError") == 1.0


def test_api_requests_and_connection_errors() -> None:
    m = OperatorMetrics()
    m.record_api_request("patch", "pods/status", 200, 0.01)
    m.record_api_request("patch", "pods/status", 200, 0.02)
    m.record_api_request("get", "pods/proxy", None, 1.0)
    assert _value(m, "gpufleet_api_requests_total", verb="patch", resource="pods/status", code="200") == 2.0
    assert _value(m, "gpufleet_api_requests_total", verb="get", resource="pods/proxy", code="error") == 1.0


def test_rollout_state_is_one_series_per_node() -> None:
    m = OperatorMetrics()
    kw = {"current_version": "1.0.0", "target_version": "1.1.0", "total_devices": 4}
    m.record_rollout("ns", "n", state="Progressing", updated_devices=1, **kw)  # type: ignore[arg-type]
    m.record_rollout("ns", "n", state="Halted", updated_devices=2, **kw)  # type: ignore[arg-type]
    assert [lbl["state"] for lbl in _names_with_series(m, "gpufleet_rollout_state")] == ["Halted"]
    progress = _value(
        m,
        "gpufleet_rollout_progress_ratio",
        namespace="ns",
        inference_node="n",
        current_version="1.0.0",
        target_version="1.1.0",
    )
    assert progress == 0.5
    m.record_rollout_result("ns", "rolled_back", 120.0, reason="CrashLoop")
    m.record_rollout_result("ns", "succeeded", 60.0)
    assert (
        _value(m, "gpufleet_rollout_results_total", namespace="ns", result="rolled_back", reason="CrashLoop")
        == 1.0
    )
    assert (
        _value(m, "gpufleet_rollout_results_total", namespace="ns", result="succeeded", reason="none") == 1.0
    )
    assert _value(m, "gpufleet_rollout_duration_seconds_count", result="rolled_back") == 1.0
    m.forget_inference_node("ns", "n")
    assert _names_with_series(m, "gpufleet_rollout_state") == []


def test_release_halted_flag_and_forget() -> None:
    m = OperatorMetrics()
    m.set_release_halted("v1-1-0", "1.1.0", True)
    assert _value(m, "gpufleet_engine_release_halted", release="v1-1-0", version="1.1.0") == 1.0
    m.set_release_halted("v1-1-0", "1.1.0", False)
    assert _value(m, "gpufleet_engine_release_halted", release="v1-1-0", version="1.1.0") == 0.0
    m.forget_release("v1-1-0")
    assert _names_with_series(m, "gpufleet_engine_release_halted") == []


def test_engine_releases_replaced_as_a_set() -> None:
    m = OperatorMetrics()
    m.record_engine_releases([("v1-0-0", "1.0.0", "stable"), ("v1-1-0", "1.1.0", "candidate")])
    m.record_engine_releases([("v1-1-0", "1.1.0", "stable")])
    assert _names_with_series(m, "gpufleet_engine_release_info") == [
        {"release": "v1-1-0", "version": "1.1.0", "channel": "stable"}
    ]


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (_h100(0, state="broken"), "state must be one of"),
        (_h100(0, state="blocked"), "blocked_reason is required"),
        (_h100(0, blocked_reason="VRAMMismatch"), "blocked_reason is required"),
        (_h100(0, state="blocked", blocked_reason="vram mismatch"), "CamelCase"),
        (_h100(0, vram_share=1.5), r"within \[0, 1\]"),
        (_h100(0, priority_score=-1.0), "must not be negative"),
        (_h100(0, engine="tensorrt"), "engine must be one of"),
        (_h100(-1), "index must not be negative"),
        (DeviceSample(index=0, product="", state="ready"), "product must not be empty"),
        (_h100(0, effective_stake_base_units=1.5), "integer number of base units"),
    ],
)
def test_bad_device_samples_are_rejected_with_specific_errors(device: DeviceSample, message: str) -> None:
    with pytest.raises(MetricsInputError, match=message):
        OperatorMetrics().record_inference_node("ns", "n", "p", [device])


def test_other_bad_inputs_are_rejected() -> None:
    m = OperatorMetrics()
    m.record_inference_node("ns", "n", "p", [_h100(0)])
    with pytest.raises(MetricsInputError, match="appears twice"):
        m.record_inference_node("ns", "n", "p", [_h100(0), _h100(0)])
    # A rejected record leaves the earlier series untouched.
    assert [lbl["state"] for lbl in _names_with_series(m, "gpufleet_devices")] == ["ready"]
    with pytest.raises(MetricsInputError, match="Kubernetes object name"):
        m.record_inference_node("NS!", "n", "p", [])
    with pytest.raises(MetricsInputError, match="verb must be one of"):
        m.record_api_request("PUT", "pods", 200, 0.1)
    with pytest.raises(MetricsInputError, match="HTTP status"):
        m.record_api_request("get", "pods", 42, 0.1)
    with pytest.raises(MetricsInputError, match="rollout result"):
        m.record_rollout_result("ns", "ok", 1.0)
    with pytest.raises(MetricsInputError, match="CamelCase"):
        m.record_rollout_result("ns", "rolled_back", 1.0, reason="crash loop")
    with pytest.raises(MetricsInputError, match="updated_devices"):
        m.record_rollout("ns", "n", state="Progressing", current_version="1", target_version="2",
                         updated_devices=5, total_devices=4)  # fmt: skip
    with pytest.raises(MetricsInputError, match="lower-case identifier"), m.time_reconcile("Inference Node"):
        pass
    with pytest.raises(MetricsInputError, match="must not be negative"):
        m.record_pool("ns", "p", self_stake_base_units=-1, delegated_stake_base_units=0, validated_vram_mib=0)
