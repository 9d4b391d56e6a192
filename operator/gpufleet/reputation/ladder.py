"""The penalty ladder: offenses -> escalating routing timeouts, forgiveness, and the safety cap.

Offenses (``Offense``):
- ``Integrity``: a device blocked for misrepresented hardware (which validation reasons count is
  configurable: VRAM, PCI id and GFD mismatches by default, never an honest MIG or driver issue);
- ``LowCompletion``: an hour whose completion rate was below the floor (default 90% with at least
  50 requests);
- ``Manual``: a platform engineer's penalty, with a reason.

The pool's ladder state is derived from its penalty records alone (the ``Penalty`` objects), so it
survives restarts and a deleted record is forgiven. An offense at effective level L gets the
duration ``ladder[L]`` and level L+1 (default ladder 1h, 4h, 16h, 3d, 7d, then permanent). One
level is forgiven per ``forgive_after`` (7 days) clean after the last penalty ended; a permanent
suspension is never forgiven. A second integrity offense suspends permanently.

The safety cap: automatic (non-manual) penalties never take more than ``cap`` (default 20%) of the
fleet's devices out of routing at once. ``enforcement`` applies it when deciding who is out, so
the router, the status and the metrics all agree, and capped penalties are recorded and alerted
but the pool keeps routing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: The default ladder; ``None`` past its end means permanent suspension.
DEFAULT_LADDER: tuple[timedelta, ...] = (HOUR, 4 * HOUR, 16 * HOUR, 3 * DAY, 7 * DAY)
#: Validation reasons (``gpufleet.hardware.validation.Reason``) that are integrity offenses.
DEFAULT_INTEGRITY_REASONS: frozenset[str] = frozenset({"VRAMMismatch", "PCIIdMismatch", "GFDLabelMismatch"})


class LadderError(ValueError):
    """A ladder policy or record that cannot be used."""


class Offense(StrEnum):
    """What a pool did (``Penalty.spec.offense``)."""

    INTEGRITY = "Integrity"
    LOW_COMPLETION = "LowCompletion"
    MANUAL = "Manual"


class Enforcement(StrEnum):
    """Whether a penalty currently keeps its pool out of routing."""

    ENFORCED = "Enforced"
    CAPPED = "Capped"  # recorded and alerted, but the safety cap keeps the pool routing
    EXPIRED = "Expired"
    PENDING = "Pending"  # starts in the future


@dataclass(frozen=True)
class LadderPolicy:
    """The ladder's constants (``GPUFLEET_PENALTY_*`` settings)."""

    ladder: tuple[timedelta, ...] = DEFAULT_LADDER
    forgive_after: timedelta = 7 * DAY
    integrity_reasons: frozenset[str] = DEFAULT_INTEGRITY_REASONS
    #: The n-th integrity offense (counting from 1) suspends permanently.
    integrity_suspends_at: int = 2
    low_completion_floor: Fraction = Fraction(90, 100)
    low_completion_min_requests: int = 50
    cap: Fraction = Fraction(20, 100)

    def __post_init__(self) -> None:
        if not self.ladder or any(d <= timedelta(0) for d in self.ladder):
            raise LadderError("a ladder has at least one positive duration")
        if list(self.ladder) != sorted(self.ladder):
            raise LadderError("ladder durations must not decrease")
        if self.forgive_after <= timedelta(0):
            raise LadderError("forgive_after must be positive")
        if self.integrity_suspends_at < 1:
            raise LadderError("integrity_suspends_at counts from 1")
        if not 0 <= self.low_completion_floor <= 1 or not 0 <= self.cap <= 1:
            raise LadderError("floor and cap are fractions in [0, 1]")
        if self.low_completion_min_requests < 0:
            raise LadderError("low_completion_min_requests is never negative")

    @property
    def permanent_level(self) -> int:
        """The level of a permanent suspension (one past the last timed step)."""
        return len(self.ladder) + 1

    def duration(self, level: int) -> timedelta | None:
        """Timeout of a penalty at ``level`` (1-based); None = permanent."""
        if level < 1:
            raise LadderError(f"levels start at 1, got {level}")
        return self.ladder[level - 1] if level <= len(self.ladder) else None


DEFAULT_POLICY = LadderPolicy()


@dataclass(frozen=True)
class PenaltyRecord:
    """One penalty as the ladder sees it (built from a ``Penalty`` object)."""

    name: str
    namespace: str
    pool: str
    offense: Offense
    level: int
    start: datetime
    until: datetime | None  # None = permanent

    @property
    def automatic(self) -> bool:
        return self.offense is not Offense.MANUAL

    @property
    def permanent(self) -> bool:
        return self.until is None

    def active(self, now: datetime) -> bool:
        return self.start <= now and (self.until is None or now < self.until)

    @property
    def pool_key(self) -> tuple[str, str]:
        return (self.namespace, self.pool)


