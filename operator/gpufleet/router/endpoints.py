"""Raw Kubernetes bodies (pods, InferenceNodes, OperatorPools) -> router endpoint records (pure).

The router reads what the operator wrote: a pod's labels (pool, inference node, device index,
``gpufleet.io/routable``), its ``gpufleet.io/engine-ready`` readiness gate, its IP and ``http``
port; the InferenceNode's status (per device ``effectiveStake``) and spec (models); the pool's
reputation weight (``gpufleet.reputation.routing.device_reputation_weight``: the
``spec.reputationWeight`` override when set, else the measured per-device weight in
``status.reputation``) and annotations. Priorities are recomputed from effective stake with the
router's ``k`` (so a live k changes routing without waiting for the operator's status writes).

Penalties and halts: the reputation controller makes enforced ``Penalty`` objects visible to the
router as an RFC 3339 timestamp in the annotation ``RouterSettings.penalty_annotation`` on the
pool (also honoured on the InferenceNode or the pod), which removes the devices until then;
``RouterSettings.halt_annotation: "true"`` on the pool stops its traffic. ``penalised`` (a
callable) is a further seam for other sources of penalties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from gpufleet.api.quantity import AmountError, parse_int_amount
from gpufleet.objects import LABEL_DEVICE, LABEL_INODE, LABEL_POOL, LABEL_ROUTABLE, READY_GATE
from gpufleet.reputation.routing import device_reputation_weight
from gpufleet.router.settings import RouterSettings
from gpufleet.router.weights import Endpoint

Body = Mapping[str, Any]
#: Pod annotation: the engine's maximum concurrent sequences (router concurrency cap).
ANNOTATION_MAX_CONCURRENCY = "gpufleet.io/max-concurrency"

PenaltyHook = Callable[[str, str, str, int], bool]
"""(namespace, pool, inference node, device) -> penalised now? (the reputation system's seam)."""


def _meta(body: Body) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _penalised_by_annotation(annotations: Mapping[str, str], key: str, now: datetime) -> bool:
    raw = annotations.get(key)
    if not raw:
        return False
    until = _parse_time(raw)
    return until is None or until > now  # an unreadable timestamp errs on the safe side


def _http_port(pod: Body, default: int) -> int:
    for container in (pod.get("spec") or {}).get("containers") or ():
        for port in container.get("ports") or ():
            if port.get("name") == "http":
                return int(port.get("containerPort") or default)
    return default


def _device_stakes(inode: Body | None) -> dict[int, int]:
    """Device index -> effective stake (base units) from an InferenceNode's status."""
    out: dict[int, int] = {}
    for device in ((inode or {}).get("status") or {}).get("devices") or ():
        index = device.get("index")
        if isinstance(index, int):
            try:
                out[index] = parse_int_amount(str(device.get("effectiveStake") or "0"))
            except AmountError:
                out[index] = 0
    return out


def build_endpoints(
    pods: Iterable[Body],
    inodes: Mapping[tuple[str, str], Body],
    pools: Mapping[tuple[str, str], Body],
    settings: RouterSettings,
    now: datetime,
    penalised: PenaltyHook | None = None,
) -> list[Endpoint]:
    """One Endpoint per gpufleet engine pod with a device index; everything else is ignored."""
    out: list[Endpoint] = []
    stakes: dict[tuple[str, str], dict[int, int]] = {}
    for pod in pods:
        meta = _meta(pod)
        labels = meta.get("labels") or {}
        inode_name = labels.get(LABEL_INODE)
        raw_index = labels.get(LABEL_DEVICE)
        if not inode_name or raw_index is None:
            continue
        try:
            index = int(raw_index)
        except ValueError:
            continue
        ns = str(meta.get("namespace") or "default")
        inode = inodes.get((ns, inode_name))
        pool_name = str(
            labels.get(LABEL_POOL) or ((inode or {}).get("spec") or {}).get("poolRef", {}).get("name") or ""
        )
        pool = pools.get((ns, pool_name))
        device_stakes = stakes.get((ns, inode_name))
        if device_stakes is None:
            device_stakes = stakes[(ns, inode_name)] = _device_stakes(inode)
        status = pod.get("status") or {}
        conditions = status.get("conditions") or ()
        gate_open = any(c.get("type") == READY_GATE and c.get("status") == "True" for c in conditions)
        running = status.get("phase") == "Running" and not meta.get("deletionTimestamp")
        pool_ann = _meta(pool or {}).get("annotations") or {}
        penalty = any(
            _penalised_by_annotation(
                _meta(src or {}).get("annotations") or {}, settings.penalty_annotation, now
            )
            for src in (pool, inode, pod)
        )
        if penalised is not None and penalised(ns, pool_name, inode_name, index):
            penalty = True
        cap_raw = (meta.get("annotations") or {}).get(ANNOTATION_MAX_CONCURRENCY)
        try:
            cap: int | None = int(cap_raw) if cap_raw else (settings.default_max_concurrency or None)
        except ValueError:
            cap = settings.default_max_concurrency or None
        models = tuple(
            str(m.get("name")) for m in ((inode or {}).get("spec") or {}).get("models") or () if m.get("name")
        )
        out.append(
            Endpoint(
                namespace=ns,
                pool=pool_name,
                inference_node=inode_name,
                device=index,
                pod=str(meta.get("name") or ""),
                models=models,
                ip=status.get("podIP") or None,
                port=_http_port(pod, settings.engine_port),
                effective_stake_base=device_stakes.get(index, 0),
                # #17: the spec override, else the measured per-device weight (status.reputation)
                reputation_weight=device_reputation_weight(pool, inode_name, index),
                running=running,
                gate_open=gate_open,
                routable=labels.get(LABEL_ROUTABLE) == "true",
                pool_halted=str(pool_ann.get(settings.halt_annotation, "")).lower() == "true" or pool is None,
                penalised=penalty,
                max_concurrency=cap,
            )
        )
    return out
