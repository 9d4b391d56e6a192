"""The router's per-device counters: one pydantic model, the wire format of its readers.

The reputation system (throughput, failure ladder), the epoch/points code and the simulator read
what the router observed per device. They all use :class:`DeviceStats` (one device serving one
model) inside a :class:`RouterStats` snapshot, so that "a failure" or "a completion" means the
same thing everywhere. Counters are monotonic totals since ``since`` (the router checkpoints
them, so a restart loses at most one scrape interval); a reader takes differences of two
snapshots with :meth:`DeviceStats.minus`.

Failure causes, counted once per client request (a retried request that then succeeded counts as
a completion and one ``retries``; it is the *engine* that failed, see ``attempt_failures``):

* ``connect``: the engine could not be connected to (refused, connect timeout);
* ``reset``: the connection was reset / closed before or during the response;
* ``http_5xx``: the engine answered 5xx;
* ``timeout``: first-byte or idle-stream timeout;
* ``client_cancel``: the client went away before the response ended (not the engine's fault);
* ``router_429`` / ``router_503``: the router itself refused (rate limit / no eligible engine or
  all at their concurrency cap); attributed to no device, so kept on :class:`RouterStats`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Histogram upper bounds in seconds (ttfb and total latency); +Inf is implicit (== count).
LATENCY_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)

SCHEMA_VERSION: Literal["gpufleet.io/router-stats/v1"] = "gpufleet.io/router-stats/v1"

FailureCause = Literal["connect", "reset", "http_5xx", "timeout", "client_cancel"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Histogram(_Model):
    """Cumulative histogram (Prometheus style): counts[i] = observations <= bounds[i]."""

    bounds: tuple[float, ...] = Field(default=LATENCY_BUCKETS_SECONDS, description="Upper bounds, seconds.")
    counts: tuple[int, ...] = Field(
        default=(0,) * len(LATENCY_BUCKETS_SECONDS), description="Cumulative counts per bound."
    )
    count: int = Field(default=0, ge=0, description="All observations (the +Inf bucket).")
    sum_seconds: float = Field(default=0.0, ge=0, description="Sum of observed values, seconds.")

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.bounds) != len(self.counts):
            raise ValueError("bounds and counts differ in length")
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError("bounds must increase")
        previous = 0
        for c in self.counts:
            if c < previous:
                raise ValueError("cumulative counts must not decrease")
            previous = c
        if self.counts and self.counts[-1] > self.count:
            raise ValueError("a bucket holds more than the total count")
        return self

    def observe(self, seconds: float) -> Histogram:
        """A new histogram with one more observation (for tests and the simulator)."""
        counts = tuple(c + (1 if seconds <= b else 0) for b, c in zip(self.bounds, self.counts, strict=True))
        return self.model_copy(
            update={"counts": counts, "count": self.count + 1, "sum_seconds": self.sum_seconds + seconds}
        )

    def minus(self, earlier: Histogram) -> Histogram:
        """Observations since ``earlier`` (same bounds); a counter reset yields ``self``."""
        if earlier.bounds != self.bounds or earlier.count > self.count:
            return self
        return Histogram(
            bounds=self.bounds,
            counts=tuple(max(0, a - b) for a, b in zip(self.counts, earlier.counts, strict=True)),
            count=self.count - earlier.count,
            sum_seconds=max(0.0, self.sum_seconds - earlier.sum_seconds),
        )


class Failures(_Model):
    """Failed client requests by cause (each request counted once, by its final outcome)."""

    connect: int = Field(default=0, ge=0)
    reset: int = Field(default=0, ge=0)
    http_5xx: int = Field(default=0, ge=0)
    timeout: int = Field(default=0, ge=0)
    client_cancel: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        return self.connect + self.reset + self.http_5xx + self.timeout + self.client_cancel

    @property
    def engine_faults(self) -> int:
        """Failures the engine is responsible for (client cancels excluded)."""
        return self.total - self.client_cancel


class Tokens(_Model):
    """Tokens of completed requests whose response carried ``usage``."""

    prompt: int = Field(default=0, ge=0)
    completion: int = Field(default=0, ge=0)


class DeviceKey(_Model):
    """Which device (and model) the counters belong to; the metrics' labels."""

    namespace: str
    pool: str
    inference_node: str
    device: int = Field(ge=0)
    model: str
    pod: str = Field(
        default="", description="Engine pod at the time (informational; a device outlives pods)."
    )

    def label_tuple(self) -> tuple[str, str, str, str]:
        """(pool, inferencenode, device, model): the Prometheus label values."""
        return (self.pool, self.inference_node, str(self.device), self.model)


class DeviceStats(_Model):
    """Monotonic counters of one device for one model, as observed by the router."""

    key: DeviceKey
    requests: int = Field(default=0, ge=0, description="Requests sent to this device (attempts included).")
    completions: int = Field(default=0, ge=0, description="Responses 2xx that ended normally.")
    failures: Failures = Field(default_factory=Failures)
    retries: int = Field(default=0, ge=0, description="Attempts on this device that were retried elsewhere.")
    tokens: Tokens = Field(default_factory=Tokens)
    ttfb: Histogram = Field(default_factory=Histogram, description="Time to first response byte.")
    latency: Histogram = Field(default_factory=Histogram, description="Total request latency.")
    intended_share: float | None = Field(default=None, ge=0, le=1, description="Share the weights intend.")
    observed_share: float | None = Field(
        default=None, ge=0, le=1, description="Share of the group's requests."
    )

    def minus(self, earlier: DeviceStats) -> DeviceStats:
        """Counters accrued since ``earlier``; if any counter went down (reset) returns ``self``."""
        went_down = earlier.requests > self.requests or earlier.completions > self.completions
        if earlier.key != self.key or went_down:
            return self
        f, g = self.failures, earlier.failures
        return self.model_copy(
            update={
                "requests": self.requests - earlier.requests,
                "completions": self.completions - earlier.completions,
                "failures": Failures(
                    connect=max(0, f.connect - g.connect),
                    reset=max(0, f.reset - g.reset),
                    http_5xx=max(0, f.http_5xx - g.http_5xx),
                    timeout=max(0, f.timeout - g.timeout),
                    client_cancel=max(0, f.client_cancel - g.client_cancel),
                ),
                "retries": max(0, self.retries - earlier.retries),
                "tokens": Tokens(
                    prompt=max(0, self.tokens.prompt - earlier.tokens.prompt),
                    completion=max(0, self.tokens.completion - earlier.tokens.completion),
                ),
                "ttfb": self.ttfb.minus(earlier.ttfb),
                "latency": self.latency.minus(earlier.latency),
            }
        )


class RouterStats(_Model):
    """One snapshot of everything a router replica counted (what it checkpoints and exports)."""

    schema_version: Literal["gpufleet.io/router-stats/v1"] = SCHEMA_VERSION
    router: str = Field(description="Router replica (pod name or host).")
    since: datetime = Field(description="When these monotonic counters started (survives restarts).")
    observed_at: datetime = Field(description="When this snapshot was taken.")
    k: str = Field(description="The k in use, as a decimal string (unit 1/INT).")
    reprogrammings: int = Field(default=0, ge=0, description="Endpoint updates written to the proxy.")
    router_429: int = Field(default=0, ge=0, description="Requests the router refused with 429.")
    router_503: int = Field(default=0, ge=0, description="Requests refused with 503 (no eligible engine).")
    devices: tuple[DeviceStats, ...] = Field(default=())

    def device(self, key: DeviceKey) -> DeviceStats | None:
        return next((d for d in self.devices if d.key == key), None)
