"""Pure planning for the reputation controller: raw bodies + router stats in, writes out.

Everything the controller decides is here, on plain dicts and the pure reputation modules, so it
can be tested without an API server and folded into the operator's one runtime later (the
controller module only does I/O around these functions).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gpufleet.api.quantity import format_ratio, parse_unit_ratio
from gpufleet.api.v1alpha1.penalty import OFFENSE_KEY_LABEL, POOL_LABEL
from gpufleet.api.v1alpha1.reputation import PENALISED_CONDITION, REPUTATION_OVERRIDE_CONDITION
from gpufleet.hardware.catalog import Catalog, resolve_gpu
from gpufleet.reputation.ladder import (
    Enforcement,
    EnforcementPlan,
    LadderPolicy,
    Offense,
    PenaltyRecord,
    decide_penalty,
    enforcement,
    is_integrity_reason,
    is_low_completion_hour,
)
from gpufleet.reputation.score import DeviceIdentity, PoolReputation
from gpufleet.reputation.throughput import ThroughputPolicy
from gpufleet.reputation.tiers import TierPolicy
from gpufleet.reputation.window import (
    NO_RELEASE,
    SECONDS_PER_HOUR,
    CounterSnapshot,
    DeviceKey,
    FailureCause,
    Observation,
    Window,
)
from gpufleet.router.stats import RouterStats

Body = Mapping[str, Any]
PoolKey = tuple[str, str]

_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class PlanError(ValueError):
    """A setting or object the planner cannot use."""


# ---- settings -> policies ---------------------------------------------------------------


def parse_ladder(text: str) -> tuple[timedelta, ...]:
    """``"1h,4h,16h,3d,7d"`` -> durations."""
    out = []
    for part in text.split(","):
        match = _DURATION.match(part)
        if not match:
            raise PlanError(f"ladder step {part!r} is not a duration like 1h, 30m, 3d")
        out.append(timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]))
    return tuple(out)


@dataclass(frozen=True)
class Policies:
    """Every reputation constant, from ``OperatorSettings``."""

    tiers: TierPolicy = field(default_factory=TierPolicy)
    throughput: ThroughputPolicy = field(default_factory=ThroughputPolicy)
    ladder: LadderPolicy = field(default_factory=LadderPolicy)
    window_hours: int = 72
    status_min_seconds: float = 60.0

    @classmethod
    def from_settings(cls, s: Any) -> Policies:
        """From an ``OperatorSettings`` (typed Any: controllers pass theirs)."""
        pct = Fraction(100)
        return cls(
            tiers=TierPolicy(
                top_pct=Fraction(s.reputation_tier_top_pct),
                second_pct=Fraction(s.reputation_tier_second_pct),
                step_pct=Fraction(s.reputation_tier_step_pct),
                step_multiplier=Fraction(s.reputation_tier_step_multiplier),
                minimum_sample=s.reputation_min_sample,
            ),
            throughput=ThroughputPolicy(
                min_requests=s.reputation_throughput_min_requests,
                reference_fraction=Fraction(s.reputation_throughput_reference_fraction),
            ),
            ladder=LadderPolicy(
                ladder=parse_ladder(s.penalty_ladder),
                forgive_after=timedelta(days=s.penalty_forgive_days),
                integrity_reasons=frozenset(
                    r.strip() for r in s.penalty_integrity_reasons.split(",") if r.strip()
                ),
                integrity_suspends_at=s.penalty_integrity_suspends_at,
                low_completion_floor=Fraction(s.penalty_low_completion_pct) / pct,
                low_completion_min_requests=s.penalty_low_completion_min_requests,
                cap=Fraction(s.penalty_cap_pct) / pct,
            ),
            window_hours=s.reputation_window_hours,
            status_min_seconds=s.reputation_status_min_seconds,
        )


# ---- router stats -> observations -------------------------------------------------------

_CAUSES: dict[str, FailureCause] = {
    "connect": FailureCause.CONNECT,
    "reset": FailureCause.RESET,
    "http_5xx": FailureCause.ENGINE_5XX,
    "timeout": FailureCause.TIMEOUT,
    "client_cancel": FailureCause.CLIENT_CANCEL,
}


def observations_from_stats(stats: RouterStats, releases: Mapping[tuple[str, str], str]) -> list[Observation]:
    """One router snapshot -> window observations (one per device and model).

    ``releases``: (namespace, inferencenode) -> engine version the node runs or updates to.
    The baseline key is (router|model, device), so a device serving two models keeps two
    baselines; ``generation`` is the router's ``since`` (its counters' epoch), so a router that
    lost its checkpoint is seen as a reset. Decode time is total latency minus time to first
    byte, summed (ms). The router counts every failed *attempt* on the device that failed it
    (a retried one too: ``retries`` is the subset answered elsewhere), which is what the operator
    answers for, so ``retries`` is not added again.
    """
    out = []
    generation = stats.since.isoformat()
    for dev in stats.devices:
        k = dev.key
        failures = {cause: getattr(dev.failures, name) for name, cause in _CAUSES.items()}
        decode_s = max(0.0, dev.latency.sum_seconds - dev.ttfb.sum_seconds)
        snap = CounterSnapshot(
            completions=dev.completions,
            failures=failures,
            completion_tokens=dev.tokens.completion,
            decode_ms=int(decode_s * 1000),
            generation=generation,
        )
        key = DeviceKey(k.namespace, k.pool, k.inference_node, str(k.device))
        release = releases.get((k.namespace, k.inference_node), NO_RELEASE)
        out.append(
            Observation(source=stats.router, device=key, counters=snap, release=release, stream=k.model)
        )
    return out


# ---- cluster bodies -> inputs -----------------------------------------------------------


def _meta(body: Body) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _key(body: Body) -> PoolKey:
    meta = _meta(body)
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def inode_pool(inode: Body) -> str:
    return str(((inode.get("spec") or {}).get("poolRef") or {}).get("name") or "")


def node_release(inode: Body) -> str:
    """The version a node runs, or the one it is being updated to (failures during an update count to it)."""
    status = inode.get("status") or {}
    return str(status.get("targetVersion") or status.get("currentVersion") or NO_RELEASE)


def excused_releases(releases: Iterable[Body]) -> frozenset[str]:
    """Versions whose failures are the release's: halted, or rolled back by some node."""
    out = set()
    for rel in releases:
        status = rel.get("status") or {}
        version = (rel.get("spec") or {}).get("version")
        if version and (status.get("halted") or status.get("failedNodes")):
            out.add(str(version))
    return frozenset(out)


