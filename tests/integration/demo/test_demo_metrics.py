"""The operator's /metrics tell the truth about the demo fleet.

Runs the default demo scenario in-process with the operator's metrics served on a free port,
scrapes /metrics while it runs (so the transient ``updating`` state is seen) and at the end, and
checks every operator metric named in the docs, the runbooks and the dashboards: it has samples,
with the documented labels, and values that agree with what the scenario set up.
"""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import gpufleet
from gpufleet.metrics import DEVICE_STATES, METRICS, OperatorMetrics, family_sample_names

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[3]
#: Where people read metric names: docs (runbooks included), the README, the shipped dashboards.
NAMED_IN = [
    *sorted((REPO / "docs").rglob("*.md")),
    REPO / "README.md",
    *sorted((REPO / "charts").rglob("*.json")),
]
#: Operator metrics that may rightly have no sample after a healthy demo, and why.
_REPUTATION = "written by the reputation and k controllers (#17), off unless GPUFLEET_REPUTATION_ENABLED"
MAY_BE_EMPTY = {
    "gpufleet_reconcile_errors_total": "counts reconciles that raised; a healthy demo has none",
    "gpufleet_pool_reputation_weight": _REPUTATION,
    "gpufleet_pool_completion_ratio": _REPUTATION,
    "gpufleet_pool_completion_tier": _REPUTATION,
    "gpufleet_penalties": _REPUTATION,
    "gpufleet_penalties_created_total": _REPUTATION + "; counts penalties created",
    "gpufleet_routing_utilisation_ratio": _REPUTATION,
}
#: Labels each operator metric must carry (docs/helm.md's table).
INODE = {"namespace", "pool", "inference_node"}
LABELS = {
    "gpufleet_devices": INODE | {"state", "product", "engine", "version"},
    "gpufleet_blocked_devices": INODE | {"reason", "product"},
    "gpufleet_device_vram_share_ratio": INODE | {"device_index", "product"},
    "gpufleet_device_priority_score": INODE | {"device_index", "product"},
    "gpufleet_device_effective_stake_int": INODE | {"device_index", "product"},
    "gpufleet_pool_stake_int": {"namespace", "pool", "source"},
    "gpufleet_pool_self_stake_ratio": {"namespace", "pool"},
    "gpufleet_pool_validated_vram_bytes": {"namespace", "pool"},
    "gpufleet_reconcile_duration_seconds_count": {"controller"},
    "gpufleet_api_requests_total": {"verb", "resource", "code"},
    "gpufleet_api_request_duration_seconds_count": {"verb", "resource"},
    "gpufleet_rollout_state": {"namespace", "inference_node", "state"},
    "gpufleet_rollout_progress_ratio": {"namespace", "inference_node", "current_version", "target_version"},
    "gpufleet_rollout_results_total": {"namespace", "result", "reason"},
    "gpufleet_rollout_duration_seconds_count": {"result"},
    "gpufleet_engine_release_info": {"release", "version", "channel"},
    "gpufleet_engine_release_halted": {"release", "version"},
    "gpufleet_build_info": {"version"},
}

Samples = dict[str, list[tuple[dict[str, str], float]]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name].append((dict(s.labels), float(s.value)))
    return out


