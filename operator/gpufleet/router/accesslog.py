"""Envoy access-log lines -> per-device counters (pure parsing and bookkeeping, no I/O).

Envoy writes one ``U`` line per upstream *attempt* (router filter ``upstream_log``) and one ``D``
line per client request (connection manager ``access_log``), formats in
:mod:`gpufleet.router.envoy`. Counting rules (each fact counted once):

* ``U`` line with an upstream host -> that device: ``requests`` +1, then either a completion
  (2xx, no failure flag) or exactly one failure cause (flags UF/URX: connect, UC/UR/LR: reset,
  UT/timeout: timeout, DC: client_cancel, else 5xx: http_5xx). A retried request therefore shows
  one failure on the first device and one completion on the second: "retried once, counted once".
* ``D`` line -> the final device's ttfb/latency histograms and tokens (from the response's
  ``usage``), ``retries`` +1 on the client request level when more than one attempt was made;
  without an upstream host it is a router-own answer: 503 (no eligible engine), 429, or a 4xx.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gpufleet.router.stats import (
    LATENCY_BUCKETS_SECONDS,
    DeviceKey,
    DeviceStats,
    FailureCause,
    Failures,
    Histogram,
    RouterStats,
    Tokens,
)

CONNECT_FLAGS = frozenset({"UF", "URX", "UH"})
RESET_FLAGS = frozenset({"UC", "UR", "LR", "UPE"})
TIMEOUT_FLAGS = frozenset({"UT", "SI"})
CANCEL_FLAGS = frozenset({"DC", "DT"})


@dataclass(frozen=True)
class LogLine:
    kind: str
    start: float
    upstream: str | None
    code: int
    flags: frozenset[str]
    ttfb_ms: int | None
    duration_ms: int | None
    attempts: int
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    path: str
    request_id: str = ""


def _opt_int(text: str) -> int | None:
    if not text or text == "-":
        return None
    try:
        return int(float(text))
    except ValueError:
        return None


def parse_line(line: str) -> LogLine | None:
    """One tab-separated line; None for anything that is not ours (or a torn last line)."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) != 13 or parts[0] not in ("D", "U"):
        return None
    try:
        start = float(parts[1])
        code = int(parts[3]) if parts[3] not in ("", "-") else 0
    except ValueError:
        return None
    flags = frozenset(f for f in parts[4].split(",") if f and f != "-")
    return LogLine(
        kind=parts[0],
        start=start,
        upstream=None if parts[2] in ("", "-") else parts[2],
        code=code,
        flags=flags,
        ttfb_ms=_opt_int(parts[5]),
        duration_ms=_opt_int(parts[6]),
        attempts=_opt_int(parts[7]) or 0,
        model=None if parts[8] in ("", "-") else parts[8],
        prompt_tokens=_opt_int(parts[9]) or 0,
        completion_tokens=_opt_int(parts[10]) or 0,
        path=parts[11],
        request_id="" if parts[12] == "-" else parts[12],
    )


def failure_cause(line: LogLine) -> FailureCause | None:
    """The one cause an attempt failed with, or None if it completed."""
    if line.flags & CANCEL_FLAGS:
        return "client_cancel"
    if line.flags & TIMEOUT_FLAGS:
        return "timeout"
    if line.flags & CONNECT_FLAGS:
        return "connect"
    if line.flags & RESET_FLAGS:
        return "reset"
    if line.code >= 500 or line.code == 0:
        return "http_5xx" if line.code >= 500 else "reset"
    return None


@dataclass
class _Hist:
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_SECONDS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        # non-cumulative per bucket here; made cumulative on export
        i = bisect.bisect_left(LATENCY_BUCKETS_SECONDS, seconds)
        if i < len(self.counts):
            self.counts[i] += 1

    def model(self) -> Histogram:
        cumulative: list[int] = []
        running = 0
        for c in self.counts:
            running += c
            cumulative.append(running)
        return Histogram(counts=tuple(cumulative), count=self.count, sum_seconds=self.total)

    @classmethod
    def from_model(cls, h: Histogram) -> _Hist:
        counts = [b - a for a, b in zip((0, *h.counts[:-1]), h.counts, strict=True)]
        return cls(counts=counts, count=h.count, total=h.sum_seconds)


@dataclass
class _Device:
    key: DeviceKey
    requests: int = 0
    completions: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    prompt: int = 0
    completion: int = 0
    ttfb: _Hist = field(default_factory=_Hist)
    latency: _Hist = field(default_factory=_Hist)
    window_requests: int = 0  # since the group's weights last changed (observed share)


Resolver = Callable[[str, str | None], DeviceKey | None]
"""(upstream "ip:port", model) -> the device it was at the time, or None if unknown."""


