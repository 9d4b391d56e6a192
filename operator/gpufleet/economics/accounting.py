"""Per-epoch, per-pool work from the router's cumulative counters (pure; the controller persists it).

The router exports, per device, cumulative counters (completed requests, prompt and completion
tokens) that restart from zero when a router process restarts. This module turns a sequence of
timestamped samples into exact per-epoch tallies:

* a **delta** is the increase of a series since its previous sample; a counter that went *down*,
  or a new ``boot`` id of the router process, is a **reset**: the new value is all new work (what
  the router did between its last scrape and its restart is the only thing lost: at most one
  scrape interval);
* each delta covers the interval between the two samples' own timestamps and is split across the
  epochs it overlaps (:func:`gpufleet.economics.epochs.apportion`), so a late scrape lands in the
  epoch it describes;
* work that belongs to an epoch that is already closed is **carried** into the oldest open epoch
  (counted, and reported, never dropped); work from before accounting began is ignored;
* the whole state is a small JSON document (:meth:`AccountingState.to_json`): persisting it after
  every ingest means an operator restart loses nothing (the router's counters are cumulative, so
  the next scrape's delta covers the gap).

Pools are ``namespace/name`` strings; a series is identified by router replica, pool, node,
device and model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gpufleet.economics.epochs import EpochClock, apportion
from gpufleet.economics.errors import InvalidInput

STATE_VERSION = 1
#: Counter names, in the order a cursor stores them.
COUNTERS = ("completed", "promptTokens", "completionTokens")


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One device's counters on one router replica, for one model."""

    source: str
    pool: str
    node: str
    device: str
    model: str

    def text(self) -> str:
        return "|".join((self.source, self.pool, self.node, self.device, self.model))

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        parts = text.split("|")
        if len(parts) != 5:
            raise InvalidInput(f"series key {text!r} must have 5 '|'-separated parts")
        return cls(*parts)


@dataclass(frozen=True)
class SeriesSample:
    """Cumulative counter values of one series at the sample time."""

    key: SeriesKey
    completed: int
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("completed", "prompt_tokens", "completion_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(
                    f"counter {name} of {self.key.text()} must be a non-negative int, got {value!r}"
                )

    def values(self) -> tuple[int, int, int]:
        return (self.completed, self.prompt_tokens, self.completion_tokens)


@dataclass(frozen=True)
class Scrape:
    """One read of one router replica's stats: when it was taken, which process, every series."""

    source: str
    boot: str
    at: int
    series: tuple[SeriesSample, ...]
    #: When the router process started (unix s), if it says; bounds the interval after a reset.
    started_at: int | None = None


@dataclass(frozen=True)
class Cursor:
    """The last sample seen of a series."""

    boot: str
    at: int
    values: tuple[int, int, int]


