"""Off-chain $INT points: accrued as work completes, plus bonuses for non-compute contributions.

Points are integers in micro-points (six decimals) so that fractional model weights stay exact.
Compute points for a job are ``generated tokens * weight of the model``; bonus points are granted
by hand with a reason (guides, community help). Everything is kept per operator, timestamped, so
totals can be asked "as of" any moment.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

from gpufleet.economics.errors import InvalidInput
from gpufleet.economics.units import format_amount, parse_amount

POINT_DECIMALS = 6
MICRO = 10**POINT_DECIMALS


def parse_points(value: object, *, what: str = "points") -> int:
    """Points (decimal string or int) to micro-points."""
    return parse_amount(value, POINT_DECIMALS, what=what)


def format_points(micro: int) -> str:
    return format_amount(micro, POINT_DECIMALS)


@dataclass(frozen=True)
class PointsEvent:
    at: int
    operator: str
    kind: str  # "compute" or "bonus"
    micro_points: int
    model: str | None = None
    tokens: int = 0
    reason: str = ""


@dataclass
class PointsLedger:
    """Per-operator points with per-model weights (micro-points per generated token)."""

    model_weights: dict[str, int] = field(default_factory=dict)
    default_weight: int | None = None
    events: list[PointsEvent] = field(default_factory=list)
    _totals: dict[str, int] = field(default_factory=dict)
    _times: dict[str, list[int]] = field(default_factory=dict)
    _running: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def from_weights(cls, weights: Mapping[str, object], default: object | None = None) -> PointsLedger:
        """Weights as decimal strings per model (``{"llama-3.1-8b": "1", "deepseek-r1": "2.5"}``)."""
        parsed = {model: parse_points(w, what=f"weight of {model}") for model, w in weights.items()}
        return cls(
            model_weights=parsed,
            default_weight=None if default is None else parse_points(default, what="default weight"),
        )

    def weight(self, model: str) -> int:
        if model in self.model_weights:
            return self.model_weights[model]
        if self.default_weight is not None:
            return self.default_weight
        raise InvalidInput(
            f"no points weight for model {model!r}; known models: {sorted(self.model_weights)} "
            "(set a default weight to accept any model)"
        )

    def _append(self, event: PointsEvent) -> PointsEvent:
        times = self._times.setdefault(event.operator, [])
        if times and event.at < times[-1]:
            raise InvalidInput(
                f"points for {event.operator} must be recorded in time order: {event.at} < {times[-1]}"
            )
        total = self._totals.get(event.operator, 0) + event.micro_points
        self._totals[event.operator] = total
        times.append(event.at)
        self._running.setdefault(event.operator, []).append(total)
        self.events.append(event)
        return event

    def record_work(self, operator: str, model: str, generated_tokens: int, at: int) -> PointsEvent:
        """Compute points for completed work: tokens generated times the model's weight."""
        if (
            isinstance(generated_tokens, bool)
            or not isinstance(generated_tokens, int)
            or generated_tokens < 0
        ):
            raise InvalidInput(f"generated tokens must be a non-negative integer, got {generated_tokens!r}")
        micro = generated_tokens * self.weight(model)
        return self._append(PointsEvent(at, operator, "compute", micro, model=model, tokens=generated_tokens))

    def award_bonus(self, operator: str, points: object, reason: str, at: int) -> PointsEvent:
        """Bonus points for a non-compute contribution; a reason is required."""
        if not reason.strip():
            raise InvalidInput("a bonus needs a reason (what the contribution was)")
        micro = parse_points(points, what="bonus points")
        return self._append(PointsEvent(at, operator, "bonus", micro, reason=reason))

    def total(self, operator: str, as_of: int | None = None) -> int:
        """Micro-points of ``operator`` (up to and including ``as_of`` if given)."""
        if as_of is None:
            return self._totals.get(operator, 0)
        times = self._times.get(operator, [])
        i = bisect.bisect_right(times, as_of)
        return self._running[operator][i - 1] if i else 0

    def breakdown(self, operator: str) -> dict[str, int]:
        out = {"compute": 0, "bonus": 0}
        for ev in self.events:
            if ev.operator == operator:
                out[ev.kind] += ev.micro_points
        return out

    def leaderboard(self) -> list[tuple[str, int]]:
        return sorted(self._totals.items(), key=lambda kv: (-kv[1], kv[0]))