class StatsBook:
    """Mutable counters fed by log lines; snapshots are :class:`RouterStats` (the wire format)."""

    def __init__(self, router: str, since: datetime) -> None:
        self.router = router
        self.since = since
        self.devices: dict[DeviceKey, _Device] = {}
        self.router_429 = 0
        self.router_503 = 0
        self.router_4xx = 0
        self.client_requests = 0
        self.client_failures = 0
        self.retried_requests = 0
        self.reprogrammings = 0
        self.unattributed = 0
        self.intended: dict[DeviceKey, float] = {}
        # failed attempts waiting for their request's D line (to attribute a retry), bounded
        self._failed_attempts: dict[str, list[DeviceKey]] = {}
        # the final attempt and its request's D line, whichever arrived first (bounded)
        self._pending_ok: dict[str, DeviceKey] = {}
        self._d_seen: dict[str, bool] = {}

    def _device(self, key: DeviceKey) -> _Device:
        device = self.devices.get(key)
        if device is None:
            device = self.devices[key] = _Device(key=key)
        return device

    def feed(self, lines: Iterable[LogLine], resolve: Resolver) -> int:
        """Account for lines; returns how many were used."""
        used = 0
        for line in lines:
            used += 1
            if line.kind == "U":
                key = resolve(line.upstream, line.model) if line.upstream else None
                if key is None:
                    self.unattributed += 1
                    continue
                device = self._device(key)
                device.requests += 1
                device.window_requests += 1
                cause = failure_cause(line)
                if cause is None:
                    # A 2xx attempt is a completion unless its request's D line says the client
                    # went away mid-response (Envoy marks only the D line with DC); the two lines
                    # come in either order, so the one that comes second decides.
                    cancelled = self._d_seen.pop(line.request_id, None) if line.request_id else False
                    if cancelled is None:
                        self._remember(self._pending_ok, line.request_id, key)
                    elif cancelled:
                        device.failures["client_cancel"] = device.failures.get("client_cancel", 0) + 1
                    else:
                        device.completions += 1
                else:
                    device.failures[cause] = device.failures.get(cause, 0) + 1
                    if line.request_id:
                        self._failed_attempts.setdefault(line.request_id, []).append(key)
                        if len(self._failed_attempts) > 10_000:
                            self._failed_attempts.pop(next(iter(self._failed_attempts)))
                continue
            self.client_requests += 1
            self._settle(line)
            failed_attempts = self._failed_attempts.pop(line.request_id, []) if line.request_id else []
            if line.attempts > 1:
                self.retried_requests += 1
                for failed in failed_attempts[: line.attempts - 1]:
                    self._device(failed).retries += 1
            if line.upstream is None:
                if line.code == 503:
                    self.router_503 += 1
                elif line.code == 429:
                    self.router_429 += 1
                elif 400 <= line.code < 500:
                    self.router_4xx += 1
                if line.code >= 500:
                    self.client_failures += 1
                continue
            if line.code >= 500 or line.flags - {"-"}:
                self.client_failures += 1
            key = resolve(line.upstream, line.model)
            if key is None:
                self.unattributed += 1
                continue
            device = self._device(key)
            if line.ttfb_ms is not None:
                device.ttfb.observe(line.ttfb_ms / 1000)
            if line.duration_ms is not None:
                device.latency.observe(line.duration_ms / 1000)
            device.prompt += line.prompt_tokens
            device.completion += line.completion_tokens
        return used

    def _remember(self, table: dict[str, Any], request_id: str, value: Any) -> None:
        table[request_id] = value
        if len(table) > 10_000:  # a line whose partner never comes: count it as it stands
            old_id, old = next(iter(table.items()))
            del table[old_id]
            if table is self._pending_ok:
                self._device(old).completions += 1

    def _settle(self, line: LogLine) -> None:
        """A D line: decide its final attempt's outcome (completion or client cancel)."""
        if not line.request_id or line.upstream is None:
            return
        cancelled = bool(line.flags & CANCEL_FLAGS)
        key = self._pending_ok.pop(line.request_id, None)
        if key is None:
            self._remember(self._d_seen, line.request_id, cancelled)
            return
        device = self._device(key)
        if cancelled:
            device.failures["client_cancel"] = device.failures.get("client_cancel", 0) + 1
        else:
            device.completions += 1

    def reset_window(self, model: str) -> None:
        """Weights of a model changed: observed share starts counting afresh."""
        for device in self.devices.values():
            if device.key.model == model:
                device.window_requests = 0

    def observed_shares(self) -> dict[DeviceKey, float]:
        totals: dict[str, int] = {}
        for d in self.devices.values():
            totals[d.key.model] = totals.get(d.key.model, 0) + d.window_requests
        return {
            d.key: (d.window_requests / totals[d.key.model]) if totals[d.key.model] else 0.0
            for d in self.devices.values()
        }

    def snapshot(self, observed_at: datetime, k: str) -> RouterStats:
        observed = self.observed_shares()
        devices = []
        for key in sorted(
            self.devices, key=lambda k_: (k_.namespace, k_.pool, k_.inference_node, k_.device, k_.model)
        ):
            d = self.devices[key]
            devices.append(
                DeviceStats(
                    key=key,
                    requests=d.requests,
                    completions=d.completions,
                    failures=Failures(
                        **{
                            c: d.failures.get(c, 0)
                            for c in ("connect", "reset", "http_5xx", "timeout", "client_cancel")
                        }
                    ),
                    retries=d.retries,
                    tokens=Tokens(prompt=d.prompt, completion=d.completion),
                    ttfb=d.ttfb.model(),
                    latency=d.latency.model(),
                    intended_share=min(1.0, max(0.0, self.intended[key])) if key in self.intended else None,
                    observed_share=min(1.0, max(0.0, observed.get(key, 0.0))),
                )
            )
        return RouterStats(
            router=self.router,
            since=self.since,
            observed_at=observed_at,
            k=k,
            reprogrammings=self.reprogrammings,
            router_429=self.router_429,
            router_503=self.router_503,
            devices=tuple(devices),
        )

    def restore(self, snap: RouterStats) -> None:
        """Continue from a checkpoint (counters are monotonic across router restarts)."""
        self.since = snap.since
        self.reprogrammings = snap.reprogrammings
        self.router_429 = snap.router_429
        self.router_503 = snap.router_503
        for s in snap.devices:
            self.devices[s.key] = _Device(
                key=s.key,
                requests=s.requests,
                completions=s.completions,
                failures=s.failures.model_dump(),
                retries=s.retries,
                prompt=s.tokens.prompt,
                completion=s.tokens.completion,
                ttfb=_Hist.from_model(s.ttfb),
                latency=_Hist.from_model(s.latency),
            )
