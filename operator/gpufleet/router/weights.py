"""Who gets inference traffic and how much: eligibility and stake-weighted shares (pure).

The announcement's rule is that each instance "receives a priority score that determines its
probability of receiving inference jobs". This module turns typed endpoint records (one engine pod
serving one GPU) into

* an eligibility plan: every endpoint is either eligible or excluded for named reasons, and
* per model group, each eligible endpoint's exact share ``priority / sum(priority)`` using
  :func:`gpufleet.shares.priority_score` (the same function the operator writes into status), plus
  the integer ``load_balancing_weight`` Envoy gets and the normalised weight llm-d reads.

Why integer weights: Envoy's weighted round robin (EDF) takes uint32 weights whose sum in one
locality must stay <= 2**32 - 1. When the exact priorities, scaled to integers by their common
denominator, fit in that budget the weights are *exact* (shares are reproduced without error).
Otherwise they are scaled down to the budget, each weight floored at 1 so no eligible endpoint is
ever starved; the relative error of an endpoint's weight is then below ``1 / weight + n / 2**32``,
i.e. below 1e-6 for any endpoint above a 10^-3 share even over a 10^6:1 priority range.

No I/O, no Kubernetes, no kopf here (import-linter keeps it that way): the router's control
plane, the simulator, the reputation and the epoch code all call these functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from gpufleet.shares import priority_score

#: Envoy: the sum of the weights of all endpoints in one locality must not exceed uint32 max.
UINT32_MAX = 2**32 - 1


class Exclusion(StrEnum):
    """Why an endpoint gets no traffic (several may apply; all are reported)."""

    NOT_RUNNING = "NotRunning"
    """The pod is not in phase Running, or is being deleted."""
    GATE_CLOSED = "ReadinessGateClosed"
    """The operator has not opened the pod's ``gpufleet.io/engine-ready`` readiness gate."""
    NOT_ROUTABLE = "NotRoutable"
    """The pod carries ``gpufleet.io/routable=false`` (its GPU failed validation)."""
    POOL_HALTED = "PoolHalted"
    """The pool's routing is halted (an operator decision or a protocol sanction)."""
    PENALISED = "Penalised"
    """The device is under a penalty timeout (from the reputation system, or a pool annotation)."""
    NO_ADDRESS = "NoAddress"
    """The pod has no IP or port yet."""
    NO_CAPACITY = "NoCapacity"
    """The engine's configured maximum concurrency is 0."""
    NO_MODEL = "NoModel"
    """The pod serves no model."""


@dataclass(frozen=True)
class Endpoint:
    """One engine pod (one GPU) as the router sees it; all inputs of eligibility and weight."""

    namespace: str
    pool: str
    inference_node: str
    device: int
    pod: str
    models: tuple[str, ...]
    ip: str | None
    port: int
    effective_stake_base: int
    """Effective stake of the device in INT base units (1 INT = 10**9), as in its status."""
    reputation_weight: Decimal = Decimal(1)
    running: bool = True
    gate_open: bool = True
    routable: bool = True
    pool_halted: bool = False
    penalised: bool = False
    max_concurrency: int | None = None
    """The engine's maximum concurrent sequences; None = unlimited (no per-endpoint cap)."""

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, pod): unique per endpoint in a cluster."""
        return (self.namespace, self.pod)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def exclusions(endpoint: Endpoint) -> tuple[Exclusion, ...]:
    """Every reason the endpoint gets no traffic, in a fixed order; empty = eligible."""
    reasons: list[Exclusion] = []
    if not endpoint.running:
        reasons.append(Exclusion.NOT_RUNNING)
    if not endpoint.gate_open:
        reasons.append(Exclusion.GATE_CLOSED)
    if not endpoint.routable:
        reasons.append(Exclusion.NOT_ROUTABLE)
    if endpoint.pool_halted:
        reasons.append(Exclusion.POOL_HALTED)
    if endpoint.penalised:
        reasons.append(Exclusion.PENALISED)
    if not endpoint.ip or not 0 < endpoint.port < 65536:
        reasons.append(Exclusion.NO_ADDRESS)
    if endpoint.max_concurrency is not None and endpoint.max_concurrency <= 0:
        reasons.append(Exclusion.NO_CAPACITY)
    if not endpoint.models:
        reasons.append(Exclusion.NO_MODEL)
    return tuple(reasons)


@dataclass(frozen=True)
class EligibilityPlan:
    """The endpoints that get traffic, and why each other one does not."""

    eligible: tuple[Endpoint, ...]
    excluded: Mapping[tuple[str, str], tuple[Exclusion, ...]]

    def reasons(self, key: tuple[str, str]) -> tuple[Exclusion, ...]:
        return self.excluded.get(key, ())


def plan_eligibility(endpoints: Iterable[Endpoint]) -> EligibilityPlan:
    """Split endpoints into eligible ones and excluded ones with their reasons.

    A duplicate key (the same pod listed twice) keeps the last record, as a watch cache would.
    """
    latest: dict[tuple[str, str], Endpoint] = {}
    for endpoint in endpoints:
        latest[endpoint.key] = endpoint
    eligible: list[Endpoint] = []
    excluded: dict[tuple[str, str], tuple[Exclusion, ...]] = {}
    for key in sorted(latest):
        endpoint = latest[key]
        reasons = exclusions(endpoint)
        if reasons:
            excluded[key] = reasons
        else:
            eligible.append(endpoint)
    return EligibilityPlan(eligible=tuple(eligible), excluded=excluded)


@dataclass(frozen=True)
class WeightedEndpoint:
    """One eligible endpoint's place in its model group."""

    endpoint: Endpoint
    priority: Fraction
    share: Fraction
    """Exact intended probability of receiving a request of this model."""
    weight: int
    """Envoy ``load_balancing_weight`` (1 .. 2**32-1); weights of a group sum to <= 2**32-1."""
    normalised: float
    """priority / highest priority of the group, in (0, 1]: what llm-d's scorer reads."""


