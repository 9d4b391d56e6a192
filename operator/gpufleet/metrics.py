"""The operator's Prometheus metrics.

Every metric lives in a dedicated ``CollectorRegistry`` owned by an ``OperatorMetrics`` instance,
so tests (and several operators in one process, as the demo runs) never clash on the global
default registry. The operator records through the module-level ``METRICS`` instance (or the
bound helpers re-exported below); tests build their own ``OperatorMetrics()``.

Per-object series (one inference node's devices, one pool, one rollout) are *replaced* as a
whole on each record call, so devices that disappear or change state never leave stale series.

Names follow Prometheus conventions: ``gpufleet_`` prefix, base units in the name (``_seconds``,
``_bytes``, ``_ratio``, ``_total`` for counters). Stake is reported in whole INT (the token is its
own unit; base units are 10^-9 INT, too small to read on a dashboard).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter as _Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric

from gpufleet.api.quantity import parse_int_amount

#: 1 INT = 10^9 base units (contracts.md, OperatorPool).
BASE_UNITS_PER_INT: Final = 10**9
MIB: Final = 1024 * 1024

#: Device states the fleet overview groups by. ``blocked`` means the GPU failed validation (see
#: ``gpufleet_blocked_devices`` for the reason); ``pending`` means no pod yet or not scheduled;
#: ``unready`` a pod exists but its readiness gate is not True; ``updating`` a rollout replaces it.
DEVICE_STATES: Final = ("ready", "pending", "unready", "updating", "blocked")

#: Terminal results of one rollout (``gpufleet_rollout_results_total{result}``).
ROLLOUT_RESULTS: Final = ("succeeded", "rolled_back", "halted", "failed")

#: Verbs the operator's API client may report (``gpufleet_api_requests_total{verb}``).
API_VERBS: Final = ("get", "list", "watch", "create", "update", "patch", "delete", "proxy")

ENGINES: Final = ("vllm", "sglang", "none")

_RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_API_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ROLLOUT_BUCKETS: Final = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)

_CAMEL = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_CONTROLLER = re.compile(r"^[a-z][a-z0-9_-]*$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class MetricsInputError(ValueError):
    """A recorder was given a value that would produce a wrong or unbounded series."""


def _check_name(kind: str, value: str) -> str:
    if not value or len(value) > 253 or not _K8S_NAME.match(value):
        raise MetricsInputError(f"{kind} must be a Kubernetes object name, got {value!r}")
    return value


def _check_choice(kind: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise MetricsInputError(f"{kind} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _check_camel(kind: str, value: str) -> str:
    if not _CAMEL.match(value):
        raise MetricsInputError(f"{kind} must be a CamelCase reason like 'VRAMMismatch', got {value!r}")
    return value


def _check_ratio(kind: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise MetricsInputError(f"{kind} must be within [0, 1], got {value!r}")
    return value


def _check_non_negative(kind: str, value: float) -> float:
    if value < 0:
        raise MetricsInputError(f"{kind} must not be negative, got {value!r}")
    return value


def _base_units_to_int(kind: str, base_units: int) -> float:
    if isinstance(base_units, bool) or not isinstance(base_units, int):
        raise MetricsInputError(
            f"{kind} must be an integer number of base units (1 INT = 10^9), got {base_units!r}"
        )
    _check_non_negative(kind, base_units)
    return float(Decimal(base_units) / BASE_UNITS_PER_INT)


@dataclass(frozen=True)
class DeviceSample:
    """One GPU of an InferenceNode as the metrics see it (a projection of ``status.devices[]``)."""

    index: int
    product: str
    state: str
    engine: str | None = None
    version: str | None = None
    blocked_reason: str | None = None
    vram_share: float | None = None
    priority_score: float | None = None
    effective_stake_base_units: int | None = None

    def validate(self) -> None:
        if self.index < 0:
            raise MetricsInputError(f"device index must not be negative, got {self.index}")
        if not self.product:
            raise MetricsInputError(f"device {self.index}: product must not be empty (use 'unknown')")
        _check_choice(f"device {self.index} state", self.state, DEVICE_STATES)
        if self.engine is not None:
            _check_choice(f"device {self.index} engine", self.engine, ENGINES)
        if (self.state == "blocked") != (self.blocked_reason is not None):
            raise MetricsInputError(
                f"device {self.index}: blocked_reason is required exactly when state is 'blocked' "
                f"(state={self.state!r}, blocked_reason={self.blocked_reason!r})"
            )
        if self.blocked_reason is not None:
            _check_camel(f"device {self.index} blocked_reason", self.blocked_reason)
        if self.vram_share is not None:
            _check_ratio(f"device {self.index} vram_share", self.vram_share)
        if self.priority_score is not None:
            # 1 + k x (...) for routable devices; the operator may report 0 for unroutable ones.
            _check_non_negative(f"device {self.index} priority_score", self.priority_score)
        if self.effective_stake_base_units is not None:
            _base_units_to_int(
                f"device {self.index} effective_stake_base_units", self.effective_stake_base_units
            )


#: Rollout phases in which pods are being replaced (``gpufleet.rollout.state.ACTIVE_PHASES``;
#: a test keeps the two in step). ``RollingBack`` moves devices back to ``fromVersion``.
ROLLOUT_ACTIVE_PHASES: Final = frozenset({"PreCheck", "Progressing", "PostCheck", "RollingBack"})


def _device_state(device: Mapping[str, Any], updating: bool) -> str:
    validation = device.get("validation") or {}
    if validation.get("valid") is False and validation.get("reason") != "AwaitingHardwareReport":
        return "blocked"
    if validation.get("reason") == "AwaitingHardwareReport" or not validation:
        return "updating" if updating else "pending"
    if updating:
        return "updating"
    if device.get("ready"):
        return "ready"
    return "unready" if device.get("podName") else "pending"


def device_samples(status: Mapping[str, Any]) -> list[DeviceSample]:
    """Project an InferenceNode's written ``status`` onto one DeviceSample per device.

    The one place that decides a device's state and running version, so every caller reports
    the same thing: ``blocked`` (validation failed), ``updating`` (in the rollout's current batch),
    ``ready``, ``unready`` (a pod, not ready) or ``pending`` (no pod or no hardware report yet).
    The version is the one the device runs: the rollout's target for devices already updated,
    the version it started from for the others (reversed while rolling back), the version it is
    moving to while ``updating``; ``status.currentVersion`` when no rollout is active.
    """
    rollout = status.get("rollout") or {}
    phase = str(rollout.get("phase") or "")
    current = status.get("currentVersion")
    active = phase in ROLLOUT_ACTIVE_PHASES
    batch = {int(i) for i in rollout.get("batchDevices") or ()} if active else set()
    updated = {int(i) for i in rollout.get("updatedDevices") or ()} if active else set()
    new, old = rollout.get("targetVersion"), rollout.get("fromVersion") or current
    if phase == "RollingBack":
        new, old = old, new
    samples = []
    for device in status.get("devices") or ():
        index = int(device["index"])
        state = _device_state(device, index in batch)
        validation = device.get("validation") or {}
        if not active:
            version = current
        elif index in batch or index in updated:
            version = new
        else:
            version = old
        stake = device.get("effectiveStake")
        routable = state != "blocked"
        samples.append(
            DeviceSample(
                index=index,
                product=str(device.get("product") or "unknown"),
                state=state,
                engine=device.get("engine"),
                version=str(version) if version else None,
                blocked_reason=str(validation.get("reason") or "Unknown") if state == "blocked" else None,
                vram_share=float(device["vramShare"])
                if routable and device.get("vramShare") is not None
                else None,
                priority_score=(
                    float(device["priorityScore"])
                    if routable and device.get("priorityScore") is not None
                    else None
                ),
                effective_stake_base_units=(
                    parse_int_amount(str(stake)) if routable and stake is not None else None
                ),
            )
        )
    return samples


class OperatorMetrics:
    """All operator metrics, registered in one private registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lock = threading.Lock()
        inode = ("namespace", "pool", "inference_node")
        device = (*inode, "device_index", "product")

        self.build_info = Info("gpufleet_build", "Version of the running gpufleet operator.", registry=r)
        # Fleet overview.
        self.devices = Gauge(
            "gpufleet_devices",
            "GPU devices managed by the operator, by state, GPU product, engine and engine version.",
            (*inode, "state", "product", "engine", "version"),
            registry=r,
        )
        self.blocked_devices = Gauge(
            "gpufleet_blocked_devices",
            "GPU devices kept off the network because validation failed, by reason.",
            (*inode, "reason", "product"),
            registry=r,
        )
        # Routing weights.
        self.device_vram_share = Gauge(
            "gpufleet_device_vram_share_ratio",
            "The device's VRAM divided by the pool's validated VRAM (0..1).",
            device,
            registry=r,
        )
        self.device_priority_score = Gauge(
            "gpufleet_device_priority_score",
            "Routing priority score: 1 + k x (VRAM share x pool stake x reputation weight).",
            device,
            registry=r,
        )
        self.device_effective_stake = Gauge(
            "gpufleet_device_effective_stake_int",
            "Pool stake attributed to the device by its VRAM share, in INT.",
            device,
            registry=r,
        )
        self.pool_stake = Gauge(
            "gpufleet_pool_stake_int",
            "Stake of an OperatorPool in INT, by source (self or delegated).",
            ("namespace", "pool", "source"),
            registry=r,
        )
        self.pool_self_stake_ratio = Gauge(
            "gpufleet_pool_self_stake_ratio",
            "Self stake divided by total stake of the pool; the network requires at least 0.1.",
            ("namespace", "pool"),
            registry=r,
        )
        self.pool_validated_vram = Gauge(
            "gpufleet_pool_validated_vram_bytes",
            "Sum of the VRAM of the pool's validated devices, in bytes.",
            ("namespace", "pool"),
            registry=r,
        )
        # Controller health.
        self.reconcile_duration = Histogram(
            "gpufleet_reconcile_duration_seconds",
            "Time spent in one reconcile of a controller.",
            ("controller",),
            buckets=_RECONCILE_BUCKETS,
            registry=r,
        )
        self.reconcile_errors = Counter(
            "gpufleet_reconcile_errors_total",
            "Reconciles that raised, by controller and exception type.",
            ("controller", "error"),
            registry=r,
        )
        self.api_requests = Counter(
            "gpufleet_api_requests_total",
            "Requests the operator made to the Kubernetes API server, by verb, resource and status code.",
            ("verb", "resource", "code"),
            registry=r,
        )
        self.api_request_duration = Histogram(
            "gpufleet_api_request_duration_seconds",
            "Latency of the operator's Kubernetes API requests.",
            ("verb", "resource"),
            buckets=_API_BUCKETS,
            registry=r,
        )
        # Rollouts.
        self.rollout_state = Gauge(
            "gpufleet_rollout_state",
            "1 for the current rollout state of an InferenceNode (one series per node).",
            ("namespace", "inference_node", "state"),
            registry=r,
        )
        self.rollout_progress = Gauge(
            "gpufleet_rollout_progress_ratio",
            "Fraction of an InferenceNode's devices already on the target version.",
            ("namespace", "inference_node", "current_version", "target_version"),
            registry=r,
        )
        self.rollout_results = Counter(
            "gpufleet_rollout_results_total",
            "Finished rollouts by result (succeeded, rolled_back, halted, failed) and failure reason.",
            ("namespace", "result", "reason"),
            registry=r,
        )
        self.rollout_duration = Histogram(
            "gpufleet_rollout_duration_seconds",
            "Wall time from the start of a rollout to its result.",
            ("result",),
            buckets=_ROLLOUT_BUCKETS,
            registry=r,
        )
        self.release_halted = Gauge(
            "gpufleet_engine_release_halted",
            "1 while an EngineRelease's rollout is halted (failure budget spent), else 0.",
            ("release", "version"),
            registry=r,
        )
        self.engine_releases = Gauge(
            "gpufleet_engine_release_info",
            "1 for each EngineRelease known to the operator, by version and channel.",
            ("release", "version", "channel"),
            registry=r,
        )
        # --- reputation, penalties, k (#17; gpufleet.controllers.reputation) -------------------
        self.pool_reputation_weight = Gauge(
            "gpufleet_pool_reputation_weight",
            "Reputation weight routing uses for the pool (override or measured), 0..1.",
            ("namespace", "pool"),
            registry=r,
        )
        self.pool_completion_ratio = Gauge(
            "gpufleet_pool_completion_ratio",
            "Completed / (completed + attributable failures) over the pool's rolling window.",
            ("namespace", "pool"),
            registry=r,
        )
        self.pool_completion_tier = Gauge(
            "gpufleet_pool_completion_tier",
            "Completion tier of the pool (1 is best).",
            ("namespace", "pool"),
            registry=r,
        )
        self.penalties = Gauge(
            "gpufleet_penalties",
            "Penalty objects by pool, offense and enforcement (Enforced, Capped, Pending, Expired).",
            ("namespace", "pool", "offense", "enforcement"),
            registry=r,
        )
        self.penalties_created = Counter(
            "gpufleet_penalties_created_total", "Penalties the operator created, by offense.", ("offense",),
            registry=r,
        )
        self.penalised_devices = Gauge(
            "gpufleet_penalised_devices",
            "Devices automatic penalties keep out of routing now (the safety cap counts these).",
            registry=r,
        )
        self.penalty_cap_devices = Gauge(
            "gpufleet_penalty_cap_devices", "Most devices automatic penalties may take out of routing.",
            registry=r,
        )
        self.penalty_cap_reached = Gauge(
            "gpufleet_penalty_cap_reached",
            "1 while penalties are recorded but not enforced because of the safety cap (alert on it).",
            registry=r,
        )
        self.routing_k = Gauge("gpufleet_routing_k", "k in RoutingPolicy.status (1/INT).", registry=r)
        self.routing_utilisation = Gauge(
            "gpufleet_routing_utilisation_ratio",
            "Utilisation the k controller measured (in-flight over capacity), by kind (measured, smoothed).",
            ("kind",),
            registry=r,
        )
        self._penalty_series: set[tuple[str, ...]] = set()
        self._reputation_series: set[tuple[str, str]] = set()
        # Label sets written per object, so the next record (or forget) can remove stale ones.
        self._inode_series: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._pool_series: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._rollout_series: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]] = {}
        self._release_series: list[tuple[str, ...]] = []
        self._halted_series: dict[str, set[tuple[str, str]]] = {}

    # -- helpers ---------------------------------------------------------------------------------

    def _replace(
        self,
        book: dict[tuple[str, str], list[tuple[Gauge, tuple[str, ...]]]],
        key: tuple[str, str],
        new: Sequence[tuple[Gauge, tuple[str, ...], float]],
    ) -> None:
        keep = {(id(g), labels) for g, labels, _ in new}
        with self._lock:
            # Set first, then drop only what vanished, so a concurrent scrape never sees a gap.
            for gauge, labels, value in new:
                gauge.labels(*labels).set(value)
            for gauge, labels in book.pop(key, []):
                if (id(gauge), labels) not in keep:
                    with suppress(KeyError):  # already gone
                        gauge.remove(*labels)
            if new:
                book[key] = [(g, labels) for g, labels, _ in new]

    # -- recorders -------------------------------------------------------------------------------

    def set_build_info(self, version: str) -> None:
        self.build_info.info({"version": version})

    def record_inference_node(
        self, namespace: str, name: str, pool: str, devices: Iterable[DeviceSample]
    ) -> None:
        """Replace every series of one InferenceNode with its current devices."""
        _check_name("namespace", namespace)
        _check_name("inference node name", name)
        _check_name("pool name", pool)
        samples = list(devices)
        seen: set[int] = set()
        for d in samples:
            d.validate()
            if d.index in seen:
                raise MetricsInputError(
                    f"inference node {namespace}/{name}: device index {d.index} appears twice"
                )
            seen.add(d.index)
        base = (namespace, pool, name)
        by_state = _Tally((d.state, d.product, d.engine or "none", d.version or "none") for d in samples)
        by_reason = _Tally((d.blocked_reason, d.product) for d in samples if d.blocked_reason is not None)
        new: list[tuple[Gauge, tuple[str, ...], float]] = []
        new += [(self.devices, (*base, *key), float(n)) for key, n in sorted(by_state.items())]
        new += [
            (self.blocked_devices, (*base, str(r), p), float(n)) for (r, p), n in sorted(by_reason.items())
        ]
        for d in samples:
            labels = (*base, str(d.index), d.product)
            if d.vram_share is not None:
                new.append((self.device_vram_share, labels, d.vram_share))
            if d.priority_score is not None:
                new.append((self.device_priority_score, labels, d.priority_score))
            if d.effective_stake_base_units is not None:
                stake = _base_units_to_int("effective stake", d.effective_stake_base_units)
                new.append((self.device_effective_stake, labels, stake))
        self._replace(self._inode_series, (namespace, name), new)

    def record_inference_node_status(
        self, namespace: str, name: str, pool: str, status: Mapping[str, Any]
    ) -> None:
        """Replace one InferenceNode's device series from its written status (see ``device_samples``).

        Call it with the whole status after every write of it, by whichever controller wrote it,
        so versions and the ``updating`` state follow the rollout as well as the core's changes.
        """
        self.record_inference_node(namespace, name, pool, device_samples(status))

    def forget_inference_node(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted InferenceNode (devices and rollout)."""
        self._replace(self._inode_series, (namespace, name), [])
        self._replace(self._rollout_series, (namespace, name), [])

    def record_pool(
        self,
        namespace: str,
        name: str,
        *,
        self_stake_base_units: int,
        delegated_stake_base_units: int,
        validated_vram_mib: int,
    ) -> None:
        """Replace the series of one OperatorPool; the self-stake ratio is derived, not passed."""
        _check_name("namespace", namespace)
        _check_name("pool name", name)
        own = _base_units_to_int("self stake", self_stake_base_units)
        delegated = _base_units_to_int("delegated stake", delegated_stake_base_units)
        _check_non_negative("validated VRAM", validated_vram_mib)
        total = self_stake_base_units + delegated_stake_base_units
        ratio = float(Decimal(self_stake_base_units) / total) if total else 0.0
        key = (namespace, name)
        self._replace(
            self._pool_series,
            key,
            [
                (self.pool_stake, (*key, "self"), own),
                (self.pool_stake, (*key, "delegated"), delegated),
                (self.pool_self_stake_ratio, key, ratio),
                (self.pool_validated_vram, key, float(validated_vram_mib * MIB)),
            ],
        )

    def forget_pool(self, namespace: str, name: str) -> None:
        self._replace(self._pool_series, (namespace, name), [])

    def record_reputation(
        self,
        pools: Mapping[tuple[str, str], tuple[float, float | None, int]],
        penalties: Mapping[tuple[str, str, str, str], int],
        penalised_devices: int,
        cap_devices: int,
    ) -> None:
        """Replace the reputation series: per pool (weight, completion ratio, tier); penalty counts."""
        with self._lock:
            for key in self._reputation_series - set(pools):
                for g in (self.pool_reputation_weight, self.pool_completion_ratio, self.pool_completion_tier):
                    with suppress(KeyError):
                        g.remove(*key)
            for key, (weight, ratio, tier) in pools.items():
                self.pool_reputation_weight.labels(*key).set(weight)
                self.pool_completion_tier.labels(*key).set(tier)
                if ratio is None:
                    with suppress(KeyError):
                        self.pool_completion_ratio.remove(*key)
                else:
                    self.pool_completion_ratio.labels(*key).set(ratio)
            self._reputation_series = set(pools)
            for labels in self._penalty_series - set(penalties):
                with suppress(KeyError):
                    self.penalties.remove(*labels)
            for labels, n in penalties.items():
                self.penalties.labels(*labels).set(n)
            self._penalty_series = set(penalties)
            self.penalised_devices.set(penalised_devices)
            self.penalty_cap_devices.set(cap_devices)

    def record_k(self, k: float, measured: float | None, smoothed: float | None) -> None:
        self.routing_k.set(k)
        for kind, value in (("measured", measured), ("smoothed", smoothed)):
            if value is not None:
                self.routing_utilisation.labels(kind).set(value)

    @contextmanager
    def time_reconcile(self, controller: str) -> Iterator[None]:
        """Time the block as one reconcile; an exception is counted by type and re-raised."""
        if not _CONTROLLER.match(controller):
            raise MetricsInputError(
                f"controller must be a lower-case identifier like 'inferencenode', got {controller!r}"
            )
        start = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self.reconcile_errors.labels(controller, type(exc).__name__).inc()
            raise
        finally:
            self.reconcile_duration.labels(controller).observe(time.perf_counter() - start)

    def record_api_request(self, verb: str, resource: str, code: int | None, duration_seconds: float) -> None:
        """Count one API request; ``code=None`` means no HTTP response (connection error, timeout)."""
        _check_choice("verb", verb, API_VERBS)
        if not resource or not re.match(r"^[a-z][a-z0-9./-]*$", resource):
            raise MetricsInputError(
                f"resource must be a lower-case resource like 'pods/status', got {resource!r}"
            )
        if code is not None and not 100 <= code <= 599:
            raise MetricsInputError(f"code must be an HTTP status (100..599) or None, got {code!r}")
        _check_non_negative("duration_seconds", duration_seconds)
        self.api_requests.labels(verb, resource, "error" if code is None else str(code)).inc()
        self.api_request_duration.labels(verb, resource).observe(duration_seconds)

    def record_rollout(
        self,
        namespace: str,
        name: str,
        *,
        state: str,
        current_version: str,
        target_version: str,
        updated_devices: int,
        total_devices: int,
    ) -> None:
        """Replace the rollout series of one InferenceNode (``state`` is CamelCase, e.g. 'Progressing')."""
        _check_name("namespace", namespace)
        _check_name("inference node name", name)
        _check_camel("rollout state", state)
        if not 0 <= updated_devices <= total_devices:
            raise MetricsInputError(
                f"updated_devices must be within [0, total_devices={total_devices}], got {updated_devices}"
            )
        progress = updated_devices / total_devices if total_devices else 1.0
        key = (namespace, name)
        self._replace(
            self._rollout_series,
            key,
            [
                (self.rollout_state, (*key, state), 1.0),
                (
                    self.rollout_progress,
                    (*key, current_version or "none", target_version or "none"),
                    progress,
                ),
            ],
        )

    def record_rollout_result(
        self, namespace: str, result: str, duration_seconds: float, reason: str | None = None
    ) -> None:
        """Count one finished rollout; ``reason`` is the CamelCase failure reason (e.g. 'CrashLoop')."""
        _check_name("namespace", namespace)
        _check_choice("rollout result", result, ROLLOUT_RESULTS)
        _check_non_negative("duration_seconds", duration_seconds)
        if reason is not None:
            _check_camel("rollout failure reason", reason)
        self.rollout_results.labels(namespace, result, reason or "none").inc()
        self.rollout_duration.labels(result).observe(duration_seconds)

    def set_release_halted(self, release: str, version: str, halted: bool) -> None:
        """Mark an EngineRelease's rollout halted (1) or running (0)."""
        _check_name("release name", release)
        with self._lock:
            self.release_halted.labels(release, version).set(1.0 if halted else 0.0)
            self._halted_series.setdefault(release, set()).add((release, version))

    def record_engine_release(self, release: str, version: str, channel: str) -> None:
        """Mark one EngineRelease as known (``gpufleet_engine_release_info`` = 1), replacing its
        previous version/channel series; call it from the release's reconcile."""
        _check_name("release name", release)
        labels = (release, version or "none", channel or "none")
        with self._lock:
            keep = [lb for lb in self._release_series if lb[0] != release]
            for lb in self._release_series:
                if lb[0] == release and lb != labels:
                    with suppress(KeyError):
                        self.engine_releases.remove(*lb)
            self.engine_releases.labels(*labels).set(1.0)
            self._release_series = [*keep, labels]

    def forget_release(self, release: str) -> None:
        """Drop every series of a deleted EngineRelease (halted flag and info, every version)."""
        with self._lock:
            for labels in self._halted_series.pop(release, set()):
                self.release_halted.remove(*labels)
            for lb in [lb for lb in self._release_series if lb[0] == release]:
                with suppress(KeyError):
                    self.engine_releases.remove(*lb)
            self._release_series = [lb for lb in self._release_series if lb[0] != release]

    def record_engine_releases(self, releases: Iterable[tuple[str, str, str]]) -> None:
        """Replace the set of known EngineReleases: ``(name, version, channel)`` triples."""
        new: list[tuple[str, ...]] = [(_check_name("release name", n), v, c) for n, v, c in releases]
        with self._lock:
            for labels in self._release_series:
                with suppress(KeyError):
                    self.engine_releases.remove(*labels)
            for labels in new:
                self.engine_releases.labels(*labels).set(1.0)
            self._release_series = new

    # -- exposition ------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type, for an HTTP handler of the caller's choosing."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` from a background thread (the chart scrapes port 8080 by default)."""
        start_http_server(port, addr=addr, registry=self.registry)

    def sample_names(self) -> frozenset[str]:
        """Every sample name this registry can expose, whether or not a series exists yet."""
        return family_sample_names(self.registry.collect())


_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def family_sample_names(families: Iterable[Metric]) -> frozenset[str]:
    """The sample names (what PromQL selects) of metric families, derived from their types.

    Derived rather than read from samples because a labelled metric has no sample until its first
    label set is recorded, yet dashboards must be able to reference it.
    """
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return frozenset(names)


#: The operator's metrics. Import this (or the helpers below) from controllers.
METRICS: Final = OperatorMetrics()

set_build_info = METRICS.set_build_info
record_inference_node = METRICS.record_inference_node
record_inference_node_status = METRICS.record_inference_node_status
record_engine_release = METRICS.record_engine_release
forget_inference_node = METRICS.forget_inference_node
record_pool = METRICS.record_pool
forget_pool = METRICS.forget_pool
time_reconcile = METRICS.time_reconcile
record_api_request = METRICS.record_api_request
record_rollout = METRICS.record_rollout
record_rollout_result = METRICS.record_rollout_result
record_engine_releases = METRICS.record_engine_releases
set_release_halted = METRICS.set_release_halted
forget_release = METRICS.forget_release

__all__ = [
    "API_VERBS",
    "BASE_UNITS_PER_INT",
    "DEVICE_STATES",
    "ENGINES",
    "METRICS",
    "ROLLOUT_ACTIVE_PHASES",
    "ROLLOUT_RESULTS",
    "DeviceSample",
    "MetricsInputError",
    "OperatorMetrics",
    "device_samples",
    "family_sample_names",
    "forget_inference_node",
    "forget_pool",
    "forget_release",
    "record_api_request",
    "record_engine_release",
    "record_engine_releases",
    "record_inference_node",
    "record_inference_node_status",
    "record_pool",
    "record_rollout",
    "record_rollout_result",
    "set_build_info",
    "set_release_halted",
    "time_reconcile",
]
