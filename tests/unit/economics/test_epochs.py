"""Epoch boundaries and the split of a counter delta across epochs."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.epochs import (
    DAY_SECONDS,
    DEFAULT_GENESIS,
    EpochClock,
    apportion,
    split_remainder,
)
from gpufleet.economics.errors import InvalidEpoch, InvalidInput


def test_default_clock_is_daily_at_utc_midnight_from_launch_day() -> None:
    clock = EpochClock()
    assert calendar.timegm((2025, 6, 13, 0, 0, 0)) == DEFAULT_GENESIS
    assert clock.length == DAY_SECONDS == 86_400
    assert clock.epoch_of(DEFAULT_GENESIS) == 1
    assert clock.epoch_of(DEFAULT_GENESIS + 86_399) == 1
    assert clock.epoch_of(DEFAULT_GENESIS + 86_400) == 2
    midnight = calendar.timegm((2026, 12, 4, 0, 0, 0))
    n = clock.epoch_of(midnight)
    assert clock.start(n) == midnight
    assert clock.end(n - 1) == midnight
    assert clock.epoch_of(midnight - 1) == n - 1


def test_bounds_are_half_open() -> None:
    clock = EpochClock(genesis=1000, length=60)
    assert clock.bounds(1) == (1000, 1060)
    assert clock.bounds(3) == (1120, 1180)
    assert clock.epoch_of(1059) == 1
    assert clock.epoch_of(1060) == 2
    assert clock.start(2) == clock.end(1)


def test_refusals() -> None:
    clock = EpochClock(genesis=1000, length=60)
    with pytest.raises(InvalidEpoch):
        clock.epoch_of(999)
    with pytest.raises(InvalidEpoch):
        clock.start(0)
    with pytest.raises(InvalidEpoch):
        clock.end(True)
    with pytest.raises(InvalidInput):
        EpochClock(genesis=0, length=0)
    with pytest.raises(InvalidInput):
        EpochClock(genesis=0, length=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        EpochClock(genesis="0")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        clock.epoch_of(1000.0)  # type: ignore[arg-type]
    assert EpochClock(genesis=0, length=1).epoch_of(0) == 1


def test_last_closed_with_grace() -> None:
    clock = EpochClock(genesis=1000, length=60)
    assert clock.last_closed(1000) == 0
    assert clock.last_closed(1059) == 0
    assert clock.last_closed(1060) == 1
    assert clock.last_closed(1119) == 1
    assert clock.last_closed(1120) == 2
    assert clock.last_closed(1064, grace=5) == 0
    assert clock.last_closed(1065, grace=5) == 1
    assert clock.last_closed(500) == 0
    with pytest.raises(InvalidInput):
        clock.last_closed(1065, grace=-1)


def test_split_remainder() -> None:
    assert split_remainder(10, [1, 1, 1]) == [4, 3, 3]  # earliest wins ties
    assert split_remainder(10, [0, 1, 1]) == [0, 5, 5]
    assert split_remainder(7, [2, 5]) == [2, 5]
    assert split_remainder(1, [1, 2]) == [0, 1]  # larger remainder wins
    assert split_remainder(0, [3]) == [0]
    for bad in ((-1, [1]), (1, [0]), (1, [-1, 2]), (1, [])):
        with pytest.raises(InvalidInput):
            split_remainder(*bad)


def test_apportion_within_one_epoch_and_across_a_boundary() -> None:
    clock = EpochClock(genesis=1000, length=60)
    assert apportion(clock, 30, 1010, 1040) == {1: 30}
    # (1050, 1070]: 10 s in epoch 1, 10 s in epoch 2.
    assert apportion(clock, 30, 1050, 1070) == {1: 15, 2: 15}
    assert apportion(clock, 4, 1030, 1060) == {1: 4}  # a sample exactly at the boundary
    assert apportion(clock, 4, 1060, 1070) == {2: 4}
    assert apportion(clock, 0, 1000, 1100) == {}
    assert apportion(clock, 9, 1070, 1070) == {2: 9}
    # 2.5 epochs: 30 s / 60 s / 30 s of 120 jobs.
    assert apportion(clock, 120, 1030, 1150) == {1: 30, 2: 60, 3: 30}
    # before genesis counts into epoch 1
    assert apportion(clock, 5, 0, 1010) == {1: 5}
    assert apportion(clock, 5, 0, 10) == {1: 5}


def test_apportion_refusals() -> None:
    clock = EpochClock(genesis=0, length=60)
    with pytest.raises(InvalidInput):
        apportion(clock, -1, 0, 10)
    with pytest.raises(InvalidInput):
        apportion(clock, True, 0, 10)
    with pytest.raises(InvalidInput):
        apportion(clock, 1, 10, 5)


@settings(max_examples=300, deadline=None)
@given(
    genesis=st.integers(0, 10**6),
    length=st.integers(1, 500),
    delta=st.integers(0, 10**12),
    since=st.integers(0, 10**6 + 5000),
    span=st.integers(0, 5000),
)
def test_apportion_conserves_and_stays_inside_the_interval(
    genesis: int, length: int, delta: int, since: int, span: int
) -> None:
    clock = EpochClock(genesis=genesis, length=length)
    until = since + span
    parts = apportion(clock, delta, since, until)
    assert sum(parts.values()) == delta
    assert all(v > 0 for v in parts.values())
    lo = clock.epoch_of(max(since, genesis))
    hi = clock.epoch_of(max(until, genesis))
    assert all(lo <= e <= hi for e in parts)
    assert parts == apportion(clock, delta, since, until)  # deterministic


def test_refusal_messages_name_the_problem() -> None:
    """The messages are the operator's diagnosis; pin them."""
    clock = EpochClock(genesis=1000, length=60)
    with pytest.raises(
        InvalidInput,
        match=r"^InvalidInput: Invalid input: timestamp must be an integer number of seconds, got 1\.5$",
    ):
        clock.epoch_of(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidEpoch, match=r"timestamp 999 is before the first epoch, which starts at 1000$"):
        clock.epoch_of(999)
    with pytest.raises(InvalidEpoch, match=r"epochs count from 1, got 0$"):
        clock.start(0)
    with pytest.raises(InvalidEpoch, match=r"epochs count from 1, got -3$"):
        clock.end(-3)
    with pytest.raises(InvalidEpoch, match=r"epochs count from 1, got 2\.0$"):
        clock.bounds(2.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"epoch length must be at least 1 s, got 0$"):
        EpochClock(genesis=0, length=0)
    with pytest.raises(InvalidInput, match=r"epoch length must be an integer number of seconds"):
        EpochClock(genesis=0, length=True)
    with pytest.raises(InvalidInput, match=r"epoch genesis must be an integer number of seconds, got '0'$"):
        EpochClock(genesis="0")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"grace must not be negative, got -1$"):
        clock.last_closed(1065, grace=-1)
    with pytest.raises(InvalidInput, match=r"grace must be an integer"):
        clock.last_closed(1065, grace=0.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"now must be an integer"):
        clock.last_closed(1065.0)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"cannot split 5 by weights \[0, 0\]$"):
        split_remainder(5, [0, 0])
    with pytest.raises(InvalidInput, match=r"a counter delta must be a non-negative integer, got -1$"):
        apportion(clock, -1, 1000, 1010)
    with pytest.raises(InvalidInput, match=r"a counter delta must be a non-negative integer, got 2\.0$"):
        apportion(clock, 2.0, 1000, 1010)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"interval ends \(1000\) before it starts \(1010\)$"):
        apportion(clock, 1, 1010, 1000)
    with pytest.raises(InvalidInput, match=r"since must be an integer"):
        apportion(clock, 1, 1000.0, 1010)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"until must be an integer"):
        apportion(clock, 1, 1000, "1010")  # type: ignore[arg-type]


