"""Rolling outcome window: deltas, resets, roll-over, attribution, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.reputation.window import (
    ATTRIBUTABLE_CAUSES,
    DEFAULT_WINDOW_HOURS,
    NO_RELEASE,
    CounterSnapshot,
    Delta,
    DeviceBucket,
    DeviceKey,
    FailureCause,
    Observation,
    Window,
    WindowError,
    advance,
    counter_delta,
    hour_of,
    is_attributable,
    merge_windows,
    observe,
)

H = 3600
T0 = 1_000 * H  # an hour boundary
DEV = DeviceKey("ns", "pool-a", "node-1", "0")
DEV2 = DeviceKey("ns", "pool-a", "node-1", "1")
OTHER = DeviceKey("ns", "pool-b", "node-9", "0")


def snap(
    done: int = 0, gen: str = "g1", tokens: int = 0, decode_ms: int = 0, **failures: int
) -> CounterSnapshot:
    return CounterSnapshot(
        completions=done,
        failures={FailureCause(k): v for k, v in failures.items()},
        completion_tokens=tokens,
        decode_ms=decode_ms,
        generation=gen,
    )


def obs(
    s: CounterSnapshot, dev: DeviceKey = DEV, source: str = "router-0", release: str = NO_RELEASE
) -> Observation:
    return Observation(source=source, device=dev, counters=s, release=release)


def test_attribution_is_exactly_the_issues_list() -> None:
    expected = {
        FailureCause.ENGINE_5XX,
        FailureCause.CONNECT,
        FailureCause.RESET,
        FailureCause.TIMEOUT,
    }
    assert expected == ATTRIBUTABLE_CAUSES
    assert not is_attributable(FailureCause.CLIENT_CANCEL)
    assert not is_attributable(FailureCause.ROUTER_REJECTED)
    assert all(is_attributable(c) for c in ATTRIBUTABLE_CAUSES)
    assert len(FailureCause) == 6


def test_delta_without_baseline_is_zero() -> None:
    assert counter_delta(None, snap(100, engine_5xx=3)) == Delta()


def test_delta_subtracts_and_attributes() -> None:
    prev = snap(10, tokens=100, decode_ms=1000, engine_5xx=1, client_cancel=2)
    cur = snap(
        15,
        tokens=180,
        decode_ms=1600,
        engine_5xx=2,
        connect=1,
        reset=1,
        timeout=1,
        client_cancel=5,
        router_rejected=4,
    )
    assert counter_delta(prev, cur) == Delta(
        completed=5, attributable=4, not_attributable=7, tokens=80, decode_ms=600
    )


def test_unchanged_counters_give_zero() -> None:
    s = snap(10, engine_5xx=1)
    assert counter_delta(s, s) == Delta()


def test_generation_change_is_a_reset_even_when_counters_grew() -> None:
    prev = snap(10, gen="g1")
    cur = snap(12, gen="g2", engine_5xx=1)
    assert cur.is_reset_of(prev)
    assert counter_delta(prev, cur) == Delta(completed=12, attributable=1)


@pytest.mark.parametrize(
    ("prev", "cur"),
    [
        (snap(10), snap(9)),
        (snap(10, tokens=5), snap(10, tokens=4)),
        (snap(10, decode_ms=5), snap(10, decode_ms=4)),
        (snap(10, engine_5xx=2), snap(10, engine_5xx=1)),
        (snap(10, timeout=2), snap(10, timeout=1)),
        (snap(10, client_cancel=2), snap(12, client_cancel=1)),
    ],
)
def test_any_counter_going_down_is_a_reset(prev: CounterSnapshot, cur: CounterSnapshot) -> None:
    assert cur.is_reset_of(prev)
    d = counter_delta(prev, cur)
    assert d.completed == cur.completions
    assert d.tokens == cur.completion_tokens


def test_no_reset_when_everything_grew_or_stayed() -> None:
    prev = snap(10, tokens=5, decode_ms=5, engine_5xx=1)
    assert not snap(10, tokens=5, decode_ms=5, engine_5xx=1).is_reset_of(prev)
    assert not snap(11, tokens=6, decode_ms=6, engine_5xx=2).is_reset_of(prev)


def test_negative_counters_are_refused() -> None:
    with pytest.raises(WindowError):
        snap(-1)
    with pytest.raises(WindowError):
        snap(0, engine_5xx=-1)
    with pytest.raises(WindowError):
        CounterSnapshot(decode_ms=-1)
    with pytest.raises(WindowError):
        CounterSnapshot(completion_tokens=-1)


def test_first_scrape_sets_baseline_second_counts_in_its_hour() -> None:
    w = observe(Window(), [obs(snap(100, engine_5xx=5))], T0 + 10)
    assert w.buckets == {}
    assert w.current_hour == hour_of(T0)
    w = observe(
        w,
        [obs(snap(130, tokens=300, decode_ms=3000, engine_5xx=6, client_cancel=1), release="1.0.0")],
        T0 + 70,
    )
    assert w.buckets == {
        hour_of(T0): {
            DEV: DeviceBucket(
                completed=30, failed_by_release={"1.0.0": 1}, not_attributable=1, tokens=300, decode_ms=3000
            )
        }
    }
    assert w.total().requests == 32


def test_reset_mid_window_counts_the_new_counters_whole() -> None:
    w = observe(Window(), [obs(snap(100))], T0)
    w = observe(w, [obs(snap(150))], T0 + 60)
    w = observe(w, [obs(snap(20, gen="g2", timeout=2))], T0 + 120)  # router restarted
    w = observe(w, [obs(snap(25, gen="g2", timeout=2))], T0 + 180)
    total = w.total()
    assert (total.completed, total.attributable()) == (75, 2)


def test_zero_delta_creates_no_bucket() -> None:
    w = observe(Window(), [obs(snap(1))], T0)
    w = observe(w, [obs(snap(1))], T0 + H)
    assert w.buckets == {}


def test_sources_have_separate_baselines() -> None:
    w = observe(Window(), [obs(snap(100), source="r0"), obs(snap(7), source="r1")], T0)
    w = observe(w, [obs(snap(110), source="r0"), obs(snap(9), source="r1")], T0 + 30)
    assert w.total().completed == 12


def test_deltas_land_in_the_hour_of_the_scrape() -> None:
    w = observe(Window(), [obs(snap(0))], T0)
    w = observe(w, [obs(snap(5))], T0 + H - 1)
    w = observe(w, [obs(snap(12))], T0 + H)
    assert {h: b[DEV].completed for h, b in w.buckets.items()} == {hour_of(T0): 5, hour_of(T0) + 1: 7}


def test_roll_over_keeps_exactly_hours_buckets() -> None:
    w = Window(hours=3)
    w = observe(w, [obs(snap(0))], T0)
    for i in range(1, 6):
        w = observe(w, [obs(snap(i))], T0 + i * H)
    assert sorted(w.buckets) == [hour_of(T0) + 3, hour_of(T0) + 4, hour_of(T0) + 5]
    assert w.total().completed == 3
    assert w.first_hour(w.current_hour or 0) == hour_of(T0) + 3


def test_default_window_is_three_days() -> None:
    assert DEFAULT_WINDOW_HOURS == 72
    w = observe(Window(), [obs(snap(0))], T0)
    w = observe(w, [obs(snap(1))], T0 + 1)
    assert w.total().completed == 1
    assert advance(w, T0 + 71 * H).total().completed == 1
    assert advance(w, T0 + 72 * H).total().completed == 0


def test_stale_baselines_drop_out_with_the_window() -> None:
    w = observe(Window(hours=2), [obs(snap(5))], T0)
    assert advance(w, T0 + H).baselines
    assert not advance(w, T0 + 2 * H).baselines


def test_time_going_backwards_changes_nothing_and_late_scrapes_land_in_the_newest_bucket() -> None:
    w = observe(Window(), [obs(snap(0))], T0 + 2 * H)
    assert advance(w, T0) is w
    w = observe(w, [obs(snap(4))], T0)  # a late scrape
    assert list(w.buckets) == [hour_of(T0) + 2]


def test_window_needs_an_hour() -> None:
    with pytest.raises(WindowError):
        Window(hours=0)
    Window(hours=1)


def test_excused_releases() -> None:
    b = DeviceBucket(completed=10, failed_by_release={"1.0.0": 2, "1.2.0": 5, NO_RELEASE: 1})
    assert b.attributable() == 8
    assert b.attributable(frozenset({"1.2.0"})) == 3
    assert b.excused(frozenset({"1.2.0"})) == 5
    assert b.excused(frozenset()) == 0
    assert b.requests == 18


def test_device_key_round_trip_and_errors() -> None:
    assert DeviceKey.parse(str(DEV)) == DEV
    assert str(DEV) == "ns/pool-a/node-1/0"
    assert DEV.pool_key == ("ns", "pool-a")
    for bad in ("a/b/c", "a/b/c/d/e", "a//c/d", ""):
        with pytest.raises(WindowError):
            DeviceKey.parse(bad)


def test_queries_by_device_and_hour() -> None:
    w = observe(Window(), [obs(snap(0)), obs(snap(0), DEV2), obs(snap(0), OTHER)], T0)
    w = observe(w, [obs(snap(3)), obs(snap(4), DEV2), obs(snap(5), OTHER)], T0 + 10)
    w = observe(w, [obs(snap(10)), obs(snap(4), DEV2), obs(snap(5), OTHER)], T0 + H)
    assert w.devices() == {DEV, DEV2, OTHER}
    assert [b.completed for b in w.device_buckets(DEV)] == [3, 7]
    assert w.total([DEV, DEV2]).completed == 14
    assert w.total().completed == 19
    assert w.hour_total(hour_of(T0)).completed == 12
    assert w.hour_total(hour_of(T0), [OTHER]).completed == 5
    assert w.hour_total(hour_of(T0) + 5).completed == 0
    pool_a = w.for_pool("ns", "pool-a")
    assert pool_a.devices() == {DEV, DEV2}
    assert all(k[1].pool_key == ("ns", "pool-a") for k in pool_a.baselines)
    assert pool_a.current_hour == w.current_hour


def test_persistence_round_trip_resumes_without_double_counting() -> None:
    w = observe(Window(), [obs(snap(100, engine_5xx=1))], T0)
    w = observe(
        w, [obs(snap(150, tokens=9, decode_ms=8, engine_5xx=3, client_cancel=1), release="1.0.0")], T0 + 60
    )
    raw = json.loads(json.dumps(w.to_dict()))
    back = Window.from_dict(raw)
    assert back == w
    # a restarted operator continues from the persisted baselines: nothing counted twice
    back = observe(back, [obs(snap(160, tokens=9, decode_ms=8, engine_5xx=3, client_cancel=1))], T0 + 120)
    assert back.total().completed == 60


def test_from_dict_refuses_negative_buckets() -> None:
    with pytest.raises(WindowError):
        DeviceBucket.from_dict({"c": -1})
    assert DeviceBucket.from_dict({}) == DeviceBucket()


def test_merge_windows() -> None:
    a = observe(
        observe(Window(hours=4), [obs(snap(0), source="r0")], T0), [obs(snap(5), source="r0")], T0 + 1
    )
    b = observe(
        observe(Window(hours=4), [obs(snap(0), source="r1")], T0 + H),
        [obs(snap(7, timeout=1), source="r1")],
        T0 + H + 1,
    )
    m = merge_windows(a, b)
    assert m.total().completed == 12
    assert m.total().attributable() == 1
    assert m.current_hour == hour_of(T0) + 1
    assert set(m.baselines) == {("r0", DEV), ("r1", DEV)}
    with pytest.raises(WindowError):
        merge_windows(a, Window(hours=5))
    assert merge_windows(Window(), Window()).current_hour is None


@st.composite
def counter_histories(draw: st.DrawFn) -> tuple[list[CounterSnapshot], int, int]:
    """Cumulative snapshots with random increments and random resets; the true totals after the baseline."""
    steps = draw(st.integers(1, 30))
    gen, done, fails = 0, draw(st.integers(0, 1000)), draw(st.integers(0, 50))
    history = [snap(done, gen=f"g{gen}", timeout=fails)]
    true_done = true_fail = 0
    for _ in range(steps):
        inc_done, inc_fail = draw(st.integers(0, 100)), draw(st.integers(0, 10))
        if draw(st.booleans()) and draw(st.booleans()):
            gen += 1
            done, fails = inc_done, inc_fail  # restarted: counting from zero again
        else:
            done, fails = done + inc_done, fails + inc_fail
        true_done += inc_done
        true_fail += inc_fail
        history.append(snap(done, gen=f"g{gen}", timeout=fails))
    return history, true_done, true_fail


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(counter_histories())
def test_resets_never_lose_or_invent_requests(data: tuple[list[CounterSnapshot], int, int]) -> None:
    history, true_done, true_fail = data
    w = Window()
    for i, s in enumerate(history):
        w = observe(w, [obs(s)], T0 + 60 * i)
    total = w.total()
    assert (total.completed, total.attributable()) == (true_done, true_fail)


@settings(deadline=None)  # tests must pass on a loaded machine (1/4 speed)
@given(counter_histories(), st.integers(0, 30))
def test_persisting_at_any_point_changes_nothing(
    data: tuple[list[CounterSnapshot], int, int], cut: int
) -> None:
    history, _, _ = data
    straight = w = Window()
    for i, s in enumerate(history):
        straight = observe(straight, [obs(s)], T0 + 600 * i)
        w = observe(w, [obs(s)], T0 + 600 * i)
        if i == cut:
            w = Window.from_dict(json.loads(json.dumps(w.to_dict())))
    assert w == straight


def test_a_new_device_of_a_known_source_counts_whole() -> None:
    w = observe(Window(), [obs(snap(10))], T0)
    w = observe(w, [obs(snap(10)), obs(snap(7, timeout=1), DEV2)], T0 + 30)
    assert w.total([DEV2]).completed == 7
    assert w.total([DEV2]).attributable() == 1
    # a source read while it had no device yet is known too
    quiet = observe(Window(), [], T0, {"router-0": "g1"})
    quiet = observe(quiet, [obs(snap(3))], T0 + 30)
    assert quiet.total().completed == 3
    assert Window.from_dict(json.loads(json.dumps(quiet.to_dict()))) == quiet
    assert advance(quiet, T0 + 80 * H).sources == {}
    # a stream (model) of a device has its own baseline
    two = observe(Window(), [obs(snap(5)), Observation("router-0", DEV, snap(9), stream="m2")], T0)
    two = observe(two, [obs(snap(6)), Observation("router-0", DEV, snap(19), stream="m2")], T0 + 30)
    assert two.total().completed == 11
    # an unknown source (or a known one under a new generation) only sets baselines
    w = observe(w, [obs(snap(50), DEV2, source="r9"), obs(snap(5, gen="g9"), OTHER)], T0 + 60)
    assert w.total([DEV2]).completed == 7
    assert w.total([OTHER]).completed == 0
