"""The operator's priorities use the measured reputation unless spec.reputationWeight overrides it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gpufleet.objects import PoolView


def pool(spec: dict[str, Any], reputation: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"selfStake": "1", **spec}}
    if reputation is not None:
        body["status"] = {"reputation": reputation}
    return body


def test_measured_weight_when_no_override() -> None:
    assert PoolView.from_body(pool({}, {"effectiveWeight": "0.8"})).reputation_weight == Decimal("0.8")


def test_override_wins() -> None:
    view = PoolView.from_body(pool({"reputationWeight": "0.5"}, {"effectiveWeight": "0.8"}))
    assert view.reputation_weight == Decimal("0.5")


def test_nothing_measured_leaves_the_default_to_the_settings() -> None:
    assert PoolView.from_body(pool({})).reputation_weight is None
    assert PoolView.from_body(pool({}, {})).reputation_weight is None
    assert PoolView.from_body(pool({}, {"effectiveWeight": "bogus"})).reputation_weight is None
    assert PoolView.from_body(pool({}, {"effectiveWeight": "1.5"})).reputation_weight is None
    assert PoolView.from_body(pool({}, {"effectiveWeight": "0"})).reputation_weight == 0
