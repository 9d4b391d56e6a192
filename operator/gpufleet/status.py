"""Status of InferenceNodes and OperatorPools, computed from the world, and the minimal patch.

Everything here is deterministic for the same inputs (conditions keep their transition time,
numbers are rounded the same way), so ``status_patch`` returns None for a converged object and
the reconciler writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gpufleet import conditions
from gpufleet.api.conditions import InferenceNodeCondition, OperatorPoolCondition, Reason
from gpufleet.api.quantity import format_int_amount, format_ratio
from gpufleet.conditions import Clock, utcnow
from gpufleet.devices import NodePlan, Observation, effective_verdict, validated_vram_mib
from gpufleet.hardware.catalog import Catalog
from gpufleet.objects import InodeView, PodView, PoolView
from gpufleet.shares import device_share, self_stake_ratio

GPU_VALIDATED = InferenceNodeCondition.GPU_VALIDATED
ENGINE_SELECTED = InferenceNodeCondition.ENGINE_SELECTED
READY = InferenceNodeCondition.READY
MINIMUM_SELF_STAKE = OperatorPoolCondition.MINIMUM_SELF_STAKE

#: Top-level InferenceNode status keys this module owns (others, e.g. ``rollout`` and the
#: ``currentVersion``/``targetVersion``/``lastStableVersion`` it keeps, belong to the rollout controller).
INODE_KEYS = ("observedGeneration", "devices", "readyDevices", "totalDevices", "conditions")
#: Condition types the InferenceNode pass's device/pod part owns (the rollout step owns its own).
INODE_CONDITIONS = (GPU_VALIDATED, ENGINE_SELECTED, READY)
#: Condition types of an OperatorPool (one owner: the pool pass).
POOL_CONDITIONS = (MINIMUM_SELF_STAKE, READY)


@dataclass(frozen=True)
class PoolContext:
    """What an InferenceNode's shares depend on, besides its own devices."""

    exists: bool
    other_vram_mib: int  # validated VRAM of the pool's *other* InferenceNodes
    total_stake: int  # base units
    reputation_weight: Decimal
    k: Decimal


@dataclass(frozen=True)
class ReleaseInfo:
    version: str | None
    image: str | None
    source: str  # e.g. "EngineRelease stable-1-2-0" or "default image", for the condition message


def _device_entry(
    index: int,
    planned_product: str | None,
    planned_vram: int | None,
    planned_cc: str | None,
    observed: Observation | None,
    pod: PodView | None,
    inode: InodeView,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index}
    if observed is not None and not observed.admissible:
        observed = None  # its values would make the API refuse the whole status (#21 F4)
    if observed is not None:
        dev = observed.device
        entry.update(
            uuid=dev.uuid,
            product=dev.name,
            architecture=dev.architecture,
            computeCapability=dev.compute_capability,
            vramMiB=dev.memory_total_mib,
        )
    else:
        if planned_product:
            entry["product"] = planned_product
        if planned_cc:
            entry["computeCapability"] = planned_cc
        if planned_vram is not None:
            entry["vramMiB"] = planned_vram
    if pod is not None:
        entry["podName"] = pod.name
    engine = observed.engine if observed is not None and observed.engine else None
    if engine is None and inode.engine != "auto":
        engine = inode.engine
    if engine:
        entry["engine"] = engine
    return entry


