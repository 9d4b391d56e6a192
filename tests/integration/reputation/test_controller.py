"""The reputation and k controllers end to end on recorded router counters (no proxy, no cluster).

The router's counters are produced here as ``RouterStats`` snapshots, exactly what
``GET /v1/stats`` returns, from fake engines failing at fixed rates; the API server is an
in-memory fake. This is the "pure path" of issue #17's integration list: the real-proxy variant
needs the router's devcluster harness (see docs/reputation.md, "What is tested").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gpufleet.controllers.reputation.controller import PENALTY_ANNOTATION, ReputationController
from gpufleet.controllers.routingpolicy.controller import RoutingPolicyController
from gpufleet.controllers.routingpolicy.planner import k_from_policy
from gpufleet.router.endpoints import _penalised_by_annotation
from gpufleet.router.settings import RouterSettings
from gpufleet.router.stats import DeviceKey, DeviceStats, Failures, Histogram, RouterStats, Tokens
from gpufleet.settings import OperatorSettings
from tests.integration.reputation.fakeapi import FakeApi

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
NS = "operators"


def settings(**kw: Any) -> OperatorSettings:
    base: dict[str, Any] = {"reputation_status_min_seconds": 0}
    base.update(kw)
    return OperatorSettings(**base)


def add_pool(
    api: FakeApi,
    name: str,
    *,
    devices: int = 1,
    version: str = "1.0.0",
    reason: str = "Valid",
    override: str | None = None,
) -> None:
    spec: dict[str, Any] = {"selfStake": "1000"}
    if override is not None:
        spec["reputationWeight"] = override
    api.put("operatorpools", {"metadata": {"name": name, "namespace": NS}, "spec": spec})
    devs = [
        {
            "index": i,
            "uuid": f"GPU-{name}-{i}",
            "product": "NVIDIA GeForce RTX 4090",
            "ready": True,
            "routable": reason == "Valid",
            "validation": {"valid": reason == "Valid", "reason": reason, "message": f"{reason} on GPU {i}"},
        }
        for i in range(devices)
    ]
    api.put(
        "inferencenodes",
        {
            "metadata": {"name": f"{name}-node", "namespace": NS},
            "spec": {"poolRef": {"name": name}, "models": [{"name": MODEL}]},
            "status": {"devices": devs, "currentVersion": version},
        },
    )


@dataclass
class FakeRouter:
    """Cumulative per-device counters of one router replica, fed by fake engines."""

    name: str = "router-0"
    since: datetime = T0 - timedelta(days=1)
    devices: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    now: datetime = T0

    def serve(
        self,
        pool: str,
        requests: int,
        failed: int,
        device: int = 0,
        tokens_per_request: int = 100,
        seconds_per_request: float = 2.0,
    ) -> None:
        d = self.devices.setdefault(
            (pool, device), {"completions": 0, "http_5xx": 0, "tokens": 0, "seconds": 0.0}
        )
        done = requests - failed
        d["completions"] += done
        d["http_5xx"] += failed
        d["tokens"] += done * tokens_per_request
        d["seconds"] += requests * seconds_per_request

    def restart(self) -> None:
        """A router that lost its checkpoint: counters from zero, a new ``since``."""
        self.since = self.now
        for d in self.devices.values():
            d.update({"completions": 0, "http_5xx": 0, "tokens": 0, "seconds": 0.0})

    def snapshot(self) -> RouterStats:
        devs = []
        for (pool, index), d in sorted(self.devices.items()):
            key = DeviceKey(namespace=NS, pool=pool, inference_node=f"{pool}-node", device=index, model=MODEL)
            n = d["completions"] + d["http_5xx"]
            devs.append(
                DeviceStats(
                    key=key,
                    requests=n,
                    completions=d["completions"],
                    failures=Failures(http_5xx=d["http_5xx"]),
                    tokens=Tokens(completion=d["tokens"]),
                    latency=Histogram(count=n, counts=(0,) * 15 + (n,), sum_seconds=d["seconds"]),
                    ttfb=Histogram(count=n, counts=(n,) * 16, sum_seconds=0.0),
                )
            )
        return RouterStats(
            router=self.name, since=self.since, observed_at=self.now, k="0.0001", devices=tuple(devs)
        )


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def mono(self) -> float:
        return (self.now - T0).total_seconds()


def make(api: FakeApi, router: FakeRouter, clock: Clock, **kw: Any) -> ReputationController:
    async def fetch() -> list[RouterStats]:
        router.now = clock.now
        return [router.snapshot()]

    return ReputationController(settings(**kw), api, fetch, clock=clock, monotonic=clock.mono)


def reputation(api: FakeApi, pool: str) -> dict[str, Any]:
    return dict(api.get("operatorpools", NS, pool)["status"]["reputation"])


def condition(api: FakeApi, pool: str, type_: str) -> dict[str, Any]:
    conds = api.get("operatorpools", NS, pool)["status"]["conditions"]
    return next(c for c in conds if c["type"] == type_)


FAILURE_RATES = {"p-0-1": 1, "p-1-5": 15, "p-3": 30, "p-10": 100}  # failures per 1000


async def test_fake_engines_failing_at_issue_rates_land_in_the_issue_tiers() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    for pool in FAILURE_RATES:
        add_pool(api, pool)
    ctl = make(api, router, clock)
    await ctl.step()  # baseline
    for _ in range(3):
        clock.now += timedelta(minutes=5)
        for pool, per_mille in FAILURE_RATES.items():
            router.serve(pool, 1000, per_mille)
        await ctl.step()
    tiers = {p: (reputation(api, p)["tier"], reputation(api, p)["multiplier"]) for p in FAILURE_RATES}
    assert tiers == {"p-0-1": (1, "1"), "p-1-5": (2, "0.9"), "p-3": (3, "0.8"), "p-10": (6, "0.5")}
    rep = reputation(api, "p-3")
    assert (rep["completed"], rep["failed"], rep["sample"], rep["completionRate"]) == (2910, 90, 3000, "0.97")
    assert rep["completionReason"] == "Measured"
    assert rep["windowHours"] == 72
    # 970 x 100 tokens over 1000 x 2 s (failed requests' time counts too) = 48.5 tok/s per stream,
    # against 54.84 x 1/2: the throughput part is 1
    assert rep["devices"][0]["note"] == "Measured"
    assert rep["devices"][0]["throughputScore"] == "1"
    assert rep["devices"][0]["observedTokensPerSecond"] == "48.5"
    assert rep["devices"][0]["benchmarkTokensPerSecond"] == "54.84"
    assert rep["weight"] == rep["effectiveWeight"] == "0.8"
    assert condition(api, "p-3", "ReputationOverride")["status"] == "False"
    # a tier change is an Event on the pool
    assert any(e[2] == "ReputationTierChanged" and e[0] == "p-10" for e in api.events)
    # 90% is not below the 90% floor, and the hour has not closed: no penalties
    assert api.all("penalties") == []


async def test_minimum_sample_and_slow_devices() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "new")
    add_pool(api, "slow")
    ctl = make(api, router, clock)
    await ctl.step()
    clock.now += timedelta(minutes=1)
    router.serve("new", 199, 100)  # half failed, but only 199 requests: still tier 1
    router.serve("slow", 1000, 0, tokens_per_request=20, seconds_per_request=4.0)  # 5 tok/s per stream
    await ctl.step()
    new = reputation(api, "new")
    assert (new["tier"], new["multiplier"], new["completionReason"]) == (1, "1", "BelowMinimumSample")
    slow = reputation(api, "slow")
    # 5 / (54.84 / 2) = 0.1823486...
    assert slow["devices"][0]["throughputScore"] == "0.182348651"
    assert slow["weight"] == "0.182348651"


async def test_low_completion_hour_penalises_sends_traffic_to_zero_and_back_then_escalates() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0 + timedelta(minutes=10))
    add_pool(api, "bad")
    for i in range(5):
        add_pool(api, f"good-{i}")
    ctl = make(api, router, clock)
    await ctl.step()
    clock.now = T0 + timedelta(minutes=30)
    router.serve("bad", 100, 20)  # 80% in this hour
    for i in range(5):
        router.serve(f"good-{i}", 100, 0)
    await ctl.step()
    assert api.all("penalties") == []  # the hour has not closed yet
    clock.now = T0 + timedelta(hours=1, minutes=1)
    await ctl.step()
    [pen] = api.all("penalties")
    assert pen["spec"]["pool"] == "bad"
    assert pen["spec"]["offense"] == "LowCompletion"
    assert pen["spec"]["level"] == 1
    assert "80% of 100 requests" in pen["spec"]["reason"]
    assert pen["status"]["enforcement"] == "Enforced"
    assert pen["status"]["until"] == "2026-03-01T12:01:00Z"
    until = api.get("operatorpools", NS, "bad")["metadata"]["annotations"][PENALTY_ANNOTATION]
    assert until == "2026-03-01T12:01:00Z"
    # the router's own rule removes the pool's devices while the annotation is in the future
    assert RouterSettings().penalty_annotation == PENALTY_ANNOTATION
    assert _penalised_by_annotation({PENALTY_ANNOTATION: until}, PENALTY_ANNOTATION, clock.now)
    assert condition(api, "bad", "Penalised")["status"] == "True"
    assert reputation(api, "bad")["penalty"] == pen["metadata"]["name"]
    assert [e[2] for e in api.events if e[0] == "bad"].count("PenaltyCreated") == 1
    # one pass later nothing new: the hour is judged once
    await ctl.step()
    assert len(api.all("penalties")) == 1
    # after it expires the annotation goes and the pool routes again
    clock.now = T0 + timedelta(hours=2, minutes=2)
    await ctl.step()
    pen = api.all("penalties")[0]
    assert pen["status"]["enforcement"] == "Expired"
    assert PENALTY_ANNOTATION not in (
        api.get("operatorpools", NS, "bad")["metadata"].get("annotations") or {}
    )
    assert condition(api, "bad", "Penalised")["status"] == "False"
    assert any(e[2] == "PenaltyExpired" for e in api.events)
    # failing again in a later hour: level 2, four hours
    clock.now = T0 + timedelta(hours=2, minutes=30)
    router.serve("bad", 100, 50)
    await ctl.step()
    clock.now = T0 + timedelta(hours=3, minutes=1)
    await ctl.step()
    second = [p for p in api.all("penalties") if p["spec"]["level"] == 2]
    assert len(second) == 1
    assert second[0]["status"]["until"] == "2026-03-01T17:01:00Z"


async def test_restarts_of_operator_and_router_give_the_same_tier() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "p")
    first = make(api, router, clock)
    await first.step()
    clock.now += timedelta(minutes=2)
    router.serve("p", 1000, 25)  # 97.5%: tier 3
    await first.step()
    before = reputation(api, "p")
    assert before["tier"] == 3
    # the operator restarts: a new controller resumes from the ConfigMap, nothing counted twice
    second = make(api, router, clock)
    clock.now += timedelta(minutes=1)
    await second.step()
    after = reputation(api, "p")
    assert (after["tier"], after["completed"], after["failed"]) == (3, before["completed"], before["failed"])
    # the router restarts and loses its counters: the new counters are counted whole
    router.restart()
    router.serve("p", 100, 0)
    clock.now += timedelta(minutes=1)
    await second.step()
    again = reputation(api, "p")
    assert (again["completed"], again["failed"]) == (before["completed"] + 100, before["failed"])
    assert again["tier"] == 3


async def test_a_bad_release_failing_everywhere_produces_no_operator_penalty() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0 + timedelta(minutes=5))
    for i in range(6):
        add_pool(api, f"p{i}", version="2.0.0")
    api.put(
        "enginereleases",
        {
            "metadata": {"name": "engine-2-0-0"},
            "spec": {"version": "2.0.0"},
            "status": {"halted": True, "failedNodes": ["operators/p0-node"]},
        },
    )
    ctl = make(api, router, clock)
    await ctl.step()
    clock.now = T0 + timedelta(minutes=40)
    for i in range(6):
        router.serve(f"p{i}", 500, 400)
    await ctl.step()
    clock.now = T0 + timedelta(hours=1, minutes=5)
    await ctl.step()
    assert api.all("penalties") == []
    rep = reputation(api, "p0")
    assert (rep["tier"], rep["failed"], rep["excused"]) == (1, 0, 400)


async def test_safety_cap_keeps_most_of_a_failing_fleet_routing_and_alerts() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0 + timedelta(minutes=5))
    for i in range(10):
        add_pool(api, f"p{i}")
    ctl = make(api, router, clock)
    await ctl.step()
    clock.now = T0 + timedelta(minutes=40)
    for i in range(10):
        router.serve(f"p{i}", 100, 50)  # a fault on a release nobody halted: every pool offends
    await ctl.step()
    clock.now = T0 + timedelta(hours=1, minutes=5)
    result = await ctl.step()
    pens = api.all("penalties")
    assert len(pens) == 10  # every offense recorded
    states = sorted(p["status"]["enforcement"] for p in pens)
    assert states == ["Capped"] * 8 + ["Enforced"] * 2  # 20% of 10 devices
    annotated = [
        p for p in api.all("operatorpools") if PENALTY_ANNOTATION in (p["metadata"].get("annotations") or {})
    ]
    assert len(annotated) == 2
    assert len(result.capped_pools) == 8
    assert sum(1 for e in api.events if e[2] == "PenaltyCapped" and e[1] == "Warning") == 8


async def test_integrity_offense_once_per_occurrence_and_delete_lifts() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "liar", devices=2, reason="VRAMMismatch")
    add_pool(api, "mig", reason="MIGSlice")  # an honest misconfiguration: never an offense
    for i in range(8):
        add_pool(api, f"ok{i}")
    ctl = make(api, router, clock)
    await ctl.step()
    pens = api.all("penalties")
    assert sorted(p["spec"]["subject"] for p in pens) == ["liar-node/GPU 0", "liar-node/GPU 1"]
    levels = sorted((p["spec"]["level"], p["status"]["permanent"]) for p in pens)
    assert levels == [(1, False), (6, True)]  # the second integrity offense suspends
    await ctl.step()
    assert len(api.all("penalties")) == 2
    for p in pens:
        api.delete("penalties", NS, p["metadata"]["name"])
    await ctl.step()
    assert api.all("penalties") == []  # lifted, and not re-created for the same occurrence
    assert sum(1 for e in api.events if e[2] == "PenaltyLifted") == 2
    assert PENALTY_ANNOTATION not in (
        api.get("operatorpools", NS, "liar")["metadata"].get("annotations") or {}
    )


async def test_manual_penalty_without_level_takes_the_next_level() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    for i in range(5):
        add_pool(api, f"p{i}")
    api.put(
        "penalties",
        {
            "metadata": {"name": "audit", "namespace": NS, "creationTimestamp": "2026-03-01T10:00:00Z"},
            "spec": {"pool": "p0", "offense": "Manual", "reason": "audit"},
        },
    )
    ctl = make(api, router, clock)
    await ctl.step()
    pen = api.get("penalties", NS, "audit")
    assert (pen["status"]["level"], pen["status"]["until"], pen["status"]["enforcement"]) == (
        1,
        "2026-03-01T11:00:00Z",
        "Enforced",
    )
    assert pen["status"]["conditions"][0]["type"] == "Active"


async def test_override_condition_and_status_rate_limit() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "o", override="0.5")
    ctl = make(api, router, clock, reputation_status_min_seconds=60)
    first = await ctl.step()
    assert first.status_writes == 1
    rep = reputation(api, "o")
    assert (rep["override"], rep["effectiveWeight"], rep["weight"]) == (True, "0.5", "1")
    cond = condition(api, "o", "ReputationOverride")
    assert (cond["status"], cond["reason"]) == ("True", "SpecOverride")
    clock.now += timedelta(seconds=30)
    router.serve("o", 1000, 300)
    assert (await ctl.step()).status_writes == 0  # within the minute
    clock.now += timedelta(seconds=31)
    assert (await ctl.step()).status_writes == 1
    clock.now += timedelta(seconds=61)
    assert (await ctl.step()).status_writes == 0  # nothing changed: no write


@pytest.mark.parametrize("in_flight", [30])
async def test_k_falls_under_load_and_the_router_reads_it(in_flight: int) -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    for i in range(4):
        add_pool(api, f"p{i}")
    busy_seconds = 0.0

    async def fetch() -> list[RouterStats]:
        router.now = clock.now
        router.devices[("p0", 0)] = {"completions": 0, "http_5xx": 0, "tokens": 0, "seconds": busy_seconds}
        return [router.snapshot()]

    ctl = RoutingPolicyController(settings(), api, fetch, clock=clock)
    await ctl.step()
    policy = api.get("routingpolicies", "", "default")
    assert policy["status"]["k"] == "0.0001"  # starts from GPUFLEET_PRIORITY_K
    assert policy["status"]["reason"] == "NoCapacity"
    ks = []
    for _ in range(12):
        clock.now += timedelta(seconds=30)
        busy_seconds += in_flight * 30  # Little's law: 30 requests in flight all along
        await ctl.step()
        ks.append(api.get("routingpolicies", "", "default")["status"]["k"])
    status = api.get("routingpolicies", "", "default")["status"]
    assert status["measuredUtilisation"] == "0.9375"  # 30 of 4 x 8
    assert status["k"] == "0"
    assert status["reason"] == "AtMinimum"
    assert ks == sorted(ks, reverse=True)
    assert k_from_policy(policy | {"status": status}, RouterSettings().priority_k) == 0
    assert any(e[2] == "KChanged" for e in api.events)


async def test_an_idle_fleet_costs_no_writes_and_metrics_follow() -> None:
    from gpufleet.metrics import METRICS

    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "quiet")
    ctl = make(api, router, clock)
    await ctl.step()
    clock.now += timedelta(minutes=2)
    await ctl.step()
    writes = api.writes
    for _ in range(3):
        clock.now += timedelta(minutes=2)
        await ctl.step()
    assert api.writes == writes  # converged: nothing changed, nothing written
    assert METRICS.pool_reputation_weight.labels(NS, "quiet")._value.get() == 1.0
    assert METRICS.penalty_cap_reached._value.get() == 0


async def test_the_networks_benchmark_table_overrides_the_bundled_one() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "p")
    table = f"models:\n  {MODEL}:\n    rtx-4090: {{tokensPerSecond: 200, kind: measured, source: network}}\n"
    api.put(
        "configmaps",
        {"metadata": {"name": "bench", "namespace": "gpufleet"}, "data": {"benchmarks.yaml": table}},
    )
    ctl = make(api, router, clock, reputation_benchmarks_configmap="gpufleet/bench")
    await ctl.step()
    clock.now += timedelta(minutes=1)
    router.serve("p", 1000, 0)  # 50 tok/s per stream against 200 x 1/2
    await ctl.step()
    dev = reputation(api, "p")["devices"][0]
    assert (dev["benchmarkTokensPerSecond"], dev["throughputScore"]) == ("200", "0.5")
    broken = make(FakeApi(), router, clock, reputation_benchmarks_configmap="gpufleet/missing")
    await broken.step()  # a missing table is logged, the bundled one is used
    assert broken.benchmarks.lookup(MODEL, "rtx-4090") is not None


async def test_a_restarted_operator_does_not_repeat_penalty_events() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    for i in range(5):
        add_pool(api, f"p{i}")
    api.put(
        "penalties",
        {
            "metadata": {"name": "old", "namespace": NS, "creationTimestamp": "2026-02-01T00:00:00Z"},
            "spec": {"pool": "p0", "offense": "Manual", "reason": "long ago", "level": 1},
        },
    )
    await make(api, router, clock).step()
    assert [e[2] for e in api.events if e[2].startswith("Penalty")] == ["PenaltyExpired"]
    await make(api, router, clock).step()  # a restart: same state, no new Event
    assert [e[2] for e in api.events if e[2].startswith("Penalty")] == ["PenaltyExpired"]


async def test_a_namespaced_install_lists_only_its_namespaces() -> None:
    api, router, clock = FakeApi(), FakeRouter(), Clock(T0)
    add_pool(api, "mine")
    api.put(
        "operatorpools",
        {"metadata": {"name": "theirs", "namespace": "elsewhere"}, "spec": {"selfStake": "1"}},
    )
    ctl = make(api, router, clock, namespace=NS)
    result = await ctl.step()
    assert set(result.reputations) == {(NS, "mine")}
    assert "status" not in api.get("operatorpools", "elsewhere", "theirs")
