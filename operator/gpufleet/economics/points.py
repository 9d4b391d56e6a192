"""Off-chain $INT points: accrued as work completes, plus bonuses for non-compute contributions.

Points are integers in micro-points (six decimals) so that fractional model weights stay exact.
Compute points for a job are ``generated tokens * weight of the model``; bonus points are granted
by hand with a reason (guides, community help). Everything is kept per operator, timestamped, so
totals can be asked "as of" any moment.
"""

from __future__ import annotations

import bisect
import re
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


# --- points from the running fleet (epoch controller) ---------------------------------------------
#: Model size assumed when neither the settings' table nor the model name gives one (1B).
DEFAULT_PARAMS_MILLIONS = 1_000

_SIZE_RE = re.compile(r"(?<![0-9.])(?:([0-9]+)x)?([0-9]+)(?:\.([0-9]+))?([bBmM])(?![a-zA-Z])")


def model_params_millions(
    model: str, table: Mapping[str, int] | None = None, default: int = DEFAULT_PARAMS_MILLIONS
) -> tuple[int, str]:
    """Parameters of ``model`` in millions and where the number came from.

    The settings' table wins (exact model id, then the id's last path part); otherwise the size
    in the name (``Llama-3.1-8B-Instruct`` -> 8,000; ``Qwen2.5-0.5B`` -> 500; ``Mixtral-8x7B`` ->
    56,000, all experts: a table entry can say the active size instead); otherwise ``default``.
    """
    table = table or {}
    short = model.rsplit("/", 1)[-1]
    for name in (model, short):
        if name in table:
            return table[name], "table"
    matches = list(_SIZE_RE.finditer(short))
    if matches:
        experts, whole, frac, unit = matches[-1].groups()
        scale = 1_000 if unit in "bB" else 1
        frac = frac or ""
        millions = (int(whole) * 10 ** len(frac) + int(frac or "0")) * scale // 10 ** len(frac)
        millions *= int(experts) if experts else 1
        if millions > 0:
            return millions, "name"
    return default, "default"


def compute_micro_points(tokens: int, params_millions: int) -> int:
    """Compute points for ``tokens`` processed by a model: 1 point per 1,000 tokens per 1B params.

    In micro-points that is exactly ``tokens x parameters in millions``.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise InvalidInput(f"tokens must be a non-negative integer, got {tokens!r}")
    if isinstance(params_millions, bool) or not isinstance(params_millions, int) or params_millions < 1:
        raise InvalidInput(f"model size must be a positive integer of millions, got {params_millions!r}")
    return tokens * params_millions


def pool_compute_points(
    tokens_by_model: Mapping[str, int], table: Mapping[str, int] | None = None,
    default: int = DEFAULT_PARAMS_MILLIONS,
) -> int:
    """Micro-points of a pool from its tokens per model."""
    return sum(
        compute_micro_points(tokens, model_params_millions(model, table, default)[0])
        for model, tokens in tokens_by_model.items()
    )


def parse_signed_points(value: object, *, what: str = "points") -> int:
    """A bonus (or, with a leading ``-``, a correction) in micro-points; never zero."""
    text = value if isinstance(value, str) else None
    if text is not None and text.strip().startswith("-"):
        micro = -parse_points(text.strip()[1:], what=what)
    else:
        micro = parse_points(value, what=what)
    if micro == 0:
        raise InvalidInput(f"{what} must not be zero")
    return micro


def apply_award(total_micro: int, award_micro: int, *, pool: str = "the pool") -> int:
    """The pool's total after an award; a correction may never take the total below zero."""
    after = total_micro + award_micro
    if after < 0:
        raise InvalidInput(
            f"award of {format_signed_points(award_micro)} points would take {pool}'s total from "
            f"{format_points(total_micro)} to {format_signed_points(after)}; totals are never negative"
        )
    return after


def format_signed_points(micro: int) -> str:
    return ("-" if micro < 0 else "") + format_points(abs(micro))
