"""The k controller's pure planner: Little's law, capacity, state round trip, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction as F
from typing import Any

from gpufleet.controllers.routingpolicy import planner
from gpufleet.reputation.kcontrol import KPolicy, KState

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def s(seconds: float, at: int, since: datetime = T0) -> planner.Sample:
    return planner.Sample(since, T0 + timedelta(seconds=at), seconds)


def test_mean_in_flight_is_littles_law_over_replicas() -> None:
    prev = {"r0": s(100.0, 0), "r1": s(0.0, 0)}
    cur = {"r0": s(400.0, 30), "r1": s(60.0, 30)}
    assert planner.mean_in_flight(prev, cur) == F(10) + F(2)  # 300 s over 30 s, 60 s over 30 s
    assert planner.mean_in_flight({}, cur) is None
    assert (
        planner.mean_in_flight(prev, {"r0": s(400.0, 30, since=T0 + timedelta(seconds=1))}) is None
    )  # reset
    assert planner.mean_in_flight(prev, {"r0": s(50.0, 30)}) is None  # went down
    assert planner.mean_in_flight(prev, {"r0": s(400.0, 0)}) is None  # no time passed


def test_routed_devices_and_utilisation() -> None:
    inodes: list[dict[str, Any]] = [
        {"status": {"devices": [{"routable": True}, {"routable": False}, {}]}},
        {"status": {}},
        {},
    ]
    assert planner.routed_devices(inodes) == 1
    assert planner.utilisation_of(F(4), 8) == F(1, 2)
    assert planner.utilisation_of(None, 8) is None
    assert planner.utilisation_of(F(4), 0) is None


def test_state_round_trips_through_the_status() -> None:
    policy = KPolicy()
    assert planner.state_from({"spec": {}}, policy, Decimal("0.0001")) == KState(F(1, 10000), None)
    assert planner.state_from({"spec": {"initialK": "0.0002"}}, policy, Decimal("0.0001")).k == F(2, 10000)
    assert planner.state_from(
        {"status": {"k": "0.01", "smoothedUtilisation": "0.5"}}, policy, Decimal(0)
    ) == KState(F(1, 1000), F(1, 2))  # clamped to kMax


def test_policy_from_spec_defaults() -> None:
    assert planner.policy_from_spec({}) == KPolicy()
    p = planner.policy_from_spec({"kMax": "0.01", "fallGain": "0.5", "intervalSeconds": 10})
    assert (p.k_max, p.fall_gain, p.interval_seconds) == (F(1, 100), F(1, 2), 10)


def test_status_moves_last_change_only_when_k_moves() -> None:
    body = {
        "metadata": {"generation": 2},
        "spec": {},
        "status": {"k": "0.0001", "lastChange": "2026-01-01T00:00:00Z"},
    }
    status, _ = planner.step_policy(body, Decimal("0.0001"), {}, {}, 4, 8, T0)
    assert (status["k"], status["reason"], status["lastChange"]) == (
        "0.0001",
        "NoCapacity",
        "2026-01-01T00:00:00Z",
    )
    assert status["observedGeneration"] == 2
    assert status["capacity"] == 32
    assert "measuredUtilisation" not in status
    busy, _ = planner.step_policy(
        body | {"status": {"k": "0.0001", "smoothedUtilisation": "0.95"}},
        Decimal("0.0001"),
        {"r": s(0.0, 0)},
        {"r": s(900.0, 30)},
        4,
        8,
        T0,
    )
    assert busy["measuredUtilisation"] == "0.9375"
    assert busy["inFlight"] == 30
    assert busy["k"] != "0.0001"
    assert busy["lastChange"] == "2026-03-01T10:00:00Z"
    assert (busy["reason"], busy["k"]) == ("AtMinimum", "0")  # one fast step: 0.0001 - 0.000196
    assert not planner.statuses_differ(status, {**status, "lastUpdate": "later", "message": "other"})
    assert planner.statuses_differ(status, busy)
    assert planner.k_text(F(1, 3 * 10**4)) == "0.000033333"
