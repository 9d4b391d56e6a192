"""Throughput score of a device: its observed decode speed against the benchmark of its
(model, GPU product).

    observed  = decode tokens / decode seconds       (per stream: Σ tokens / Σ (latency - TTFT))
    reference = benchmark tok/s * reference fraction (default 1/2)
    score     = min(1, observed / reference)

Why per stream: it is what the router can measure from every request (tokens from ``usage``,
latency minus time to first byte), what a user experiences, and what public single-stream
benchmarks report. An engine that batches many sequences decodes each one slower than a
single-stream benchmark, so a device "meets the benchmark" at ``reference_fraction`` of it
(documented estimate; a network can set its own table and fraction).

The number only means something while the device is busy enough: hours in which the device
completed fewer than ``min_bucket_requests`` requests are left out, and until the counted hours
hold ``min_requests`` requests and ``min_tokens`` tokens the score is 1 with the note
``InsufficientLoad``. A device whose (model, GPU) has no benchmark scores 1 with ``NoBenchmark``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction
from importlib import resources
from typing import Any

import yaml

from gpufleet.reputation.window import DeviceBucket

ONE = Fraction(1)
MS_PER_SECOND = 1000


class ThroughputError(ValueError):
    """A benchmark table or policy that cannot be used."""


class ThroughputNote(StrEnum):
    """How a device's throughput score was obtained."""

    MEASURED = "Measured"
    NO_BENCHMARK = "NoBenchmark"
    INSUFFICIENT_LOAD = "InsufficientLoad"


@dataclass(frozen=True)
class Benchmark:
    """Decode speed one stream of ``model`` reaches on one ``gpu`` (catalog key)."""

    model: str
    gpu: str
    decode_tokens_per_second: Fraction
    kind: str  # "measured" (a public measurement, cited) or "estimate" (derived, explained)
    source: str


@dataclass(frozen=True)
class BenchmarkTable:
    """(model, gpu) -> benchmark; a network's own table overrides entries by key."""

    entries: Mapping[tuple[str, str], Benchmark]

    def lookup(self, model: str, gpu: str) -> Benchmark | None:
        return self.entries.get((model, gpu))

    def override(self, other: BenchmarkTable) -> BenchmarkTable:
        return BenchmarkTable({**self.entries, **other.entries})

    def __len__(self) -> int:
        return len(self.entries)


def parse_benchmarks(doc: Mapping[str, Any]) -> BenchmarkTable:
    """The ``benchmarks.yaml`` shape: ``models: {model: {gpu: {tokensPerSecond, kind, source}}}``."""
    entries: dict[tuple[str, str], Benchmark] = {}
    models = doc.get("models")
    if not isinstance(models, Mapping):
        raise ThroughputError("benchmark table needs a 'models' mapping")
    for model, gpus in models.items():
        if not isinstance(gpus, Mapping):
            raise ThroughputError(f"benchmarks of {model!r} must map GPU keys to entries")
        for gpu, entry in gpus.items():
            try:
                tps = Fraction(Decimal(str(entry["tokensPerSecond"])))
            except (KeyError, TypeError, InvalidOperation) as exc:
                raise ThroughputError(f"{model} on {gpu}: tokensPerSecond missing or not a number") from exc
            if tps <= 0:
                raise ThroughputError(f"{model} on {gpu}: tokensPerSecond must be > 0, got {tps}")
            kind = str(entry.get("kind", "estimate"))
            if kind not in ("measured", "estimate"):
                raise ThroughputError(f"{model} on {gpu}: kind must be measured or estimate, got {kind!r}")
            source = str(entry.get("source", ""))
            entries[(str(model), str(gpu))] = Benchmark(str(model), str(gpu), tps, kind, source)
    return BenchmarkTable(entries)


def load_benchmarks(text: str | None = None) -> BenchmarkTable:
    """The bundled table (``gpufleet/hardware/benchmarks.yaml``), or a table given as YAML text."""
    if text is None:
        text = resources.files("gpufleet.hardware").joinpath("benchmarks.yaml").read_text()
    doc = yaml.safe_load(text)
    if not isinstance(doc, Mapping):
        raise ThroughputError("benchmark table must be a YAML mapping")
    return parse_benchmarks(doc)


@dataclass(frozen=True)
class ThroughputPolicy:
    """When a device counts as busy enough, and what meets the benchmark."""

    min_bucket_requests: int = 10
    min_requests: int = 100
    min_tokens: int = 10_000
    reference_fraction: Fraction = Fraction(1, 2)

    def __post_init__(self) -> None:
        if min(self.min_bucket_requests, self.min_requests, self.min_tokens) < 0:
            raise ThroughputError("throughput minimums are never negative")
        if not 0 < self.reference_fraction <= 1:
            raise ThroughputError(f"reference fraction {self.reference_fraction} is outside (0, 1]")


DEFAULT_THROUGHPUT = ThroughputPolicy()


@dataclass(frozen=True)
class ThroughputScore:
    """One device's throughput part of its reputation."""

    score: Fraction
    note: ThroughputNote
    observed_tokens_per_second: Fraction | None
    benchmark: Benchmark | None
    requests: int
    tokens: int


def observed_speed(buckets: Iterable[DeviceBucket], policy: ThroughputPolicy = DEFAULT_THROUGHPUT) -> tuple[
    int, int, int
]:
    """(requests, tokens, decode ms) summed over the hours the device was busy enough."""
    requests = tokens = decode_ms = 0
    for bucket in buckets:
        if bucket.completed >= policy.min_bucket_requests:
            requests += bucket.completed
            tokens += bucket.tokens
            decode_ms += bucket.decode_ms
    return requests, tokens, decode_ms


def throughput_score(
    buckets: Iterable[DeviceBucket],
    benchmark: Benchmark | None,
    policy: ThroughputPolicy = DEFAULT_THROUGHPUT,
) -> ThroughputScore:
    """min(1, observed / (benchmark * reference fraction)), or 1 with a note saying why not measured."""
    requests, tokens, decode_ms = observed_speed(buckets, policy)
    busy = requests >= policy.min_requests and tokens >= policy.min_tokens
    observed = Fraction(tokens * MS_PER_SECOND, decode_ms) if decode_ms > 0 else None
    if benchmark is None:
        return ThroughputScore(ONE, ThroughputNote.NO_BENCHMARK, observed, None, requests, tokens)
    if not busy or observed is None:
        return ThroughputScore(ONE, ThroughputNote.INSUFFICIENT_LOAD, observed, benchmark, requests, tokens)
    reference = benchmark.decode_tokens_per_second * policy.reference_fraction
    return ThroughputScore(
        min(ONE, observed / reference), ThroughputNote.MEASURED, observed, benchmark, requests, tokens
    )