@dataclass
class PoolWork:
    """Work one pool did in one epoch."""

    completed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Tokens (prompt + completion) per model, for points.
    tokens_by_model: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, model: str, completed: int, prompt: int, completion: int) -> None:
        self.completed += completed
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if prompt + completion:
            self.tokens_by_model[model] = self.tokens_by_model.get(model, 0) + prompt + completion

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "tokensByModel": dict(sorted(self.tokens_by_model.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PoolWork:
        return cls(
            completed=int(data.get("completed", 0)),
            prompt_tokens=int(data.get("promptTokens", 0)),
            completion_tokens=int(data.get("completionTokens", 0)),
            tokens_by_model={str(k): int(v) for k, v in dict(data.get("tokensByModel", {})).items()},
        )


@dataclass
class AccountingState:
    """Everything needed to keep counting after a restart: cursors, open tallies, what is closed.

    ``first_epoch`` is the first epoch counted (work apportioned to earlier epochs is ignored);
    ``closed_through`` the newest epoch already closed; ``open`` the tallies of epochs after it.
    """

    first_epoch: int
    closed_through: int
    cursors: dict[SeriesKey, Cursor] = field(default_factory=dict)
    open: dict[int, dict[str, PoolWork]] = field(default_factory=dict)
    #: Cumulative tokens per pool per model since accounting began (the input of compute points).
    lifetime_tokens: dict[str, dict[str, int]] = field(default_factory=dict)
    carried: int = 0
    ignored: int = 0
    resets: int = 0
    #: Jobs carried into, and router resets seen during, each open epoch (for its record).
    carried_by_epoch: dict[int, int] = field(default_factory=dict)
    resets_by_epoch: dict[int, int] = field(default_factory=dict)

    @classmethod
    def start(cls, clock: EpochClock, now: int, closed_through: int = 0) -> AccountingState:
        """Fresh state: count from the current epoch; nothing before it is ever closed."""
        current = clock.epoch_of(now)
        return cls(
            first_epoch=max(current, closed_through + 1), closed_through=max(closed_through, current - 1)
        )

    def tally(self, epoch: int) -> dict[str, PoolWork]:
        return self.open.get(epoch, {})

    def to_json(self) -> str:
        doc = {
            "version": STATE_VERSION,
            "firstEpoch": self.first_epoch,
            "closedThrough": self.closed_through,
            "carried": self.carried,
            "ignored": self.ignored,
            "resets": self.resets,
            "carriedByEpoch": {str(e): n for e, n in sorted(self.carried_by_epoch.items())},
            "resetsByEpoch": {str(e): n for e, n in sorted(self.resets_by_epoch.items())},
            "cursors": {
                k.text(): {"boot": c.boot, "at": c.at, "values": list(c.values)}
                for k, c in sorted(self.cursors.items())
            },
            "open": {
                str(e): {p: w.to_json() for p, w in sorted(pools.items())}
                for e, pools in sorted(self.open.items())
            },
            "lifetimeTokens": {p: dict(sorted(m.items())) for p, m in sorted(self.lifetime_tokens.items())},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AccountingState:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"accounting state is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise InvalidInput(f"accounting state version must be {STATE_VERSION}")
        cursors = {}
        for key, c in dict(doc.get("cursors", {})).items():
            values = tuple(int(v) for v in c["values"])
            if len(values) != len(COUNTERS):
                raise InvalidInput(f"cursor {key} must have {len(COUNTERS)} values")
            cursors[SeriesKey.parse(key)] = Cursor(
                str(c["boot"]), int(c["at"]), (values[0], values[1], values[2])
            )
        return cls(
            first_epoch=int(doc["firstEpoch"]),
            closed_through=int(doc["closedThrough"]),
            cursors=cursors,
            open={
                int(e): {p: PoolWork.from_json(w) for p, w in dict(pools).items()}
                for e, pools in dict(doc.get("open", {})).items()
            },
            lifetime_tokens={
                p: {m: int(v) for m, v in dict(models).items()}
                for p, models in dict(doc.get("lifetimeTokens", {})).items()
            },
            carried=int(doc.get("carried", 0)),
            ignored=int(doc.get("ignored", 0)),
            resets=int(doc.get("resets", 0)),
            carried_by_epoch={int(e): int(n) for e, n in dict(doc.get("carriedByEpoch", {})).items()},
            resets_by_epoch={int(e): int(n) for e, n in dict(doc.get("resetsByEpoch", {})).items()},
        )

    def copy(self) -> AccountingState:
        return AccountingState.from_json(self.to_json())


@dataclass(frozen=True)
class IngestReport:
    """What one scrape changed: work per epoch and pool, resets seen, work carried or ignored."""

    added: dict[int, dict[str, PoolWork]]
    resets: int
    carried: int
    ignored: int
    stale: int


def series_delta(
    prev: Cursor | None, boot: str, values: tuple[int, int, int]
) -> tuple[tuple[int, int, int], bool]:
    """The increase since ``prev`` and whether the series was reset (new boot or a counter fell)."""
    if prev is None:
        return values, False
    if prev.boot != boot or any(v < p for v, p in zip(values, prev.values, strict=True)):
        return values, True
    d0, d1, d2 = (v - p for v, p in zip(values, prev.values, strict=True))
    return (d0, d1, d2), False


def ingest(state: AccountingState, scrape: Scrape, clock: EpochClock) -> tuple[AccountingState, IngestReport]:
    """Apply one scrape to a copy of ``state``; the input state is not changed.

    A series seen for the first time counts from zero over the interval since its replica's
    previous sample (a new device, or a new replica whose start time is known); for a replica
    never seen before without a start time only a baseline is recorded, since its history
    cannot be placed in time. A scrape older than a series' cursor is stale and skipped.
    """
    new = state.copy()
    added: dict[int, dict[str, PoolWork]] = {}
    resets = carried = ignored = stale = 0
    source_last = max(
        (c.at for k, c in state.cursors.items() if k.source == scrape.source and c.boot == scrape.boot),
        default=None,
    )
    for sample in scrape.series:
        key = sample.key
        if key.source != scrape.source:
            raise InvalidInput(f"series {key.text()} is not from source {scrape.source}")
        prev = state.cursors.get(key)
        if prev is not None and prev.boot == scrape.boot and scrape.at < prev.at:
            stale += 1
            continue
        delta, was_reset = series_delta(prev, scrape.boot, sample.values())
        if prev is None:
            since = source_last if source_last is not None else scrape.started_at
            if since is None:
                delta = (0, 0, 0)
                since = scrape.at
        elif was_reset:
            resets += 1
            since = prev.at if scrape.started_at is None else max(prev.at, min(scrape.started_at, scrape.at))
        else:
            since = prev.at
        since = min(since, scrape.at)
        new.cursors[key] = Cursor(scrape.boot, scrape.at, sample.values())
        if not any(delta):
            continue
        parts = [apportion(clock, d, since, scrape.at) for d in delta]
        epochs = sorted(set().union(*parts))
        for epoch in epochs:
            completed, prompt, completion = (p.get(epoch, 0) for p in parts)
            target = epoch
            if epoch < new.first_epoch:
                ignored += completed
                continue
            if epoch <= new.closed_through:
                target = new.closed_through + 1
                carried += completed
                new.carried_by_epoch[target] = new.carried_by_epoch.get(target, 0) + completed
            new.open.setdefault(target, {}).setdefault(key.pool, PoolWork()).add(
                key.model, completed, prompt, completion
            )
            added.setdefault(target, {}).setdefault(key.pool, PoolWork()).add(
                key.model, completed, prompt, completion
            )
            if prompt + completion:
                models = new.lifetime_tokens.setdefault(key.pool, {})
                models[key.model] = models.get(key.model, 0) + prompt + completion
    new.resets += resets
    if resets:
        at_epoch = max(clock.epoch_of(max(scrape.at, clock.genesis)), new.closed_through + 1, new.first_epoch)
        new.resets_by_epoch[at_epoch] = new.resets_by_epoch.get(at_epoch, 0) + resets
    new.carried += carried
    new.ignored += ignored
    return new, IngestReport(added, resets, carried, ignored, stale)


def epochs_to_close(state: AccountingState, clock: EpochClock, now: int, grace: int) -> list[int]:
    """Epochs that ended at least ``grace`` seconds ago and are not closed yet, oldest first."""
    last = clock.last_closed(now, grace)
    return list(range(state.closed_through + 1, last + 1))


def mark_closed(state: AccountingState, epoch: int) -> AccountingState:
    """A copy of ``state`` with ``epoch`` closed (epochs close strictly in order)."""
    if epoch != state.closed_through + 1:
        raise InvalidInput(f"the next epoch to close is {state.closed_through + 1}, not {epoch}")
    new = state.copy()
    new.open.pop(epoch, None)
    new.carried_by_epoch.pop(epoch, None)
    new.resets_by_epoch.pop(epoch, None)
    new.closed_through = epoch
    return new


def forget_sources(state: AccountingState, keep: Iterable[str]) -> AccountingState:
    """Drop the cursors of router replicas that no longer exist (keeps the state small)."""
    wanted = set(keep)
    return replace(state.copy(), cursors={k: c for k, c in state.cursors.items() if k.source in wanted})


def close_recorded(state: AccountingState, epoch: int, recorded: Mapping[str, int]) -> AccountingState:
    """Close ``epoch`` whose Epoch object already exists with ``recorded`` completed jobs per pool.

    Work counted for the epoch beyond what the record holds (scraped after the record was written,
    before the operator noted the close: a restart in between) is carried into the next epoch, so
    adopting a record loses nothing and counts nothing twice.
    """
    new = mark_closed(state, epoch)
    for pool, work in state.tally(epoch).items():
        extra = work.completed - recorded.get(pool, 0)
        if extra > 0:
            new.open.setdefault(epoch + 1, {}).setdefault(pool, PoolWork()).add("", extra, 0, 0)
            new.carried += extra
            new.carried_by_epoch[epoch + 1] = new.carried_by_epoch.get(epoch + 1, 0) + extra
    return new
