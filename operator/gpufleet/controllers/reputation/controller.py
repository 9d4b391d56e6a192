"""The reputation controller: read the router's counters, keep the window, write reputations and penalties.

A small independent asyncio task (``ReputationController.run``), not a kopf handler: one pass
every ``GPUFLEET_REPUTATION_SCRAPE_SECONDS`` does

1. read ``GET {router}/v1/stats`` of every router replica (``gpufleet.router.stats.RouterStats``);
2. LIST InferenceNodes, OperatorPools, Penalties, EngineReleases (4 requests per pass, fleet-wide);
3. add the counters to the rolling window (``gpufleet.reputation.window``);
4. per pool: new offenses -> ``Penalty`` objects (+ Event); the safety cap -> each Penalty's
   ``status.enforcement`` (+ Event on a transition); the router's seam, the pool annotation
   ``gpufleet.io/routing-penalised-until``, set while enforced and removed after;
5. per pool, at most once per ``GPUFLEET_REPUTATION_STATUS_MIN_SECONDS`` and only when something
   changed: ``status.reputation`` and the ``ReputationOverride``/``Penalised`` conditions, and the
   pool's window in the ConfigMap ``gpufleet-reputation-<pool>`` (so a restarted operator resumes).

Every decision is a pure function of ``planner``; this module only moves data. The seam for the
operator's one runtime (#14): ``step()`` is one level-based pass over listed state and needs
nothing from the runtime but an ``Api``; it can run from the runtime's queue as a periodic key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

from gpufleet.api.v1alpha1.penalty import OFFENSE_KEY_LABEL
from gpufleet.controllers.reputation import planner
from gpufleet.hardware.catalog import Catalog, load_catalog
from gpufleet.metrics import METRICS
from gpufleet.reputation.ladder import Enforcement, PenaltyRecord
from gpufleet.reputation.score import PoolReputation, pool_reputation
from gpufleet.reputation.throughput import BenchmarkTable, load_benchmarks
from gpufleet.reputation.window import Window, merge_windows, observe
from gpufleet.router.stats import RouterStats

logger = logging.getLogger("gpufleet.reputation")

GROUP_PATH = "/apis/gpufleet.io/v1alpha1"
#: The router's seam (RouterSettings.penalty_annotation): removes the pool's devices until then.
PENALTY_ANNOTATION = "gpufleet.io/routing-penalised-until"
#: What the annotation says for a permanent suspension.
FOREVER = "9999-12-31T23:59:59Z"
CONFIGMAP_PREFIX = "gpufleet-reputation-"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "reputation"

Body = Mapping[str, Any]
PoolKey = tuple[str, str]


class Api(Protocol):
    """What the controller needs from the API server (``KubeApi`` or a test fake)."""

    async def list(self, path: str) -> list[dict[str, Any]]: ...
    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def event(self, obj: Body, type_: str, reason: str, message: str) -> None: ...


class KubeApi:
    """``Api`` over the operator's ``KubeClient`` (merge patches, Events)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def list(self, path: str) -> list[dict[str, Any]]:
        _, body = await self.client.request("GET", path, what=f"list {path}")
        return [dict(i) for i in (body or {}).get("items") or []]

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        _, out = await self.client.request("POST", path, body=dict(body), what=f"create {path}")
        return dict(out or {})

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        _, out = await self.client.request(
            "PATCH", path, body=dict(body), content_type="application/merge-patch+json", what=f"patch {path}"
        )
        return dict(out or {})

    async def event(self, obj: Body, type_: str, reason: str, message: str) -> None:
        await self.client.post_event(obj, type_, reason, message)


def router_stats_fetcher(
    urls: Sequence[str], timeout: float = 5.0
) -> Callable[[], Awaitable[list[RouterStats]]]:
    """``GET {url}/v1/stats`` of every replica; a replica that does not answer is skipped this pass."""
    import aiohttp

    async def fetch() -> list[RouterStats]:
        out = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            for url in urls:
                try:
                    async with session.get(url.rstrip("/") + "/v1/stats") as resp:
                        resp.raise_for_status()
                        out.append(RouterStats.model_validate_json(await resp.text()))
                except Exception as exc:  # one replica down must not stop the others
                    logger.warning("router stats from %s unavailable: %s", url, exc)
        return out

    return fetch


