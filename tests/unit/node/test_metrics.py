"""Engine metrics normalisation: one vocabulary whichever engine runs."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpufleet_node.metrics import AgentMetrics, MetricsParseError, normalise, snapshot_families

# The same engine state (3 queued, 2 running, KV 42% used, 7 requests finished of which 1 aborted,
# 4 TTFT observations) as each engine exports it, with two label sets to check summing.
VLLM_TEXT = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 1.0
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 120.0
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 900.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 4.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 1.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="m"} 1.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="m"} 3.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5
"""

SGLANG_TEXT = """\
# HELP sglang:num_queue_reqs The number of requests in the waiting queue
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m",tp_rank="0"} 3.0
# HELP sglang:num_running_reqs The number of running requests
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m",tp_rank="0"} 2.0
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m",tp_rank="0"} 0.42
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 120.0
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="m"} 900.0
# HELP sglang:num_requests_total Number of requests processed.
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{model_name="m"} 6.0
# HELP sglang:num_aborted_requests_total Number of requests aborted.
# TYPE sglang:num_aborted_requests_total counter
sglang:num_aborted_requests_total{model_name="m"} 1.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 1.0
sglang:time_to_first_token_seconds_bucket{le="0.5",model_name="m"} 3.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 4.0
sglang:time_to_first_token_seconds_count{model_name="m"} 4.0
sglang:time_to_first_token_seconds_sum{model_name="m"} 1.5
"""


def _exposed(engine: str, text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    snapshot = normalise(engine, text)  # type: ignore[arg-type]
    out = {}
    for family in snapshot_families(snapshot):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "engine"))
            assert sample.labels["engine"] == engine
            out[(sample.name, labels)] = sample.value
    return out


def test_vllm_is_normalised() -> None:
    snap = normalise("vllm", VLLM_TEXT)
    assert snap.gauges == {
        "gpufleet_engine_requests_waiting": 3.0,
        "gpufleet_engine_requests_running": 2.0,
        "gpufleet_engine_kv_cache_usage_ratio": 0.42,
    }
    assert snap.counters == {
        "gpufleet_engine_generation_tokens": 900.0,
        "gpufleet_engine_prompt_tokens": 120.0,
    }
    assert snap.requests == {"success": 6.0, "failure": 1.0}
    assert snap.ttft is not None
    assert snap.ttft.buckets == ((0.1, 1.0), (0.5, 3.0), (math.inf, 4.0))
    assert (snap.ttft.sum, snap.ttft.count) == (1.5, 4.0)


def test_both_engines_give_identical_names_and_values() -> None:
    vllm = _exposed("vllm", VLLM_TEXT)
    sglang = _exposed("sglang", SGLANG_TEXT)
    assert vllm == sglang
    names = {name for name, _ in vllm}
    assert {
        "gpufleet_engine_requests_waiting",
        "gpufleet_engine_requests_running",
        "gpufleet_engine_kv_cache_usage_ratio",
        "gpufleet_engine_generation_tokens_total",
        "gpufleet_engine_prompt_tokens_total",
        "gpufleet_engine_requests_total",
        "gpufleet_engine_time_to_first_token_seconds_bucket",
        "gpufleet_engine_time_to_first_token_seconds_sum",
        "gpufleet_engine_time_to_first_token_seconds_count",
    } <= names
    assert vllm[("gpufleet_engine_requests_total", (("outcome", "failure"),))] == 1.0


def test_old_vllm_kv_cache_name_is_understood() -> None:
    text = VLLM_TEXT.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    assert normalise("vllm", text).gauges["gpufleet_engine_kv_cache_usage_ratio"] == 0.42


def test_new_vllm_name_wins_when_both_are_exported() -> None:
    text = VLLM_TEXT + "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n"
    assert normalise("vllm", text).gauges["gpufleet_engine_kv_cache_usage_ratio"] == 0.42


def test_missing_metrics_are_omitted_not_zeroed() -> None:
    snap = normalise("sglang", "sglang:num_running_reqs{model_name=\"m\"} 1\n")
    assert snap.gauges == {"gpufleet_engine_requests_running": 1.0}
    assert snap.counters == {}
    assert snap.requests == {}
    assert snap.ttft is None
    names = {f.name for f in snapshot_families(snap)}
    assert names == {"gpufleet_engine_requests_running"}


def test_other_engines_metrics_are_ignored() -> None:
    # A vLLM agent must not pick up SGLang names (and vice versa).
    assert normalise("vllm", SGLANG_TEXT).gauges == {}


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(MetricsParseError, match="not valid Prometheus text"):
        normalise("vllm", "this is { not prometheus\n")


def test_histogram_without_inf_bucket_is_rejected() -> None:
    text = 'vllm:time_to_first_token_seconds_bucket{le="0.1"} 1\n'
    with pytest.raises(MetricsParseError, match=r"\+Inf"):
        normalise("vllm", text)


def test_agent_registry_exposes_engine_and_agent_metrics() -> None:
    metrics = AgentMetrics()
    metrics.engine.snapshot = normalise("sglang", SGLANG_TEXT)
    metrics.ready.set(1)
    text = generate_latest(metrics.registry).decode()
    parsed = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed["gpufleet_node_engine_ready"].value == 1.0
    assert parsed["gpufleet_engine_requests_waiting"].labels == {"engine": "sglang"}
    assert parsed["gpufleet_engine_requests_waiting"].value == 3.0
    assert "process_resident_memory_bytes" in parsed
    assert all(
        name.startswith(("gpufleet_", "process_", "python_")) for name in parsed
    )
