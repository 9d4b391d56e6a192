"""Conditions keep their transition time unless the status flips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gpufleet.conditions import find, is_true, make_condition, set_condition, transitioned

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def clock_at(moment: datetime):  # type: ignore[no-untyped-def]
    return lambda: moment


def test_same_status_keeps_transition_time_and_is_equal() -> None:
    first = set_condition([], "Ready", "False", "NoEngineReady", "0 of 4", now=clock_at(T0))
    again = set_condition(
        first, "Ready", "False", "NoEngineReady", "0 of 4", now=clock_at(T0 + timedelta(hours=1))
    )
    assert again == first
    assert again[0]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_flip_moves_transition_time_and_keeps_others_in_order() -> None:
    conds = set_condition([], "GPUValidated", "True", "AllValid", "ok", now=clock_at(T0))
    conds = set_condition(conds, "Ready", "False", "NoEngineReady", "0", now=clock_at(T0))
    later = T0 + timedelta(minutes=5)
    flipped = set_condition(
        conds, "Ready", "True", "AllEnginesReady", "4 of 4", observed_generation=3, now=clock_at(later)
    )
    assert [c["type"] for c in flipped] == ["GPUValidated", "Ready"]
    ready = find(flipped, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert ready["observedGeneration"] == 3
    assert is_true(flipped, "Ready")
    assert not is_true(conds, "Ready")
    assert transitioned(conds, flipped) == [("Ready", "False", "True")]


def test_message_change_alone_keeps_time() -> None:
    a = set_condition([], "Ready", "False", "NoEngineReady", "0 of 4", now=clock_at(T0))
    b = set_condition(
        a, "Ready", "False", "PartiallyReady", "1 of 4", now=clock_at(T0 + timedelta(seconds=9))
    )
    assert b[0]["lastTransitionTime"] == a[0]["lastTransitionTime"]
    assert b[0]["reason"] == "PartiallyReady"


@pytest.mark.parametrize(
    ("type_", "status", "reason", "needle"),
    [
        ("Ready", "Maybe", "X", "True, False or Unknown"),
        ("Ready", "True", "not camel", "CamelCase"),
        ("bad type!", "True", "X", "valid"),
    ],
)
def test_invalid_conditions_are_rejected(type_: str, status: str, reason: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        make_condition(type_, status, reason, "", now=clock_at(T0))  # type: ignore[arg-type]


def test_naive_clock_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_condition("Ready", "True", "X", "", now=lambda: datetime(2026, 1, 1))
