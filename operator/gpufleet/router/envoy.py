"""Envoy configuration for the router's data plane, as pure ``build_*`` functions returning dicts.

Why Envoy: exact uint32 ``load_balancing_weight`` (weighted round robin is EDF), retries, outlier
detection, circuit breakers and per-host stats built in, and file-based xDS (the control plane writes
JSON files and renames them into place; Envoy applies them without a restart and without touching
in-flight requests). Python is never in the per-request path.

Layout of the state directory (``RouterSettings.state_dir``)::

    bootstrap.json   static: admin, dynamic_resources -> lds.json / cds.json
    lds.json         the OpenAI-compatible listener (routes per model, /v1/models body)
    cds.json         one cluster per model, each with EDS from eds/<cluster>.json
    eds/<c>.json     endpoints and weights of one model (rewritten on every weight change)
    access.log       one line per client request (D) and per upstream attempt (U)

Request flow: ``json_to_metadata`` reads the body's ``model`` into dynamic metadata
(``gpufleet.model``; errors set ``gpufleet.body``), then the route cache is recomputed, and
routes match that metadata: known model -> its cluster, malformed JSON -> 400, missing model ->
400, unknown model -> 404, all as OpenAI error JSON. An empty cluster (no eligible engine) gives
503 with ``Retry-After`` via ``local_reply_config``; a body over the limit 413.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpufleet.router.settings import RouterSettings
from gpufleet.router.weights import ModelGroup

Json = dict[str, Any]

METADATA_NS = "gpufleet"
ROUTE_CONFIG_NAME = "gpufleet_routes"
LISTENER_NAME = "gpufleet_front"

#: Access log line formats (tab separated, parsed by gpufleet.router.accesslog).
DOWNSTREAM_LOG_FORMAT = (
    "D\t%START_TIME(%s.%3f)%\t%UPSTREAM_HOST%\t%RESPONSE_CODE%\t%RESPONSE_FLAGS%\t"
    "%RESPONSE_DURATION%\t%DURATION%\t%UPSTREAM_REQUEST_ATTEMPT_COUNT%\t"
    f"%DYNAMIC_METADATA({METADATA_NS}:model)%\t"
    f"%DYNAMIC_METADATA({METADATA_NS}:prompt_tokens)%\t"
    f"%DYNAMIC_METADATA({METADATA_NS}:completion_tokens)%\t%REQ(:PATH)%\t%REQ(X-REQUEST-ID)%\n"
)
UPSTREAM_LOG_FORMAT = (
    "U\t%START_TIME(%s.%3f)%\t%UPSTREAM_HOST%\t%RESPONSE_CODE%\t%RESPONSE_FLAGS%\t"
    "%RESPONSE_DURATION%\t%DURATION%\t%UPSTREAM_REQUEST_ATTEMPT_COUNT%\t"
    f"%DYNAMIC_METADATA({METADATA_NS}:model)%\t-\t-\t%REQ(:PATH)%\t%REQ(X-REQUEST-ID)%\n"
)


def cluster_name(model: str) -> str:
    """A stable, Envoy-safe cluster name for a model id (ids may contain '/', '.', ...)."""
    safe = "".join(c if c.isalnum() else "_" for c in model)[:40]
    digest = hashlib.sha256(model.encode()).hexdigest()[:10]
    return f"m_{safe}_{digest}"


def openai_error(message: str, type_: str, code: int | str) -> str:
    """An OpenAI-style error body."""
    return json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


@dataclass(frozen=True)
class Paths:
    """Where the files live (all inside the state directory)."""

    root: str

    @property
    def bootstrap(self) -> str:
        return f"{self.root}/bootstrap.json"

    @property
    def lds(self) -> str:
        return f"{self.root}/lds.json"

    @property
    def cds(self) -> str:
        return f"{self.root}/cds.json"

    def eds(self, cluster: str) -> str:
        return f"{self.root}/eds/{cluster}.json"

    @property
    def access_log(self) -> str:
        return f"{self.root}/access.log"

    @property
    def checkpoint(self) -> str:
        return f"{self.root}/checkpoint.json"


def build_bootstrap(settings: RouterSettings, paths: Paths, node_id: str = "gpufleet-router") -> Json:
    """Static part: admin on 127.0.0.1, listeners and clusters from files (LDS/CDS)."""
    return {
        "node": {"id": node_id, "cluster": "gpufleet-router"},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": settings.admin_port}},
        },
        "dynamic_resources": {
            "lds_config": {"resource_api_version": "V3", "path_config_source": {"path": paths.lds}},
            "cds_config": {"resource_api_version": "V3", "path_config_source": {"path": paths.cds}},
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        # Keep weights exact: no slow-start, no panic mode with few hosts.
                        "upstream.healthy_panic_threshold": 0,
                        "overload.global_downstream_max_connections": 50000,
                    },
                }
            ]
        },
    }


def _file_log(path: str, fmt: str) -> Json:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {"inline_string": fmt}},
        },
    }


def _json_to_metadata(count_tokens: bool = True) -> Json:
    """Read ``model`` from the JSON body; mark malformed/missing so routes can answer 400.

    With ``count_tokens`` the JSON (non-streamed) response is buffered too, for its ``usage``.
    """
    out: Json = {
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {
                "rules": [
                    {
                        "selectors": [{"key": "model"}],
                        "on_present": {"metadata_namespace": METADATA_NS, "key": "model", "type": "STRING"},
                        "on_missing": {
                            "metadata_namespace": METADATA_NS,
                            "key": "body",
                            "value": "no_model",
                            "type": "STRING",
                        },
                        "on_error": {
                            "metadata_namespace": METADATA_NS,
                            "key": "body",
                            "value": "malformed",
                            "type": "STRING",
                        },
                    }
                ],
                "allow_empty_content_type": True,
                "allow_content_types": ["application/json", "text/plain"],
            },
            "response_rules": {
                "rules": [
                    {
                        "selectors": [{"key": "usage"}, {"key": "prompt_tokens"}],
                        "on_present": {
                            "metadata_namespace": METADATA_NS,
                            "key": "prompt_tokens",
                            "type": "NUMBER",
                        },
                    },
                    {
                        "selectors": [{"key": "usage"}, {"key": "completion_tokens"}],
                        "on_present": {
                            "metadata_namespace": METADATA_NS,
                            "key": "completion_tokens",
                            "type": "NUMBER",
                        },
                    },
                ],
                "allow_content_types": ["application/json", "application/json; charset=utf-8"],
            },
        },
    }
    if not count_tokens:
        out["typed_config"].pop("response_rules")
    return out


def _meta_match(key: str, value: str) -> Json:
    return {"filter": METADATA_NS, "path": [{"key": key}], "value": {"string_match": {"exact": value}}}


def _direct(status: int, body: str) -> Json:
    return {"status": status, "body": {"inline_string": body}}


def build_models_body(models: Sequence[str], created: int = 0) -> str:
    """GET /v1/models: the models the fleet serves (from the control plane's list)."""
    data = [{"id": m, "object": "model", "created": created, "owned_by": "gpufleet"} for m in models]
    return json.dumps({"object": "list", "data": data})


def build_routes(models: Sequence[str], settings: RouterSettings) -> Json:
    """The route table: per model a metadata-matched route to its cluster; errors as JSON."""
    retry_policy = {
        "retry_on": "connect-failure,reset,refused-stream,5xx",
        "num_retries": settings.retries,
        "per_try_timeout": _duration(settings.first_byte_timeout_seconds),
        "per_try_idle_timeout": _duration(settings.idle_timeout_seconds),
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3."
                    "PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    json_ct = [{"header": {"key": "content-type", "value": "application/json"}}]
    routes: list[Json] = [
        {
            "name": "models",
            "match": {
                "path": "/v1/models",
                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
            },
            "direct_response": _direct(200, build_models_body(models)),
            "response_headers_to_add": json_ct,
        },
    ]
    api_paths = ("/v1/chat/completions", "/v1/completions")
    for path in api_paths:
        routes.append(
            {
                "name": f"malformed{path}",
                "match": {"path": path, "dynamic_metadata": [_meta_match("body", "malformed")]},
                "direct_response": _direct(
                    400, openai_error("request body is not valid JSON", "invalid_request_error", 400)
                ),
                "response_headers_to_add": json_ct,
            }
        )
        routes.append(
            {
                "name": f"nomodel{path}",
                "match": {"path": path, "dynamic_metadata": [_meta_match("body", "no_model")]},
                "direct_response": _direct(
                    400, openai_error('request body has no "model"', "invalid_request_error", 400)
                ),
                "response_headers_to_add": json_ct,
            }
        )
        for model in models:
            routes.append(
                {
                    "name": f"{cluster_name(model)}{path}",
                    "match": {"path": path, "dynamic_metadata": [_meta_match("model", model)]},
                    "route": {
                        "cluster": cluster_name(model),
                        "timeout": "0s",  # no total limit: streams run as long as they make progress
                        "retry_policy": retry_policy,
                    },
                }
            )
        routes.append(
            {
                "name": f"unknown{path}",
                "match": {"path": path},
                "direct_response": _direct(
                    404,
                    openai_error(
                        "The model does not exist on this fleet.", "NotFoundError", "model_not_found"
                    ),
                ),
                "response_headers_to_add": json_ct,
            }
        )
    routes.append(
        {
            "name": "notfound",
            "match": {"prefix": "/"},
            "direct_response": _direct(404, openai_error("unknown path", "NotFoundError", 404)),
            "response_headers_to_add": json_ct,
        }
    )
    return {
        "name": ROUTE_CONFIG_NAME,
        # LDS and CDS files are watched independently: a listener naming a cluster Envoy has not
        # loaded yet must still be accepted (such a request gets the no-engine 503 meanwhile).
        "validate_clusters": False,
        "virtual_hosts": [{"name": "openai", "domains": ["*"], "routes": routes}],
    }


def _local_reply_config(settings: RouterSettings) -> Json:
    """Envoy's own replies (no engine, overflow, 413, timeouts) as OpenAI error JSON."""

    def mapper(
        flags: list[str] | None,
        status_in: int | None,
        status: int,
        message: str,
        type_: str,
        headers: list[Json] | None = None,
    ) -> Json:
        if flags is not None:
            flt: Json = {"response_flag_filter": {"flags": flags}}
        else:
            flt = {
                "status_code_filter": {
                    "comparison": {
                        "op": "EQ",
                        "value": {"default_value": status_in, "runtime_key": f"gpufleet.status_{status_in}"},
                    }
                }
            }
        out: Json = {
            "filter": flt,
            "status_code": status,
            "body": {"inline_string": openai_error(message, type_, status)},
            "body_format_override": {
                "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
                "content_type": "application/json",
            },
        }
        if headers:
            out["headers_to_add"] = headers
        return out

    retry_after = [
        {
            "header": {"key": "retry-after", "value": str(settings.retry_after_seconds)},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }
    ]
    return {
        "mappers": [
            mapper(
                ["UH", "NR", "NC"],
                None,
                503,
                "no eligible engine serves this model right now",
                "service_unavailable",
                retry_after,
            ),
            mapper(
                ["UO"],
                None,
                503,
                "every engine of this model is at its concurrency limit",
                "service_unavailable",
                retry_after,
            ),
            mapper(None, 413, 413, "request body too large", "invalid_request_error"),
            mapper(["UT"], None, 504, "the engine did not answer in time", "timeout"),
            mapper(["UF", "URX", "UC", "UR"], None, 502, "the engine failed", "upstream_error"),
        ]
    }


def build_listener(models: Sequence[str], settings: RouterSettings, paths: Paths) -> Json:
    """The OpenAI-compatible front: HTTP/1.1 + h2c, streaming passed through unbuffered."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "gpufleet",
        "codec_type": "AUTO",
        "route_config": build_routes(models, settings),
        "stream_idle_timeout": _duration(
            max(settings.idle_timeout_seconds, settings.first_byte_timeout_seconds) + 5
        ),
        "request_timeout": "0s",
        "local_reply_config": _local_reply_config(settings),
        "access_log": [_file_log(paths.access_log, DOWNSTREAM_LOG_FORMAT)],
        "http_filters": [
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": settings.max_body_bytes,
                },
            },
            _json_to_metadata(settings.count_tokens),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                    "upstream_log": [_file_log(paths.access_log, UPSTREAM_LOG_FORMAT)],
                    "suppress_envoy_headers": True,
                },
            },
        ],
    }
    return {
        "name": LISTENER_NAME,
        "address": {"socket_address": {"address": settings.listen_host, "port_value": settings.listen_port}},
        "per_connection_buffer_limit_bytes": settings.max_body_bytes + 65536,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def build_cluster(model: str, settings: RouterSettings, paths: Paths, max_hosts: int = 100_000) -> Json:
    """One model's cluster: weighted round robin over EDS, retries budget, outlier detection."""
    name = cluster_name(model)
    return {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {"resource_api_version": "V3", "path_config_source": {"path": paths.eds(name)}},
        },
        "connect_timeout": _duration(settings.connect_timeout_seconds),
        "lb_policy": "ROUND_ROBIN",
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}},
        "circuit_breakers": {
            "thresholds": [
                {
                    "max_connections": 1_000_000,
                    "max_pending_requests": 1_000_000,
                    "max_requests": 1_000_000,
                    "max_retries": 1_000_000,
                }
            ],
        },
        "outlier_detection": {
            "consecutive_5xx": settings.outlier_consecutive_failures,
            "consecutive_gateway_failure": settings.outlier_consecutive_failures,
            "consecutive_local_origin_failure": settings.outlier_consecutive_failures,
            "split_external_local_origin_errors": True,
            "interval": _duration(settings.outlier_interval_seconds),
            "base_ejection_time": _duration(settings.outlier_base_ejection_seconds),
            "max_ejection_percent": settings.outlier_max_ejection_percent,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
            "enforcing_consecutive_local_origin_failure": 100,
            "enforcing_success_rate": 0,
        },
        "metadata": {"filter_metadata": {METADATA_NS: {"model": model}}},
        "ignore_health_on_host_removal": True,
    }