def pool_devices(inodes: Iterable[Body], catalog: Catalog) -> dict[PoolKey, dict[DeviceKey, DeviceIdentity]]:
    """Routable devices per pool, with what they serve on what (the throughput benchmark key)."""
    out: dict[PoolKey, dict[DeviceKey, DeviceIdentity]] = {}
    for inode in inodes:
        ns, name = _key(inode)
        pool = inode_pool(inode)
        models = (inode.get("spec") or {}).get("models") or []
        model = str(models[0].get("name")) if models else ""
        per = out.setdefault((ns, pool), {})
        for dev in (inode.get("status") or {}).get("devices") or []:
            validation = dev.get("validation") or {}
            if not validation.get("valid"):
                continue
            gpu = resolve_gpu(catalog, str(dev.get("product") or ""))
            per[DeviceKey(ns, pool, name, str(dev.get("index")))] = DeviceIdentity(
                model, gpu.key if gpu else ""
            )
    return out


# ---- reputation -> status ----------------------------------------------------------------


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ratio(value: Fraction) -> str:
    return format_ratio(min(Fraction(1), max(Fraction(0), value)))


def _tps(value: Fraction | None) -> str | None:
    if value is None:
        return None
    scaled = (value.numerator * 1000) // value.denominator
    whole, frac = divmod(scaled, 1000)
    return str(whole) if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")


def spec_override(pool: Body) -> Fraction | None:
    """``spec.reputationWeight`` when set (an override), else None."""
    raw = (pool.get("spec") or {}).get("reputationWeight")
    if raw is None:
        return None
    try:
        return parse_unit_ratio(str(raw))
    except ValueError:
        return None


