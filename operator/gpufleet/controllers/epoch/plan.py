"""Pure planners of the epoch controller: facts from objects, the Epoch body, status, awards.

Nothing here does I/O; ``controller.py`` feeds these functions what it read and writes what
they return. Pools are ``namespace/name`` strings; amounts are integer base units until the
moment they are written as INT decimal strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from gpufleet.api.quantity import parse_int_amount
from gpufleet.api.v1alpha1.epoch import Epoch, epoch_object_name
from gpufleet.economics.accounting import PoolWork, Scrape, SeriesKey, SeriesSample
from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.merkle import hash_leaf, leaf_preimage, verify_proof
from gpufleet.economics.points import (
    apply_award,
    format_points,
    format_signed_points,
    parse_signed_points,
    pool_compute_points,
)
from gpufleet.economics.rewards import (
    EpochRewards,
    PoolEpochInput,
    RecordedLine,
    penalized_seconds,
    pool_address,
    rebuild_trees,
    verify_record,
)
from gpufleet.economics.stakesource import LedgerPoolStake, meets_min_self_stake
from gpufleet.economics.units import format_int
from gpufleet.router.stats import RouterStats

API_VERSION = "gpufleet.io/v1alpha1"
HALTED_ANNOTATION = "gpufleet.io/halted"
_RATIO_PLACES = 9


def rfc3339(ts: int) -> str:
    """Unix seconds to ``2025-06-13T00:00:00Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> int | None:
    """RFC 3339 to unix seconds (None when absent or unreadable)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def ratio_text(num: int, den: int) -> str:
    """``num/den`` in [0, 1] as a decimal string rounded down to 9 places (a UnitRatio)."""
    if den <= 0 or num >= den:
        return "1" if den > 0 and num >= den else "0"
    scaled = num * 10**_RATIO_PLACES // den
    text = f"0.{scaled:0{_RATIO_PLACES}d}".rstrip("0")
    return "0" if text == "0." else text


def pool_key(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


@dataclass(frozen=True)
class PoolFacts:
    """What the epoch close needs of one OperatorPool."""

    pool: str
    address: str
    self_stake: int
    stake: int
    commission_bps: int
    halted: bool
    source: str  # "spec" | "ledger"

    @property
    def meets_min_self_stake(self) -> bool:
        return meets_min_self_stake(min(self.self_stake, self.stake), self.stake)


def ledger_ref(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(ConfigMap name, pool id) of a ledger-sourced pool, else None."""
    ledger = ((body.get("spec") or {}).get("stakeSource") or {}).get("ledger")
    if not isinstance(ledger, Mapping):
        return None
    ref = ledger.get("configMapRef") or {}
    return str(ref.get("name", "")), str(ledger.get("poolId", ""))


def pool_facts(body: Mapping[str, Any], ledger: LedgerPoolStake | None = None) -> PoolFacts:
    """Stake, commission and halt of a pool from its spec, or from its ledger when it has one.

    A ledger-sourced pool whose ledger could not be read has no stake (and is reported by the
    controller); a pool is halted by its ledger or by the ``gpufleet.io/halted: "true"``
    annotation (a platform engineer's halt of a pool with hand-typed stake).
    """
    spec = body.get("spec") or {}
    key = pool_key(body)
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    spec_halted = str(annotations.get(HALTED_ANNOTATION, "")).lower() == "true"
    if ledger_ref(body) is not None:
        if ledger is None:
            return PoolFacts(key, pool_address(key), 0, 0, 0, spec_halted, "ledger")
        return PoolFacts(
            key,
            ledger.address,
            ledger.self_stake,
            ledger.total_stake,
            ledger.commission_bps,
            ledger.halted or spec_halted,
            "ledger",
        )
    own = parse_int_amount(str(spec.get("selfStake", "0")))
    delegated = parse_int_amount(str(spec.get("delegatedStake", "0")))
    return PoolFacts(
        key, pool_address(key), own, own + delegated, int(spec.get("commissionBps", 0)), spec_halted, "spec"
    )


