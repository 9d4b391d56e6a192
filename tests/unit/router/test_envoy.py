"""The Envoy configuration builders (pure dicts)."""

from __future__ import annotations

import json
from decimal import Decimal

from gpufleet.router import envoy
from gpufleet.router.settings import RouterSettings
from gpufleet.router.weights import Endpoint, compute_weights

S = RouterSettings(
    first_byte_timeout_seconds=7,
    idle_timeout_seconds=3,
    retries=1,
    max_body_bytes=2048,
    retry_after_seconds=2,
)
P = envoy.Paths("/state")


def routes(models: list[str]) -> list[dict]:  # type: ignore[type-arg]
    return envoy.build_routes(models, S)["virtual_hosts"][0]["routes"]  # type: ignore[no-any-return]


def test_cluster_names_are_stable_safe_and_distinct() -> None:
    a, b = envoy.cluster_name("org/model-1.5"), envoy.cluster_name("org_model-1_5")
    assert a == envoy.cluster_name("org/model-1.5")
    assert a != b
    assert all(c.isalnum() or c == "_" for c in a)


def test_model_routes_match_body_metadata_and_unknown_is_404_last() -> None:
    rs = routes(["a", "b/c"])
    names = [r["name"] for r in rs]
    per_path = [r for r in rs if r["match"].get("path") == "/v1/completions"]
    assert per_path[-1]["direct_response"]["status"] == 404  # after every model route
    model_routes = [r for r in per_path if "route" in r]
    assert [r["match"]["dynamic_metadata"][0]["value"]["string_match"]["exact"] for r in model_routes] == [
        "a",
        "b/c",
    ]
    assert model_routes[1]["route"]["cluster"] == envoy.cluster_name("b/c")
    assert names[-1] == "notfound"
    assert envoy.build_routes(["a"], S)["validate_clusters"] is False  # LDS may arrive before CDS
    body = json.loads(rs[0]["direct_response"]["body"]["inline_string"])
    assert [m["id"] for m in body["data"]] == ["a", "b/c"]


def test_malformed_and_missing_model_are_400_before_model_routes() -> None:
    per_path = [r for r in routes(["a"]) if r["match"].get("path") == "/v1/chat/completions"]
    assert [r["direct_response"]["status"] for r in per_path[:2]] == [400, 400]
    err = json.loads(per_path[0]["direct_response"]["body"]["inline_string"])
    assert err["error"]["type"] == "invalid_request_error"


def test_retry_and_timeouts_come_from_settings() -> None:
    route = next(r for r in routes(["a"]) if "route" in r)["route"]
    policy = route["retry_policy"]
    assert policy["num_retries"] == 1
    assert policy["per_try_timeout"] == "7.000s"
    assert policy["per_try_idle_timeout"] == "3.000s"
    assert set(policy["retry_on"].split(",")) == {"connect-failure", "reset", "refused-stream", "5xx"}
    assert policy["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"
    assert route["timeout"] == "0s"


def test_listener_limits_and_error_mappers() -> None:
    listener = envoy.build_listener(["a"], S, P)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    buffer = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.buffer")
    assert buffer["typed_config"]["max_request_bytes"] == 2048
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"
    mappers = hcm["local_reply_config"]["mappers"]
    no_engine = next(
        m for m in mappers if m["filter"].get("response_flag_filter", {}).get("flags") == ["UH", "NR", "NC"]
    )
    assert no_engine["status_code"] == 503
    assert no_engine["headers_to_add"][0]["header"] == {"key": "retry-after", "value": "2"}
    assert listener["address"]["socket_address"]["address"] == "127.0.0.1"


def test_eds_carries_exact_weights_and_device_metadata() -> None:
    eps = [
        Endpoint(
            namespace="ns",
            pool="p",
            inference_node="n",
            device=i,
            pod=f"n-{i}",
            models=("m",),
            ip="10.0.0.9",
            port=8000 + i,
            effective_stake_base=i * 25_000 * 10**9,
        )
        for i in range(2)
    ]
    group = compute_weights(eps, Decimal("0.0001"))["m"]
    eds = envoy.build_eds("m", group)["resources"][0]
    assert eds["cluster_name"] == envoy.cluster_name("m")
    lbs = eds["endpoints"][0]["lb_endpoints"]
    assert [e["load_balancing_weight"] for e in lbs] == [2, 7]  # priorities 1 and 3.5
    assert lbs[1]["endpoint"]["address"]["socket_address"] == {"address": "10.0.0.9", "port_value": 8001}
    assert lbs[1]["metadata"]["filter_metadata"]["gpufleet"]["pod"] == "n-1"
    assert envoy.build_eds("m", None)["resources"][0]["endpoints"] == []


def test_clusters_round_robin_outlier_detection_and_caps() -> None:
    cluster = envoy.build_cluster("m", S, P)
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    assert cluster["eds_cluster_config"]["eds_config"]["path_config_source"]["path"] == P.eds(cluster["name"])
    assert cluster["outlier_detection"]["consecutive_5xx"] == S.outlier_consecutive_failures
    capped = envoy.apply_concurrency_cap(cluster, 4)
    assert capped["circuit_breakers"]["per_host_thresholds"] == [{"max_connections": 4}]
    assert "per_host_thresholds" not in cluster["circuit_breakers"]
    assert envoy.apply_concurrency_cap(cluster, 0) is cluster


def test_bootstrap_admin_is_loopback_and_points_at_files() -> None:
    boot = envoy.build_bootstrap(S, P)
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert boot["dynamic_resources"]["lds_config"]["path_config_source"]["path"] == P.lds
    assert boot["dynamic_resources"]["cds_config"]["path_config_source"]["path"] == P.cds


def test_token_counting_can_be_turned_off() -> None:
    def j2m(settings: RouterSettings) -> dict:  # type: ignore[type-arg]
        hcm = envoy.build_listener(["a"], settings, P)["filter_chains"][0]["filters"][0]["typed_config"]
        return next(f for f in hcm["http_filters"] if f["name"].endswith("json_to_metadata"))["typed_config"]  # type: ignore[no-any-return]

    assert "response_rules" in j2m(RouterSettings())
    assert "response_rules" not in j2m(RouterSettings(count_tokens=False))