def _meta(body: Body) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _key(body: Body) -> PoolKey:
    return (str(_meta(body).get("namespace") or ""), str(_meta(body).get("name") or ""))


@dataclass
class PoolMemory:
    """What the controller remembers per pool between passes (and persists in its ConfigMap)."""

    judged_hour: int | None = None
    lifted_keys: set[str] = field(default_factory=set)
    last_write: float | None = None
    last_status: dict[str, Any] | None = None
    loaded: bool = False
    persisted: dict[str, str] | None = None


@dataclass
class PassResult:
    """What one pass did (for tests, metrics and logs)."""

    created: list[dict[str, Any]] = field(default_factory=list)
    status_writes: int = 0
    penalty_writes: int = 0
    annotation_writes: int = 0
    reputations: dict[PoolKey, PoolReputation] = field(default_factory=dict)
    enforcement: dict[str, Enforcement] = field(default_factory=dict)
    capped_pools: frozenset[PoolKey] = frozenset()


class ReputationController:
    """One instance per operator; ``run()`` forever, or ``step()`` once (tests)."""

    def __init__(
        self,
        settings: Any,
        api: Api,
        fetch_stats: Callable[[], Awaitable[list[RouterStats]]] | None,
        *,
        catalog: Catalog | None = None,
        benchmarks: BenchmarkTable | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.api = api
        self.fetch_stats = fetch_stats
        self.policies = planner.Policies.from_settings(settings)
        self.catalog = catalog or load_catalog()
        self.benchmarks = benchmarks or load_benchmarks()
        self.clock = clock
        self.monotonic = monotonic
        self.window = Window(hours=self.policies.window_hours)
        self.pools: dict[PoolKey, PoolMemory] = {}
        self.penalty_names: dict[str, tuple[PoolKey, str]] = {}  # ns/name -> (pool, offense key)
        self.penalty_state: dict[str, str] = {}
        self.loaded = False

    async def _namespaced(self, plural: str) -> list[dict[str, Any]]:
        """All objects of a namespaced kind: cluster-wide, or per watched namespace (namespace-mode RBAC)."""
        namespaces = list(getattr(self.settings, "namespaces", []) or [])
        if not namespaces:
            return await self.api.list(f"{GROUP_PATH}/{plural}")
        out: list[dict[str, Any]] = []
        for ns in namespaces:
            out.extend(await self.api.list(f"{GROUP_PATH}/namespaces/{quote(ns)}/{plural}"))
        return out

    # ---- persistence ------------------------------------------------------------------

    async def _load(self, namespaces: set[str]) -> None:
        """Resume every pool's window and memory from its ConfigMap (once, at start)."""
        for ns in sorted(namespaces):
            path = f"/api/v1/namespaces/{quote(ns)}/configmaps?labelSelector={COMPONENT_LABEL}%3D{COMPONENT}"
            try:
                maps = await self.api.list(path)
            except Exception as exc:
                logger.warning("reputation state in %s unreadable: %s", ns, exc)
                continue
            for cm in maps:
                data = cm.get("data") or {}
                try:
                    window = Window.from_dict(json.loads(data.get("window.json") or "{}"))
                    state = json.loads(data.get("state.json") or "{}")
                except (ValueError, KeyError) as exc:
                    logger.warning(
                        "reputation ConfigMap %s/%s unreadable: %s", ns, _meta(cm).get("name"), exc
                    )
                    continue
                pool = str(state.get("pool") or str(_meta(cm).get("name", "")).removeprefix(CONFIGMAP_PREFIX))
                if window.hours == self.window.hours:
                    self.window = merge_windows(self.window, window)
                mem = self.pools.setdefault((ns, pool), PoolMemory())
                mem.judged_hour = state.get("judgedHour")
                mem.lifted_keys = set(state.get("liftedKeys") or [])
                mem.loaded = True
        self.loaded = True

    async def _load_benchmark_override(self) -> None:
        """The network's own table (``GPUFLEET_REPUTATION_BENCHMARKS_CONFIGMAP``, key benchmarks.yaml)."""
        ref = self.settings.reputation_benchmarks_configmap
        if not ref:
            return
        ns, _, name = str(ref).partition("/")
        try:
            maps = await self.api.list(f"/api/v1/namespaces/{quote(ns)}/configmaps")
            cm = next((m for m in maps if _meta(m).get("name") == name), None)
            if cm is None:
                logger.warning("benchmark ConfigMap %s not found: using the bundled table", ref)
                return
            table = load_benchmarks(str((cm.get("data") or {}).get("benchmarks.yaml") or ""))
        except Exception as exc:
            logger.warning("benchmark ConfigMap %s unusable (%s): using the bundled table", ref, exc)
            return
        self.benchmarks = self.benchmarks.override(table)
        logger.info("benchmark table: %d entries from %s override the bundled ones", len(table), ref)

    async def _persist(self, pool: PoolKey, mem: PoolMemory) -> None:
        ns, name = pool
        cm_name = (CONFIGMAP_PREFIX + name)[:253]
        data = {
            "window.json": json.dumps(self.window.for_pool(ns, name).to_dict(), separators=(",", ":")),
            "state.json": json.dumps(
                {"pool": name, "judgedHour": mem.judged_hour, "liftedKeys": sorted(mem.lifted_keys)[-500:]}
            ),
        }
        if data == mem.persisted:
            return  # nothing new: no write
        mem.persisted = data
        path = f"/api/v1/namespaces/{quote(ns)}/configmaps"
        if mem.loaded:
            await self.api.patch(f"{path}/{quote(cm_name)}", {"data": data})
            return
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": ns, "labels": {COMPONENT_LABEL: COMPONENT}},
            "data": data,
        }
        try:
            await self.api.create(path, body)
        except Exception:
            await self.api.patch(f"{path}/{quote(cm_name)}", {"data": data})
        mem.loaded = True

    # ---- one pass ---------------------------------------------------------------------

    async def step(self) -> PassResult:
        """One level-based pass (see the module docstring)."""
        now = self.clock()
        result = PassResult()
        inodes = await self._namespaced("inferencenodes")
        pools = {_key(p): p for p in await self._namespaced("operatorpools")}
        penalties = await self._namespaced("penalties")
        releases = await self.api.list(f"{GROUP_PATH}/enginereleases")
        if not self.loaded:
            await self._load({ns for ns, _ in pools})
            await self._load_benchmark_override()
        excused = planner.excused_releases(releases)

        # 1. counters -> window
        if self.fetch_stats is not None:
            node_release = {_key(i): planner.node_release(i) for i in inodes}
            observations = []
            seen: dict[str, str] = {}
            for stats in await self.fetch_stats():
                seen[stats.router] = stats.since.isoformat()
                observations.extend(planner.observations_from_stats(stats, node_release))
            self.window = observe(self.window, observations, int(now.timestamp()), seen)

        # 2. penalties: deletions are lifts; unlevelled manual ones get their level
        await self._note_lifted(penalties, pools, now)
        records: list[PenaltyRecord] = []
        bodies: dict[str, Body] = {}
        for raw in penalties:
            pbody: Body = raw
            rec = planner.penalty_record(pbody, self.policies.ladder)
            if rec is None:
                pbody = planner.resolve_unlevelled(pbody, records, self.policies.ladder)
                rec = planner.penalty_record(pbody, self.policies.ladder)
            if rec is not None:
                records.append(rec)
            bodies[f"{_meta(pbody).get('namespace')}/{_meta(pbody).get('name')}"] = pbody

        # 3. offenses -> new penalties
        devices = planner.pool_devices(inodes, self.catalog)
        integrity = planner.integrity_offenses(inodes, self.policies.ladder)
        known = {str((_meta(b).get("labels") or {}).get(OFFENSE_KEY_LABEL) or "") for b in penalties}
        for pool in sorted(pools):
            mem = self.pools.setdefault(pool, PoolMemory())
            found = planner.plan_offenses(
                pool,
                self.window,
                integrity,
                records,
                frozenset(known | mem.lifted_keys),
                mem.judged_hour,
                excused,
                now,
                self.policies.ladder,
            )
            mem.judged_hour = found.judged_hour
            for new in found.create:
                created = await self.api.create(
                    f"/apis/gpufleet.io/v1alpha1/namespaces/{quote(new.namespace)}/penalties", new.body()
                )
                result.created.append(created)
                name = str(_meta(created).get("name") or "")
                rec = PenaltyRecord(
                    name, new.namespace, new.pool, new.offense, new.level, new.start, new.until
                )
                records.append(rec)
                bodies[f"{new.namespace}/{name}"] = created
                known.add(new.key)
                await self._event(
                    pools[pool],
                    "Warning",
                    "PenaltyCreated",
                    f"{new.offense} offense: {new.reason}; level {new.level}, "
                    f"{'permanent' if new.until is None else 'until ' + planner.rfc3339(new.until)} "
                    f"(Penalty {name}; {new.why})",
                )

        # 4. safety cap -> each penalty's status, the router's annotation
        routable = {p: len(d) for p, d in devices.items()}
        plan = planner.enforcement_plan(records, now, routable, self.policies.ladder)
        result.enforcement = dict(plan.status)
        result.capped_pools = plan.capped_pools
        for rec in records:
            full = f"{rec.namespace}/{rec.name}"
            pen: Body = bodies.get(full, {})
            status = planner.penalty_status(pen, rec, plan, now, self.policies.ladder)
            old = dict(pen.get("status") or {})
            if {k: v for k, v in old.items() if k != "conditions"} != {
                k: v for k, v in status.items() if k != "conditions"
            }:
                await self.api.patch(
                    f"{GROUP_PATH}/namespaces/{quote(rec.namespace)}/penalties/{quote(rec.name)}/status",
                    {"status": status},
                )
                result.penalty_writes += 1
            state = str(plan.status.get(rec.name, Enforcement.EXPIRED))
            # Before this process saw it, the object's own status is what was last announced
            # (a restarted operator does not repeat an Event for every penalty in the history).
            announced: str | None = self.penalty_state.get(full)
            if announced is None:
                announced = str(old.get("enforcement") or "") or None
            if announced != state and rec.pool_key in pools:
                kind = "Warning" if state in ("Enforced", "Capped") else "Normal"
                await self._event(
                    pools[rec.pool_key],
                    kind,
                    f"Penalty{state}",
                    f"Penalty {rec.name} ({rec.offense}, level {rec.level}): {status.get('message')}",
                )
            self.penalty_state[full] = state
            self.penalty_names[full] = (
                rec.pool_key,
                str((_meta(pen).get("labels") or {}).get(OFFENSE_KEY_LABEL) or ""),
            )

        enforced: dict[PoolKey, PenaltyRecord] = {}
        for rec in records:
            if plan.status.get(rec.name) is Enforcement.ENFORCED and rec.pool_key in plan.penalised_pools:
                best = enforced.get(rec.pool_key)
                if best is None or (best.until is not None and (rec.until is None or rec.until > best.until)):
                    enforced[rec.pool_key] = rec
        for pool, body in pools.items():
            rec = enforced.get(pool)
            want = None if rec is None else (FOREVER if rec.until is None else planner.rfc3339(rec.until))
            have = (_meta(body).get("annotations") or {}).get(PENALTY_ANNOTATION)
            if want != have:
                await self.api.patch(
                    f"{GROUP_PATH}/namespaces/{quote(pool[0])}/operatorpools/{quote(pool[1])}",
                    {"metadata": {"annotations": {PENALTY_ANNOTATION: want}}},
                )
                result.annotation_writes += 1

        # 5. reputation -> status (rate-limited), window -> ConfigMap
        tick = self.monotonic()
        for pool, body in sorted(pools.items()):
            mem = self.pools.setdefault(pool, PoolMemory())
            override = planner.spec_override(body)
            rep = pool_reputation(
                self.window,
                devices.get(pool, {}),
                self.benchmarks,
                excused,
                self.policies.tiers,
                self.policies.throughput,
                override,
            )
            result.reputations[pool] = rep
            status = planner.reputation_status(rep, now, enforced.get(pool))
            if not planner.write_due(mem.last_write, tick, self.policies.status_min_seconds):
                continue
            old_rep = (body.get("status") or {}).get("reputation")
            conds = planner.pool_conditions(
                body, override, enforced.get(pool), pool in plan.capped_pools, now
            )
            old_conds = (body.get("status") or {}).get("conditions") or []
            if planner.status_changed(old_rep, status) or _conds_differ(old_conds, conds):
                await self.api.patch(
                    f"{GROUP_PATH}/namespaces/{quote(pool[0])}/operatorpools/{quote(pool[1])}/status",
                    {"status": {"reputation": status, "conditions": conds}},
                )
                result.status_writes += 1
                if old_rep and old_rep.get("tier") != status["tier"]:
                    await self._event(
                        body,
                        "Warning" if status["tier"] > old_rep.get("tier", 1) else "Normal",
                        "ReputationTierChanged",
                        f"completion tier {old_rep.get('tier')} -> {status['tier']} "
                        f"(rate {status.get('completionRate', 'n/a')} over {status['sample']} requests, "
                        f"multiplier {status['multiplier']})",
                    )
            mem.last_write = tick
            mem.last_status = status
            await self._persist(pool, mem)
        self._record_metrics(result, records, plan)
        return result

    def _record_metrics(self, result: PassResult, records: Sequence[PenaltyRecord], plan: Any) -> None:
        pools = {
            key: (
                float(rep.effective_weight),
                None if rep.completion.rate is None else float(rep.completion.rate),
                rep.completion.tier,
            )
            for key, rep in result.reputations.items()
        }
        counts: dict[tuple[str, str, str, str], int] = {}
        for rec in records:
            labels = (
                rec.namespace,
                rec.pool,
                str(rec.offense),
                str(plan.status.get(rec.name, Enforcement.EXPIRED)),
            )
            counts[labels] = counts.get(labels, 0) + 1
        METRICS.record_reputation(pools, counts, plan.automatic_devices_out, plan.cap_devices)
        METRICS.penalty_cap_reached.set(1 if plan.capped_pools else 0)
        for created in result.created:
            METRICS.penalties_created.labels(str((created.get("spec") or {}).get("offense"))).inc()

    async def _note_lifted(
        self, penalties: Sequence[Body], pools: Mapping[PoolKey, Body], now: datetime
    ) -> None:
        """A Penalty that disappeared was deleted: lifted. Remember its offense key, post an Event."""
        present = {f"{_meta(b).get('namespace')}/{_meta(b).get('name')}" for b in penalties}
        for full in sorted(set(self.penalty_names) - present):
            pool, key = self.penalty_names.pop(full)
            state = self.penalty_state.pop(full, None)
            if key:
                self.pools.setdefault(pool, PoolMemory()).lifted_keys.add(key)
            if pool in pools:
                await self._event(
                    pools[pool],
                    "Normal",
                    "PenaltyLifted",
                    f"Penalty {full.split('/', 1)[1]} was deleted ({state or 'unknown'} before): lifted",
                )

    async def _event(self, obj: Body, type_: str, reason: str, message: str) -> None:
        try:
            await self.api.event(
                {"apiVersion": "gpufleet.io/v1alpha1", "kind": "OperatorPool", **obj}, type_, reason, message
            )
        except Exception as exc:  # an Event is best-effort
            logger.warning("event %s not posted: %s", reason, exc)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Pass after pass until ``stop`` is set; a failing pass is logged and retried next interval."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.step()
            except Exception:
                logger.exception("reputation pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.reputation_scrape_seconds)


def _conds_differ(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> bool:
    def norm(conds: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds)

    return norm(old) != norm(new)