def reputation_status(
    rep: PoolReputation, now: datetime, penalty: PenaltyRecord | None = None
) -> dict[str, Any]:
    """The camelCase ``status.reputation`` of a pool (``gpufleet.api.v1alpha1.reputation``)."""
    c = rep.completion
    out: dict[str, Any] = {
        "weight": _ratio(rep.weight),
        "effectiveWeight": _ratio(rep.effective_weight),
        "override": rep.override is not None,
        "windowHours": rep.window_hours,
        "completed": c.completed,
        "failed": c.failed,
        "excused": c.excused,
        "notAttributable": rep.not_attributable,
        "sample": c.sample,
        "tier": c.tier,
        "multiplier": _ratio(c.multiplier),
        "completionReason": str(c.reason),
        "devices": [
            {
                "inferenceNode": key.inferencenode,
                "device": int(key.device),
                "throughputScore": _ratio(d.throughput.score),
                "note": str(d.throughput.note),
                "weight": _ratio(d.weight),
                **(
                    {"model": d.throughput.benchmark.model, "gpu": d.throughput.benchmark.gpu}
                    if d.throughput.benchmark
                    else {}
                ),
                **(
                    {"observedTokensPerSecond": _tps(d.throughput.observed_tokens_per_second)}
                    if d.throughput.observed_tokens_per_second is not None
                    else {}
                ),
                **(
                    {"benchmarkTokensPerSecond": _tps(d.throughput.benchmark.decode_tokens_per_second)}
                    if d.throughput.benchmark
                    else {}
                ),
            }
            for key, d in rep.devices.items()
            if key.device.isdigit()
        ],
        "updatedAt": rfc3339(now),
    }
    if c.rate is not None:
        out["completionRate"] = _ratio(c.rate)
    if rep.first_hour is not None:
        out["windowStart"] = rfc3339(datetime.fromtimestamp(rep.first_hour * SECONDS_PER_HOUR, UTC))
    if penalty is not None:
        out["penalty"] = penalty.name
        if penalty.until is not None:
            out["penalisedUntil"] = rfc3339(penalty.until)
    return out


def _comparable(status: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (status or {}).items() if k != "updatedAt"}


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when anything but the timestamp differs (no write for an unchanged reputation)."""
    return _comparable(old) != _comparable(new)


def write_due(last_write: float | None, now: float, min_seconds: float) -> bool:
    """At most one status write per pool per ``min_seconds``."""
    return last_write is None or now - last_write >= min_seconds


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """metav1.Condition upsert: lastTransitionTime moves only when the status flips."""
    out = [dict(c) for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else rfc3339(now)
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    out.append(cond)
    return sorted(out, key=lambda c: str(c["type"]))


def pool_conditions(
    pool: Body, override: Fraction | None, penalty: PenaltyRecord | None, capped: bool, now: datetime
) -> list[dict[str, Any]]:
    """The pool's conditions with ours (ReputationOverride, Penalised) set; others kept as they are."""
    conds: Sequence[Mapping[str, Any]] = (pool.get("status") or {}).get("conditions") or []
    gen = _meta(pool).get("generation")
    gen = int(gen) if gen is not None else None
    if override is None:
        conds = set_condition(
            conds,
            REPUTATION_OVERRIDE_CONDITION,
            "False",
            "Measured",
            "routing uses the measured reputation weight",
            now,
            gen,
        )
    else:
        conds = set_condition(
            conds,
            REPUTATION_OVERRIDE_CONDITION,
            "True",
            "SpecOverride",
            f"spec.reputationWeight {format_ratio(override)} overrides the measured weight",
            now,
            gen,
        )
    if penalty is not None:
        until = "permanently" if penalty.until is None else f"until {rfc3339(penalty.until)}"
        conds = set_condition(
            conds,
            PENALISED_CONDITION,
            "True",
            str(penalty.offense),
            f"Penalty {penalty.name} keeps the pool out of routing {until}",
            now,
            gen,
        )
    elif capped:
        conds = set_condition(
            conds,
            PENALISED_CONDITION,
            "False",
            "SafetyCap",
            "a penalty is recorded but the fleet safety cap keeps the pool routing",
            now,
            gen,
        )
    else:
        conds = set_condition(
            conds, PENALISED_CONDITION, "False", "NoPenalty", "no penalty in effect", now, gen
        )
    return conds


