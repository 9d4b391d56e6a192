"""``metav1.Condition`` lists, updated so that an unchanged condition is byte-for-byte unchanged.

``lastTransitionTime`` moves only when ``status`` flips; that keeps recomputed statuses equal to
the stored ones, which is what lets the operator skip writes once the fleet has converged. The
clock is injectable so tests can pin it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
Clock = Callable[[], datetime]

_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
_TYPE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                   r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """Second precision with a ``Z``, as the API server writes metav1.Time."""
    if moment.tzinfo is None:
        raise ValueError("condition timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_condition(
    type_: str,
    status: Status,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
    now: Clock = utcnow,
) -> dict[str, Any]:
    if not _TYPE.match(type_):
        raise ValueError(f"condition type {type_!r} is not a valid (optionally prefixed) name")
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status {status!r} must be True, False or Unknown")
    if not _REASON.match(reason):
        raise ValueError(f"condition reason {reason!r} must be CamelCase (letters, digits, _ , :)")
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": rfc3339(now()),
    }
    if observed_generation is not None:
        cond["observedGeneration"] = observed_generation
    return cond


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    cond = find(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    *,
    observed_generation: int | None = None,
    now: Clock = utcnow,
) -> list[dict[str, Any]]:
    """A new list with ``type_`` set; other conditions and their order are kept.

    The transition time is carried over when the status did not change, so setting the same
    condition twice yields an equal list.
    """
    new = make_condition(type_, status, reason, message, observed_generation=observed_generation, now=now)
    result: list[dict[str, Any]] = []
    replaced = False
    for cond in conditions or ():
        if cond.get("type") == type_:
            if cond.get("status") == status and cond.get("lastTransitionTime"):
                new["lastTransitionTime"] = cond["lastTransitionTime"]
            result.append(new)
            replaced = True
        else:
            result.append(dict(cond))
    if not replaced:
        result.append(new)
    return result


def transitioned(
    before: Iterable[Mapping[str, Any]] | None,
    after: Iterable[Mapping[str, Any]] | None,
) -> list[tuple[str, str | None, str]]:
    """``(type, old status, new status)`` for every condition whose status changed."""
    old = {str(c.get("type")): c.get("status") for c in before or ()}
    changes: list[tuple[str, str | None, str]] = []
    for cond in after or ():
        type_ = str(cond.get("type"))
        status = str(cond.get("status"))
        if old.get(type_) != status:
            changes.append((type_, old.get(type_), status))
    return changes
