"""Restart backoff and crash-loop detection."""

from __future__ import annotations

import pytest

from gpufleet_node.policy import RestartPolicy, RestartTracker


def test_backoff_doubles_and_caps() -> None:
    policy = RestartPolicy(base_delay=0.5, factor=2.0, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_huge_failure_count_does_not_overflow() -> None:
    assert RestartPolicy(base_delay=1, factor=10, max_delay=60).delay(10_000) == 60


def test_tracker_gives_up_after_limit() -> None:
    tracker = RestartTracker(RestartPolicy(base_delay=1, factor=2, max_delay=100, crash_loop_limit=3))
    decisions = [tracker.record_failure(None) for _ in range(4)]
    assert [d.restart for d in decisions] == [True, True, True, False]
    assert [d.delay for d in decisions[:3]] == [1, 2, 4]
    assert decisions[-1].failures == 4


def test_stable_run_resets_the_count() -> None:
    tracker = RestartTracker(RestartPolicy(base_delay=1, crash_loop_limit=2, stable_after=10))
    tracker.record_failure(None)
    tracker.record_failure(5.0)  # was ready, but not long enough: still counts
    assert tracker.failures == 2
    decision = tracker.record_failure(10.0)
    assert decision.restart
    assert decision.failures == 1
    assert decision.delay == 1


def test_zero_limit_never_restarts() -> None:
    tracker = RestartTracker(RestartPolicy(crash_loop_limit=0))
    assert not tracker.record_failure(None).restart


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_delay": -1}, "base_delay"),
        ({"factor": 0.5}, "factor"),
        ({"base_delay": 5, "max_delay": 1}, "max_delay"),
        ({"crash_loop_limit": -1}, "crash_loop_limit"),
    ],
)
def test_invalid_policy_is_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_delay_requires_a_failure() -> None:
    with pytest.raises(ValueError, match="failures"):
        RestartPolicy().delay(0)
