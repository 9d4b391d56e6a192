from __future__ import annotations

import pytest

from gpufleet.rollout.budget import evaluate_budget
from gpufleet.rollout.report import rollout_conditions
from gpufleet.rollout.selection import Hold, HoldReason, Selection
from gpufleet.rollout.state import FailureReason, FailureRecord, Phase, RolloutStatus
from tests.unit.rollout.sim import T0


def failed(
    version: str = "1.1.0", reason: FailureReason = FailureReason.CRASH_LOOP, resume: int = 0
) -> FailureRecord:
    return FailureRecord(version=version, reason=reason, resume_count=resume)


def test_halts_when_budget_is_spent_and_lists_nodes() -> None:
    two = {"ns/a": failed(), "ns/b": failed()}
    ok = evaluate_budget(
        version="1.1.0", failure_budget=3, resume_count=0, old_status=None, failures=two, now=T0
    )
    assert not ok.halted
    assert ok.condition[1] == "WithinBudget"
    three = {**two, "ns/c": failed(reason=FailureReason.PROGRESS_DEADLINE_EXCEEDED)}
    halt = evaluate_budget(
        version="1.1.0",
        failure_budget=3,
        resume_count=0,
        old_status=ok.status_fields(),
        failures=three,
        now=T0,
    )
    assert halt.halted
    assert halt.newly_halted
    assert halt.failed_nodes == ("ns/a", "ns/b", "ns/c")
    assert halt.halted_at == "2026-01-01T00:00:00Z"
    assert halt.condition[0] == "True"
    assert "ns/c" in halt.condition[2]


def test_same_failure_reported_twice_counts_once_and_only_real_failures_count() -> None:
    status = None
    for _ in range(3):
        d = evaluate_budget(
            version="1.1.0",
            failure_budget=2,
            resume_count=0,
            old_status=status,
            failures={
                "ns/a": failed(),
                "ns/b": failed(reason=FailureReason.RELEASE_HALTED),
                "ns/c": failed("1.0.9"),
            },
            now=T0,
        )
        status = d.status_fields()
    assert status is not None
    assert status["failedNodes"] == ["ns/a"]
    assert status["halted"] is False


def test_halt_survives_node_deletion_until_resumed_then_old_failures_stop_counting() -> None:
    halt = evaluate_budget(
        version="1.1.0",
        failure_budget=1,
        resume_count=0,
        old_status=None,
        failures={"ns/a": failed()},
        now=T0,
    )
    assert halt.halted
    # The failed node was deleted: its record is gone, the halt and the list stay.
    still = evaluate_budget(
        version="1.1.0",
        failure_budget=1,
        resume_count=0,
        old_status=halt.status_fields(),
        failures={},
        now=T0,
    )
    assert still.halted
    assert not still.newly_halted
    assert still.failed_nodes == ("ns/a",)
    resumed = evaluate_budget(
        version="1.1.0",
        failure_budget=1,
        resume_count=1,
        old_status=still.status_fields(),
        failures={"ns/a": failed(resume=0)},
        now=T0,
    )
    assert not resumed.halted
    assert resumed.resumed
    assert resumed.failed_nodes == ()
    assert resumed.condition[1] == "Resumed"
    again = evaluate_budget(
        version="1.1.0",
        failure_budget=1,
        resume_count=1,
        old_status=resumed.status_fields(),
        failures={"ns/a": failed(resume=1)},
        now=T0,
    )
    assert again.halted


def test_bad_budget_input() -> None:
    with pytest.raises(ValueError, match=r"spec\.failureBudget must be >= 1"):
        evaluate_budget(
            version="1.0.0", failure_budget=0, resume_count=0, old_status=None, failures={}, now=T0
        )


def test_conditions_follow_the_rollout() -> None:
    active = RolloutStatus(phase=Phase.PROGRESSING, target_version="1.1.0", message="batch 2")
    conds = {c.type: c for c in rollout_conditions(active, None)}
    assert conds["Updating"].status == "True"
    assert conds["Updating"].reason == "Progressing"
    rolled = RolloutStatus(
        phase=Phase.ROLLED_BACK, from_version="1.0.0", failure=failed(), started_at="2026-01-01T00:00:00Z"
    )
    hold = Hold("r", "2.0.0", HoldReason.DRIVER_TOO_OLD, "release 2.0.0 needs NVIDIA driver >= 560")
    conds = {
        c.type: c for c in rollout_conditions(rolled, Selection(None, (hold,), "DriverTooOld", hold.message))
    }
    assert conds["Updating"].status == "False"
    assert conds["RolledBack"].status == "True"
    assert conds["RolledBack"].reason == "CrashLoop"
    assert "1.1.0 to 1.0.0" in conds["RolledBack"].message
    assert conds["ReleaseSkipped"].status == "True"
    assert conds["ReleaseSkipped"].reason == "DriverTooOld"
