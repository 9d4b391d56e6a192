"""What the router needs from the reputation system, as pure functions over raw bodies.

The router (``gpufleet.router``) reads OperatorPools, Penalties and the RoutingPolicy as plain
Kubernetes bodies; these functions turn them into its inputs, so the router and the operator
agree on one rule each:

- ``device_reputation_weight(pool, inode, device)``: the reputation weight of one device (the
  ``spec.reputationWeight`` override, else the measured per-device weight in
  ``status.reputation.devices``, else the pool's ``status.reputation.effectiveWeight``, else 1);
- ``penalised_pool_keys(penalties, now)``: (namespace, pool) of every pool a Penalty keeps out of
  routing now (``status.enforcement == Enforced`` and not past ``status.until``; the operator has
  already applied the safety cap);
- ``k_from_policy(routing_policy, default)``: the live k (``status.k``), else ``default``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

Body = Mapping[str, Any]
ONE = Decimal(1)


def _ratio(raw: object) -> Decimal | None:
    if raw is None:
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    return value if 0 <= value <= 1 else None


def pool_reputation_weight(pool: Body | None, default: Decimal = ONE) -> Decimal:
    """The pool's weight: the spec override, else the measured effective weight, else ``default``."""
    pool = pool or {}
    override = _ratio((pool.get("spec") or {}).get("reputationWeight"))
    if override is not None:
        return override
    measured = _ratio(((pool.get("status") or {}).get("reputation") or {}).get("effectiveWeight"))
    return default if measured is None else measured


def device_reputation_weight(
    pool: Body | None, inference_node: str, device: int, default: Decimal = ONE
) -> Decimal:
    """One device's weight: override, else its measured weight, else the pool's (see module doc)."""
    pool = pool or {}
    override = _ratio((pool.get("spec") or {}).get("reputationWeight"))
    if override is not None:
        return override
    rep = (pool.get("status") or {}).get("reputation") or {}
    for entry in rep.get("devices") or []:
        if entry.get("inferenceNode") == inference_node and entry.get("device") == device:
            weight = _ratio(entry.get("weight"))
            if weight is not None:
                return weight
    return pool_reputation_weight(pool, default)


def _time(text: object) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text))  # Python 3.11 reads "Z" and offsets
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def penalised_pool_keys(penalties: Iterable[Body], now: datetime) -> frozenset[tuple[str, str]]:
    """Pools out of routing at ``now``, from Penalty bodies the operator has judged."""
    out = set()
    for body in penalties:
        status = body.get("status") or {}
        if status.get("enforcement") != "Enforced":
            continue
        raw_until = status.get("until")
        until = _time(raw_until)
        if until is not None and now >= until:
            continue
        if raw_until is None and not status.get("permanent"):
            continue  # not judged yet: the operator writes until or permanent with the enforcement
        # an unreadable until errs on the safe side: out of routing (as the router's annotation rule)
        meta = body.get("metadata") or {}
        out.add((str(meta.get("namespace") or ""), str((body.get("spec") or {}).get("pool") or "")))
    return frozenset(out)


def k_from_policy(policy: Body | None, default: Decimal) -> Decimal:
    """The k in effect: ``status.k`` of the RoutingPolicy, else ``default`` (router's ``k_source``)."""
    raw = ((policy or {}).get("status") or {}).get("k")
    if raw is None:
        return default
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return default
    return value if value >= 0 else default
