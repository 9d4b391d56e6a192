"""Every refusal of the pure reputation modules, with the message it must give (people read these in logs).

One test file per module uses its own cases, so mutation testing of a module (``bench/mutation.py``
runs ``tests/unit/reputation/test_<module>*.py``) sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction as F
from typing import Any

from gpufleet.reputation.kcontrol import KControlError, KPolicy, KState, k_step, utilisation
from gpufleet.reputation.ladder import HOUR, LadderError, LadderPolicy, Offense, cap_devices, decide_penalty
from gpufleet.reputation.throughput import (
    ThroughputError,
    ThroughputPolicy,
    load_benchmarks,
    parse_benchmarks,
)
from gpufleet.reputation.window import (
    CounterSnapshot,
    DeviceBucket,
    DeviceKey,
    Window,
    WindowError,
    merge_windows,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)

CASES: list[tuple[type[Exception], Callable[[], Any], str]] = [
    (LadderError, lambda: LadderPolicy(ladder=()), r"^a ladder has at least one positive duration$"),
    (LadderError, lambda: LadderPolicy(ladder=(HOUR, timedelta(0))), r"^a ladder has at least one positive"),
    (LadderError, lambda: LadderPolicy(ladder=(2 * HOUR, HOUR)), r"^ladder durations must not decrease$"),
    (LadderError, lambda: LadderPolicy(forgive_after=timedelta(0)), r"^forgive_after must be positive$"),
    (LadderError, lambda: LadderPolicy(integrity_suspends_at=0), r"^integrity_suspends_at counts from 1$"),
    (LadderError, lambda: LadderPolicy(cap=F(2)), r"^floor and cap are fractions in \[0, 1\]$"),
    (LadderError, lambda: LadderPolicy(low_completion_floor=F(2)), r"^floor and cap are fractions"),
    (
        LadderError,
        lambda: LadderPolicy(low_completion_min_requests=-1),
        r"^low_completion_min_requests is never",
    ),
    (LadderError, lambda: LadderPolicy().duration(0), r"^levels start at 1, got 0$"),
    (LadderError, lambda: decide_penalty([], Offense.MANUAL, NOW, level=-2), r"^levels start at 1, got -2$"),
    (LadderError, lambda: cap_devices(-3), r"^fleet size -3 is negative$"),
    (KControlError, lambda: KPolicy(k_min=F(2), k_max=F(1)), r"^need 0 <= kMin \(2\) <= kMax \(1\)$"),
    (KControlError, lambda: KPolicy(deadband=F(8, 10)), r"^need 0 <= deadband \(4/5\) < target \(7/10\)"),
    (KControlError, lambda: KPolicy(rise_gain=F(0)), r"^gains are fractions of the k range per interval"),
    (KControlError, lambda: KPolicy(fall_gain=F(2)), r"^gains are fractions of the k range per interval"),
    (KControlError, lambda: KPolicy(smoothing=F(0)), r"^smoothing 0 is outside \(0, 1\]$"),
    (KControlError, lambda: KPolicy(interval_seconds=0), r"^the interval is at least one second$"),
    (KControlError, lambda: utilisation(-1, 2), r"^in-flight -1 and capacity 2 are never negative$"),
    (KControlError, lambda: k_step(KState(F(0)), F(-1)), r"^utilisation -1 is negative$"),
    (
        WindowError,
        lambda: DeviceKey.parse("a/b"),
        r"^device key 'a/b' is not namespace/pool/inferencenode/device$",
    ),
    (WindowError, lambda: CounterSnapshot(completions=-1), r"^counters are never negative: "),
    (WindowError, lambda: DeviceBucket.from_dict({"t": -1}), r"^bucket with negative counts: \{'t': -1\}$"),
    (WindowError, lambda: Window(hours=0), r"^a window holds at least one hour, got 0$"),
    (
        WindowError,
        lambda: merge_windows(Window(hours=2), Window(hours=3)),
        r"^cannot merge windows of 2 and 3 hours$",
    ),
    (ThroughputError, lambda: parse_benchmarks({}), r"^benchmark table needs a 'models' mapping$"),
    (
        ThroughputError,
        lambda: parse_benchmarks({"models": {"m": 1}}),
        r"^benchmarks of 'm' must map GPU keys",
    ),
    (
        ThroughputError,
        lambda: parse_benchmarks({"models": {"m": {"g": {}}}}),
        r"^m on g: tokensPerSecond missing or not a number$",
    ),
    (
        ThroughputError,
        lambda: parse_benchmarks({"models": {"m": {"g": {"tokensPerSecond": 0}}}}),
        r"^m on g: tokensPerSecond must be > 0, got 0$",
    ),
    (
        ThroughputError,
        lambda: parse_benchmarks({"models": {"m": {"g": {"tokensPerSecond": 1, "kind": "x"}}}}),
        r"^m on g: kind must be measured or estimate, got 'x'$",
    ),
    (ThroughputError, lambda: load_benchmarks("[]"), r"^benchmark table must be a YAML mapping$"),
    (ThroughputError, lambda: ThroughputPolicy(min_tokens=-1), r"^throughput minimums are never negative$"),
    (ThroughputError, lambda: ThroughputPolicy(reference_fraction=F(0)), r"^reference fraction 0 is outside"),
]


def cases(error: type[Exception]) -> list[tuple[Callable[[], Any], str]]:
    return [(call, message) for e, call, message in CASES if e is error]