def test_defaults_and_edges_pinned() -> None:
    assert EpochClock().genesis == DEFAULT_GENESIS
    assert EpochClock(genesis=5).length == 86_400
    assert EpochClock(genesis=0, length=1).last_closed(1) == 1
    clock = EpochClock(genesis=1000, length=60)
    assert clock.last_closed(1061) == 1
    assert clock.last_closed(1180, grace=0) == 3
    assert clock.last_closed(1185, grace=5) == 3
    assert clock.last_closed(1184, grace=5) == 2
    assert clock.epoch_of(1000) == 1
    assert clock.end(1) - clock.start(1) == 60
    # apportion: zero delta over any interval is empty; a one-second interval goes to its epoch
    assert apportion(clock, 0, 1000, 1000) == {}
    assert apportion(clock, 3, 1059, 1060) == {1: 3}
    assert apportion(clock, 3, 1060, 1061) == {2: 3}
    # 100 over 20 s + 40 s: exactly one third and two thirds, rounded with the remainder rule
    assert apportion(clock, 100, 1040, 1100) == {1: 33, 2: 67}
    assert split_remainder(2, [1, 1, 1]) == [1, 1, 0]
    assert split_remainder(5, [1, 3]) == [1, 4]  # 1.25 / 3.75: the larger remainder (0.75) wins


def test_remainder_order_is_by_remainder_not_by_share() -> None:
    # 3 split 5:2 -> 2.14 / 0.86: floors 2 / 0, remainders 1/7 and 6/7: the unit goes to the second.
    assert split_remainder(3, [5, 2]) == [2, 1]


def test_nothing_closed_just_before_genesis() -> None:
    clock = EpochClock(genesis=1000, length=60)
    assert clock.last_closed(999) == 0
    assert clock.last_closed(941) == 0