def build_cds(models: Sequence[str], settings: RouterSettings, paths: Paths) -> Json:
    return {"resources": [build_cluster(m, settings, paths) for m in models]}


def build_lds(models: Sequence[str], settings: RouterSettings, paths: Paths) -> Json:
    listener = build_listener(models, settings, paths)
    listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
    return {"resources": [listener]}


def build_eds(
    model: str, group: ModelGroup | None, caps: Mapping[tuple[str, str], int] | None = None
) -> Json:
    """One model's endpoints and exact weights (a ClusterLoadAssignment); empty = no engine (503).

    ``caps``: per endpoint key, the max concurrent requests (HTTP/1.1 upstream: one request per
    connection, so a per-host ``max_connections`` is a concurrency cap; applied in the cluster via
    ``per_host_thresholds`` of the strictest endpoint when caps differ is not possible, so caps are
    carried as endpoint metadata and enforced per cluster, see docs/router.md).
    """
    name = cluster_name(model)
    lb_endpoints: list[Json] = []
    for member in group.endpoints if group else ():
        e = member.endpoint
        lb_endpoints.append(
            {
                "endpoint": {
                    "address": {"socket_address": {"address": e.ip, "port_value": e.port}},
                    "hostname": f"{e.namespace}/{e.pool}/{e.inference_node}/{e.device}",
                },
                "load_balancing_weight": member.weight,
                "metadata": {
                    "filter_metadata": {
                        METADATA_NS: {
                            "namespace": e.namespace,
                            "pool": e.pool,
                            "inference_node": e.inference_node,
                            "device": str(e.device),
                            "pod": e.pod,
                            "max_concurrency": (caps or {}).get(e.key, e.max_concurrency or 0),
                        }
                    }
                },
            }
        )
    return {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else [],
            }
        ]
    }


def apply_concurrency_cap(cluster: Json, cap: int) -> Json:
    """Per-host connection limit (= concurrent requests on HTTP/1.1) for every host of a cluster."""
    if cap <= 0:
        return cluster
    out = dict(cluster)
    breakers = dict(out["circuit_breakers"])
    breakers["per_host_thresholds"] = [{"max_connections": cap}]
    out["circuit_breakers"] = breakers
    return out