def inode_status(
    inode: InodeView,
    node_plan: NodePlan,
    pods: Iterable[PodView],
    observations: Mapping[int, Observation],
    release: ReleaseInfo | None,
    pool: PoolContext,
    *,
    now: Clock = utcnow,
) -> tuple[dict[str, Any], int]:
    """The InferenceNode's status and its own validated VRAM (MiB, for the pool index)."""
    pods_by_index: dict[int, PodView] = {}
    for pod in pods:
        if pod.device_index is not None and not pod.deleting:
            pods_by_index.setdefault(pod.device_index, pod)
    own_vram = 0
    verdicts = {}
    for planned in node_plan.devices:
        verdict = effective_verdict(planned, observations.get(planned.index))
        verdicts[planned.index] = verdict
        own_vram += validated_vram_mib(observations.get(planned.index), verdict)
    pool_vram = pool.other_vram_mib + own_vram

    devices: list[dict[str, Any]] = []
    ready_count = 0
    blocked: list[str] = []
    rejected: list[str] = []
    pending = 0
    versions: set[str] = set()
    for planned in node_plan.devices:
        observed = observations.get(planned.index)
        pod_of = pods_by_index.get(planned.index)
        verdict = verdicts[planned.index]
        entry = _device_entry(planned.index, planned.product, planned.labelled_vram_mib,
                              planned.compute_capability, observed, pod_of, inode)
        entry["validation"] = verdict.as_status()
        vram = validated_vram_mib(observed, verdict)
        if vram and pool.exists and pool_vram > 0:
            share = device_share(vram, pool_vram, pool.total_stake, pool.k, pool.reputation_weight)
            entry.update(vramShare=share.share_number, effectiveStake=share.effective_stake_text,
                         priorityScore=share.priority_number)
        else:
            entry.update(vramShare=0.0, effectiveStake="0", priorityScore=0.0)
        ready = bool(pod_of is not None and pod_of.ready and pod_of.gate_status == "True" and verdict.valid)
        entry["ready"] = ready
        entry["routable"] = ready
        ready_count += ready
        if pod_of is not None and pod_of.version:
            versions.add(pod_of.version)
        if pod_of is not None and pod_of.finished and pod_of.reason:
            rejected.append(f"GPU {planned.index}: pod {pod_of.name} {pod_of.phase}: {pod_of.reason}"
                            + (f": {pod_of.message}" if pod_of.message else ""))
        if verdict.pending:
            pending += 1
        elif not verdict.valid:
            blocked.append(f"GPU {planned.index}: {verdict.reason}: {verdict.message}")
        devices.append(entry)

    gen = inode.generation or None
    conds: list[dict[str, Any]] = [dict(c) for c in inode.status.get("conditions") or ()]

    def setc(type_: str, status: conditions.Status, reason: str, message: str) -> None:
        nonlocal conds
        conds = conditions.set_condition(conds, type_, status, reason, message,
                                         observed_generation=gen, now=now)

    total = len(node_plan.devices)
    if total == 0 and not node_plan.node_observed:
        setc(GPU_VALIDATED, "False", Reason.NODE_NOT_FOUND, node_plan.problem or "Kubernetes node not found")
    elif total == 0:
        setc(GPU_VALIDATED, "False", Reason.NO_GPUS, node_plan.problem or "no GPU planned")
    elif blocked:
        setc(GPU_VALIDATED, "False", Reason.DEVICE_BLOCKED,
             f"{len(blocked)} of {total} GPUs blocked: " + "; ".join(blocked))
    elif pending:
        setc(GPU_VALIDATED, "Unknown", Reason.AWAITING_HARDWARE_REPORT,
             f"{pending} of {total} GPUs not yet confirmed by their agent")
    else:
        note = f" ({node_plan.problem})" if node_plan.problem else ""
        setc(GPU_VALIDATED, "True", Reason.ALL_VALID, f"all {total} GPUs validated{note}")
    if release is None or release.image is None:
        channel = inode.release_version or inode.release_channel or "stable"
        why = release.source if release is not None and release.source else (
            f"no EngineRelease matches {channel!r} and no default image is set")
        setc(ENGINE_SELECTED, "False", Reason.NO_MATCHING_RELEASE, why)
    else:
        setc(ENGINE_SELECTED, "True", Reason.RELEASE_SELECTED, f"{release.source}: version {release.version}")
    valid_total = sum(1 for v in verdicts.values() if v.valid)
    if not pool.exists:
        setc(READY, "False", Reason.POOL_NOT_FOUND, f"OperatorPool {inode.pool!r} does not exist")
    elif rejected:
        # Say why (#21 F2): the pods are replaced with back-off, not in a tight loop.
        setc(READY, "False", Reason.POD_REJECTED,
             f"{ready_count} of {valid_total} validated GPUs serving; " + "; ".join(rejected))
    elif ready_count and ready_count == valid_total:
        # Say what is true: "all validated GPUs", and how many are blocked (#21 F12).
        more = f"; {total - valid_total} of {total} GPUs not validated" if valid_total < total else ""
        setc(READY, "True", Reason.ALL_ENGINES_READY, f"all {ready_count} validated GPUs serving{more}")
    elif ready_count:
        setc(READY, "False", Reason.PARTIALLY_READY, f"{ready_count} of {valid_total} validated GPUs serving")
    else:
        setc(READY, "False", Reason.NO_ENGINE_READY, f"0 of {total} GPUs serving")

    status: dict[str, Any] = {
        "observedGeneration": inode.generation,
        "devices": devices,
        "readyDevices": ready_count,
        "totalDevices": total,
        "conditions": conds,
    }
    if release is not None and release.version:
        status["targetVersion"] = release.version
    if len(versions) == 1:
        status["currentVersion"] = next(iter(versions))
    return status, own_vram