@dataclass(frozen=True)
class ModelGroup:
    """All eligible endpoints that serve one model, with their shares and weights."""

    model: str
    endpoints: tuple[WeightedEndpoint, ...]
    exact: bool
    """True when the integer weights reproduce the exact shares (no scaling was needed)."""
    total_weight: int = field(default=0)

    def weight_share(self, member: WeightedEndpoint) -> Fraction:
        """The share the integer weights actually give this member."""
        return Fraction(member.weight, self.total_weight)

    def by_key(self) -> dict[tuple[str, str], WeightedEndpoint]:
        return {m.endpoint.key: m for m in self.endpoints}


def _integer_weights(priorities: Sequence[Fraction], budget: int) -> tuple[list[int], bool]:
    """Integer weights proportional to ``priorities``, summing to <= ``budget``, each >= 1.

    Exact (the same ratios) when the priorities scaled by their common denominator and divided by
    their gcd fit the budget; else scaled with floor, every weight at least 1.
    """
    if not priorities:
        return [], True
    denominator = 1
    for p in priorities:
        denominator = denominator * p.denominator // math.gcd(denominator, p.denominator)
    scaled = [p.numerator * (denominator // p.denominator) for p in priorities]
    divisor = 0
    for value in scaled:
        divisor = math.gcd(divisor, value)
    divisor = divisor or 1
    exact = [value // divisor for value in scaled]
    if sum(exact) <= budget:
        return exact, True
    total = sum(scaled)
    # Reserve one unit per endpoint for the floor-at-1, so the sum never exceeds the budget.
    target = budget - len(priorities)
    return [max(1, value * target // total) for value in scaled], False


def compute_group(
    model: str,
    endpoints: Sequence[Endpoint],
    k: Decimal,
    *,
    budget: int = UINT32_MAX,
) -> ModelGroup:
    """Shares and weights of one model group (endpoints assumed eligible and serving ``model``).

    ``k = 0`` gives every endpoint priority 1, so equal shares and weight 1 each.
    """
    ordered = sorted(endpoints, key=lambda e: e.key)
    priorities = [priority_score(e.effective_stake_base, k, e.reputation_weight) for e in ordered]
    total = sum(priorities, Fraction(0))
    weights, exact = _integer_weights(priorities, budget)
    highest = max(priorities, default=Fraction(1))
    members = tuple(
        WeightedEndpoint(
            endpoint=e,
            priority=p,
            share=p / total,
            weight=w,
            # int / int true division is correctly rounded: no Fraction division needed for a float
            normalised=(p.numerator * highest.denominator) / (p.denominator * highest.numerator),
        )
        for e, p, w in zip(ordered, priorities, weights, strict=True)
    )
    return ModelGroup(model=model, endpoints=members, exact=exact, total_weight=sum(weights))


def compute_weights(
    eligible: Iterable[Endpoint],
    k: Decimal,
    *,
    budget: int = UINT32_MAX,
) -> dict[str, ModelGroup]:
    """Per model served, each eligible endpoint's share and Envoy weight.

    An endpoint serving several models is a member of each of their groups; shares are
    computed per group (a request for a model only ever goes to endpoints that serve it).
    """
    by_model: dict[str, list[Endpoint]] = {}
    for endpoint in eligible:
        for model in dict.fromkeys(endpoint.models):
            by_model.setdefault(model, []).append(endpoint)
    return {
        model: compute_group(model, members, k, budget=budget) for model, members in sorted(by_model.items())
    }


def plan_routing(endpoints: Iterable[Endpoint], k: Decimal) -> tuple[EligibilityPlan, dict[str, ModelGroup]]:
    """Eligibility then weights, in one call (what the control plane does per recompute)."""
    plan = plan_eligibility(endpoints)
    return plan, compute_weights(plan.eligible, k)


def max_relative_share_error(group: ModelGroup) -> Fraction:
    """Largest |weight share - exact share| / exact share in the group (0 when ``exact``)."""
    if not group.endpoints:
        return Fraction(0)
    return max(abs(group.weight_share(m) - m.share) / m.share for m in group.endpoints)