def penalty_intervals(penalties: Iterable[Mapping[str, Any]], pool: str) -> list[tuple[int, int | None]]:
    """``[start, until)`` of every enforced penalty of ``pool`` (a ``Penalty`` object per item).

    Reads ``spec.pool``, ``spec.start``/``spec.until`` (or the same under ``status``; a missing
    start is the creation time, a missing until a permanent suspension). Penalties the safety cap
    held back (``status.enforcement: Capped``) kept the pool routing, so they do not count.
    """
    out: list[tuple[int, int | None]] = []
    for p in penalties:
        spec = p.get("spec") or {}
        status = p.get("status") or {}
        meta = p.get("metadata") or {}
        target = spec.get("pool")
        if isinstance(target, Mapping):
            target = target.get("name")
        if f"{meta.get('namespace') or 'default'}/{target}" != pool:
            continue
        if status.get("enforcement") == "Capped":
            continue
        start = parse_time(spec.get("start")) or parse_time(status.get("start"))
        start = start if start is not None else parse_time(meta.get("creationTimestamp"))
        if start is None:
            continue
        until = parse_time(spec.get("until"))
        until = until if until is not None else parse_time(status.get("until"))
        out.append((start, until))
    return out


def epoch_inputs(
    facts: Sequence[PoolFacts],
    tally: Mapping[str, PoolWork],
    penalties: Sequence[Mapping[str, Any]],
    start: int,
    end: int,
) -> list[PoolEpochInput]:
    """The close's inputs: every pool that exists, its counted jobs, stake and penalty time."""
    return [
        PoolEpochInput(
            pool=f.pool,
            address=f.address,
            stake=f.stake,
            completed=tally[f.pool].completed if f.pool in tally else 0,
            commission_bps=f.commission_bps,
            penalized_seconds=penalized_seconds(penalty_intervals(penalties, f.pool), start, end),
            halted=f.halted,
        )
        for f in facts
    ]


def build_epoch_body(
    result: EpochRewards,
    facts: Sequence[PoolFacts],
    tally: Mapping[str, PoolWork],
    *,
    carried_jobs: int = 0,
    router_resets: int = 0,
    max_leaves_per_tree: int | None = None,
) -> dict[str, Any]:
    """The Epoch object for a computed close (validated against the API model)."""
    by_pool = {f.pool: f for f in facts}
    length = result.end - result.start
    lines = []
    for line in result.pools:
        work = tally.get(line.pool)
        f = by_pool.get(line.pool)
        lines.append(
            {
                "pool": line.pool,
                "address": line.address,
                "completedJobs": line.completed,
                "tokens": work.tokens if work else 0,
                "stake": format_int(line.stake),
                "stakeSource": f.source if f else "spec",
                "eligibleSeconds": line.eligible_seconds,
                "eligibility": ratio_text(line.eligible_seconds, length),
                "halted": bool(f and f.halted),
                "score": str(line.score),
                "reward": format_int(line.reward),
                "commission": format_int(line.commission),
            }
        )
    spec: dict[str, Any] = {
        "number": result.epoch,
        "start": rfc3339(result.start),
        "end": rfc3339(result.end),
        "lengthSeconds": length,
        "emission": format_int(result.emission),
        "distributed": format_int(result.distributed),
        "undistributed": format_int(result.undistributed),
        "rule": result.rule,
        "poolsPaid": result.pools_paid,
        "merkleRoots": result.merkle_roots,
        "pools": lines,
        "counting": {"carriedJobs": carried_jobs, "routerResets": router_resets},
    }
    if max_leaves_per_tree is not None:
        spec["maxLeavesPerTree"] = max_leaves_per_tree
    body = {
        "apiVersion": API_VERSION,
        "kind": "Epoch",
        "metadata": {
            "name": epoch_object_name(result.epoch),
            "labels": {"app.kubernetes.io/managed-by": "gpufleet", "gpufleet.io/epoch": str(result.epoch)},
        },
        "spec": spec,
    }
    Epoch.model_validate(body)
    return body


