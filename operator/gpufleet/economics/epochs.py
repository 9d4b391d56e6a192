"""Epoch boundaries: which epoch a timestamp belongs to, and how a counter delta is split across them.

An epoch is a half-open interval ``[start, end)`` of unix seconds. Epoch 1 starts at ``genesis``
and every epoch lasts ``length`` seconds. The default (genesis 2025-06-13T00:00:00Z, the day the
staking protocol went live, and 86,400 s) puts every boundary at 00:00 UTC, the announcement's
"distributed daily at midnight UTC"; tests and the demo use a short length (e.g. 60 s).

Counters are scraped, not pushed, so a delta between two scrapes covers the interval between the
two sample times. When that interval straddles a boundary the delta is split across the epochs in
proportion to the seconds of the interval inside each (integers, largest remainder, so nothing is
created or lost). A scrape is placed by the time the router *took* the sample, never by the time
the operator processed it: a late scrape lands in the epoch it describes.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpufleet.economics.errors import InvalidEpoch, InvalidInput

#: 2025-06-13T00:00:00Z: the staking protocol's launch day in the announcement.
DEFAULT_GENESIS = 1_749_772_800
DAY_SECONDS = 86_400


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer number of seconds, got {value!r}")
    return value


@dataclass(frozen=True)
class EpochClock:
    """Epoch numbering: epoch ``n`` (from 1) is ``[genesis + (n-1)*length, genesis + n*length)``."""

    genesis: int = DEFAULT_GENESIS
    length: int = DAY_SECONDS

    def __post_init__(self) -> None:
        _int(self.genesis, "epoch genesis")
        if _int(self.length, "epoch length") < 1:
            raise InvalidInput(f"epoch length must be at least 1 s, got {self.length}")

    def epoch_of(self, timestamp: int) -> int:
        """The epoch containing ``timestamp``; before genesis there is no epoch."""
        t = _int(timestamp, "timestamp")
        if t < self.genesis:
            raise InvalidEpoch(f"timestamp {t} is before the first epoch, which starts at {self.genesis}")
        return (t - self.genesis) // self.length + 1

    def start(self, epoch: int) -> int:
        """First second of ``epoch``."""
        return self.genesis + (self._check(epoch) - 1) * self.length

    def end(self, epoch: int) -> int:
        """First second after ``epoch`` (the next epoch's start)."""
        return self.genesis + self._check(epoch) * self.length

    def bounds(self, epoch: int) -> tuple[int, int]:
        return self.start(epoch), self.end(epoch)

    def last_closed(self, now: int, grace: int = 0) -> int:
        """The newest epoch whose end plus ``grace`` seconds is at or before ``now`` (0: none)."""
        if _int(grace, "grace") < 0:
            raise InvalidInput(f"grace must not be negative, got {grace}")
        t = _int(now, "now") - grace
        if t < self.genesis + self.length:
            return 0
        return (t - self.genesis) // self.length

    def _check(self, epoch: int) -> int:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise InvalidEpoch(f"epochs count from 1, got {epoch!r}")
        return epoch


def split_remainder(total: int, weights: list[int]) -> list[int]:
    """``total`` split proportionally to ``weights`` (floor, then largest remainder, earliest first)."""
    weight_sum = sum(weights)
    if total < 0 or any(w < 0 for w in weights) or weight_sum <= 0:
        raise InvalidInput(f"cannot split {total} by weights {weights}")
    parts = [total * w // weight_sum for w in weights]
    left = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
    for i in order[:left]:
        parts[i] += 1
    return parts


def apportion(clock: EpochClock, delta: int, since: int, until: int) -> dict[int, int]:
    """Split a counter increase observed over ``(since, until]`` across the epochs it covers.

    Each epoch gets a share proportional to the seconds of the interval inside it; the shares
    sum to ``delta``. A zero-length interval (two samples with the same timestamp) puts
    everything in the epoch of ``until``. Times before genesis count towards epoch 1.
    """
    if isinstance(delta, bool) or not isinstance(delta, int) or delta < 0:
        raise InvalidInput(f"a counter delta must be a non-negative integer, got {delta!r}")
    since, until = _int(since, "since"), _int(until, "until")
    if until < since:
        raise InvalidInput(f"interval ends ({until}) before it starts ({since})")
    since, until = max(since, clock.genesis), max(until, clock.genesis)
    if delta == 0:
        return {}
    if since == until:
        return {clock.epoch_of(until): delta}
    # (since, until] as seconds: the epoch of second s is epoch_of(s) for s in [since, until).
    first, last = clock.epoch_of(since), clock.epoch_of(until - 1)
    epochs = list(range(first, last + 1))
    overlaps = [min(until, clock.end(e)) - max(since, clock.start(e)) for e in epochs]
    parts = split_remainder(delta, overlaps)
    return {e: p for e, p in zip(epochs, parts, strict=True) if p}
