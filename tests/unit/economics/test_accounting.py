"""Per-epoch per-pool work from cumulative router counters: deltas, resets, late scrapes, closing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.economics.accounting import (
    AccountingState,
    Cursor,
    PoolWork,
    Scrape,
    SeriesKey,
    SeriesSample,
    close_recorded,
    epochs_to_close,
    forget_sources,
    ingest,
    mark_closed,
    series_delta,
)
from gpufleet.economics.epochs import EpochClock
from gpufleet.economics.errors import InvalidInput

CLOCK = EpochClock(genesis=1000, length=60)
KA = SeriesKey("router-0", "ns/a", "node-1", "0", "m-8b")
KB = SeriesKey("router-0", "ns/b", "node-2", "0", "m-8b")


def scrape(at: int, *samples: SeriesSample, boot: str = "b1", started: int | None = None) -> Scrape:
    return Scrape("router-0", boot, at, tuple(samples), started)


def s(key: SeriesKey, done: int, prompt: int = 0, completion: int = 0) -> SeriesSample:
    return SeriesSample(key, done, prompt, completion)


def run(state: AccountingState, *scrapes: Scrape) -> AccountingState:
    for sc in scrapes:
        state, _ = ingest(state, sc, CLOCK)
    return state


def fresh(now: int = 1000) -> AccountingState:
    return AccountingState.start(CLOCK, now)


def test_series_key_round_trip_and_refusal() -> None:
    assert SeriesKey.parse(KA.text()) == KA
    with pytest.raises(InvalidInput):
        SeriesKey.parse("a|b")


def test_sample_refuses_bad_counters() -> None:
    for bad in (-1, True, 1.0):
        with pytest.raises(InvalidInput):
            SeriesSample(KA, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        SeriesSample(KA, 1, -1)
    with pytest.raises(InvalidInput):
        SeriesSample(KA, 1, 0, -1)


def test_series_delta() -> None:
    prev = Cursor("b1", 10, (5, 50, 500))
    assert series_delta(None, "b1", (1, 2, 3)) == ((1, 2, 3), False)
    assert series_delta(prev, "b1", (7, 50, 510)) == ((2, 0, 10), False)
    assert series_delta(prev, "b1", (5, 50, 500)) == ((0, 0, 0), False)
    assert series_delta(prev, "b2", (9, 90, 900)) == ((9, 90, 900), True)  # new boot
    assert series_delta(prev, "b1", (4, 60, 600)) == ((4, 60, 600), True)  # a counter fell
    assert series_delta(prev, "b1", (6, 49, 600)) == ((6, 49, 600), True)
    assert series_delta(prev, "b1", (6, 60, 499)) == ((6, 60, 499), True)


def test_start_counts_from_the_current_epoch() -> None:
    st_ = AccountingState.start(CLOCK, 1130)  # epoch 3
    assert (st_.first_epoch, st_.closed_through) == (3, 2)
    st_ = AccountingState.start(CLOCK, 1130, closed_through=5)  # Epoch objects exist up to 5
    assert (st_.first_epoch, st_.closed_through) == (6, 5)


def test_unknown_replica_without_start_time_is_a_baseline_only() -> None:
    state, rep = ingest(fresh(), scrape(1010, s(KA, 100, 10, 20)), CLOCK)
    assert state.open == {}
    assert rep.added == {}
    assert state.cursors[KA] == Cursor("b1", 1010, (100, 10, 20))
    state = run(state, scrape(1020, s(KA, 103, 11, 25)))
    work = state.tally(1)["ns/a"]
    assert (work.completed, work.prompt_tokens, work.completion_tokens, work.tokens) == (3, 1, 5, 6)
    assert work.tokens_by_model == {"m-8b": 6}
    assert state.lifetime_tokens == {"ns/a": {"m-8b": 6}}


def test_replica_with_known_start_counts_its_history() -> None:
    state, rep = ingest(fresh(), scrape(1020, s(KA, 10), started=1010), CLOCK)
    assert state.tally(1)["ns/a"].completed == 10
    assert rep.added[1]["ns/a"].completed == 10


def test_new_device_on_a_known_replica_counts_from_zero() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)), scrape(1020, s(KA, 1), s(KB, 4)))
    assert state.tally(1)["ns/b"].completed == 4
    assert state.tally(1)["ns/a"].completed == 1


def test_router_restart_resets_are_counted_not_lost() -> None:
    state = run(fresh(), scrape(1010, s(KA, 50)), scrape(1020, s(KA, 60)))
    assert state.tally(1)["ns/a"].completed == 10
    # The router restarted: new boot, counters from 0; 7 jobs since its restart.
    state, rep = ingest(state, scrape(1030, s(KA, 7), boot="b2", started=1025), CLOCK)
    assert rep.resets == 1
    assert state.resets == 1
    assert state.tally(1)["ns/a"].completed == 17
    # A counter that falls without a new boot id is a reset too.
    state, rep = ingest(state, scrape(1040, s(KA, 2), boot="b2"), CLOCK)
    assert rep.resets == 1
    assert state.tally(1)["ns/a"].completed == 19


def test_reset_interval_starts_at_the_restart() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)))
    # Restart at 1065 (epoch 2), sample at 1070: everything belongs to epoch 2, not split from 1010.
    state = run(state, scrape(1070, s(KA, 10), boot="b2", started=1065))
    assert "ns/a" not in state.tally(1)
    assert state.tally(2)["ns/a"].completed == 10
    # Without a start time the interval since the last sample is used.
    state2 = run(fresh(), scrape(1040, s(KA, 0)), scrape(1080, s(KA, 40), boot="b9"))
    assert state2.tally(1)["ns/a"].completed == 20
    assert state2.tally(2)["ns/a"].completed == 20


def test_delta_straddling_a_boundary_is_split_by_time() -> None:
    state = run(fresh(), scrape(1050, s(KA, 0, 0, 0)), scrape(1070, s(KA, 30, 0, 60)))
    assert state.tally(1)["ns/a"].completed == 15
    assert state.tally(2)["ns/a"].completed == 15
    assert state.tally(1)["ns/a"].completion_tokens == 30
    assert state.tally(2)["ns/a"].tokens_by_model == {"m-8b": 30}


def test_late_scrape_lands_in_the_epoch_it_describes() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)), scrape(1055, s(KA, 9)))
    # processed "at midnight+": nothing in ingest depends on wall time, only on the sample time.
    assert state.tally(1)["ns/a"].completed == 9
    assert state.tally(2) == {}


def test_stale_scrape_is_skipped() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)), scrape(1030, s(KA, 5)))
    state2, rep = ingest(state, scrape(1020, s(KA, 3)), CLOCK)
    assert rep.stale == 1
    assert state2.tally(1)["ns/a"].completed == 5
    assert state2.cursors[KA].at == 1030


def test_work_for_a_closed_epoch_is_carried_and_before_start_ignored() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)))
    state = mark_closed(state, 1)  # closed early (a test of carrying, not what the controller does)
    state, rep = ingest(state, scrape(1070, s(KA, 60)), CLOCK)
    # (1010, 1070]: 50 s of epoch 1 (closed) -> carried into 2, 10 s of epoch 2.
    assert rep.carried == 50
    assert state.carried == 50
    assert state.tally(2)["ns/a"].completed == 60
    late = AccountingState.start(CLOCK, 1130)  # counting starts in epoch 3
    late = run(late, scrape(1110, s(KA, 0)), scrape(1130, s(KA, 20)))
    assert late.ignored == 10
    assert late.tally(3)["ns/a"].completed == 10


def test_series_from_another_source_is_refused() -> None:
    other = SeriesKey("router-1", "ns/a", "n", "0", "m")
    with pytest.raises(InvalidInput):
        ingest(fresh(), scrape(1010, s(other, 1)), CLOCK)


def test_ingest_does_not_mutate_its_input() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)))
    before = state.to_json()
    ingest(state, scrape(1020, s(KA, 5)), CLOCK)
    assert state.to_json() == before


def test_epochs_to_close_and_mark_closed() -> None:
    state = fresh(1000)
    assert epochs_to_close(state, CLOCK, 1059, grace=0) == []
    assert epochs_to_close(state, CLOCK, 1060, grace=0) == [1]
    assert epochs_to_close(state, CLOCK, 1064, grace=5) == []
    assert epochs_to_close(state, CLOCK, 1184, grace=5) == [1, 2]
    state = run(state, scrape(1010, s(KA, 0)), scrape(1070, s(KA, 60)))
    closed = mark_closed(state, 1)
    assert closed.closed_through == 1
    assert 1 not in closed.open
    assert closed.tally(2)["ns/a"].completed == 10
    assert epochs_to_close(closed, CLOCK, 1184, grace=5) == [2]
    with pytest.raises(InvalidInput):
        mark_closed(closed, 3)
    with pytest.raises(InvalidInput):
        mark_closed(closed, 1)


def test_state_json_round_trip() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0), s(KB, 0)), scrape(1070, s(KA, 60, 5, 6), s(KB, 3)))
    text = state.to_json()
    back = AccountingState.from_json(text)
    assert back.to_json() == text
    assert back.tally(2)["ns/a"].tokens_by_model == {"m-8b": 2}  # 1 of 5 prompt + 1 of 6
    assert back.cursors == state.cursors
    for bad in ("nope", "[]", '{"version": 2}'):
        with pytest.raises(InvalidInput):
            AccountingState.from_json(bad)
    doc = text.replace('"values":[60,5,6]', '"values":[60,5]')
    with pytest.raises(InvalidInput):
        AccountingState.from_json(doc)


def test_pool_work_json() -> None:
    w = PoolWork()
    w.add("m", 2, 3, 4)
    w.add("m", 1, 0, 0)
    assert PoolWork.from_json(w.to_json()) == w
    assert w.tokens_by_model == {"m": 7}
    assert PoolWork.from_json({}) == PoolWork()


def test_forget_sources() -> None:
    other = SeriesKey("router-1", "ns/a", "n", "0", "m")
    state = run(fresh(), scrape(1010, s(KA, 0)))
    state, _ = ingest(state, Scrape("router-1", "x", 1010, (s(other, 0),)), CLOCK)
    kept = forget_sources(state, ["router-1"])
    assert set(kept.cursors) == {other}


samples_st = st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 50), st.booleans()),  # (time step, increase, reset)
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(steps=samples_st, restart_at=st.integers(0, 30))
def test_no_work_is_created_or_lost(steps: list[tuple[int, int, bool]], restart_at: int) -> None:
    """Sum over epochs (open, closed, carried) of completed == total increase of the counters.

    Includes operator restarts (the state goes through JSON) and router resets (the counter
    restarts from the increase since the reset, as a real router does).
    """
    state = fresh(1000)
    state = run(state, scrape(1000, s(KA, 0)))
    t, value, boot, truth, closed_sum = 1000, 0, 0, 0, 0
    for i, (dt, inc, reset) in enumerate(steps):
        t += dt
        if reset:
            boot += 1
            value = inc
        else:
            value += inc
        truth += inc
        if i == restart_at:
            state = AccountingState.from_json(state.to_json())
        state, _ = ingest(state, scrape(t, s(KA, value), boot=f"b{boot}", started=t - dt), CLOCK)
        for epoch in epochs_to_close(state, CLOCK, t, grace=0):
            closed_sum += sum(w.completed for w in state.tally(epoch).values())
            state = mark_closed(state, epoch)
    open_sum = sum(w.completed for pools in state.open.values() for w in pools.values())
    assert closed_sum + open_sum == truth
    assert state.ignored == 0


def test_carried_and_resets_are_kept_per_epoch() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0)))
    state = mark_closed(state, 1)
    state = run(state, scrape(1070, s(KA, 60)))  # 50 carried into epoch 2
    state = run(state, scrape(1080, s(KA, 3), boot="b2", started=1075))  # a reset during epoch 2
    assert state.carried_by_epoch == {2: 50}
    assert state.resets_by_epoch == {2: 1}
    back = AccountingState.from_json(state.to_json())
    assert back.carried_by_epoch == {2: 50}
    assert back.resets_by_epoch == {2: 1}
    closed = mark_closed(state, 2)
    assert closed.carried_by_epoch == {}
    assert closed.resets_by_epoch == {}
    assert closed.carried == 50  # the totals stay
    assert closed.resets == 1


def test_a_reset_seen_after_a_close_counts_for_the_open_epoch() -> None:
    state = run(fresh(), scrape(1010, s(KA, 5)))
    state = mark_closed(state, 1)
    state = run(state, scrape(1050, s(KA, 1), boot="b2"))  # sample time in closed epoch 1
    assert state.resets_by_epoch == {2: 1}


def test_close_recorded_carries_what_the_record_lacks() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0), s(KB, 0)), scrape(1050, s(KA, 40), s(KB, 10)))
    adopted = close_recorded(state, 1, {"ns/a": 30, "ns/b": 10})
    assert adopted.closed_through == 1
    assert adopted.tally(2)["ns/a"].completed == 10
    assert "ns/b" not in adopted.tally(2)
    assert adopted.carried == 10
    assert adopted.carried_by_epoch == {2: 10}
    same = close_recorded(state, 1, {"ns/a": 40, "ns/b": 99})  # the record has more: nothing to carry
    assert same.tally(2) == {}
    assert same.carried == 0
    with pytest.raises(InvalidInput):
        close_recorded(state, 2, {})


KC = SeriesKey("router-0", "ns/c", "node-3", "0", "m-1b")


def test_close_recorded_details() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0), s(KB, 0)), scrape(1050, s(KA, 41, 3, 4), s(KB, 7)))
    state.carried = 5
    state.carried_by_epoch = {2: 3}
    adopted = close_recorded(state, 1, {"ns/a": 40})  # ns/b is not in the record at all
    assert adopted.tally(2)["ns/a"].completed == 1  # exactly one extra job is carried
    assert adopted.tally(2)["ns/b"].completed == 7
    assert adopted.carried == 5 + 1 + 7
    assert adopted.carried_by_epoch == {2: 3 + 1 + 7}
    carried = adopted.tally(2)["ns/a"]
    assert (carried.prompt_tokens, carried.completion_tokens, carried.tokens_by_model) == (0, 0, {})


def test_ingest_counters_accumulate_within_one_scrape() -> None:
    state = run(fresh(), scrape(1010, s(KA, 10), s(KB, 10), s(KC, 10)))
    state.resets, state.ignored, state.carried = 4, 6, 8
    # two series reset in the same scrape
    state, rep = ingest(state, scrape(1020, s(KA, 1), s(KB, 2), s(KC, 12)), CLOCK)
    assert rep.resets == 2
    assert state.resets == 6
    # two stale series, then one that counts: a stale series does not stop the scrape
    state, rep = ingest(state, scrape(1015, s(KA, 9), s(KB, 9)), CLOCK)
    assert rep.stale == 2
    state, rep = ingest(state, scrape(1030, s(KA, 1), s(KB, 2), s(KC, 15)), CLOCK)  # KA, KB unchanged
    assert state.tally(1)["ns/c"].completed == 5
    # a sample at the same time as the cursor is not stale: its increase counts
    state, rep = ingest(state, scrape(1030, s(KC, 16)), CLOCK)
    assert rep.stale == 0
    assert state.tally(1)["ns/c"].completed == 6
    assert state.ignored == 6
    assert state.carried == 8


def test_ignored_and_carried_accumulate_over_series() -> None:
    late = AccountingState.start(CLOCK, 1130)  # counting starts in epoch 3
    late.ignored = 2
    late = run(late, scrape(1110, s(KA, 0), s(KB, 0)))
    late, rep = ingest(late, scrape(1130, s(KA, 20), s(KB, 40)), CLOCK)
    assert rep.ignored == 10 + 20
    assert late.ignored == 2 + 30
    state = mark_closed(run(fresh(), scrape(1010, s(KA, 0), s(KB, 0))), 1)
    state.carried = 1
    state, rep = ingest(state, scrape(1070, s(KA, 60), s(KB, 60)), CLOCK)
    assert rep.carried == 100
    assert state.carried == 101
    assert state.carried_by_epoch == {2: 100}


def test_tokens_are_kept_per_model_in_report_and_lifetime() -> None:
    state = run(fresh(), scrape(1010, s(KA, 0), s(KC, 0)))
    state, rep = ingest(state, scrape(1020, s(KA, 1, 5, 5), s(KC, 1, 2, 0)), CLOCK)
    assert rep.added[1]["ns/a"].tokens_by_model == {"m-8b": 10}
    assert state.lifetime_tokens == {"ns/a": {"m-8b": 10}, "ns/c": {"m-1b": 2}}
    state = run(state, scrape(1030, s(KA, 2, 6, 6)))
    assert state.lifetime_tokens["ns/a"] == {"m-8b": 12}


def test_a_cursor_of_another_replica_with_the_same_boot_is_not_this_replicas() -> None:
    other = SeriesKey("router-1", "ns/a", "node-1", "0", "m-8b")
    state = run(fresh(), Scrape("router-1", "b1", 1010, (s(other, 0),)))
    # router-0 is new (no cursor of its own): a baseline, even though router-1 has boot "b1" too
    state, rep = ingest(state, scrape(1020, s(KA, 9)), CLOCK)
    assert rep.added == {}


def test_resets_count_in_the_epoch_of_the_scrape() -> None:
    state = run(fresh(), scrape(1010, s(KA, 5)))
    state, _ = ingest(state, scrape(1130, s(KA, 1), boot="b2"), CLOCK)  # epoch 3
    assert state.resets_by_epoch == {3: 1}
    state.resets_by_epoch[3] = 4
    state, _ = ingest(state, scrape(1135, s(KA, 0), boot="b3"), CLOCK)
    assert state.resets_by_epoch == {3: 5}


def test_messages_and_minimal_state_document() -> None:
    with pytest.raises(InvalidInput, match=r"the next epoch to close is 1, not 2$"):
        mark_closed(fresh(), 2)
    with pytest.raises(InvalidInput, match=r"series router-1\|ns/a\|n\|0\|m is not from source router-0$"):
        ingest(fresh(), scrape(1010, s(SeriesKey("router-1", "ns/a", "n", "0", "m"), 1)), CLOCK)
    with pytest.raises(InvalidInput, match=r"^InvalidInput: Invalid input: accounting state is not JSON: "):
        AccountingState.from_json("{")
    with pytest.raises(InvalidInput, match=r"accounting state version must be 1$"):
        AccountingState.from_json('{"version": 2}')
    with pytest.raises(InvalidInput, match=r"cursor a\|b\|c\|d\|e must have 3 values$"):
        AccountingState.from_json(
            '{"version": 1, "firstEpoch": 1, "closedThrough": 0, "cursors": {"a|b|c|d|e": '
            '{"boot": "x", "at": 1, "values": [1]}}}'
        )
    with pytest.raises(InvalidInput, match=r"series key 'a\|b' must have 5 '\|'-separated parts$"):
        SeriesKey.parse("a|b")
    minimal = AccountingState.from_json('{"version": 1, "firstEpoch": 4, "closedThrough": 3}')
    assert (minimal.first_epoch, minimal.closed_through, minimal.cursors, minimal.open) == (4, 3, {}, {})
    assert (minimal.lifetime_tokens, minimal.carried, minimal.ignored, minimal.resets) == ({}, 0, 0, 0)
    assert (minimal.carried_by_epoch, minimal.resets_by_epoch) == ({}, {})
