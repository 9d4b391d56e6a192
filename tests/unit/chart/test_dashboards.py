"""Dashboards: parse every PromQL expression and check each metric it selects is really exported."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from gpufleet.metrics import OperatorMetrics, family_sample_names
from tests.unit.chart.helpers import CHART, ROOT, by_kind, objects

DASHBOARD_DIR = CHART / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
# Grafana's built-in interval variables are not PromQL; substitute a duration before parsing.
GRAFANA_DURATIONS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")
LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


@cache
def operator_names() -> frozenset[str]:
    return OperatorMetrics().sample_names()


@cache
def agent_names() -> frozenset[str]:
    """What the node agent exports, taken from gpufleet_node.metrics itself (not from a copy)."""
    from gpufleet_node import metrics as nm

    agent = nm.AgentMetrics()
    # Engine families only appear once the agent has scraped its engine: give it a full snapshot.
    agent.engine.snapshot = nm.EngineSnapshot(
        engine="vllm",
        gauges={g.normalised: 1.0 for g in nm.GAUGES},
        counters={c.normalised: 1.0 for c in nm.COUNTERS},
        requests={"success": 1.0, "failure": 0.0},
        ttft=nm.Histogram(buckets=((0.1, 1.0), (math.inf, 1.0)), sum=0.05, count=1.0),
    )
    return family_sample_names(agent.registry.collect())


@cache
def epoch_names() -> frozenset[str]:
    """The epoch controller's series (#19), registered in the operator's registry when it runs."""
    from prometheus_client import CollectorRegistry

    from gpufleet.controllers.epoch.metrics import EpochMetrics

    registry = CollectorRegistry()
    EpochMetrics(registry)
    return family_sample_names(registry.collect())


@cache
def router_names() -> frozenset[str]:
    """The router's gpufleet_router_* series (#16), from its own collector."""
    from gpufleet.router.controlplane import sample_registry

    return family_sample_names(sample_registry().collect())


def exported_names() -> frozenset[str]:
    return operator_names() | agent_names() | epoch_names() | router_names()


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {var['name']}: unsupported query {query!r}"
        yield f"variable {var['name']}", match["expr"]


def selected_metrics(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (parsed, not pattern-matched)."""
    ast = promql_parser.parse(GRAFANA_DURATIONS.sub("5m", expr))
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        return True

    promql_parser.walk(ast, visit)
    return names


def test_all_four_dashboards_ship() -> None:
    assert {p.stem for p in DASHBOARDS} == {"fleet-overview", "routing-weights", "rollouts", "engines"}
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


def test_dashboards_are_up_to_date_with_their_generator() -> None:
    spec = importlib.util.spec_from_file_location("dashboards_build", ROOT / "dashboards" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        rendered: dict[str, str] = module.render_all()
    finally:
        del sys.modules[spec.name]
    assert rendered == {p.name: p.read_text() for p in DASHBOARDS}, "run: python dashboards/build.py"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_metric_in_every_expression_is_exported(path: Path) -> None:
    known = exported_names()
    seen = 0
    for where, expr in expressions(load(path)):
        try:
            names = selected_metrics(expr)
        except ValueError as exc:
            pytest.fail(f"{path.name} {where}: PromQL does not parse: {exc}\n{expr}")
        assert names, f"{path.name} {where}: selects no metric: {expr}"
        unknown = names - known
        assert not unknown, f"{path.name} {where}: {sorted(unknown)} not exported by operator or agent"
        seen += 1
    assert seen >= 5


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (pool) (gpufleet_devices{state="ready"})', {"gpufleet_devices"}),
        (
            "histogram_quantile(0.9, sum by (le) (rate(gpufleet_engine_time_to_first_token_seconds_bucket"
            "[$__rate_interval])))",
            {"gpufleet_engine_time_to_first_token_seconds_bucket"},
        ),
        ('count({__name__="gpufleet_pool_stake_int"}) or vector(0)', {"gpufleet_pool_stake_int"}),
        ("a / on (pool) group_left (x) b", {"a", "b"}),
    ],
)
def test_metric_extraction_reads_the_syntax_tree(expr: str, expected: set[str]) -> None:
    assert selected_metrics(expr) == expected


def test_an_unexported_name_would_be_caught() -> None:
    # Label names, functions and strings are not metrics; a misspelt metric is.
    names = selected_metrics('sum by (state) (rate(gpufleet_device_total{state="gpufleet_devices"}[5m]))')
    assert names == {"gpufleet_device_total"}
    assert names - exported_names() == {"gpufleet_device_total"}
    with pytest.raises(ValueError, match=r"."):
        selected_metrics("sum(gpufleet_devices")


def _used(path: str) -> set[str]:
    out: set[str] = set()
    for _, expr in expressions(load(DASHBOARD_DIR / path)):
        out |= selected_metrics(expr)
    return out


def test_dashboards_cover_what_the_issue_asks_for() -> None:
    fleet = _used("fleet-overview.json")
    assert {"gpufleet_devices", "gpufleet_blocked_devices", "gpufleet_engine_release_info"} <= fleet
    fleet_exprs = " ".join(e for _, e in expressions(load(DASHBOARD_DIR / "fleet-overview.json")))
    for grouping in ("by (state)", "by (product)", "by (engine)", "by (version)"):
        assert grouping in fleet_exprs
    routing = _used("routing-weights.json")
    assert {
        "gpufleet_device_priority_score",
        "gpufleet_device_vram_share_ratio",
        "gpufleet_pool_stake_int",
        "gpufleet_pool_self_stake_ratio",
    } <= routing
    rollouts = _used("rollouts.json")
    assert {
        "gpufleet_rollout_progress_ratio",
        "gpufleet_rollout_results_total",
        "gpufleet_engine_release_halted",
    } <= rollouts
    engines = _used("engines.json")
    assert {
        "gpufleet_engine_requests_waiting",
        "gpufleet_engine_requests_running",
        "gpufleet_engine_kv_cache_usage_ratio",
        "gpufleet_engine_generation_tokens_total",
        "gpufleet_engine_time_to_first_token_seconds_bucket",
    } <= engines


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_structure(path: Path) -> None:
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, f"{panel['title']} starts off the grid"
        assert pos["x"] + pos["w"] <= 24, f"{panel['title']} overflows the grid"
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{panel['title']}: unknown variable ${var}"


def test_dashboards_ship_as_sidecar_configmaps() -> None:
    configmaps = by_kind(objects(), "ConfigMap")
    assert len(configmaps) == len(DASHBOARDS)
    shipped = {}
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = cm["data"].items()
        shipped[key] = text
    for path in DASHBOARDS:
        assert json.loads(shipped[path.name]) == load(path)


def test_configmaps_fit_the_size_limit() -> None:
    for cm in by_kind(objects(), "ConfigMap"):
        assert len(yaml.safe_dump(cm).encode()) < 1024 * 1024
