"""The fleet overview's epoch row selects the epoch controller's series (names parsed from PromQL)."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from gpufleet.controllers.epoch.metrics import EpochMetrics
from gpufleet.metrics import family_sample_names
from tests.unit.chart.test_dashboards import selected_metrics

DASHBOARD = Path(__file__).parents[3] / "charts" / "gpufleet" / "dashboards" / "fleet-overview.json"


def test_epoch_row_selects_exported_epoch_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in board["panels"]]
    start = titles.index("Epoch rewards and points")
    row = board["panels"][start + 1 :]
    exprs = [t["expr"] for p in row for t in p.get("targets", [])]
    names = set().union(*(selected_metrics(e) for e in exprs))
    registry = CollectorRegistry()
    metrics = EpochMetrics(registry)
    metrics.record_close(3, 10**9, {"ns/a": 5 * 10**9})
    metrics.record_points("ns/a", 2_000_000, 500_000)
    metrics.record_open_jobs({"ns/a": 7})
    exported = family_sample_names(registry.collect())
    assert {
        "gpufleet_pool_epoch_reward_int",
        "gpufleet_pool_points",
        "gpufleet_pool_epoch_completed_jobs",
    } <= names
    assert names <= exported
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in registry.collect() for s in fam.samples
    }
    assert (
        values[("gpufleet_pool_epoch_reward_int", (("epoch", "3"), ("namespace", "ns"), ("pool", "a")))]
        == 5.0
    )
    assert values[("gpufleet_pool_points", (("kind", "total"), ("namespace", "ns"), ("pool", "a")))] == 2.5
    # the next close replaces the per-epoch series instead of keeping epoch 3's
    metrics.record_close(4, 10**9, {"ns/a": 1 * 10**9})
    epochs = {
        dict(s.labels)["epoch"]
        for fam in registry.collect()
        for s in fam.samples
        if s.name == "gpufleet_pool_epoch_reward_int"
    }
    assert epochs == {"4"}
