"""The router's view of reputation, penalties and k (pure functions over bodies)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from gpufleet.reputation.routing import (
    device_reputation_weight,
    k_from_policy,
    penalised_pool_keys,
    pool_reputation_weight,
)

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
MEASURED = {
    "spec": {"selfStake": "1"},
    "status": {
        "reputation": {
            "effectiveWeight": "0.75",
            "devices": [
                {"inferenceNode": "n1", "device": 0, "weight": "0.5"},
                {"inferenceNode": "n1", "device": 1, "weight": "bogus"},
            ],
        }
    },
}


def test_pool_weight_prefers_the_override_then_the_measurement() -> None:
    assert pool_reputation_weight(MEASURED) == Decimal("0.75")
    assert pool_reputation_weight({**MEASURED, "spec": {"reputationWeight": "0.2"}}) == Decimal("0.2")
    assert pool_reputation_weight({}) == Decimal(1)
    assert pool_reputation_weight(None, Decimal("0.5")) == Decimal("0.5")
    assert pool_reputation_weight({"spec": {"reputationWeight": "1.5"}}) == Decimal(1)  # invalid: ignored
    assert pool_reputation_weight({"spec": {"reputationWeight": "x"}}) == Decimal(1)
    assert pool_reputation_weight({"spec": {"reputationWeight": "0"}}) == Decimal(0)
    assert pool_reputation_weight({"status": {"reputation": {"effectiveWeight": "-0.1"}}}) == Decimal(1)


def test_device_weight() -> None:
    assert device_reputation_weight(MEASURED, "n1", 0) == Decimal("0.5")
    assert device_reputation_weight(MEASURED, "n1", 1) == Decimal("0.75")  # unreadable: the pool's
    assert device_reputation_weight(MEASURED, "n1", 2) == Decimal("0.75")
    assert device_reputation_weight(MEASURED, "n2", 0) == Decimal("0.75")
    override = {**MEASURED, "spec": {"reputationWeight": "0.3"}}
    assert device_reputation_weight(override, "n1", 0) == Decimal("0.3")
    assert device_reputation_weight(None, "n1", 0) == Decimal(1)


def pen(ns: str, pool: str, **status: object) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": f"{pool}-x"}, "spec": {"pool": pool}, "status": status}


def test_penalised_pool_keys() -> None:
    later = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    now_text = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies: list[dict[str, Any]] = [
        pen("a", "enforced", enforcement="Enforced", until=later),
        pen("a", "ends-now", enforcement="Enforced", until=now_text),
        pen("a", "capped", enforcement="Capped", until=later),
        pen("b", "forever", enforcement="Enforced", permanent=True),
        pen("b", "unjudged", enforcement="Enforced"),
        pen("b", "expired", enforcement="Expired", until=later),
        {"metadata": {"namespace": "c"}, "spec": {"pool": "nostatus"}},
        pen("a", "badtime", enforcement="Enforced", until="soon"),
    ]
    assert penalised_pool_keys(bodies, NOW) == {("a", "enforced"), ("b", "forever"), ("a", "badtime")}


def test_k_from_policy() -> None:
    d = Decimal("0.0001")
    assert k_from_policy({"status": {"k": "0.0005"}}, d) == Decimal("0.0005")
    assert k_from_policy({"status": {"k": "0"}}, d) == 0
    assert k_from_policy({"status": {}}, d) == d
    assert k_from_policy(None, d) == d
    assert k_from_policy({"status": {"k": "nan?"}}, d) == d
    assert k_from_policy({"status": {"k": "-1"}}, d) == d


def test_an_override_of_exactly_one_wins_over_the_measurement() -> None:
    body = {**MEASURED, "spec": {"reputationWeight": "1"}}
    assert pool_reputation_weight(body) == Decimal(1)
    assert device_reputation_weight(body, "n1", 0) == Decimal(1)
    assert device_reputation_weight({}, "n1", 0, Decimal("0.3")) == Decimal("0.3")


def test_penalty_times_with_offsets_naive_times_and_missing_names() -> None:
    plus_two = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S") + "+02:00"  # = NOW - 1 h: over
    naive = (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # read as UTC: still running
    bodies: list[dict[str, Any]] = [
        pen("a", "offset", enforcement="Enforced", until=plus_two),
        pen("a", "naive", enforcement="Enforced", until=naive),
        {
            "metadata": {},
            "spec": {"pool": "nameless"},
            "status": {"enforcement": "Enforced", "permanent": True},
        },
        {
            "metadata": {"namespace": "b"},
            "spec": {},
            "status": {"enforcement": "Enforced", "permanent": True},
        },
    ]
    assert penalised_pool_keys(bodies, NOW) == {("a", "naive"), ("", "nameless"), ("b", "")}