# ---- penalties --------------------------------------------------------------------------


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def penalty_record(body: Body, policy: LadderPolicy) -> PenaltyRecord | None:
    """A Penalty body -> its ladder record (status first: the controller's resolved level/until)."""
    meta, spec, status = _meta(body), body.get("spec") or {}, body.get("status") or {}
    try:
        offense = Offense(str(spec.get("offense")))
    except ValueError:
        return None
    level = status.get("level") or spec.get("level")
    start = parse_time(status.get("start") or spec.get("start") or meta.get("creationTimestamp"))
    if level is None or start is None:
        return None
    if status.get("level") is not None:
        until = None if status.get("permanent") else parse_time(status.get("until"))
    else:
        until = parse_time(spec.get("until"))
        if until is None:
            duration = policy.duration(int(level))
            until = None if duration is None else start + duration
    return PenaltyRecord(
        str(meta.get("name")),
        str(meta.get("namespace") or ""),
        str(spec.get("pool") or ""),
        offense,
        int(level),
        start,
        until,
    )


def offense_key(*parts: object) -> str:
    """A stable label value naming one offense occurrence."""
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NewPenalty:
    """A Penalty to create."""

    namespace: str
    pool: str
    offense: Offense
    reason: str
    subject: str
    key: str
    level: int
    start: datetime
    until: datetime | None
    why: str

    def body(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "pool": self.pool,
            "offense": str(self.offense),
            "reason": self.reason[:1024],
            "subject": self.subject[:253],
            "level": self.level,
            "start": rfc3339(self.start),
        }
        if self.until is not None:
            spec["until"] = rfc3339(self.until)
        return {
            "apiVersion": "gpufleet.io/v1alpha1",
            "kind": "Penalty",
            "metadata": {
                "generateName": f"{self.pool[:40]}-{str(self.offense).lower()}-",
                "namespace": self.namespace,
                "labels": {POOL_LABEL: self.pool, OFFENSE_KEY_LABEL: self.key},
            },
            "spec": spec,
        }


@dataclass(frozen=True)
class Offenses:
    """What a pass found: penalties to create and the hours it has judged."""

    create: list[NewPenalty]
    judged_hour: int | None


def integrity_offenses(inodes: Iterable[Body], policy: LadderPolicy) -> list[tuple[PoolKey, str, str, str]]:
    """(pool, key, subject, reason) for every device blocked for misrepresented hardware."""
    out = []
    for inode in inodes:
        ns, name = _key(inode)
        for dev in (inode.get("status") or {}).get("devices") or []:
            validation = dev.get("validation") or {}
            reason = str(validation.get("reason") or "")
            if validation.get("valid") is False and is_integrity_reason(reason, policy):
                subject = f"{name}/GPU {dev.get('index')}"
                key = offense_key("integrity", ns, name, dev.get("index"), dev.get("uuid") or "", reason)
                why = f"{subject}: {reason}: {validation.get('message') or 'hardware misrepresented'}"
                out.append(((ns, inode_pool(inode)), key, subject, why))
    return out


def plan_offenses(
    pool: PoolKey,
    window: Window,
    integrity: Sequence[tuple[PoolKey, str, str, str]],
    records: Sequence[PenaltyRecord],
    known_keys: frozenset[str],
    judged_hour: int | None,
    excused: frozenset[str],
    now: datetime,
    policy: LadderPolicy,
) -> Offenses:
    """New offenses of one pool: integrity (once per occurrence) and closed low-completion hours.

    ``known_keys``: offense keys of existing Penalties and of lifted (deleted) ones, so an
    occurrence is penalised once. Hours are judged once each, after they close (an hour in which
    the pool was out of routing has too few requests to be judged).
    """
    ns, name = pool
    mine = [r for r in records if r.pool_key == pool]
    create: list[NewPenalty] = []
    seen = set(known_keys)
    for key_pool, key, subject, why in integrity:
        if key_pool != pool or key in seen:
            continue
        seen.add(key)
        decision = decide_penalty([*mine, *_as_records(create, pool)], Offense.INTEGRITY, now, policy)
        create.append(
            NewPenalty(
                ns,
                name,
                Offense.INTEGRITY,
                why,
                subject,
                key,
                decision.level,
                now,
                decision.until,
                decision.why,
            )
        )
    current = window.current_hour
    if current is None:
        return Offenses(create, judged_hour)
    first = max(window.first_hour(current), (judged_hour + 1) if judged_hour is not None else current - 1)
    devices = [d for d in window.devices() if d.pool_key == pool]
    for hour in range(first, current):
        start = datetime.fromtimestamp(hour * SECONDS_PER_HOUR, UTC)
        total = window.hour_total(hour, devices)
        failed = total.attributable(excused)
        key = offense_key("lowcompletion", ns, name, hour)
        if key in seen or not is_low_completion_hour(total.completed, failed, policy):
            continue
        seen.add(key)
        rate = Fraction(total.completed, total.completed + failed)
        decision = decide_penalty([*mine, *_as_records(create, pool)], Offense.LOW_COMPLETION, now, policy)
        reason = (
            f"hour {rfc3339(start)}: {format_ratio(rate * 100, 2)}% of {total.completed + failed} requests "
            f"completed, below the {format_ratio(policy.low_completion_floor * 100, 2)}% floor"
        )
        create.append(
            NewPenalty(
                ns,
                name,
                Offense.LOW_COMPLETION,
                reason,
                f"hour {rfc3339(start)}",
                key,
                decision.level,
                now,
                decision.until,
                decision.why,
            )
        )
    return Offenses(create, current - 1)