def status_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any],
                 keys: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Only the owned top-level keys that differ; None when there is nothing to write."""
    old = old or {}
    patch = {k: v for k, v in new.items() if (keys is None or k in keys) and old.get(k) != v}
    return patch or None


def inode_validated_vram(status: Mapping[str, Any] | None, catalog: Catalog) -> tuple[int, int, int]:
    """(validated VRAM MiB, validated devices, ready devices) read back from a written status.

    Uses the catalog's nominal VRAM of the reported product, exactly as ``devices.validated_vram_mib``
    does when the status is computed, so the pool index and the shares agree.
    """
    vram = valid = ready = 0
    for dev in (status or {}).get("devices") or ():
        if not (dev.get("validation") or {}).get("valid"):
            continue
        model = catalog.by_name(str(dev.get("product") or ""))
        vram += model.vram_mib if model is not None else int(dev.get("vramMiB") or 0)
        valid += 1
        ready += bool(dev.get("ready"))
    return vram, valid, ready


def _ratio(value: Fraction) -> str:
    """Six decimals, rounded down: a self-stake ratio is never shown above what it is."""
    return format_ratio(value, 6, round_down=True)


def pool_status(
    pool: PoolView,
    validated_vram_mib: int,
    devices: int,
    ready_devices: int,
    min_self_stake_bps: int,
    *,
    now: Clock = utcnow,
) -> dict[str, Any]:
    total = pool.total_stake
    ratio = self_stake_ratio(pool.self_stake, total)
    gen = pool.generation or None
    conds: list[dict[str, Any]] = [dict(c) for c in pool.status.get("conditions") or ()]

    def setc(type_: str, status: conditions.Status, reason: str, message: str) -> None:
        nonlocal conds
        conds = conditions.set_condition(conds, type_, status, reason, message,
                                         observed_generation=gen, now=now)

    minimum = _ratio(Fraction(min_self_stake_bps, 10000))
    if total == 0:
        setc(MINIMUM_SELF_STAKE, "False", Reason.NO_STAKE, "the pool has no stake")
    elif ratio * 10000 < min_self_stake_bps:
        setc(MINIMUM_SELF_STAKE, "False", Reason.BELOW_MINIMUM,
             f"self stake is {_ratio(ratio)} of the total, below the minimum {minimum}: add self stake")
    else:
        setc(MINIMUM_SELF_STAKE, "True", Reason.MINIMUM_MET,
             f"self stake is {_ratio(ratio)} of the total (minimum {minimum})")
    if ready_devices:
        setc(READY, "True", Reason.DEVICES_SERVING, f"{ready_devices} of {devices} validated GPUs serving")
    else:
        setc(READY, "False", Reason.NO_DEVICE_SERVING, f"0 of {devices} validated GPUs serving")
    return {
        "observedGeneration": pool.generation,
        "totalStake": format_int_amount(total),
        "validatedVRAMMiB": validated_vram_mib,
        "devices": devices,
        "readyDevices": ready_devices,
        "selfStakeRatio": _ratio(ratio),
        "conditions": conds,
    }


def share_events(
    old_devices: Iterable[Mapping[str, Any]] | None,
    new_devices: Iterable[Mapping[str, Any]],
    threshold: Decimal,
) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for device transitions worth a human's attention."""
    before = {d.get("index"): d for d in old_devices or ()}
    events: list[tuple[str, str, str]] = []
    for dev in new_devices:
        index = dev.get("index")
        old = before.get(index) or {}
        val, old_val = dev.get("validation") or {}, old.get("validation") or {}
        if val.get("reason") != old_val.get("reason"):
            if val.get("valid"):
                events.append(("Normal", "DeviceValidated", f"GPU {index}: {val.get('message')}"))
            elif val.get("reason") != Reason.AWAITING_HARDWARE_REPORT:
                events.append(("Warning", Reason.DEVICE_BLOCKED,
                               f"GPU {index} blocked ({val.get('reason')}): {val.get('message')}"))
        share, old_share = dev.get("vramShare"), old.get("vramShare")
        # A share appearing (device just validated) or vanishing (blocked) has its own Event.
        if old_share and share and abs(Decimal(str(share)) - Decimal(str(old_share))) > threshold:
            events.append(("Normal", "ShareChanged",
                           f"GPU {index}: VRAM share {old_share} -> {share}, effective stake "
                           f"{old.get('effectiveStake')} -> {dev.get('effectiveStake')} INT, "
                           f"priority {dev.get('priorityScore')}"))
    return events
