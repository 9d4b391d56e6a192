# ruff: noqa: E501  (PromQL strings read better unbroken)
"""Build the Grafana dashboards shipped in charts/gpufleet/dashboards/.

Dashboards are generated rather than hand-edited so that every panel shares one layout, one
datasource variable and one filter set, and so that a reviewer reads PromQL, not 2,000 lines of
JSON. Run ``python dashboards/build.py`` after editing; a test fails when the JSON is stale.

Operator metrics come from ``gpufleet.metrics``; engine and agent metrics from
``gpufleet_node.metrics`` (the PodMonitor relabels pod labels to ``pool``, ``inference_node``,
``device_index`` and ``engine_version`` so both sides share label names).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parents[1] / "charts" / "gpufleet" / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCOPE = 'namespace=~"$namespace", pool=~"$pool"'
ACTIVE_ROLLOUT = "PreCheck|Progressing|PostCheck|RollingBack"

Json = dict[str, Any]


@dataclass
class Panel:
    title: str
    kind: str  # timeseries | stat | piechart | table | bargauge | text
    exprs: list[tuple[str, str]]  # (PromQL, legend)
    w: int = 12
    h: int = 8
    unit: str = "short"
    description: str = ""
    instant: bool = False
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    options: Json = field(default_factory=dict)
    max: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel]


def _variables(extra: list[Json]) -> list[Json]:
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }
    return [datasource, *extra]


def _query_var(name: str, label: str, query: str) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


def _targets(p: Panel) -> list[Json]:
    out = []
    for i, (expr, legend) in enumerate(p.exprs):
        target: Json = {
            "datasource": DS,
            "expr": expr,
            "legendFormat": legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": not p.instant,
            "instant": p.instant,
        }
        if p.kind == "table":
            target["format"] = "table"
        out.append(target)
    return out


def _panel(p: Panel, pid: int, x: int, y: int) -> Json:
    steps = [{"color": color, "value": value} for value, color in p.thresholds]
    defaults: Json = {"unit": p.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if p.max is not None:
        defaults["min"] = 0
        defaults["max"] = p.max
    panel: Json = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": p.w, "h": p.h},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": p.options,
        "targets": _targets(p),
    }
    if p.kind == "table":
        panel["transformations"] = [{"id": "merge", "options": {}}]
    return panel


def _layout(rows: list[Row]) -> Iterator[Json]:
    pid, y = 1, 0
    for row in rows:
        yield {
            "id": pid,
            "type": "row",
            "title": row.title,
            "collapsed": False,
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": [],
        }
        pid, y, x, line_h = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.w > 24:
                x, y, line_h = 0, y + line_h, 0
            yield _panel(p, pid, x, y)
            pid, x, line_h = pid + 1, x + p.w, max(line_h, p.h)
        y += line_h


def dashboard(uid: str, title: str, description: str, variables: list[Json], rows: list[Row]) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["gpufleet"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": _variables(variables)},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["gpufleet"],
                "asDropdown": True,
                "title": "gpufleet",
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "panels": list(_layout(rows)),
    }


NS_VAR = _query_var("namespace", "Namespace", "label_values(gpufleet_devices, namespace)")
POOL_VAR = _query_var("pool", "Pool", 'label_values(gpufleet_devices{namespace=~"$namespace"}, pool)')
STAKE_POOL_VAR = _query_var(
    "pool", "Pool", 'label_values(gpufleet_pool_stake_int{namespace=~"$namespace"}, pool)'
)
ROLLOUT_NS_VAR = _query_var("namespace", "Namespace", "label_values(gpufleet_devices, namespace)")
ENGINE_NS_VAR = _query_var(
    "namespace", "Namespace", "label_values(gpufleet_engine_requests_running, namespace)"
)
ENGINE_POOL_VAR = _query_var(
    "pool", "Pool", 'label_values(gpufleet_engine_requests_running{namespace=~"$namespace"}, pool)'
)
ENGINE_VAR = _query_var("engine", "Engine", "label_values(gpufleet_engine_requests_running, engine)")

PIE = {
    "legend": {"displayMode": "table", "placement": "right", "values": ["value", "percent"]},
    "pieType": "donut",
    "reduceOptions": {"calcs": ["lastNotNull"]},
}
STAT = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background", "graphMode": "area"}
BAR = {"displayMode": "gradient", "orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"]}}


def fleet_overview() -> Json:
    d = f"{{{SCOPE}}}"
    rows = [
        Row(
            "Devices",
            [
                Panel(
                    "Devices",
                    "stat",
                    [(f"sum(gpufleet_devices{d})", "")],
                    w=6,
                    h=5,
                    options=STAT,
                    description="Every GPU of every InferenceNode in scope.",
                ),
                Panel(
                    "Ready devices",
                    "stat",
                    [(f'sum(gpufleet_devices{{{SCOPE}, state="ready"}}) or vector(0)', "")],
                    w=6,
                    h=5,
                    options=STAT,
                ),
                Panel(
                    "Blocked devices",
                    "stat",
                    [(f"sum(gpufleet_blocked_devices{d}) or vector(0)", "")],
                    w=6,
                    h=5,
                    options=STAT,
                    thresholds=[(None, "green"), (1, "red")],
                    description="GPUs kept off the network because validation failed (unknown GPU, VRAM mismatch…).",
                ),
                Panel(
                    "Pools",
                    "stat",
                    [(f"count(gpufleet_pool_self_stake_ratio{d}) or vector(0)", "")],
                    w=6,
                    h=5,
                    options=STAT,
                ),
                Panel(
                    "Devices by state",
                    "timeseries",
                    [(f"sum by (state) (gpufleet_devices{d})", "{{state}}")],
                    w=24,
                    options={"legend": {"displayMode": "table", "placement": "right"}},
                ),
            ],
        ),
        Row(
            "Fleet mix",
            [
                Panel(
                    "GPU mix",
                    "piechart",
                    [(f"sum by (product) (gpufleet_devices{d})", "{{product}}")],
                    w=8,
                    options=PIE,
                ),
                Panel(
                    "Engine mix",
                    "piechart",
                    [(f'sum by (engine) (gpufleet_devices{{{SCOPE}, engine!="none"}})', "{{engine}}")],
                    w=8,
                    options=PIE,
                ),
                Panel(
                    "Engine versions",
                    "piechart",
                    [(f'sum by (version) (gpufleet_devices{{{SCOPE}, version!="none"}})', "{{version}}")],
                    w=8,
                    options=PIE,
                ),
                Panel(
                    "Blocked devices by reason",
                    "table",
                    [
                        (
                            f"sum by (namespace, pool, inference_node, reason, product) (gpufleet_blocked_devices{d})",
                            "",
                        )
                    ],
                    w=12,
                    instant=True,
                ),
                Panel(
                    "Engine releases",
                    "table",
                    [("gpufleet_engine_release_info", "")],
                    w=12,
                    instant=True,
                    description="EngineReleases the operator knows, by channel.",
                ),
            ],
        ),
        Row(
            "Operator",
            [
                Panel(
                    "Reconcile duration p95",
                    "timeseries",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le, controller) "
                            "(rate(gpufleet_reconcile_duration_seconds_bucket[$__rate_interval])))",
                            "{{controller}}",
                        )
                    ],
                    w=8,
                    unit="s",
                ),
                Panel(
                    "Reconcile errors",
                    "timeseries",
                    [
                        (
                            "sum by (controller, error) (rate(gpufleet_reconcile_errors_total[$__rate_interval]))",
                            "{{controller}} {{error}}",
                        )
                    ],
                    w=8,
                    unit="ops",
                ),
                Panel(
                    "API requests",
                    "timeseries",
                    [
                        (
                            "sum by (verb, code) (rate(gpufleet_api_requests_total[$__rate_interval]))",
                            "{{verb}} {{code}}",
                        )
                    ],
                    w=8,
                    unit="reqps",
                ),
                Panel(
                    "API latency p95",
                    "timeseries",
                    [
                        (
                            "histogram_quantile(0.95, sum by (le, verb) "
                            "(rate(gpufleet_api_request_duration_seconds_bucket[$__rate_interval])))",
                            "{{verb}}",
                        )
                    ],
                    w=12,
                    unit="s",
                ),
                Panel("Operator version", "table", [("gpufleet_build_info", "")], w=12, instant=True),
            ],
        ),
        Row(
            # #19: the epoch controller's series (gpufleet.controllers.epoch.metrics)
            "Epoch rewards and points",
            [
                Panel(
                    "Reward per pool per epoch",
                    "table",
                    [(f"max by (namespace, pool, epoch) (max_over_time(gpufleet_pool_epoch_reward_int{d}[$__range]))", "")],
                    w=12,
                    instant=True,
                    description="INT each pool earned in each epoch closed in the time range (one row per pool and epoch).",
                ),
                Panel(
                    "Reward per epoch",
                    "timeseries",
                    [(f"sum by (pool, epoch) (gpufleet_pool_epoch_reward_int{d})", "{{pool}} epoch {{epoch}}")],
                    w=12,
                    description="The newest closed epoch's reward of each pool; steps at each close.",
                ),
                Panel(
                    "Points per pool",
                    "timeseries",
                    [(f'sum by (pool) (gpufleet_pool_points{{{SCOPE}, kind="total"}})', "{{pool}}")],
                    w=8,
                    description="Off-chain $INT points: compute (1 per 1,000 tokens per billion parameters) plus bonus awards.",
                ),
                Panel(
                    "Points earned per epoch length",
                    "timeseries",
                    [(f'sum by (pool) (increase(gpufleet_pool_points{{{SCOPE}, kind="compute"}}[1d]))', "{{pool}}")],
                    w=8,
                    description="Compute points gained over the last day (a default-length epoch).",
                ),
                Panel(
                    "Jobs in the open epoch",
                    "bargauge",
                    [(f"sum by (pool) (gpufleet_pool_epoch_completed_jobs{d})", "{{pool}}")],
                    w=8,
                    instant=True,
                    options=BAR,
                    description="Completed jobs counted so far for the epoch now open.",
                ),
            ],
        ),
    ]
    return dashboard(
        "gpufleet-fleet-overview",
        "gpufleet / Fleet overview",
        "Devices, GPU and engine mix, blocked devices and versions across the fleet; epoch rewards and points.",
        [NS_VAR, POOL_VAR],
        rows,
    )


def routing_weights() -> Json:
    d = f"{{{SCOPE}}}"
    rows = [
        Row(
            "Per device",
            [
                Panel(
                    "Priority score per device",
                    "timeseries",
                    [(f"gpufleet_device_priority_score{d}", "{{pool}} {{inference_node}}/{{device_index}}")],
                    w=12,
                    description="1 + k x (device VRAM / pool VRAM x pool stake x reputation): routing weight.",
                ),
                Panel(
                    "VRAM share per device",
                    "timeseries",
                    [
                        (
                            f"gpufleet_device_vram_share_ratio{d}",
                            "{{pool}} {{inference_node}}/{{device_index}}",
                        )
                    ],
                    w=12,
                    unit="percentunit",
                    max=1,
                ),
                Panel(
                    "Devices by routing weight",
                    "table",
                    [
                        (f"gpufleet_device_priority_score{d}", ""),
                        (f"gpufleet_device_vram_share_ratio{d}", ""),
                        (f"gpufleet_device_effective_stake_int{d}", ""),
                    ],
                    w=24,
                    h=10,
                    instant=True,
                ),
            ],
        ),
        Row(
            "Per pool",
            [
                Panel(
                    "Expected job share per pool",
                    "piechart",
                    [(f"sum by (pool) (gpufleet_device_priority_score{d})", "{{pool}}")],
                    w=8,
                    options=PIE,
                    description="Each pool's part of the fleet's summed priority scores: its expected share of jobs.",
                ),
                Panel(
                    "Pool stake by source",
                    "bargauge",
                    [(f"sum by (pool, source) (gpufleet_pool_stake_int{d})", "{{pool}} {{source}}")],
                    w=8,
                    options=BAR,
                ),
                Panel(
                    "Self-stake ratio",
                    "timeseries",
                    [(f"gpufleet_pool_self_stake_ratio{d}", "{{pool}}")],
                    w=8,
                    unit="percentunit",
                    thresholds=[(None, "red"), (0.1, "green")],
                    options={"legend": {"displayMode": "list", "placement": "bottom"}},
                    description="Self stake / total stake; the network requires at least 10%.",
                ),
                Panel(
                    "Pools below minimum self stake",
                    "stat",
                    [(f"count(gpufleet_pool_self_stake_ratio{d} < 0.1) or vector(0)", "")],
                    w=8,
                    h=5,
                    options=STAT,
                    thresholds=[(None, "green"), (1, "red")],
                ),
                Panel(
                    "Validated VRAM per pool",
                    "timeseries",
                    [(f"gpufleet_pool_validated_vram_bytes{d}", "{{pool}}")],
                    w=16,
                    unit="bytes",
                ),
            ],
        ),
        Row(
            "Reputation and penalties",
            [
                Panel(
                    "Reputation weight per pool",
                    "timeseries",
                    [(f"gpufleet_pool_reputation_weight{d}", "{{pool}}")],
                    w=8,
                    max=1,
                    description="Completion multiplier x mean throughput score (or spec.reputationWeight); see docs/reputation.md.",
                ),
                Panel(
                    "Completion rate (3-day window)",
                    "timeseries",
                    [(f"gpufleet_pool_completion_ratio{d}", "{{pool}}")],
                    w=8,
                    unit="percentunit",
                    thresholds=[(None, "red"), (0.96, "orange"), (0.995, "green")],
                ),
                Panel(
                    "Completion tier",
                    "bargauge",
                    [(f"gpufleet_pool_completion_tier{d}", "{{pool}}")],
                    w=8,
                    options=BAR,
                    thresholds=[(None, "green"), (2, "orange"), (4, "red")],
                ),
                Panel(
                    "Penalties by enforcement",
                    "timeseries",
                    [(f'sum by (pool, offense, enforcement) (gpufleet_penalties{{{SCOPE}, enforcement=~"Enforced|Capped"}})', "{{pool}} {{offense}} {{enforcement}}")],
                    w=12,
                    description="Enforced: no traffic, no rewards. Capped: recorded but the safety cap keeps the pool routing.",
                ),
                Panel(
                    "Devices out by automatic penalties / cap",
                    "timeseries",
                    [("gpufleet_penalised_devices", "out"), ("gpufleet_penalty_cap_devices", "cap"), ("gpufleet_penalty_cap_reached", "cap reached")],
                    w=6,
                ),
                Panel(
                    "k and utilisation",
                    "timeseries",
                    [("gpufleet_routing_k", "k"), ('gpufleet_routing_utilisation_ratio{kind="smoothed"}', "utilisation (EMA)")],
                    w=6,
                    description="The k controller: k rises slowly below the target utilisation and falls fast above it.",
                ),
            ],
        ),
        Row(
            "Router: intended vs observed share (gpufleet router, #16)",
            [
                Panel(
                    "Intended vs observed share per device",
                    "timeseries",
                    [
                        (f"gpufleet_router_intended_share{d}", "intended {{pool}} {{inferencenode}}/{{device}} {{model}}"),
                        (f"gpufleet_router_observed_share{d}", "observed {{pool}} {{inferencenode}}/{{device}} {{model}}"),
                    ],
                    w=12,
                    unit="percentunit",
                    max=1,
                    description="Intended: priority / sum of priorities in the model group (the weights Envoy has). Observed: share of the group's attempts since its weights last changed.",
                ),
                Panel(
                    "Observed minus intended share",
                    "timeseries",
                    [(f"gpufleet_router_observed_share{d} - on (namespace, pool, inferencenode, device, model) gpufleet_router_intended_share{d}", "{{pool}} {{inferencenode}}/{{device}} {{model}}")],
                    w=12,
                    unit="percentunit",
                    description="Near 0 when the router delivers the stake-weighted shares; a device at its concurrency cap or ejected shows below 0.",
                ),
                Panel(
                    "Requests per device",
                    "timeseries",
                    [(f"sum by (pool, inferencenode, device, model) (rate(gpufleet_router_requests_total{d}[$__rate_interval]))", "{{pool}} {{inferencenode}}/{{device}} {{model}}")],
                    w=8,
                    unit="reqps",
                ),
                Panel(
                    "Failures by cause",
                    "timeseries",
                    [(f"sum by (cause) (rate(gpufleet_router_failures_total{d}[$__rate_interval]))", "{{cause}}")],
                    w=8,
                    unit="reqps",
                    description="Per failed attempt: connect, reset, http_5xx, timeout, client_cancel. A retried request shows one failure here and one completion on the next device.",
                ),
                Panel(
                    "Router's own answers",
                    "timeseries",
                    [("sum by (code) (rate(gpufleet_router_rejections_total[$__rate_interval]))", "{{code}}")],
                    w=8,
                    unit="reqps",
                    description="503: no eligible engine for the model (Retry-After); 4xx: unknown model, malformed JSON, body too large.",
                ),
                Panel(
                    "Time to first byte p99 per device",
                    "timeseries",
                    [(f"histogram_quantile(0.99, sum by (le, pool, inferencenode, device) (rate(gpufleet_router_ttfb_seconds_bucket{d}[$__rate_interval])))", "{{pool}} {{inferencenode}}/{{device}}")],
                    w=12,
                    unit="s",
                ),
                Panel(
                    "k in use and reprogramming latency p99",
                    "timeseries",
                    [
                        ("gpufleet_router_k", "k"),
                        ("histogram_quantile(0.99, sum by (le) (rate(gpufleet_router_reprogramming_seconds_bucket[$__rate_interval])))", "reprogramming p99 (s)"),
                    ],
                    w=12,
                    description="k the router computes priorities with; time from an observed change to the new endpoint file being in place.",
                ),
            ],
        ),
    ]
    return dashboard(
        "gpufleet-routing-weights",
        "gpufleet / Routing weights",
        "Priority score and VRAM share per device; stake and self-stake ratio per pool.",
        [NS_VAR, STAKE_POOL_VAR],
        rows,
    )


def rollouts() -> Json:
    ns = 'namespace=~"$namespace"'
    rows = [
        Row(
            "Progress",
            [
                Panel(
                    "Nodes in a rollout",
                    "stat",
                    [(f'count(gpufleet_rollout_state{{{ns}, state=~"{ACTIVE_ROLLOUT}"}}) or vector(0)', "")],
                    w=6,
                    h=5,
                    options=STAT,
                ),
                Panel(
                    "Rolling back",
                    "stat",
                    [(f'count(gpufleet_rollout_state{{{ns}, state="RollingBack"}}) or vector(0)', "")],
                    w=6,
                    h=5,
                    options=STAT,
                    thresholds=[(None, "green"), (1, "orange")],
                ),
                Panel(
                    "Halted releases",
                    "stat",
                    [("sum(gpufleet_engine_release_halted) or vector(0)", "")],
                    w=6,
                    h=5,
                    options=STAT,
                    thresholds=[(None, "green"), (1, "red")],
                    description="Releases whose failure budget is spent: no node starts them until resumed.",
                ),
                Panel(
                    "Rollbacks (range)",
                    "stat",
                    [
                        (
                            f'sum(increase(gpufleet_rollout_results_total{{{ns}, result="rolled_back"}}[$__range])) or vector(0)',
                            "",
                        )
                    ],
                    w=6,
                    h=5,
                    options=STAT,
                    thresholds=[(None, "green"), (1, "orange")],
                ),
                Panel(
                    "Rollout progress per node",
                    "bargauge",
                    [
                        (
                            f"gpufleet_rollout_progress_ratio{{{ns}}}",
                            "{{inference_node}} {{current_version}} → {{target_version}}",
                        )
                    ],
                    w=12,
                    h=10,
                    unit="percentunit",
                    max=1,
                    options=BAR,
                ),
                Panel(
                    "Rollout state per node",
                    "table",
                    [(f"max by (namespace, inference_node, state) (gpufleet_rollout_state{{{ns}}})", "")],
                    w=12,
                    h=10,
                    instant=True,
                ),
                Panel(
                    "Devices by engine version",
                    "timeseries",
                    [(f'sum by (version) (gpufleet_devices{{{ns}, version!="none"}})', "{{version}}")],
                    w=24,
                ),
            ],
        ),
        Row(
            "Results",
            [
                Panel(
                    "Rollout results",
                    "timeseries",
                    [
                        (
                            f"sum by (result) (increase(gpufleet_rollout_results_total{{{ns}}}[$__rate_interval]))",
                            "{{result}}",
                        )
                    ],
                    w=8,
                ),
                Panel(
                    "Rollbacks by reason",
                    "timeseries",
                    [
                        (
                            f'sum by (reason) (increase(gpufleet_rollout_results_total{{{ns}, result="rolled_back"}}'
                            "[$__rate_interval]))",
                            "{{reason}}",
                        )
                    ],
                    w=8,
                ),
                Panel(
                    "Rollout duration",
                    "timeseries",
                    [
                        (
                            "histogram_quantile(0.5, sum by (le) (rate(gpufleet_rollout_duration_seconds_bucket[1h])))",
                            "p50",
                        ),
                        (
                            "histogram_quantile(0.95, sum by (le) (rate(gpufleet_rollout_duration_seconds_bucket[1h])))",
                            "p95",
                        ),
                    ],
                    w=8,
                    unit="s",
                ),
                Panel(
                    "Halted releases",
                    "table",
                    [("gpufleet_engine_release_halted == 1", "")],
                    w=24,
                    h=6,
                    instant=True,
                ),
            ],
        ),
    ]
    return dashboard(
        "gpufleet-rollouts",
        "gpufleet / Rollouts",
        "Engine update progress per node, rollbacks and halted releases.",
        [ROLLOUT_NS_VAR],
        rows,
    )


def engines() -> Json:
    e = 'namespace=~"$namespace", pool=~"$pool", engine=~"$engine"'
    rows = [
        Row(
            "Load",
            [
                Panel(
                    "Queued requests",
                    "timeseries",
                    [(f"sum by (pool) (gpufleet_engine_requests_waiting{{{e}}})", "{{pool}}")],
                    w=8,
                ),
                Panel(
                    "Running requests",
                    "timeseries",
                    [(f"sum by (pool) (gpufleet_engine_requests_running{{{e}}})", "{{pool}}")],
                    w=8,
                ),
                Panel(
                    "KV cache usage",
                    "timeseries",
                    [
                        (f"avg by (pool) (gpufleet_engine_kv_cache_usage_ratio{{{e}}})", "{{pool}} avg"),
                        (f"max by (pool) (gpufleet_engine_kv_cache_usage_ratio{{{e}}})", "{{pool}} max"),
                    ],
                    w=8,
                    unit="percentunit",
                    max=1,
                ),
            ],
        ),
        Row(
            "Throughput and latency",
            [
                Panel(
                    "Generation tokens/s",
                    "timeseries",
                    [
                        (
                            f"sum by (pool, engine) (rate(gpufleet_engine_generation_tokens_total{{{e}}}[$__rate_interval]))",
                            "{{pool}} {{engine}}",
                        )
                    ],
                    w=8,
                    unit="short",
                ),
                Panel(
                    "Prompt tokens/s",
                    "timeseries",
                    [
                        (
                            f"sum by (pool, engine) (rate(gpufleet_engine_prompt_tokens_total{{{e}}}[$__rate_interval]))",
                            "{{pool}} {{engine}}",
                        )
                    ],
                    w=8,
                    unit="short",
                ),
                Panel(
                    "Time to first token",
                    "timeseries",
                    [
                        (
                            "histogram_quantile(0.5, sum by (le, engine) "
                            f"(rate(gpufleet_engine_time_to_first_token_seconds_bucket{{{e}}}[$__rate_interval])))",
                            "p50 {{engine}}",
                        ),
                        (
                            "histogram_quantile(0.95, sum by (le, engine) "
                            f"(rate(gpufleet_engine_time_to_first_token_seconds_bucket{{{e}}}[$__rate_interval])))",
                            "p95 {{engine}}",
                        ),
                    ],
                    w=8,
                    unit="s",
                ),
                Panel(
                    "Requests by outcome",
                    "timeseries",
                    [
                        (
                            f"sum by (outcome) (rate(gpufleet_engine_requests_total{{{e}}}[$__rate_interval]))",
                            "{{outcome}}",
                        )
                    ],
                    w=12,
                    unit="reqps",
                ),
                Panel(
                    "Failure ratio",
                    "timeseries",
                    [
                        (
                            f'sum(rate(gpufleet_engine_requests_total{{{e}, outcome="failure"}}[$__rate_interval])) '
                            f"/ sum(rate(gpufleet_engine_requests_total{{{e}}}[$__rate_interval]))",
                            "failures",
                        )
                    ],
                    w=12,
                    unit="percentunit",
                    thresholds=[(None, "green"), (0.05, "red")],
                ),
            ],
        ),
        Row(
            "Node agents",
            [
                Panel(
                    "Engines ready",
                    "stat",
                    [('sum(gpufleet_node_engine_ready{namespace=~"$namespace", pool=~"$pool"})', "")],
                    w=6,
                    h=5,
                    options=STAT,
                ),
                Panel(
                    "Engine state",
                    "timeseries",
                    [
                        (
                            'sum by (state) (gpufleet_node_engine_state{namespace=~"$namespace", pool=~"$pool"})',
                            "{{state}}",
                        )
                    ],
                    w=9,
                ),
                Panel(
                    "Engine restarts",
                    "timeseries",
                    [
                        (
                            'sum by (reason) (increase(gpufleet_node_engine_restarts_total{namespace=~"$namespace", '
                            'pool=~"$pool"}[$__rate_interval]))',
                            "{{reason}}",
                        )
                    ],
                    w=9,
                ),
                Panel(
                    "Engine startup time",
                    "timeseries",
                    [
                        (
                            'gpufleet_node_engine_startup_seconds{namespace=~"$namespace", pool=~"$pool"}',
                            "{{inference_node}}/{{device_index}}",
                        )
                    ],
                    w=12,
                    unit="s",
                ),
                Panel(
                    "Engine metrics scrape errors",
                    "timeseries",
                    [
                        (
                            'sum by (pod) (rate(gpufleet_node_engine_scrape_errors_total{namespace=~"$namespace", '
                            'pool=~"$pool"}[$__rate_interval]))',
                            "{{pod}}",
                        )
                    ],
                    w=12,
                    unit="ops",
                ),
            ],
        ),
    ]
    return dashboard(
        "gpufleet-engines",
        "gpufleet / Engines",
        "The engines' normalised metrics from the node agents: queue, running, KV cache, tokens/s, TTFT.",
        [ENGINE_NS_VAR, ENGINE_POOL_VAR, ENGINE_VAR],
        rows,
    )


DASHBOARDS = {
    "fleet-overview": fleet_overview,
    "routing-weights": routing_weights,
    "rollouts": rollouts,
    "engines": engines,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (OUT_DIR / name).write_text(text)
        sys.stdout.write(f"wrote {OUT_DIR / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