def _as_records(created: Sequence[NewPenalty], pool: PoolKey) -> list[PenaltyRecord]:
    return [
        PenaltyRecord(f"new-{i}", p.namespace, p.pool, p.offense, p.level, p.start, p.until)
        for i, p in enumerate(created)
        if (p.namespace, p.pool) == pool
    ]


def penalty_status(
    body: Body, record: PenaltyRecord | None, plan: EnforcementPlan, now: datetime, policy: LadderPolicy
) -> dict[str, Any]:
    """The status a Penalty should have now."""
    gen = _meta(body).get("generation")
    if record is None:
        return {"message": "unreadable: needs spec.offense and a start (or creationTimestamp)"}
    state = plan.status.get(record.name, Enforcement.EXPIRED)
    out: dict[str, Any] = {
        "level": record.level,
        "start": rfc3339(record.start),
        "permanent": record.until is None,
        "enforcement": str(state),
        "message": {
            Enforcement.ENFORCED: "the pool gets no traffic and earns no rewards",
            Enforcement.CAPPED: "recorded, but automatic penalties already take "
            f"{plan.automatic_devices_out} of at most {plan.cap_devices} devices out of routing "
            "(safety cap): the pool keeps routing",
            Enforcement.PENDING: "starts later",
            Enforcement.EXPIRED: "over",
        }[state],
    }
    if gen is not None:
        out["observedGeneration"] = int(gen)
    if record.until is not None:
        out["until"] = rfc3339(record.until)
    conds = (body.get("status") or {}).get("conditions") or []
    active = state is Enforcement.ENFORCED
    out["conditions"] = set_condition(
        conds,
        "Active",
        "True" if active else "False",
        str(state),
        out["message"],
        now,
        int(gen) if gen is not None else None,
    )
    return out


def enforcement_plan(
    records: Iterable[PenaltyRecord], now: datetime, devices: Mapping[PoolKey, int], policy: LadderPolicy
) -> EnforcementPlan:
    return enforcement(records, now, devices, policy)


def k_decimal(fraction: Fraction) -> Decimal:
    return Decimal(fraction.numerator) / Decimal(fraction.denominator)


def resolve_unlevelled(body: Body, others: Sequence[PenaltyRecord], policy: LadderPolicy) -> Body:
    """A Penalty without a level (a Manual one typed by a person): take the pool's next level.

    Returns the body with ``status.level/start/until`` filled in, ready for ``penalty_record``.
    """
    spec, status = body.get("spec") or {}, dict(body.get("status") or {})
    if status.get("level") is not None or spec.get("level") is not None:
        return body
    try:
        offense = Offense(str(spec.get("offense")))
    except ValueError:
        return body
    start = parse_time(spec.get("start") or _meta(body).get("creationTimestamp"))
    if start is None:
        return body
    pool = (str(_meta(body).get("namespace") or ""), str(spec.get("pool") or ""))
    decision = decide_penalty([r for r in others if r.pool_key == pool], offense, start, policy)
    until = parse_time(spec.get("until")) or decision.until
    status.update({"level": decision.level, "start": rfc3339(start), "permanent": until is None})
    if until is not None:
        status["until"] = rfc3339(until)
    return {**body, "status": status}
