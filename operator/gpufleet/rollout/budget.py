"""Failure budget of an EngineRelease: halt it fleet-wide after too many nodes rolled back.

The release status is a pure function of its spec, its previous status and the failure records
the nodes keep in their own status. Failures are a *set* of node keys, so reporting the same
failure twice (an operator restarted between writing the node and the release) cannot spend the
budget twice; and a node that is deleted after failing still counts until a person resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gpufleet.rollout.plan import iso
from gpufleet.rollout.state import BUDGET_REASONS, FailureRecord

HALTED = "Halted"


@dataclass(frozen=True)
class BudgetDecision:
    halted: bool
    failed_nodes: tuple[str, ...]
    halted_at: str | None
    observed_resume_count: int
    newly_halted: bool
    resumed: bool
    condition: tuple[str, str, str]  # (status, reason, message) of the Halted condition

    def status_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "halted": self.halted,
            "failedNodes": list(self.failed_nodes),
            "observedResumeCount": self.observed_resume_count,
        }
        fields["haltedAt"] = self.halted_at
        return fields


def counts_against(record: FailureRecord, *, version: str, resume_count: int) -> bool:
    return (
        record.version == version and record.reason in BUDGET_REASONS and record.resume_count == resume_count
    )


def evaluate_budget(
    *,
    version: str,
    failure_budget: int,
    resume_count: int,
    old_status: Mapping[str, Any] | None,
    failures: Mapping[str, FailureRecord],
    now: datetime,
) -> BudgetDecision:
    """The release's halted state after ``failures`` (node key -> that node's last failure)."""
    if failure_budget < 1:
        raise ValueError(f"spec.failureBudget must be >= 1, got {failure_budget}")
    if resume_count < 0:
        raise ValueError(f"spec.resumeCount must be >= 0, got {resume_count}")
    old = old_status or {}
    observed = int(old.get("observedResumeCount") or 0)
    resumed = resume_count > observed
    was_halted = bool(old.get("halted")) and not resumed
    failed = set() if resumed else {str(n) for n in old.get("failedNodes") or ()}
    failed |= {
        node
        for node, rec in failures.items()
        if counts_against(rec, version=version, resume_count=resume_count)
    }
    halted = was_halted or len(failed) >= failure_budget
    newly_halted = halted and not was_halted
    halted_at = (iso(now) if newly_halted else old.get("haltedAt")) if halted else None
    nodes = tuple(sorted(failed))
    if halted:
        listed = ", ".join(nodes[:20]) + (f" and {len(nodes) - 20} more" if len(nodes) > 20 else "")
        condition = (
            "True",
            "FailureBudgetExhausted",
            f"{len(nodes)} node(s) failed and rolled back (budget {failure_budget}): {listed}; "
            "increment spec.resumeCount to resume",
        )
    elif resumed and bool(old.get("halted")):
        condition = (
            "False",
            "Resumed",
            f"resumed (resumeCount {resume_count}); {len(nodes)} failure(s) since",
        )
    else:
        condition = ("False", "WithinBudget", f"{len(nodes)} of {failure_budget} allowed node failure(s)")
    return BudgetDecision(
        halted=halted,
        failed_nodes=nodes,
        halted_at=halted_at,
        observed_resume_count=resume_count,
        newly_halted=newly_halted,
        resumed=resumed and bool(old.get("halted")),
        condition=condition,
    )
