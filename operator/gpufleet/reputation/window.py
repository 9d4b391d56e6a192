"""Rolling window of per-device request outcomes, in hourly buckets, fed from cumulative counters.

The router exports *cumulative* counters per device (requests completed, failures by cause,
tokens, decode time). This module turns successive scrapes into deltas and adds them to the bucket
of the hour the scrape happened in. Counters reset when a router process restarts: a scrape whose
``generation`` (the router process's start id) changed, or in which any counter went down, is a
reset, and its values are then the delta since the restart (Prometheus' ``increase()`` rule). The
first snapshot ever seen from a source only sets the baseline, so a restarted *operator* that lost
its baselines never double counts; the window persists its baselines (``to_dict``) for that
reason, which bounds the loss on any restart to one scrape interval.

Failures are split at intake into *attributable* to the operator (engine 5xx, connection refused
or reset by the engine, timeouts) and *not attributable* (client cancels, the router's own
429/503). Attributable failures are kept per engine release the device was running or updating
to, so failures under a release that is later rolled back or halted can be excused when scores
are computed (the release's fault, not the operator's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

SECONDS_PER_HOUR = 3600
#: Default window: 3 days of hourly buckets.
DEFAULT_WINDOW_HOURS = 72
#: Key under which failures with no known release are kept.
NO_RELEASE = ""


class FailureCause(StrEnum):
    """Why one routed request failed (the router's ``cause`` label)."""

    ENGINE_5XX = "engine_5xx"
    CONNECT = "connect"
    RESET = "reset"
    TIMEOUT = "timeout"
    CLIENT_CANCEL = "client_cancel"
    ROUTER_REJECTED = "router_rejected"


#: Causes the operator answers for; everything else is not counted against it.
ATTRIBUTABLE_CAUSES: frozenset[FailureCause] = frozenset(
    {FailureCause.ENGINE_5XX, FailureCause.CONNECT, FailureCause.RESET, FailureCause.TIMEOUT}
)


def is_attributable(cause: FailureCause) -> bool:
    """True for failures the operator's engine caused (5xx, refused/reset connection, timeout)."""
    return cause in ATTRIBUTABLE_CAUSES


class WindowError(ValueError):
    """Inputs a window cannot hold (negative counters, a non-positive window length)."""


@dataclass(frozen=True)
class DeviceKey:
    """One routed device: namespace, pool, InferenceNode and device index (the router's labels)."""

    namespace: str
    pool: str
    inferencenode: str
    device: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pool}/{self.inferencenode}/{self.device}"

    @classmethod
    def parse(cls, text: str) -> DeviceKey:
        """Inverse of ``str()``."""
        parts = text.split("/")
        if len(parts) != 4 or not all(parts):
            raise WindowError(f"device key {text!r} is not namespace/pool/inferencenode/device")
        return cls(*parts)

    @property
    def pool_key(self) -> tuple[str, str]:
        return (self.namespace, self.pool)


@dataclass(frozen=True)
class CounterSnapshot:
    """Cumulative counters of one device as one router process reports them."""

    completions: int = 0
    failures: Mapping[FailureCause, int] = field(default_factory=dict)
    completion_tokens: int = 0
    #: Sum over completed requests of (total latency - time to first token), in milliseconds.
    decode_ms: int = 0
    #: The router process's identity (start time or uid); a change means the counters restarted.
    generation: str = ""

    def __post_init__(self) -> None:
        values = [self.completions, self.completion_tokens, self.decode_ms, *self.failures.values()]
        if any(v < 0 for v in values):
            raise WindowError(f"counters are never negative: {self}")

    def failure(self, cause: FailureCause) -> int:
        return self.failures.get(cause, 0)

    def is_reset_of(self, previous: CounterSnapshot) -> bool:
        """True when these counters restarted since ``previous`` (new process, or any went down)."""
        if self.generation != previous.generation:
            return True
        if self.completions < previous.completions:
            return True
        if self.completion_tokens < previous.completion_tokens or self.decode_ms < previous.decode_ms:
            return True
        return any(self.failure(c) < previous.failure(c) for c in FailureCause)


@dataclass(frozen=True)
class Delta:
    """What one device did between two scrapes (already attributed)."""

    completed: int = 0
    attributable: int = 0
    not_attributable: int = 0
    tokens: int = 0
    decode_ms: int = 0