@dataclass(frozen=True)
class RecordedEpoch:
    """An Epoch object read back: what ``proof`` and ``verify`` work on."""

    number: int
    lines: tuple[RecordedLine, ...]
    roots: tuple[str, ...]
    emission: int
    undistributed: int
    max_leaves_per_tree: int | None
    commission: dict[str, int]

    def problems(self) -> list[str]:
        return verify_record(
            self.lines, self.roots, self.emission, self.undistributed, self.max_leaves_per_tree
        )


def read_epoch(body: Mapping[str, Any]) -> RecordedEpoch:
    """Parse (and validate) an Epoch object."""
    epoch = Epoch.model_validate(dict(body))
    spec = epoch.spec
    return RecordedEpoch(
        number=spec.number,
        lines=tuple(RecordedLine(p.pool, p.address, parse_int_amount(p.reward)) for p in spec.pools),
        roots=tuple(spec.merkle_roots),
        emission=parse_int_amount(spec.emission),
        undistributed=parse_int_amount(spec.undistributed),
        max_leaves_per_tree=spec.max_leaves_per_tree,
        commission={p.pool: parse_int_amount(p.commission) for p in spec.pools},
    )


def proof_document(record: RecordedEpoch, pool: str) -> dict[str, Any]:
    """Everything needed to check ``pool``'s reward on chain: leaf, proof, root, and the check."""
    line = next((x for x in record.lines if x.pool == pool), None)
    if line is None:
        raise KeyError(f"epoch {record.number} has no line for pool {pool}")
    trees = rebuild_trees(record.lines, record.max_leaves_per_tree)
    loc = trees.locate(line.address)
    assert loc is not None  # every line is a leaf
    root = trees.roots[loc.merkle_index].hex()
    ok = root == record.roots[loc.merkle_index] and verify_proof(
        trees.roots[loc.merkle_index], loc.leaf, loc.proof
    )
    return {
        "epoch": record.number,
        "pool": pool,
        "address": line.address,
        "tokenAmount": line.reward,
        "usdcAmount": 0,
        "reward": format_int(line.reward),
        "leaf": loc.leaf.data().decode(),
        "leafPreimage": leaf_preimage(loc.leaf).hex(),
        "leafHash": hash_leaf(loc.leaf).hex(),
        "merkleIndex": loc.merkle_index,
        "proof": loc.proof.hex(),
        "proofPath": list(loc.proof.path),
        "root": record.roots[loc.merkle_index] if loc.merkle_index < len(record.roots) else None,
        "verified": ok,
    }


# --- points --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Award:
    """A PointsAward as the planner sees it."""

    name: str
    pool: str
    micro: int
    created: int
    reason: str


@dataclass(frozen=True)
class AwardDecision:
    applied: bool
    total_after: int
    message: str


def read_award(body: Mapping[str, Any]) -> Award | None:
    """A PointsAward object; None when it cannot be read (its status says why elsewhere)."""
    spec = body.get("spec") or {}
    meta = body.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    try:
        micro = parse_signed_points(str(spec.get("points")))
    except EconomicsError:  # a malformed award is simply not applied
        return None
    target = (spec.get("pool") or {}).get("name")
    return Award(
        name=f"{ns}/{meta.get('name')}",
        pool=f"{ns}/{target}",
        micro=micro,
        created=parse_time(meta.get("creationTimestamp")) or 0,
        reason=str(spec.get("reason", "")),
    )


@dataclass(frozen=True)
class PointsPlan:
    compute: int
    bonus: int
    tokens: int
    decisions: dict[str, AwardDecision]

    @property
    def total(self) -> int:
        return self.compute + self.bonus