def effective_level(
    records: Iterable[PenaltyRecord], now: datetime, policy: LadderPolicy = DEFAULT_POLICY
) -> int:
    """The pool's level at ``now``: its latest penalty's level minus one per clean ``forgive_after``.

    A running penalty is not forgiven (nobody is clean while timed out); a permanent one never is.
    """
    latest = max(records, key=lambda r: (r.start, r.level), default=None)
    if latest is None:
        return 0
    if latest.until is None:
        return latest.level
    clean = max(timedelta(0), now - latest.until)  # still running: not clean at all
    return max(0, latest.level - clean // policy.forgive_after)


@dataclass(frozen=True)
class PenaltyDecision:
    """The penalty an offense earns."""

    level: int
    duration: timedelta | None
    until: datetime | None
    suspended: bool
    why: str


def decide_penalty(
    records: Sequence[PenaltyRecord],
    offense: Offense,
    now: datetime,
    policy: LadderPolicy = DEFAULT_POLICY,
    level: int | None = None,
) -> PenaltyDecision:
    """Level and timeout of a new offense by a pool with these ``records``.

    ``level`` forces a level (a manual penalty may choose one); otherwise it is one above the
    effective level, and an integrity offense that is the pool's ``integrity_suspends_at``-th
    suspends permanently.
    """
    current = effective_level(records, now, policy)
    why = f"effective level {current} before this offense"
    if level is not None:
        if level < 1:
            raise LadderError(f"levels start at 1, got {level}")
        new = min(level, policy.permanent_level)
        why = f"level {level} set by hand"
    else:
        new = min(current + 1, policy.permanent_level)
    if offense is Offense.INTEGRITY and level is None:
        integrity = 1 + sum(1 for r in records if r.offense is Offense.INTEGRITY)
        if integrity >= policy.integrity_suspends_at:
            new = policy.permanent_level
            why = f"integrity offense #{integrity} (>= {policy.integrity_suspends_at} suspends)"
    duration = policy.duration(new)
    return PenaltyDecision(
        level=new,
        duration=duration,
        until=None if duration is None else now + duration,
        suspended=duration is None,
        why=why,
    )


def is_low_completion_hour(
    completed: int, failed: int, policy: LadderPolicy = DEFAULT_POLICY
) -> bool:
    """An hour is an offense when it had >= min requests and completed/(completed+failed) < floor."""
    sample = completed + failed
    if sample == 0 or sample < policy.low_completion_min_requests:
        return False
    return Fraction(completed, sample) < policy.low_completion_floor


def is_integrity_reason(reason: str, policy: LadderPolicy = DEFAULT_POLICY) -> bool:
    """True for validation reasons that mean misrepresented hardware (configurable)."""
    return reason in policy.integrity_reasons


@dataclass(frozen=True)
class EnforcementPlan:
    """Which penalties keep their pools out of routing now, and which the safety cap holds back."""

    status: Mapping[str, Enforcement]  # penalty name -> enforcement
    penalised_pools: frozenset[tuple[str, str]]
    capped_pools: frozenset[tuple[str, str]]
    automatic_devices_out: int
    cap_devices: int

    @property
    def cap_reached(self) -> bool:
        return bool(self.capped_pools)


def cap_devices(total_devices: int, policy: LadderPolicy = DEFAULT_POLICY) -> int:
    """Most devices automatic penalties may take out of routing at once: floor(cap * fleet)."""
    if total_devices < 0:
        raise LadderError(f"fleet size {total_devices} is negative")
    scaled = policy.cap * total_devices
    return scaled.numerator // scaled.denominator


def enforcement(
    records: Iterable[PenaltyRecord],
    now: datetime,
    pool_devices: Mapping[tuple[str, str], int],
    policy: LadderPolicy = DEFAULT_POLICY,
) -> EnforcementPlan:
    """Apply the safety cap to the active penalties.

    Manual penalties are always enforced. Automatic ones are taken oldest first (then by name,
    so the order is stable) and enforced while the devices they take out, together with those
    already out by automatic penalties, stay within ``cap_devices``; the rest are ``Capped``. A
    pool already out (by any penalty) costs nothing more. Fleet size is the sum of
    ``pool_devices`` (devices that would route without penalties).
    """
    total = sum(pool_devices.values())
    limit = cap_devices(total, policy)
    status: dict[str, Enforcement] = {}
    out: set[tuple[str, str]] = set()
    capped: set[tuple[str, str]] = set()
    active: list[PenaltyRecord] = []
    for rec in records:
        if rec.until is not None and now >= rec.until:
            status[rec.name] = Enforcement.EXPIRED
        elif now < rec.start:
            status[rec.name] = Enforcement.PENDING
        else:
            active.append(rec)
    for rec in active:
        if not rec.automatic:
            status[rec.name] = Enforcement.ENFORCED
            out.add(rec.pool_key)
    used = 0
    for rec in sorted((r for r in active if r.automatic), key=lambda r: (r.start, r.name)):
        key = rec.pool_key
        if key in out:
            status[rec.name] = Enforcement.ENFORCED  # already out: costs nothing more
            continue
        cost = pool_devices.get(key, 0)
        if used + cost <= limit:
            used += cost
            out.add(key)
            status[rec.name] = Enforcement.ENFORCED
        else:
            status[rec.name] = Enforcement.CAPPED
            capped.add(key)
    return EnforcementPlan(
        status=status,
        penalised_pools=frozenset(out),
        capped_pools=frozenset(capped - out),
        automatic_devices_out=used,
        cap_devices=limit,
    )


def penalised_pools(
    now: datetime,
    penalties: Iterable[PenaltyRecord],
    pool_devices: Mapping[tuple[str, str], int] | None = None,
    policy: LadderPolicy = DEFAULT_POLICY,
) -> frozenset[tuple[str, str]]:
    """(namespace, pool) of every pool that must get no traffic at ``now`` (the router's input).

    Without ``pool_devices`` the cap cannot be evaluated and every active penalty counts; the
    operator writes the capped verdict into each Penalty's status, which the router may read
    instead (``Penalty.status.enforcement``).
    """
    records = list(penalties)
    if pool_devices is None:
        return frozenset(r.pool_key for r in records if r.active(now))
    return enforcement(records, now, pool_devices, policy).penalised_pools
