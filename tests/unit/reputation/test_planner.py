"""The reputation controller's pure planner: settings, bodies, penalty records, statuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction as F
from typing import Any

import pytest

from gpufleet.controllers.reputation import planner
from gpufleet.reputation.ladder import DEFAULT_POLICY, LadderPolicy, Offense
from gpufleet.settings import OperatorSettings

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_parse_ladder() -> None:
    assert planner.parse_ladder("1h,4h,16h,3d,7d") == (
        timedelta(hours=1),
        timedelta(hours=4),
        timedelta(hours=16),
        timedelta(days=3),
        timedelta(days=7),
    )
    assert planner.parse_ladder(" 30s , 5m ") == (timedelta(seconds=30), timedelta(minutes=5))
    for bad in ("", "1w", "h", "1.5h", "1h,,2h"):
        with pytest.raises(planner.PlanError, match="is not a duration like 1h, 30m, 3d"):
            planner.parse_ladder(bad)


def test_policies_from_settings_defaults_and_overrides() -> None:
    p = planner.Policies.from_settings(OperatorSettings())
    assert p.tiers.top_pct == F(995, 10)
    assert p.tiers.second_pct == 98
    assert p.tiers.step_pct == 2
    assert p.tiers.step_multiplier == F(1, 10)
    assert p.tiers.minimum_sample == 200
    assert p.throughput.min_requests == 100
    assert p.throughput.reference_fraction == F(1, 2)
    assert p.ladder == DEFAULT_POLICY
    assert (p.window_hours, p.status_min_seconds) == (72, 60.0)
    custom = planner.Policies.from_settings(
        OperatorSettings(
            penalty_ladder="2h,1d",
            penalty_cap_pct="10",
            penalty_low_completion_pct="95",
            penalty_integrity_reasons="VRAMMismatch, MIGSlice",
            reputation_min_sample=10,
            penalty_forgive_days=3,
            penalty_integrity_suspends_at=3,
            penalty_low_completion_min_requests=7,
            reputation_window_hours=24,
        )
    )
    assert custom.ladder == LadderPolicy(
        ladder=(timedelta(hours=2), timedelta(days=1)),
        forgive_after=timedelta(days=3),
        integrity_reasons=frozenset({"VRAMMismatch", "MIGSlice"}),
        integrity_suspends_at=3,
        low_completion_floor=F(95, 100),
        low_completion_min_requests=7,
        cap=F(1, 10),
    )
    assert custom.tiers.minimum_sample == 10
    assert custom.window_hours == 24


def pen(
    spec: dict[str, Any], status: dict[str, Any] | None = None, created: str = "2026-03-01T10:00:00Z"
) -> Any:
    body: dict[str, Any] = {
        "metadata": {"name": "x", "namespace": "ns", "creationTimestamp": created},
        "spec": spec,
    }
    if status is not None:
        body["status"] = status
    return body


def test_penalty_record_reads_status_first_then_spec_then_the_ladder() -> None:
    auto = planner.penalty_record(
        pen(
            {
                "pool": "p",
                "offense": "LowCompletion",
                "level": 2,
                "start": "2026-03-01T11:00:00Z",
                "until": "2026-03-01T15:00:00Z",
            }
        ),
        DEFAULT_POLICY,
    )
    assert auto is not None
    assert (auto.pool, auto.offense, auto.level) == ("p", Offense.LOW_COMPLETION, 2)
    assert (auto.start, auto.until) == (T0 + timedelta(hours=1), T0 + timedelta(hours=5))
    by_ladder = planner.penalty_record(pen({"pool": "p", "offense": "Manual", "level": 3}), DEFAULT_POLICY)
    assert by_ladder is not None
    assert (by_ladder.start, by_ladder.until) == (T0, T0 + timedelta(hours=16))
    forever = planner.penalty_record(pen({"pool": "p", "offense": "Manual", "level": 6}), DEFAULT_POLICY)
    assert forever is not None
    assert forever.until is None
    judged = planner.penalty_record(
        pen(
            {"pool": "p", "offense": "Manual"},
            {"level": 2, "start": "2026-03-01T10:00:00Z", "permanent": True},
        ),
        DEFAULT_POLICY,
    )
    assert judged is not None
    assert (judged.level, judged.until) == (2, None)
    assert planner.penalty_record(pen({"pool": "p", "offense": "Slow", "level": 1}), DEFAULT_POLICY) is None
    assert planner.penalty_record(pen({"pool": "p", "offense": "Manual"}), DEFAULT_POLICY) is None


def test_resolve_unlevelled_takes_the_next_level() -> None:
    prior = planner.penalty_record(
        pen(
            {
                "pool": "p",
                "offense": "LowCompletion",
                "level": 2,
                "start": "2026-03-01T06:00:00Z",
                "until": "2026-03-01T09:00:00Z",
            }
        ),
        DEFAULT_POLICY,
    )
    assert prior is not None
    body = planner.resolve_unlevelled(
        pen({"pool": "p", "offense": "Manual", "reason": "r"}), [prior], DEFAULT_POLICY
    )
    assert body["status"] == {
        "level": 3,
        "start": "2026-03-01T10:00:00Z",
        "permanent": False,
        "until": "2026-03-02T02:00:00Z",
    }
    typed_until = planner.resolve_unlevelled(
        pen({"pool": "p", "offense": "Manual", "until": "2026-03-01T12:00:00Z"}), [], DEFAULT_POLICY
    )
    assert typed_until["status"]["until"] == "2026-03-01T12:00:00Z"
    levelled = pen({"pool": "p", "offense": "Manual", "level": 1})
    assert planner.resolve_unlevelled(levelled, [], DEFAULT_POLICY) is levelled
    bad = pen({"pool": "p", "offense": "Nope"})
    assert planner.resolve_unlevelled(bad, [], DEFAULT_POLICY) is bad


def test_bodies_to_inputs() -> None:
    releases: list[dict[str, Any]] = [
        {"spec": {"version": "1.0.0"}, "status": {}},
        {"spec": {"version": "1.1.0"}, "status": {"halted": True}},
        {"spec": {"version": "1.2.0"}, "status": {"failedNodes": ["ns/n"]}},
        {"spec": {}, "status": {"halted": True}},
    ]
    assert planner.excused_releases(releases) == {"1.1.0", "1.2.0"}
    assert planner.node_release({"status": {"currentVersion": "1", "targetVersion": "2"}}) == "2"
    assert planner.node_release({"status": {"currentVersion": "1"}}) == "1"
    assert planner.node_release({}) == ""
    assert planner.spec_override({"spec": {"reputationWeight": "0.4"}}) == F(2, 5)
    assert planner.spec_override({"spec": {}}) is None
    assert planner.spec_override({"spec": {"reputationWeight": "2"}}) is None


def test_write_due_and_status_changed() -> None:
    assert planner.write_due(None, 5.0, 60)
    assert not planner.write_due(0.0, 59.9, 60)
    assert planner.write_due(0.0, 60.0, 60)
    assert not planner.status_changed({"a": 1, "updatedAt": "x"}, {"a": 1, "updatedAt": "y"})
    assert planner.status_changed({"a": 1}, {"a": 2})
    assert planner.status_changed(None, {"a": 1})


def test_set_condition_keeps_transition_time_unless_status_flips() -> None:
    conds = planner.set_condition([], "A", "True", "R", "m", T0, 3)
    assert conds == [
        {
            "type": "A",
            "status": "True",
            "reason": "R",
            "message": "m",
            "lastTransitionTime": "2026-03-01T10:00:00Z",
            "observedGeneration": 3,
        }
    ]
    same = planner.set_condition(conds, "A", "True", "R2", "m2", T0 + timedelta(hours=1), 4)
    assert same[0]["lastTransitionTime"] == "2026-03-01T10:00:00Z"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("R2", 4)
    flipped = planner.set_condition(same, "A", "False", "R", "m", T0 + timedelta(hours=2), None)
    assert flipped[0]["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    assert "observedGeneration" not in flipped[0]
    other = planner.set_condition([{"type": "Z", "status": "True"}], "A", "True", "R", "m", T0, None)
    assert [c["type"] for c in other] == ["A", "Z"]
