"""Access-log lines -> per-device counters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.router.accesslog import LogLine, StatsBook, failure_cause, parse_line
from gpufleet.router.stats import DeviceKey

NOW = datetime(2026, 1, 1, tzinfo=UTC)
A = DeviceKey(namespace="ns", pool="p", inference_node="n", device=0, model="m", pod="a")
B = DeviceKey(namespace="ns", pool="p", inference_node="n", device=1, model="m", pod="b")
ADDR = {"10.0.0.1:8000": A, "10.0.0.2:8000": B}


def resolve(upstream: str, model: str | None) -> DeviceKey | None:
    return ADDR.get(upstream)


def line(
    kind: str,
    host: str | None,
    code: int,
    flags: str = "-",
    attempts: int = 1,
    rid: str = "r",
    ttfb: str = "3",
    dur: str = "5",
    prompt: str = "-",
    completion: str = "-",
) -> LogLine:
    text = "\t".join(
        [
            kind,
            "1.0",
            host or "-",
            str(code),
            flags,
            ttfb,
            dur,
            str(attempts),
            "m",
            prompt,
            completion,
            "/v1/completions",
            rid,
        ]
    )
    parsed = parse_line(text + "\n")
    assert parsed is not None
    return parsed


def test_parse_and_reject() -> None:
    ln = line("D", "10.0.0.1:8000", 200, prompt="2", completion="3")
    assert (ln.kind, ln.upstream, ln.code, ln.ttfb_ms, ln.prompt_tokens, ln.completion_tokens) == (
        "D",
        "10.0.0.1:8000",
        200,
        3,
        2,
        3,
    )
    assert parse_line("garbage\n") is None
    assert parse_line("D\tnot-a-time" + "\t-" * 11 + "\n") is None
    assert parse_line("D\t1.0\t-\t200\n") is None  # torn line


def test_failure_causes() -> None:
    assert failure_cause(line("U", "h", 200)) is None
    assert failure_cause(line("U", "h", 503)) == "http_5xx"
    assert failure_cause(line("U", "h", 503, "UF")) == "connect"
    assert failure_cause(line("U", "h", 0, "UC")) == "reset"
    assert failure_cause(line("U", "h", 504, "UT")) == "timeout"
    assert failure_cause(line("U", "h", 0, "DC")) == "client_cancel"
    assert failure_cause(line("U", "h", 0)) == "reset"


def test_retried_request_is_one_failure_one_completion_one_retry() -> None:
    book = StatsBook("r", NOW)
    book.feed(
        [
            line("U", "10.0.0.1:8000", 500, rid="x"),
            line("U", "10.0.0.2:8000", 200, rid="x"),
            line("D", "10.0.0.2:8000", 200, attempts=2, rid="x", prompt="4", completion="6"),
        ],
        resolve,
    )
    snap = book.snapshot(NOW, "0.0001")
    a, b = snap.device(A), snap.device(B)
    assert a is not None
    assert b is not None
    assert (a.requests, a.completions, a.failures.http_5xx, a.retries) == (1, 0, 1, 1)
    assert (b.requests, b.completions, b.failures.total, b.retries) == (1, 1, 0, 0)
    assert (b.tokens.prompt, b.tokens.completion) == (4, 6)
    assert b.ttfb.count == 1
    assert book.client_requests == 1
    assert book.retried_requests == 1
    assert book.client_failures == 0


def test_router_own_answers_and_unattributed() -> None:
    book = StatsBook("r", NOW)
    book.feed(
        [
            line("D", None, 503, "UH"),
            line("D", None, 404),
            line("D", None, 429),
            line("U", "10.9.9.9:1", 200),
        ],
        resolve,
    )
    assert (book.router_503, book.router_4xx, book.router_429, book.unattributed) == (1, 1, 1, 1)
    assert book.client_failures == 1


def test_observed_share_window_resets_per_model() -> None:
    book = StatsBook("r", NOW)
    book.feed([line("U", "10.0.0.1:8000", 200)] * 3 + [line("U", "10.0.0.2:8000", 200)], resolve)
    assert book.observed_shares() == {A: 0.75, B: 0.25}
    book.reset_window("m")
    book.feed([line("U", "10.0.0.2:8000", 200)], resolve)
    assert book.observed_shares() == {A: 0.0, B: 1.0}
    assert book.snapshot(NOW, "0").device(A).requests == 3  # type: ignore[union-attr]


def test_snapshot_restore_round_trip() -> None:
    book = StatsBook("r", NOW)
    book.feed(
        [
            line("U", "10.0.0.1:8000", 200),
            line("D", "10.0.0.1:8000", 200, ttfb="40", dur="900"),
            line("U", "10.0.0.2:8000", 0, "UF"),
            line("D", None, 503),
        ],
        resolve,
    )
    book.reprogrammings = 7
    snap = book.snapshot(NOW, "0.0001")
    again = StatsBook("r", datetime(2030, 1, 1, tzinfo=UTC))
    again.restore(snap)
    assert again.snapshot(NOW, "0.0001") == snap.model_copy(
        update={"devices": tuple(d.model_copy(update={"observed_share": 0.0}) for d in snap.devices)}
    )


outcomes = st.sampled_from([(200, "-"), (500, "-"), (503, "UF"), (0, "UC"), (504, "UT"), (0, "DC")])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(ADDR)), outcomes), max_size=60))
def test_every_attempt_is_exactly_one_completion_or_one_failure(
    attempts: list[tuple[str, tuple[int, str]]],
) -> None:
    book = StatsBook("r", NOW)
    lines = []
    for i, (host, (code, flags)) in enumerate(attempts):
        lines.append(line("U", host, code, flags, rid=f"q{i}"))
        lines.append(line("D", host, code, flags, rid=f"q{i}"))
    book.feed(lines, resolve)
    snap = book.snapshot(NOW, "0")
    assert sum(d.requests for d in snap.devices) == len(attempts)
    for d in snap.devices:
        assert d.requests == d.completions + d.failures.total
    shares = [d.observed_share or 0.0 for d in snap.devices]
    assert not snap.devices or abs(sum(shares) - 1.0) < 1e-9


@pytest.mark.parametrize("d_first", [False, True])
def test_client_cancel_comes_from_the_request_line_in_either_order(d_first: bool) -> None:
    """Envoy marks DC only on the D line; the attempt's own line says 200."""
    book = StatsBook("r", NOW)
    u = line("U", "10.0.0.1:8000", 200, rid="c")
    d = line("D", "10.0.0.1:8000", 200, "DC", rid="c")
    book.feed([d, u] if d_first else [u, d], resolve)
    dev = book.snapshot(NOW, "0").device(A)
    assert dev is not None
    assert (dev.requests, dev.completions, dev.failures.client_cancel) == (1, 0, 1)


def test_a_success_waits_for_its_request_line() -> None:
    book = StatsBook("r", NOW)
    book.feed([line("U", "10.0.0.1:8000", 200, rid="w")], resolve)
    assert book.snapshot(NOW, "0").device(A).completions == 0  # type: ignore[union-attr]
    book.feed([line("D", "10.0.0.1:8000", 200, rid="w")], resolve)
    assert book.snapshot(NOW, "0").device(A).completions == 1  # type: ignore[union-attr]