def plan_points(
    tokens_by_model: Mapping[str, int],
    awards: Iterable[Award],
    table: Mapping[str, int] | None = None,
    default_params_millions: int = 1_000,
) -> PointsPlan:
    """A pool's points: compute points, then its awards oldest first, each only if the total stays >= 0.

    Deterministic from the current objects: deleting an earlier award can turn a later
    correction into a rejected one (and back), never a negative total.
    """
    compute = pool_compute_points(tokens_by_model, table, default_params_millions)
    total = compute
    bonus = 0
    decisions: dict[str, AwardDecision] = {}
    for a in sorted(awards, key=lambda a: (a.created, a.name)):
        try:
            total = apply_award(total, a.micro, pool=a.pool)
        except EconomicsError as exc:  # the total would go negative
            decisions[a.name] = AwardDecision(False, total, str(exc))
            continue
        bonus += a.micro
        decisions[a.name] = AwardDecision(
            True, total, f"{format_signed_points(a.micro)} points for {a.pool}: {a.reason}"
        )
    return PointsPlan(compute, bonus, sum(tokens_by_model.values()), decisions)


def points_status(plan: PointsPlan, now: int) -> dict[str, Any]:
    return {
        "total": format_points(plan.total),
        "compute": format_points(plan.compute),
        "bonus": format_signed_points(plan.bonus),
        "tokens": plan.tokens,
        "updatedAt": rfc3339(now),
    }


def pool_status_patch(
    current: Mapping[str, Any],
    *,
    points: Mapping[str, Any] | None = None,
    ledger_stake: Mapping[str, Any] | None = None,
    last_epoch_reward: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The merge patch of the epoch controller's status fields, or None when nothing changed.

    ``points.updatedAt`` alone never causes a write.
    """
    patch: dict[str, Any] = {}
    if points is not None:
        old = dict(current.get("points") or {})
        if {k: v for k, v in old.items() if k != "updatedAt"} != {
            k: v for k, v in points.items() if k != "updatedAt"
        }:
            patch["points"] = dict(points)
    if ledger_stake is not None and dict(current.get("ledgerStake") or {}) != dict(ledger_stake):
        patch["ledgerStake"] = dict(ledger_stake)
    if last_epoch_reward is not None and dict(current.get("lastEpochReward") or {}) != dict(
        last_epoch_reward
    ):
        patch["lastEpochReward"] = dict(last_epoch_reward)
    return patch or None


def last_epoch_reward(body: Mapping[str, Any], pool: str) -> dict[str, Any] | None:
    """The pool's line of an Epoch object, as ``status.lastEpochReward``."""
    spec = body.get("spec") or {}
    for line in spec.get("pools", []):
        if line.get("pool") == pool:
            return {
                "epoch": spec["number"],
                "reward": line["reward"],
                "commission": line["commission"],
                "completedJobs": line["completedJobs"],
                "eligibility": line["eligibility"],
            }
    return None


def share(part: int, whole: int) -> Fraction:
    return Fraction(part, whole) if whole else Fraction(0)


def scrape_from_router_stats(stats: RouterStats) -> Scrape:
    """The router's stats snapshot (``gpufleet.router.stats``) as one accounting scrape.

    ``since`` (when the router's monotonic counters started; it survives router restarts because
    the router checkpoints its counters) is the boot id: a new ``since`` is a counter reset.
    """
    samples = tuple(
        SeriesSample(
            SeriesKey(
                stats.router,
                f"{d.key.namespace}/{d.key.pool}",
                d.key.inference_node,
                str(d.key.device),
                d.key.model,
            ),
            d.completions,
            d.tokens.prompt,
            d.tokens.completion,
        )
        for d in stats.devices
    )
    since = int(stats.since.timestamp())
    return Scrape(
        source=stats.router,
        boot=stats.since.isoformat(),
        at=int(stats.observed_at.timestamp()),
        series=samples,
        started_at=since,
    )


def parse_model_params(text: str) -> dict[str, int]:
    """``"org/model-a=8000,model-b=13000"`` (millions of parameters) to a table."""
    table: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise ValueError(f"points_model_params item {item!r} must be model=<millions of parameters>")
        table[name.strip()] = int(value)
    return table


def condition(
    current: Sequence[Mapping[str, Any]],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: int,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """Conditions with ``type_`` set; the transition time only moves when the status changes."""
    old = next((c for c in current if c.get("type") == type_), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == status else rfc3339(now)
    new = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    return [dict(c) for c in current if c.get("type") != type_] + [new]
