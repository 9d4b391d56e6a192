"""Pure planning for the k controller: RoutingPolicy spec/status + router stats -> the next status.

Utilisation is in-flight requests over capacity. The router's stats carry no instantaneous
in-flight gauge, so the mean in-flight count over an interval comes from Little's law: the
increase of the summed request latency (seconds of requests in flight) over the interval's
length. Capacity is the routed devices times ``GPUFLEET_ROUTING_DEVICE_CAPACITY``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gpufleet.api.quantity import format_ratio
from gpufleet.api.v1alpha1.routingpolicy import RoutingPolicySpec
from gpufleet.reputation.kcontrol import KPolicy, KState, KStep, k_step, quantize
from gpufleet.reputation.routing import k_from_policy
from gpufleet.router.stats import RouterStats

__all__ = ["k_from_policy"]  # re-exported: the router's k_source seam

Body = Mapping[str, Any]


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy_from_spec(spec: Mapping[str, Any]) -> KPolicy:
    """The RoutingPolicy spec (defaults filled in by the model) as a ``KPolicy``."""
    model = RoutingPolicySpec.model_validate(dict(spec))
    f = model.fractions()
    return KPolicy(
        k_min=f["k_min"],
        k_max=f["k_max"],
        target=f["target"],
        deadband=f["deadband"],
        rise_gain=f["rise_gain"],
        fall_gain=f["fall_gain"],
        smoothing=f["smoothing"],
        interval_seconds=model.interval_seconds,
    )


def k_text(k: Fraction) -> str:
    """k on its 10^-9 grid as the status's decimal string."""
    return format_ratio(quantize(k), 9)


def parse_decimal(text: str | None) -> Fraction | None:
    if text is None or text == "":
        return None
    return Fraction(Decimal(str(text)))


def state_from(policy_body: Body, policy: KPolicy, default_k: Decimal) -> KState:
    """The controller's memory, read back from the status (so a restart continues where it was)."""
    spec, status = policy_body.get("spec") or {}, policy_body.get("status") or {}
    k = parse_decimal(status.get("k"))
    if k is None:
        k = parse_decimal(spec.get("initialK")) or Fraction(default_k)
    return KState(policy.clamp(k), parse_decimal(status.get("smoothedUtilisation")))


@dataclass(frozen=True)
class Sample:
    """One router replica's summed request seconds at one moment."""

    since: datetime
    at: datetime
    request_seconds: float


def samples(stats: Iterable[RouterStats]) -> dict[str, Sample]:
    return {
        s.router: Sample(s.since, s.observed_at, sum(d.latency.sum_seconds for d in s.devices)) for s in stats
    }


def mean_in_flight(previous: Mapping[str, Sample], current: Mapping[str, Sample]) -> Fraction | None:
    """Little's law over the replicas seen twice with unchanged counters; None with nothing to compare."""
    total = Fraction(0)
    seen = False
    for router, cur in current.items():
        prev = previous.get(router)
        if (
            prev is None
            or prev.since != cur.since
            or cur.at <= prev.at
            or cur.request_seconds < prev.request_seconds
        ):
            continue
        span = Fraction((cur.at - prev.at).total_seconds())
        total += Fraction(cur.request_seconds - prev.request_seconds) / span
        seen = True
    return total if seen else None


def routed_devices(inodes: Iterable[Body]) -> int:
    """Devices the router may send traffic to (status.devices[].routable)."""
    return sum(1 for i in inodes for d in (i.get("status") or {}).get("devices") or [] if d.get("routable"))


def utilisation_of(in_flight: Fraction | None, capacity: int) -> Fraction | None:
    if in_flight is None or capacity <= 0:
        return None
    return in_flight / capacity


def _util(u: Fraction | None) -> str | None:
    if u is None:
        return None
    return format_ratio(min(u, Fraction(9999)), 9)


def plan_status(
    body: Body, policy: KPolicy, step: KStep, in_flight: Fraction | None, capacity: int, now: datetime
) -> dict[str, Any]:
    """The RoutingPolicy status after one interval; ``lastChange`` moves only when k moves."""
    old = body.get("status") or {}
    gen = (body.get("metadata") or {}).get("generation")
    k = step.state.k
    status: dict[str, Any] = {
        "k": k_text(k),
        "reason": str(step.reason),
        "capacity": capacity,
        "lastUpdate": rfc3339(now),
        "message": (
            f"utilisation {_util(step.utilisation) or 'unmeasured'} "
            f"(smoothed {_util(step.state.ema) or 'n/a'}) against target {format_ratio(policy.target)} "
            f"+/- {format_ratio(policy.deadband)}: k {k_text(k)} "
            f"within [{k_text(policy.k_min)}, {k_text(policy.k_max)}]"
        ),
    }
    if gen is not None:
        status["observedGeneration"] = int(gen)
    if step.utilisation is not None:
        status["measuredUtilisation"] = _util(step.utilisation)
    if step.state.ema is not None:
        status["smoothedUtilisation"] = _util(step.state.ema)
    if in_flight is not None:
        status["inFlight"] = int(in_flight)
    moved = old.get("k") != status["k"]
    if moved or not old.get("lastChange"):
        status["lastChange"] = rfc3339(now)
    else:
        status["lastChange"] = old["lastChange"]
    return status


def step_policy(
    body: Body,
    default_k: Decimal,
    previous: Mapping[str, Sample],
    current: Mapping[str, Sample],
    devices: int,
    device_capacity: int,
    now: datetime,
) -> tuple[dict[str, Any], KStep]:
    """One interval of the k controller, from bodies and samples to the next status."""
    policy = policy_from_spec(body.get("spec") or {})
    state = state_from(body, policy, default_k)
    in_flight = mean_in_flight(previous, current)
    capacity = devices * device_capacity
    step = k_step(state, utilisation_of(in_flight, capacity), policy)
    return plan_status(body, policy, step, in_flight, capacity, now), step


def statuses_differ(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    def strip(s: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (s or {}).items() if k not in ("lastUpdate", "message")}

    return strip(old) != strip(new)
