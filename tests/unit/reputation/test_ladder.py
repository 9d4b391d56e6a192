"""Penalty ladder: escalation, forgiveness, integrity, low-completion hours, the safety cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.reputation.ladder import (
    DAY,
    DEFAULT_INTEGRITY_REASONS,
    DEFAULT_LADDER,
    DEFAULT_POLICY,
    HOUR,
    Enforcement,
    LadderError,
    LadderPolicy,
    Offense,
    PenaltyRecord,
    cap_devices,
    decide_penalty,
    effective_level,
    enforcement,
    is_integrity_reason,
    is_low_completion_hour,
    penalised_pools,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SEC = timedelta(seconds=1)


def rec(
    level: int,
    start: datetime,
    until: datetime | None,
    offense: Offense = Offense.LOW_COMPLETION,
    pool: str = "a",
    name: str | None = None,
    ns: str = "ns",
) -> PenaltyRecord:
    return PenaltyRecord(
        name or f"{pool}-{level}-{start.timestamp():.0f}", ns, pool, offense, level, start, until
    )


def test_default_ladder_and_reasons() -> None:
    assert DEFAULT_LADDER == (HOUR, 4 * HOUR, 16 * HOUR, 3 * DAY, 7 * DAY)
    assert DEFAULT_POLICY.permanent_level == 6
    assert DEFAULT_POLICY.forgive_after == 7 * DAY
    assert {"VRAMMismatch", "PCIIdMismatch", "GFDLabelMismatch"} == DEFAULT_INTEGRITY_REASONS
    assert DEFAULT_POLICY.low_completion_floor == F(9, 10)
    assert DEFAULT_POLICY.low_completion_min_requests == 50
    assert DEFAULT_POLICY.cap == F(1, 5)
    assert DEFAULT_POLICY.integrity_suspends_at == 2


def test_integrity_reasons_are_configurable() -> None:
    assert is_integrity_reason("VRAMMismatch")
    assert not is_integrity_reason("MIGSlice")
    assert not is_integrity_reason("DriverTooOld")
    assert is_integrity_reason("MIGSlice", LadderPolicy(integrity_reasons=frozenset({"MIGSlice"})))


def test_first_offense_is_one_hour() -> None:
    d = decide_penalty([], Offense.LOW_COMPLETION, T0)
    assert (d.level, d.duration, d.until, d.suspended) == (1, HOUR, T0 + HOUR, False)


def test_repeated_offenses_climb_the_ladder_to_permanent() -> None:
    records: list[PenaltyRecord] = []
    now = T0
    expected = [HOUR, 4 * HOUR, 16 * HOUR, 3 * DAY, 7 * DAY, None, None]
    for level, duration in enumerate(expected, start=1):
        d = decide_penalty(records, Offense.LOW_COMPLETION, now)
        assert d.level == min(level, 6)
        assert d.duration == duration
        assert d.suspended is (duration is None)
        records.append(rec(d.level, now, d.until))
        now = (d.until or now) + HOUR  # offend again one hour after it ended


def test_offense_during_a_running_penalty_escalates_from_its_level() -> None:
    records = [rec(2, T0, T0 + 4 * HOUR)]
    assert effective_level(records, T0 + HOUR) == 2
    assert decide_penalty(records, Offense.LOW_COMPLETION, T0 + HOUR).level == 3


def test_one_level_forgiven_per_seven_clean_days() -> None:
    until = T0 + 3 * DAY
    records = [rec(4, T0, until)]
    assert effective_level(records, until) == 4
    assert effective_level(records, until + 7 * DAY - SEC) == 4
    assert effective_level(records, until + 7 * DAY) == 3
    assert effective_level(records, until + 14 * DAY - SEC) == 3
    assert effective_level(records, until + 14 * DAY) == 2
    assert effective_level(records, until + 28 * DAY) == 0
    assert effective_level(records, until + 700 * DAY) == 0
    assert decide_penalty(records, Offense.LOW_COMPLETION, until + 7 * DAY).level == 4
    assert decide_penalty(records, Offense.LOW_COMPLETION, until + 7 * DAY - SEC).level == 5


def test_forgiveness_counts_from_the_latest_penalty() -> None:
    records = [rec(1, T0, T0 + HOUR), rec(2, T0 + 10 * DAY, T0 + 10 * DAY + 4 * HOUR)]
    assert effective_level(records, T0 + 10 * DAY + 4 * HOUR + 7 * DAY) == 1
    # ties on start: the higher level counts
    same = [rec(1, T0, T0 + HOUR, name="x"), rec(3, T0, T0 + HOUR, name="y")]
    assert effective_level(same, T0 + 2 * HOUR) == 3


def test_permanent_is_never_forgiven() -> None:
    records = [rec(6, T0, None)]
    assert effective_level(records, T0 + 1000 * DAY) == 6
    d = decide_penalty(records, Offense.LOW_COMPLETION, T0 + 1000 * DAY)
    assert (d.level, d.suspended, d.until) == (6, True, None)


def test_forgiveness_period_is_configurable() -> None:
    policy = LadderPolicy(forgive_after=DAY)
    records = [rec(3, T0, T0 + HOUR)]
    assert effective_level(records, T0 + HOUR + 2 * DAY, policy) == 1


def test_second_integrity_offense_suspends() -> None:
    first = decide_penalty([], Offense.INTEGRITY, T0)
    assert (first.level, first.duration) == (1, HOUR)
    records = [rec(1, T0, T0 + HOUR, Offense.INTEGRITY)]
    later = T0 + 100 * DAY  # long forgiven on the ladder, but integrity is remembered
    second = decide_penalty(records, Offense.INTEGRITY, later)
    assert (second.level, second.suspended, second.until) == (6, True, None)
    assert "integrity offense #2" in second.why
    # a low-completion offense after an integrity one does not suspend
    assert decide_penalty(records, Offense.LOW_COMPLETION, later).level == 1


def test_integrity_threshold_is_configurable() -> None:
    policy = LadderPolicy(integrity_suspends_at=1)
    assert decide_penalty([], Offense.INTEGRITY, T0, policy).suspended
    policy3 = LadderPolicy(integrity_suspends_at=3)
    records = [rec(1, T0, T0 + HOUR, Offense.INTEGRITY)]
    assert not decide_penalty(records, Offense.INTEGRITY, T0 + 2 * HOUR, policy3).suspended


def test_manual_level() -> None:
    d = decide_penalty([], Offense.MANUAL, T0, level=3)
    assert (d.level, d.duration, d.until) == (3, 16 * HOUR, T0 + 16 * HOUR)
    assert d.why == "level 3 set by hand"
    assert decide_penalty([], Offense.MANUAL, T0, level=99).level == 6
    assert decide_penalty([], Offense.INTEGRITY, T0, level=2).level == 2  # a forced level wins
    with pytest.raises(LadderError):
        decide_penalty([], Offense.MANUAL, T0, level=0)


def test_durations() -> None:
    assert DEFAULT_POLICY.duration(1) == HOUR
    assert DEFAULT_POLICY.duration(5) == 7 * DAY
    assert DEFAULT_POLICY.duration(6) is None
    with pytest.raises(LadderError):
        DEFAULT_POLICY.duration(0)


@pytest.mark.parametrize(
    ("completed", "failed", "offense"),
    [
        (0, 0, False),
        (0, 49, False),  # below the minimum: never an offense
        (44, 5, False),
        (45, 5, False),  # exactly 90% is not below the floor
        (44, 6, True),  # 88% over 50
        (0, 50, True),
        (899, 101, True),  # 89.9%
        (900, 100, False),
    ],
)
def test_low_completion_hour(completed: int, failed: int, offense: bool) -> None:
    assert is_low_completion_hour(completed, failed) is offense


def test_low_completion_zero_minimum() -> None:
    policy = LadderPolicy(low_completion_min_requests=0)
    assert not is_low_completion_hour(0, 0, policy)
    assert is_low_completion_hour(0, 1, policy)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ladder": ()},
        {"ladder": (HOUR, timedelta(0))},
        {"ladder": (4 * HOUR, HOUR)},
        {"forgive_after": timedelta(0)},
        {"integrity_suspends_at": 0},
        {"low_completion_floor": F(11, 10)},
        {"low_completion_floor": F(-1, 10)},
        {"cap": F(11, 10)},
        {"cap": F(-1, 10)},
        {"low_completion_min_requests": -1},
    ],
)
def test_invalid_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(LadderError):
        LadderPolicy(**kwargs)  # type: ignore[arg-type]


def test_edge_policies_are_valid() -> None:
    LadderPolicy(ladder=(HOUR, HOUR), cap=F(0), low_completion_floor=F(1))
    LadderPolicy(cap=F(1), low_completion_floor=F(0), integrity_suspends_at=1)


def test_record_activity() -> None:
    r = rec(1, T0, T0 + HOUR)
    assert not r.active(T0 - SEC)
    assert r.active(T0)
    assert r.active(T0 + HOUR - SEC)
    assert not r.active(T0 + HOUR)
    assert rec(6, T0, None).active(T0 + 1000 * DAY)
    assert rec(6, T0, None).permanent
    assert not r.permanent
    assert r.automatic
    assert not rec(1, T0, None, Offense.MANUAL).automatic


def test_cap_devices_rounds_down() -> None:
    assert cap_devices(100) == 20
    assert cap_devices(99) == 19
    assert cap_devices(4) == 0
    assert cap_devices(5) == 1
    assert cap_devices(0) == 0
    with pytest.raises(LadderError):
        cap_devices(-1)


def test_safety_cap_enforces_oldest_first_and_caps_the_rest() -> None:
    devices = {("ns", "a"): 10, ("ns", "b"): 10, ("ns", "c"): 5, ("ns", "d"): 75}
    records = [
        rec(1, T0, T0 + HOUR, pool="a", name="pa"),
        rec(1, T0 + SEC, T0 + HOUR, pool="b", name="pb"),
        rec(1, T0 + 2 * SEC, T0 + HOUR, pool="c", name="pc"),
    ]
    plan = enforcement(records, T0 + 10 * SEC, devices)
    assert plan.cap_devices == 20
    assert plan.status == {"pa": Enforcement.ENFORCED, "pb": Enforcement.ENFORCED, "pc": Enforcement.CAPPED}
    assert plan.penalised_pools == {("ns", "a"), ("ns", "b")}
    assert plan.capped_pools == {("ns", "c")}
    assert plan.automatic_devices_out == 20
    assert plan.cap_reached
    # once the first two expire, the capped one takes effect
    later = enforcement(
        [*records[:2], rec(1, T0 + 2 * SEC, T0 + 2 * HOUR, pool="c", name="pc")], T0 + HOUR, devices
    )
    assert later.status == {"pa": Enforcement.EXPIRED, "pb": Enforcement.EXPIRED, "pc": Enforcement.ENFORCED}
    assert not later.cap_reached


def test_a_big_pool_over_the_cap_keeps_routing_but_a_smaller_later_one_fits() -> None:
    devices = {("ns", "big"): 30, ("ns", "small"): 3, ("ns", "rest"): 67}
    records = [
        rec(1, T0, T0 + HOUR, pool="big", name="b"),
        rec(1, T0 + SEC, T0 + HOUR, pool="small", name="s"),
    ]
    plan = enforcement(records, T0 + 2 * SEC, devices)
    assert plan.status == {"b": Enforcement.CAPPED, "s": Enforcement.ENFORCED}
    assert plan.automatic_devices_out == 3


def test_manual_penalties_are_never_capped_nor_count_against_the_cap() -> None:
    devices = {("ns", "a"): 50, ("ns", "b"): 20, ("ns", "c"): 30}
    records = [
        rec(1, T0, T0 + HOUR, Offense.MANUAL, pool="a", name="m"),
        rec(1, T0, T0 + HOUR, pool="b", name="auto-b"),
        rec(1, T0, T0 + HOUR, pool="a", name="auto-a"),
    ]
    plan = enforcement(records, T0, devices)
    assert plan.status == {
        "m": Enforcement.ENFORCED,
        "auto-b": Enforcement.ENFORCED,
        "auto-a": Enforcement.ENFORCED,
    }
    assert plan.automatic_devices_out == 20
    assert plan.penalised_pools == {("ns", "a"), ("ns", "b")}


def test_second_penalty_of_the_same_pool_costs_nothing() -> None:
    devices = {("ns", "a"): 20, ("ns", "z"): 80}
    records = [rec(1, T0, T0 + HOUR, pool="a", name="one"), rec(2, T0 + SEC, T0 + HOUR, pool="a", name="two")]
    plan = enforcement(records, T0 + SEC, devices)
    assert plan.status == {"one": Enforcement.ENFORCED, "two": Enforcement.ENFORCED}
    assert plan.automatic_devices_out == 20


def test_pending_and_expired_and_zero_cap() -> None:
    devices = {("ns", "a"): 1, ("ns", "z"): 99}
    records = [
        rec(1, T0 + HOUR, T0 + 2 * HOUR, pool="a", name="future"),
        rec(1, T0 - 2 * HOUR, T0, name="past"),
    ]
    plan = enforcement(records, T0, devices)
    assert plan.status == {"future": Enforcement.PENDING, "past": Enforcement.EXPIRED}
    assert plan.penalised_pools == frozenset()
    zero = enforcement([rec(1, T0, T0 + HOUR, name="p")], T0, devices, LadderPolicy(cap=F(0)))
    assert zero.status == {"p": Enforcement.CAPPED}
    # a pool with no routable devices costs nothing and is enforced
    empty = enforcement([rec(1, T0, T0 + HOUR, pool="gone", name="g")], T0, devices, LadderPolicy(cap=F(0)))
    assert empty.status == {"g": Enforcement.ENFORCED}


def test_penalised_pools_for_the_router() -> None:
    records = [
        rec(1, T0, T0 + HOUR, pool="a"),
        rec(1, T0, T0 + HOUR, pool="b", ns="other"),
        rec(1, T0 - 2 * HOUR, T0 - HOUR, pool="c"),
    ]
    assert penalised_pools(T0, records) == {("ns", "a"), ("other", "b")}
    assert penalised_pools(T0 + HOUR, records) == frozenset()
    capped = penalised_pools(T0, records, {("ns", "a"): 10, ("other", "b"): 1, ("ns", "x"): 9})
    assert capped == {("other", "b")}


@st.composite
def fleets(draw: st.DrawFn) -> tuple[dict[tuple[str, str], int], list[PenaltyRecord]]:
    n = draw(st.integers(1, 12))
    devices = {("ns", f"p{i}"): draw(st.integers(0, 40)) for i in range(n)}
    records = []
    for j in range(draw(st.integers(0, 15))):
        pool = f"p{draw(st.integers(0, n - 1))}"
        start = T0 + draw(st.integers(-5, 5)) * HOUR
        offense = draw(st.sampled_from(list(Offense)))
        until = None if draw(st.integers(0, 9)) == 0 else start + draw(st.integers(1, 8)) * HOUR
        records.append(rec(1, start, until, offense, pool=pool, name=f"r{j}"))
    return devices, records


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(fleets(), st.fractions(min_value=0, max_value=1))
def test_cap_invariants(fleet: tuple[dict[tuple[str, str], int], list[PenaltyRecord]], cap: F) -> None:
    devices, records = fleet
    policy = LadderPolicy(cap=cap)
    plan = enforcement(records, T0, devices, policy)
    manual_pools = {r.pool_key for r in records if not r.automatic and r.active(T0)}
    auto_only = plan.penalised_pools - manual_pools
    assert sum(devices.get(p, 0) for p in auto_only) <= cap_devices(sum(devices.values()), policy)
    assert plan.automatic_devices_out <= plan.cap_devices
    assert manual_pools <= plan.penalised_pools
    assert set(plan.status) == {r.name for r in records}
    for r in records:
        assert (plan.status[r.name] in (Enforcement.ENFORCED, Enforcement.CAPPED)) == r.active(T0)
    assert not plan.capped_pools & plan.penalised_pools


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(
    st.lists(st.tuples(st.integers(1, 6), st.integers(0, 60)), min_size=1, max_size=8), st.integers(0, 400)
)
def test_effective_level_never_exceeds_the_latest_nor_goes_negative(
    rows: list[tuple[int, int]], days_later: int
) -> None:
    records = [
        rec(level, T0 + d * DAY, T0 + d * DAY + HOUR, name=f"r{i}") for i, (level, d) in enumerate(rows)
    ]
    latest = max(records, key=lambda r: (r.start, r.level))
    level = effective_level(records, latest.start + days_later * DAY)
    assert 0 <= level <= latest.level
    nxt = decide_penalty(records, Offense.LOW_COMPLETION, latest.start + days_later * DAY)
    assert nxt.level == min(level + 1, 6)


def test_decisions_use_the_given_policy_and_say_why() -> None:
    daily = LadderPolicy(forgive_after=DAY)
    records = [rec(3, T0, T0 + HOUR)]
    later = T0 + HOUR + 2 * DAY  # two clean days: two levels forgiven under a daily policy
    assert decide_penalty(records, Offense.LOW_COMPLETION, later, daily).level == 2
    assert decide_penalty(records, Offense.LOW_COMPLETION, later).level == 4
    first = decide_penalty([], Offense.LOW_COMPLETION, T0)
    assert first.why == "effective level 0 before this offense"
    assert (
        decide_penalty(records, Offense.LOW_COMPLETION, later, daily).why
        == "effective level 1 before this offense"
    )


def test_a_forced_level_of_one_is_allowed() -> None:
    d = decide_penalty([rec(4, T0, T0 + HOUR)], Offense.MANUAL, T0 + 2 * HOUR, level=1)
    assert (d.level, d.duration) == (1, HOUR)


def test_a_running_penalty_is_not_forgiven_even_with_short_forgiveness() -> None:
    fast = LadderPolicy(forgive_after=timedelta(minutes=1))
    records = [rec(3, T0, T0 + 16 * HOUR)]
    assert effective_level(records, T0 + 10 * HOUR, fast) == 3
    assert effective_level(records, T0 + 16 * HOUR, fast) == 3
    assert effective_level(records, T0 + 16 * HOUR + timedelta(minutes=1), fast) == 2


def test_penalised_pools_applies_the_given_cap() -> None:
    records = [rec(1, T0, T0 + HOUR, pool="a")]
    devices = {("ns", "a"): 1, ("ns", "z"): 9}
    assert penalised_pools(T0, records, devices) == {("ns", "a")}  # 20% of 10 devices: room for 2
    assert penalised_pools(T0, records, devices, LadderPolicy(cap=F(1, 10))) == {("ns", "a")}
    assert penalised_pools(T0, records, devices, LadderPolicy(cap=F(0))) == frozenset()
