"""Prometheus series of the epoch controller, registered in the operator's registry.

Rewards are in whole INT (as the pool stake gauges are); points in whole points.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from gpufleet.economics.points import MICRO
from gpufleet.economics.units import INT


class EpochMetrics:
    """The series, bound to one registry (the operator's ``METRICS.registry`` by default)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.current_epoch = Gauge(
            "gpufleet_epoch_current", "Number of the epoch now open.", registry=registry
        )
        self.last_closed_epoch = Gauge(
            "gpufleet_epoch_last_closed", "Number of the newest closed epoch.", registry=registry
        )
        self.epochs_closed = Counter(
            "gpufleet_epochs_closed_total",
            "Epochs this operator closed (Epoch objects created).",
            registry=registry,
        )
        self.epoch_emission = Gauge(
            "gpufleet_epoch_emission_int", "INT emitted by the newest closed epoch.", registry=registry
        )
        self.pool_epoch_reward = Gauge(
            "gpufleet_pool_epoch_reward_int",
            "INT the pool earned in the newest closed epoch (label epoch).",
            ["namespace", "pool", "epoch"],
            registry=registry,
        )
        self.pool_rewards = Counter(
            "gpufleet_pool_rewards_int_total",
            "INT earned by the pool over the epochs this operator closed.",
            ["namespace", "pool"],
            registry=registry,
        )
        self.pool_epoch_jobs = Gauge(
            "gpufleet_pool_epoch_completed_jobs",
            "Completed jobs counted for the pool in the open epoch.",
            ["namespace", "pool"],
            registry=registry,
        )
        self.pool_points = Gauge(
            "gpufleet_pool_points",
            "Off-chain $INT points of the pool (kind: compute, bonus, total).",
            ["namespace", "pool", "kind"],
            registry=registry,
        )
        self.scrapes = Counter(
            "gpufleet_epoch_scrapes_total",
            "Reads of router counters by result (ok, error).",
            ["result"],
            registry=registry,
        )
        self.router_resets = Counter(
            "gpufleet_epoch_router_counter_resets_total", "Router counter resets seen.", registry=registry
        )
        self.carried_jobs = Counter(
            "gpufleet_epoch_carried_jobs_total",
            "Jobs that belonged to an already closed epoch, counted in the next open one.",
            registry=registry,
        )
        self._reward_series: set[tuple[str, str, str]] = set()

    def record_close(self, epoch: int, emission: int, rewards: dict[str, int]) -> None:
        """One close: replace the per-pool reward series by this epoch's."""
        self.last_closed_epoch.set(epoch)
        self.epochs_closed.inc()
        self.epoch_emission.set(emission / INT)
        for labels in self._reward_series:
            self.pool_epoch_reward.remove(*labels)
        self._reward_series.clear()
        for pool, amount in rewards.items():
            ns, name = pool.split("/", 1)
            labels = (ns, name, str(epoch))
            self.pool_epoch_reward.labels(*labels).set(amount / INT)
            self._reward_series.add(labels)
            self.pool_rewards.labels(ns, name).inc(amount / INT)

    def record_points(self, pool: str, compute: int, bonus: int) -> None:
        ns, name = pool.split("/", 1)
        self.pool_points.labels(ns, name, "compute").set(compute / MICRO)
        self.pool_points.labels(ns, name, "bonus").set(bonus / MICRO)
        self.pool_points.labels(ns, name, "total").set((compute + bonus) / MICRO)

    def record_open_jobs(self, jobs: dict[str, int]) -> None:
        for pool, count in jobs.items():
            ns, name = pool.split("/", 1)
            self.pool_epoch_jobs.labels(ns, name).set(count)