def counter_delta(previous: CounterSnapshot | None, current: CounterSnapshot) -> Delta:
    """The increase from ``previous`` to ``current``; a reset counts ``current`` whole; no baseline -> 0."""
    if previous is None:
        return Delta()
    base = CounterSnapshot() if current.is_reset_of(previous) else previous
    attributable = sum(current.failure(c) - base.failure(c) for c in FailureCause if is_attributable(c))
    other = sum(current.failure(c) - base.failure(c) for c in FailureCause if not is_attributable(c))
    return Delta(
        completed=current.completions - base.completions,
        attributable=attributable,
        not_attributable=other,
        tokens=current.completion_tokens - base.completion_tokens,
        decode_ms=current.decode_ms - base.decode_ms,
    )


@dataclass(frozen=True)
class DeviceBucket:
    """One device's outcomes in one hour. Attributable failures are kept per release."""

    completed: int = 0
    failed_by_release: Mapping[str, int] = field(default_factory=dict)
    not_attributable: int = 0
    tokens: int = 0
    decode_ms: int = 0

    def attributable(self, excused_releases: frozenset[str] = frozenset()) -> int:
        """Attributable failures, minus those under releases that were rolled back or halted."""
        return sum(n for rel, n in self.failed_by_release.items() if rel not in excused_releases)

    def excused(self, excused_releases: frozenset[str]) -> int:
        return sum(n for rel, n in self.failed_by_release.items() if rel in excused_releases)

    @property
    def requests(self) -> int:
        """Every finished request: completed plus every failure."""
        return self.completed + sum(self.failed_by_release.values()) + self.not_attributable

    def add(self, delta: Delta, release: str) -> DeviceBucket:
        failed = dict(self.failed_by_release)
        if delta.attributable:
            failed[release] = failed.get(release, 0) + delta.attributable
        return DeviceBucket(
            completed=self.completed + delta.completed,
            failed_by_release=failed,
            not_attributable=self.not_attributable + delta.not_attributable,
            tokens=self.tokens + delta.tokens,
            decode_ms=self.decode_ms + delta.decode_ms,
        )

    def merge(self, other: DeviceBucket) -> DeviceBucket:
        failed = dict(self.failed_by_release)
        for rel, n in other.failed_by_release.items():
            failed[rel] = failed.get(rel, 0) + n
        return DeviceBucket(
            completed=self.completed + other.completed,
            failed_by_release=failed,
            not_attributable=self.not_attributable + other.not_attributable,
            tokens=self.tokens + other.tokens,
            decode_ms=self.decode_ms + other.decode_ms,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "c": self.completed,
            "f": dict(sorted(self.failed_by_release.items())),
            "n": self.not_attributable,
            "t": self.tokens,
            "d": self.decode_ms,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeviceBucket:
        bucket = cls(
            completed=int(raw.get("c", 0)),
            failed_by_release={str(k): int(v) for k, v in dict(raw.get("f", {})).items()},
            not_attributable=int(raw.get("n", 0)),
            tokens=int(raw.get("t", 0)),
            decode_ms=int(raw.get("d", 0)),
        )
        values = [
            bucket.completed,
            bucket.not_attributable,
            bucket.tokens,
            bucket.decode_ms,
            *bucket.failed_by_release.values(),
        ]
        if any(v < 0 for v in values):
            raise WindowError(f"bucket with negative counts: {dict(raw)}")
        return bucket


EMPTY_BUCKET = DeviceBucket()


def hour_of(unix_seconds: int) -> int:
    """Index of the hourly bucket a moment falls in (hours since the epoch, UTC)."""
    return unix_seconds // SECONDS_PER_HOUR


@dataclass(frozen=True)
class Observation:
    """One device's cumulative counters from one scrape of one router replica."""

    source: str
    device: DeviceKey
    counters: CounterSnapshot
    #: The engine release the device runs or is being updated to when scraped ("" unknown).
    release: str = NO_RELEASE
    #: One source may report a device several times (once per model): each has its own baseline.
    stream: str = ""

    @property
    def baseline_key(self) -> str:
        return f"{self.source}|{self.stream}" if self.stream else self.source


@dataclass(frozen=True)
class Window:
    """Hourly buckets of per-device outcomes plus the counter baselines they were derived from."""

    hours: int = DEFAULT_WINDOW_HOURS
    buckets: Mapping[int, Mapping[DeviceKey, DeviceBucket]] = field(default_factory=dict)
    #: (source, device) -> (last cumulative snapshot, hour it was seen).
    baselines: Mapping[tuple[str, DeviceKey], tuple[CounterSnapshot, int]] = field(default_factory=dict)
    #: Last hour the window was advanced to (None before the first observation).
    current_hour: int | None = None
    #: source -> (generation, hour last seen): sources whose every device the window has followed.
    sources: Mapping[str, tuple[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hours < 1:
            raise WindowError(f"a window holds at least one hour, got {self.hours}")

    def first_hour(self, now_hour: int) -> int:
        """Oldest hour still inside the window ending at ``now_hour`` (inclusive)."""
        return now_hour - self.hours + 1

    def devices(self) -> frozenset[DeviceKey]:
        return frozenset(d for per in self.buckets.values() for d in per)

    def device_buckets(self, device: DeviceKey) -> list[DeviceBucket]:
        """The device's buckets, oldest first."""
        return [per[device] for _, per in sorted(self.buckets.items()) if device in per]

    def total(self, devices: Iterable[DeviceKey] | None = None) -> DeviceBucket:
        """Sum over the whole window, of the given devices (all when None)."""
        wanted = None if devices is None else frozenset(devices)
        out = EMPTY_BUCKET
        for per in self.buckets.values():
            for dev, bucket in per.items():
                if wanted is None or dev in wanted:
                    out = out.merge(bucket)
        return out

    def hour_total(self, hour: int, devices: Iterable[DeviceKey] | None = None) -> DeviceBucket:
        wanted = None if devices is None else frozenset(devices)
        out = EMPTY_BUCKET
        for dev, bucket in self.buckets.get(hour, {}).items():
            if wanted is None or dev in wanted:
                out = out.merge(bucket)
        return out

    def for_pool(self, namespace: str, pool: str) -> Window:
        """The same window restricted to one pool's devices (baselines included)."""
        key = (namespace, pool)
        return Window(
            hours=self.hours,
            buckets={
                h: {d: b for d, b in per.items() if d.pool_key == key}
                for h, per in self.buckets.items()
                if any(d.pool_key == key for d in per)
            },
            baselines={k: v for k, v in self.baselines.items() if k[1].pool_key == key},
            current_hour=self.current_hour,
            sources=self.sources,
        )

    # ---- persistence ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (a ConfigMap value); ``from_dict(to_dict(w)) == w``."""
        return {
            "hours": self.hours,
            "currentHour": self.current_hour,
            "buckets": {
                str(h): {str(d): b.to_dict() for d, b in sorted(per.items(), key=lambda kv: str(kv[0]))}
                for h, per in sorted(self.buckets.items())
            },
            "sources": {src: [gen, hour] for src, (gen, hour) in sorted(self.sources.items())},
            "baselines": [
                {
                    "source": src,
                    "device": str(dev),
                    "hour": hour,
                    "generation": snap.generation,
                    "completions": snap.completions,
                    "failures": {str(c): n for c, n in sorted(snap.failures.items()) if n},
                    "tokens": snap.completion_tokens,
                    "decodeMs": snap.decode_ms,
                }
                for (src, dev), (snap, hour) in sorted(
                    self.baselines.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))
                )
            ],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Window:
        buckets = {
            int(h): {DeviceKey.parse(d): DeviceBucket.from_dict(b) for d, b in dict(per).items()}
            for h, per in dict(raw.get("buckets", {})).items()
        }
        baselines: dict[tuple[str, DeviceKey], tuple[CounterSnapshot, int]] = {}
        for entry in raw.get("baselines", []):
            snap = CounterSnapshot(
                completions=int(entry.get("completions", 0)),
                failures={FailureCause(c): int(n) for c, n in dict(entry.get("failures", {})).items()},
                completion_tokens=int(entry.get("tokens", 0)),
                decode_ms=int(entry.get("decodeMs", 0)),
                generation=str(entry.get("generation", "")),
            )
            key = (str(entry["source"]), DeviceKey.parse(str(entry["device"])))
            baselines[key] = (snap, int(entry["hour"]))
        current = raw.get("currentHour")
        sources = {str(k): (str(v[0]), int(v[1])) for k, v in dict(raw.get("sources", {})).items()}
        return cls(
            sources=sources,
            hours=int(raw.get("hours", DEFAULT_WINDOW_HOURS)),
            buckets=buckets,
            baselines=baselines,
            current_hour=None if current is None else int(current),
        )


def _pruned(window: Window, now_hour: int) -> Window:
    """The window at ``now_hour``: buckets, baselines and sources older than its first hour dropped."""
    first = window.first_hour(now_hour)
    return replace(
        window,
        buckets={h: per for h, per in window.buckets.items() if first <= h <= now_hour},
        baselines={k: v for k, v in window.baselines.items() if v[1] >= first},
        current_hour=now_hour,
        sources={k: v for k, v in window.sources.items() if v[1] >= first},
    )


def advance(window: Window, now: int) -> Window:
    """Roll the window forward to the hour of ``now``: buckets and baselines older than it drop out.

    Time never runs backwards for a window: a ``now`` before its current hour changes nothing.
    """
    now_hour = hour_of(now)
    if window.current_hour is not None and now_hour <= window.current_hour:
        return window
    return _pruned(window, now_hour)


def observe(
    window: Window,
    observations: Iterable[Observation],
    now: int,
    sources: Mapping[str, str] | None = None,
) -> Window:
    """Add one scrape's observations, taken at ``now`` (unix seconds), to the window.

    Each delta goes to the bucket of ``now``'s hour; a reset counts the new counters whole; the
    first snapshot of a (source, device) only sets its baseline, unless the window already follows
    that source (same generation): then the device is new to the source and counts whole.
    ``sources`` (source -> generation) names every source read in this scrape, also those that
    reported no device yet; sources of the observations are added to it.
    """
    window = advance(window, now)
    now_hour = hour_of(now)
    if window.current_hour is not None and now_hour < window.current_hour:
        now_hour = window.current_hour  # a late scrape lands in the newest bucket, never a closed one
    buckets = {h: dict(per) for h, per in window.buckets.items()}
    baselines = dict(window.baselines)
    known = {(src, gen) for src, (gen, _) in window.sources.items()}
    seen = dict(sources or {})
    for obs in observations:
        seen.setdefault(obs.source, obs.counters.generation)
        key = (obs.baseline_key, obs.device)
        previous = baselines.get(key)
        base = previous[0] if previous else None
        if base is None and (obs.source, obs.counters.generation) in known:
            # A source we already follow reports a device for the first time: it counted from 0.
            base = CounterSnapshot()
        delta = counter_delta(base, obs.counters)
        baselines[key] = (obs.counters, now_hour)
        if delta == Delta():
            continue
        per = buckets.setdefault(now_hour, {})
        per[obs.device] = per.get(obs.device, EMPTY_BUCKET).add(delta, obs.release)
    merged_sources = dict(window.sources)
    merged_sources.update({src: (gen, now_hour) for src, gen in seen.items()})
    return Window(
        hours=window.hours,
        buckets=buckets,
        baselines=baselines,
        current_hour=window.current_hour,
        sources=merged_sources,
    )


def merge_windows(a: Window, b: Window) -> Window:
    """Bucket-wise sum of two windows over disjoint traffic (e.g. two router replicas' windows)."""
    if a.hours != b.hours:
        raise WindowError(f"cannot merge windows of {a.hours} and {b.hours} hours")
    buckets: dict[int, dict[DeviceKey, DeviceBucket]] = {h: dict(per) for h, per in a.buckets.items()}
    for h, per in b.buckets.items():
        into = buckets.setdefault(h, {})
        for dev, bucket in per.items():
            into[dev] = into.get(dev, EMPTY_BUCKET).merge(bucket)
    hours = [h for h in (a.current_hour, b.current_hour) if h is not None]
    merged = Window(
        hours=a.hours,
        buckets=buckets,
        baselines={**a.baselines, **b.baselines},
        current_hour=None,
        sources={**a.sources, **b.sources},
    )
    return _pruned(merged, max(hours)) if hours else merged