def named_metrics(files: Iterable[Path]) -> dict[str, set[str]]:
    """Metric names people are told about, and the files that name them."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in files:
        for name in re.findall(r"\bgpufleet_[a-z0-9_]*[a-z0-9]\b", path.read_text()):
            found[name].add(str(path.relative_to(REPO)))
    return found


@pytest.fixture(scope="module")
def scraped() -> tuple[Samples, set[str], dict[str, Any]]:
    """(final scrape, device states seen while the demo ran, final demo snapshot)."""
    from gpufleet_demo.runner import Demo
    from gpufleet_demo.scenario import load_scenario

    port = _free_port()
    METRICS.set_build_info(gpufleet.__version__)  # what `gpufleet run` does at start
    METRICS.serve(port, addr="127.0.0.1")
    seen: set[str] = set()

    def refresh(_: dict[str, Any], __: str, ___: Any) -> None:
        for labels, value in _scrape(port).get("gpufleet_devices", []):
            if value > 0:
                seen.add(labels["state"])

    result = asyncio.run(Demo(load_scenario(), refresh=refresh, phase_timeout=90).run())
    assert result.ok, [(p.name, p.outcome, p.detail) for p in result.phases]
    return _scrape(port), seen, result.snapshot


def _operator_names() -> set[str]:
    """Sample names the operator exports, plus each histogram's own name as prose refers to it.

    Whether every name in the docs exists at all is tests/unit/test_runbooks.py's and
    tests/unit/chart/test_dashboards.py's job; this test checks the operator's have samples.
    """
    families = list(OperatorMetrics().registry.collect())
    return set(family_sample_names(families)) | {f.name for f in families if f.type == "histogram"}


def test_every_operator_metric_named_has_samples_with_its_labels(
    scraped: tuple[Samples, set[str], dict[str, Any]],
) -> None:
    samples = scraped[0]
    named = set(named_metrics(NAMED_IN)) & _operator_names()
    assert "gpufleet_engine_release_info" in named
    missing = []
    for name in sorted(named):
        # A histogram named without its suffix is checked through its _count series.
        series = samples.get(name) or samples.get(f"{name}_count") or []
        if not series:
            if name not in MAY_BE_EMPTY and not name.endswith(("_created", "_bucket", "_sum")):
                missing.append(name)
            continue
        want = LABELS.get(name) or LABELS.get(f"{name}_count")
        for labels, _ in series:
            if want is not None:
                assert want <= set(labels), (
                    f"{name}: labels {sorted(labels)} lack {sorted(want - set(labels))}"
                )
    assert missing == [], (
        f"operator metrics named in docs/dashboards without a sample after the demo: {missing}"
    )


def test_devices_count_state_and_running_version(scraped: tuple[Samples, set[str], dict[str, Any]]) -> None:
    samples, _, snap = scraped
    devices = samples["gpufleet_devices"]
    total = sum(v for _, v in devices)
    assert total == len(snap["devices"])
    by_state: dict[str, float] = defaultdict(float)
    for labels, v in devices:
        by_state[labels["state"]] += v
    assert by_state["ready"] == sum(1 for d in snap["devices"] if d["valid"] and d["ready"])
    assert by_state["blocked"] == sum(1 for d in snap["devices"] if not d["valid"])
    versions = {n["name"]: n["currentVersion"] for n in snap["inferenceNodes"]}
    for labels, _ in devices:
        if labels["state"] == "ready":
            assert labels["version"] == versions[labels["inference_node"]], labels
            assert labels["version"] != "none"
    blocked = {(lb["inference_node"], lb["reason"]) for lb, v in samples["gpufleet_blocked_devices"] if v}
    assert blocked == {("mystery-box", "UnknownProduct"), ("liar-box", "VRAMMismatch")}


def test_every_documented_device_state_occurs_that_the_demo_goes_through(
    scraped: tuple[Samples, set[str], dict[str, Any]],
) -> None:
    seen = scraped[1]
    assert seen <= set(DEVICE_STATES)
    assert {"ready", "blocked", "updating"} <= seen, f"device states seen while the demo ran: {sorted(seen)}"


def test_shares_stakes_and_pools_agree_with_the_scenario(
    scraped: tuple[Samples, set[str], dict[str, Any]],
) -> None:
    samples, _, snap = scraped
    share: dict[str, float] = defaultdict(float)
    stake: dict[str, float] = defaultdict(float)
    for labels, v in samples["gpufleet_device_vram_share_ratio"]:
        assert 0 < v <= 1
        share[labels["pool"]] += v
    for labels, v in samples["gpufleet_device_effective_stake_int"]:
        stake[labels["pool"]] += v
    for labels, v in samples["gpufleet_device_priority_score"]:
        assert v >= 1, labels
    pools = {p["name"]: p for p in snap["pools"]}
    for name, pool in pools.items():
        assert share[name] == pytest.approx(1.0), name
        assert Decimal(str(stake[name])) == Decimal(str(pool["totalStake"])), name
    by_source = {(lb["pool"], lb["source"]): v for lb, v in samples["gpufleet_pool_stake_int"]}
    for name, pool in pools.items():
        assert by_source[(name, "self")] + by_source[(name, "delegated")] == float(
            Decimal(str(pool["totalStake"]))
        )
    ratios = {lb["pool"]: v for lb, v in samples["gpufleet_pool_self_stake_ratio"]}
    assert ratios == {n: pytest.approx(float(p["selfStakeRatio"])) for n, p in pools.items()}
    vram = {lb["pool"]: v for lb, v in samples["gpufleet_pool_validated_vram_bytes"]}
    assert vram == {n: p["validatedVRAMMiB"] * 1024 * 1024 for n, p in pools.items()}


def test_releases_rollouts_and_build(scraped: tuple[Samples, set[str], dict[str, Any]]) -> None:
    samples, _, snap = scraped
    info = {
        (lb["release"], lb["version"], lb["channel"])
        for lb, v in samples["gpufleet_engine_release_info"]
        if v
    }
    assert info == {(r["name"], str(r["version"]), str(r["channel"])) for r in snap["releases"]}
    halted = {lb["release"]: v for lb, v in samples["gpufleet_engine_release_halted"]}
    assert halted == {
        r["name"]: (1.0 if r["halted"] else 0.0) for r in snap["releases"] if r["name"] in halted
    }
    assert any(v == 1.0 for v in halted.values())
    results: dict[str, float] = defaultdict(float)
    for lb, v in samples["gpufleet_rollout_results_total"]:
        results[lb["result"]] += v
    assert results["succeeded"] >= 3  # release 1.1.0 on the three healthy nodes
    assert results["rolled_back"] >= 3  # release 1.2.0 rolled back on each of them
    assert results["halted"] >= 1
    states = defaultdict(list)
    for lb, v in samples["gpufleet_rollout_state"]:
        states[lb["inference_node"]].append(v)
    assert all(vs == [1.0] for vs in states.values()), states
    assert samples["gpufleet_build_info"] == [({"version": gpufleet.__version__}, 1.0)]
    assert sum(v for _, v in samples["gpufleet_api_requests_total"]) > 0
    codes = {lb["code"] for lb, _ in samples["gpufleet_api_requests_total"]}
    assert codes <= {"error"} | {str(c) for c in range(100, 600)}
