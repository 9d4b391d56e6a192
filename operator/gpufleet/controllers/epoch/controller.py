"""The epoch controller: one small asyncio task beside the operator's reconciler.

Seam: it does not use kopf handlers or the reconciler's work queue. It is a timer loop
(:meth:`EpochController.run`) with its own :class:`~gpufleet.controllers.kube.KubeClient` (the
operator's credentials), started by whoever runs the operator (``start_epoch_controller``) and
stopped by the same stop event. Every decision is in ``plan`` and ``gpufleet.economics``; this
module only reads, writes and posts Events. The only thing it shares with the reconciler is the
pool's status, in fields only it writes (``points``, ``ledgerStake``, ``lastEpochReward``; the
reconciler reads ``ledgerStake`` as the stake of a ledger-sourced pool).

Each step (every ``epoch_scrape_seconds``):

1. read every router replica's counters (``GET {url}/v1/stats``, the ``gpufleet.router.stats``
   model) and add the deltas to the open epochs (``economics.accounting``); save the state in a
   ConfigMap, so an operator restart loses nothing (the counters are cumulative) and a router
   restart loses at most what it counted since its last checkpoint;
2. read the ledgers of ledger-sourced pools and write ``status.ledgerStake``;
3. recompute points (compute points from tokens served, then PointsAwards oldest first) and write
   ``status.points`` and each award's status (Event on each transition);
4. close every epoch that ended ``epoch_close_grace_seconds`` ago: compute the rewards, create the
   Epoch object under its deterministic name; an existing object means the epoch was already
   closed (by this operator before a restart) and is adopted, never recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from gpufleet.api.v1alpha1.epoch import epoch_object_name
from gpufleet.controllers.epoch import plan
from gpufleet.controllers.epoch.metrics import EpochMetrics
from gpufleet.controllers.kube import ApiError, KubeClient
from gpufleet.economics.accounting import (
    AccountingState,
    close_recorded,
    epochs_to_close,
    ingest,
)
from gpufleet.economics.epochs import EpochClock
from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.points import format_points
from gpufleet.economics.rewards import compute_epoch_rewards
from gpufleet.economics.stakesource import LedgerPoolStake, ledger_pool_stake, stake_status
from gpufleet.economics.units import format_int
from gpufleet.metrics import METRICS
from gpufleet.router.stats import RouterStats
from gpufleet.settings import OperatorSettings

logger = logging.getLogger(__name__)

GROUP_PATH = "/apis/gpufleet.io/v1alpha1"
STATE_KEY = "state.json"
KINDS = {
    "operatorpools": "OperatorPool",
    "pointsawards": "PointsAward",
    "epochs": "Epoch",
    "penalties": "Penalty",
}
Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]


@dataclass
class StepReport:
    """What one step did (for tests and logs)."""

    scrapes: int = 0
    scrape_errors: int = 0
    closed: list[int] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    status_writes: int = 0


def router_urls(settings: OperatorSettings) -> list[str]:
    text = settings.epoch_router_urls or settings.reputation_router_urls or ""
    return [u.strip().rstrip("/") for u in text.split(",") if u.strip()]


class EpochController:
    """Counts, closes, keeps points; see the module docstring."""

    def __init__(
        self,
        settings: OperatorSettings,
        client: KubeClient,
        *,
        now: Callable[[], float] = time.time,
        fetch: Fetch | None = None,
        metrics: EpochMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.now = now
        self.clock = EpochClock(settings.epoch_genesis, settings.epoch_length_seconds)
        self.urls = router_urls(settings)
        self.state_namespace = settings.operator_namespace or "default"
        self.model_params = plan.parse_model_params(settings.points_model_params)
        self.metrics = metrics or _default_metrics()
        self.state: AccountingState | None = None
        self._fetch = fetch
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._ledger_problems: dict[str, str] = {}

    # --- loop ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Step every scrape interval until ``stop`` is set; a failed step is logged and retried."""
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except (ApiError, aiohttp.ClientError, TimeoutError, EconomicsError) as exc:
                    logger.warning("epoch controller step failed (retrying): %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.epoch_scrape_seconds)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def step(self) -> StepReport:
        report = StepReport()
        now = int(self.now())
        if self.state is None:
            self.state = await self.load_state(now)
        await self.scrape(report)
        pools = await self._list("operatorpools")
        ledgers = await self.refresh_ledgers(pools, report)
        await self.refresh_points(pools, now, report)
        for epoch in epochs_to_close(self.state, self.clock, now, self.settings.epoch_close_grace_seconds):
            await self.close_epoch(epoch, pools, ledgers, report)
        self.metrics.current_epoch.set(self.clock.epoch_of(max(now, self.clock.genesis)))
        self.metrics.record_open_jobs(
            {p: w.completed for p, w in self.state.tally(self.state.closed_through + 1).items()}
        )
        return report

    # --- state ----------------------------------------------------------------------------------
    def _state_path(self) -> str:
        name = quote(self.settings.epoch_state_configmap)
        return f"/api/v1/namespaces/{quote(self.state_namespace)}/configmaps/{name}"

    async def load_state(self, now: int) -> AccountingState:
        """The saved state, or a fresh one that never closes an epoch already recorded."""
        try:
            _, body = await self.client.request("GET", self._state_path(), what="epoch state")
            text = ((body or {}).get("data") or {}).get(STATE_KEY)
            if text:
                return AccountingState.from_json(text)
        except ApiError as exc:
            if exc.status != 404:
                raise
        epochs = await self._list("epochs", namespaced=False)
        closed = max((int((e.get("spec") or {}).get("number", 0)) for e in epochs), default=0)
        return AccountingState.start(self.clock, max(now, self.clock.genesis), closed_through=closed)

    async def save_state(self) -> None:
        assert self.state is not None
        data = {"data": {STATE_KEY: self.state.to_json()}}
        try:
            await self.client.request(
                "PATCH",
                self._state_path(),
                body=data,
                content_type="application/merge-patch+json",
                what="epoch state",
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.settings.epoch_state_configmap,
                    "namespace": self.state_namespace,
                    "labels": {"app.kubernetes.io/managed-by": "gpufleet"},
                },
                **data,
            }
            await self.client.request(
                "POST",
                f"/api/v1/namespaces/{quote(self.state_namespace)}/configmaps",
                body=body,
                what="epoch state",
            )

    # --- 1. counting ------------------------------------------------------------------------------
    async def _get_json(self, url: str) -> Mapping[str, Any]:
        if self._fetch is not None:
            return await self._fetch(url)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get(f"{url}/v1/stats") as resp:
            resp.raise_for_status()
            data = await resp.json()
            return dict(data)

    async def scrape(self, report: StepReport) -> None:
        assert self.state is not None
        changed = False
        for url in self.urls:
            try:
                stats = RouterStats.model_validate(await self._get_json(url))
            except Exception as exc:  # an unreachable or malformed router: counted, retried next step
                report.scrape_errors += 1
                self.metrics.scrapes.labels("error").inc()
                logger.info("router stats %s: %s", url, exc)
                continue
            self.state, result = ingest(self.state, plan.scrape_from_router_stats(stats), self.clock)
            report.scrapes += 1
            self.metrics.scrapes.labels("ok").inc()
            if result.resets:
                self.metrics.router_resets.inc(result.resets)
            if result.carried:
                self.metrics.carried_jobs.inc(result.carried)
            changed = True
        if changed:
            await self.save_state()

    # --- 2. ledgers -------------------------------------------------------------------------------
    async def refresh_ledgers(
        self, pools: list[dict[str, Any]], report: StepReport
    ) -> dict[str, LedgerPoolStake]:
        """Read each ledger-sourced pool's ConfigMap; write ``status.ledgerStake`` when it moved."""
        out: dict[str, LedgerPoolStake] = {}
        cache: dict[tuple[str, str], Mapping[str, str] | None] = {}
        for body in pools:
            ref = plan.ledger_ref(body)
            if ref is None:
                continue
            key = plan.pool_key(body)
            ns = key.split("/", 1)[0]
            if (ns, ref[0]) not in cache:
                try:
                    _, cm = await self.client.request(
                        "GET", f"/api/v1/namespaces/{quote(ns)}/configmaps/{quote(ref[0])}", what="ledger"
                    )
                    cache[(ns, ref[0])] = dict((cm or {}).get("data") or {})
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    cache[(ns, ref[0])] = None
            data = cache[(ns, ref[0])]
            status = body.get("status") or {}
            if data is None:
                self._ledger_problem(body, "LedgerNotFound", f"ConfigMap {ns}/{ref[0]} not found")
                continue
            try:
                stake = ledger_pool_stake(data, ref[1])
            except EconomicsError as exc:
                self._ledger_problem(body, "LedgerUnreadable", str(exc))
                continue
            out[key] = stake
            self._ledger_problems.pop(key, None)
            block = stake_status(stake, self.settings.min_self_stake_bps)
            patch = plan.pool_status_patch(status, ledger_stake=block)
            if patch is not None:
                await self._patch_pool(body, patch, report)
                self._post_event(
                    body,
                    "Normal",
                    "LedgerStakeChanged",
                    f"ledger pool {ref[1]}: self {block['selfStake']} INT, "
                    f"delegated {block['delegatedStake']} INT, "
                    f"unstaking {block['unstaking']} INT, commission {block['commissionBps']} bps"
                    + (", halted" if block["halted"] else ""),
                )
        return out

    def _ledger_problem(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        """A Warning Event once per new problem; the pool keeps its last ledger stake meanwhile."""
        key = plan.pool_key(body)
        if self._ledger_problems.get(key) != message:
            self._ledger_problems[key] = message
            self._post_event(body, "Warning", reason, message)

    # --- 3. points --------------------------------------------------------------------------------
    async def refresh_points(self, pools: list[dict[str, Any]], now: int, report: StepReport) -> None:
        assert self.state is not None
        awards_bodies = await self._list("pointsawards", missing_ok=True)
        awards = {
            b_key: a for b_key, a in ((plan.pool_key(b), plan.read_award(b)) for b in awards_bodies) if a
        }
        by_name = {plan.pool_key(b): b for b in awards_bodies}
        for body in pools:
            key = plan.pool_key(body)
            mine = [a for a in awards.values() if a.pool == key]
            points = plan.plan_points(self.state.lifetime_tokens.get(key, {}), mine, self.model_params)
            self.metrics.record_points(key, points.compute, points.bonus)
            if not points.tokens and not mine and "points" not in (body.get("status") or {}):
                continue  # nothing served, nothing awarded: no write (an idle fleet stays quiet)
            patch = plan.pool_status_patch(body.get("status") or {}, points=plan.points_status(points, now))
            if patch is not None:
                await self._patch_pool(body, patch, report)
            for name, decision in points.decisions.items():
                await self._award_status(by_name[name], decision, now, report)

    async def _award_status(
        self, body: Mapping[str, Any], decision: plan.AwardDecision, now: int, report: StepReport
    ) -> None:
        status = body.get("status") or {}
        total = format_points(decision.total_after)
        if status.get("applied") == decision.applied:
            return  # the total at the transition is what the status keeps (no write per scrape)
        reason = "Applied" if decision.applied else "WouldMakeTotalNegative"
        meta = body.get("metadata") or {}
        new_status = {
            "observedGeneration": meta.get("generation"),
            "applied": decision.applied,
            "poolTotalAfter": total,
            "conditions": plan.condition(
                status.get("conditions") or [],
                "Applied",
                "True" if decision.applied else "False",
                reason,
                decision.message,
                now,
                meta.get("generation"),
            ),
        }
        await self.client.patch_status(
            "pointsawards", str(meta.get("namespace")), str(meta.get("name")), new_status
        )
        report.status_writes += 1
        if status.get("applied") != decision.applied:
            self._post_event(
                body,
                "Normal" if decision.applied else "Warning",
                "PointsAwarded" if decision.applied else "PointsAwardRejected",
                decision.message,
            )

    # --- 4. closing -------------------------------------------------------------------------------
    async def close_epoch(
        self,
        epoch: int,
        pools: list[dict[str, Any]],
        ledgers: Mapping[str, LedgerPoolStake],
        report: StepReport,
    ) -> None:
        """Create the epoch's object once; adopt it if it is already there."""
        assert self.state is not None
        name = epoch_object_name(epoch)
        existing = await self._get_epoch(name)
        if existing is None:
            start, end = self.clock.bounds(epoch)
            facts = [plan.pool_facts(b, ledgers.get(plan.pool_key(b))) for b in pools]
            tally = self.state.tally(epoch)
            penalties = await self._list("penalties", missing_ok=True)
            inputs = plan.epoch_inputs(facts, tally, penalties, start, end)
            result = compute_epoch_rewards(epoch, self.clock, inputs)
            body = plan.build_epoch_body(
                result,
                facts,
                tally,
                carried_jobs=self.state.carried_by_epoch.get(epoch, 0),
                router_resets=self.state.resets_by_epoch.get(epoch, 0),
            )
            try:
                _, created = await self.client.request(
                    "POST", f"{GROUP_PATH}/epochs", body=body, what=f"epoch {name}"
                )
                existing = dict(created or body)
                report.closed.append(epoch)
                await self._mark_verified(existing)
                self.metrics.record_close(epoch, result.emission, {p.pool: p.reward for p in result.pools})
                self._post_epoch_event(
                    existing,
                    "EpochClosed",
                    f"epoch {epoch} closed: {format_int(result.emission)} INT to {result.pools_paid} pools "
                    f"({result.rule}), merkle root {(result.merkle_roots or ['-'])[0]}",
                )
                for body_pool in pools:
                    line = plan.last_epoch_reward(existing, plan.pool_key(body_pool))
                    if line is not None:
                        self._post_event(
                            body_pool,
                            "Normal",
                            "EpochReward",
                            f"epoch {epoch}: {line['reward']} INT (commission {line['commission']}), "
                            f"{line['completedJobs']} jobs, eligibility {line['eligibility']}",
                        )
            except ApiError as exc:
                if exc.status != 409:
                    raise
                existing = await self._get_epoch(name)
                if existing is None:
                    raise
                report.adopted.append(epoch)
        else:
            report.adopted.append(epoch)
        recorded = {
            str(line["pool"]): int(line["completedJobs"])
            for line in (existing.get("spec") or {}).get("pools", [])
        }
        self.state = close_recorded(self.state, epoch, recorded)
        await self.save_state()
        for body_pool in pools:
            line = plan.last_epoch_reward(existing, plan.pool_key(body_pool))
            if line is not None:
                patch = plan.pool_status_patch(body_pool.get("status") or {}, last_epoch_reward=line)
                if patch is not None:
                    await self._patch_pool(body_pool, patch, report)

    async def _mark_verified(self, epoch_body: Mapping[str, Any]) -> None:
        """``Closed`` condition: the record as read back verifies (totals, roots, every proof)."""
        problems = plan.read_epoch(epoch_body).problems()
        meta = epoch_body.get("metadata") or {}
        spec = epoch_body.get("spec") or {}
        message = (
            f"{len(spec.get('pools', []))} pools, rewards sum to the emission, roots and proofs verify"
            if not problems
            else "; ".join(problems)
        )
        status = {
            "conditions": plan.condition(
                [],
                "Closed",
                "True" if not problems else "False",
                "Verified" if not problems else "VerifyFailed",
                message,
                int(self.now()),
                meta.get("generation"),
            )
        }
        await self.client.patch_status("epochs", "", str(meta.get("name")), status)

    async def _get_epoch(self, name: str) -> dict[str, Any] | None:
        try:
            _, body = await self.client.request(
                "GET", f"{GROUP_PATH}/epochs/{quote(name)}", what=f"epoch {name}"
            )
            return dict(body or {})
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # --- API helpers ------------------------------------------------------------------------------
    async def _list(
        self, plural: str, *, namespaced: bool = True, missing_ok: bool = False
    ) -> list[dict[str, Any]]:
        paths = [f"{GROUP_PATH}/{plural}"]
        if namespaced and self.settings.namespaces:
            paths = [f"{GROUP_PATH}/namespaces/{quote(ns)}/{plural}" for ns in self.settings.namespaces]
        items: list[dict[str, Any]] = []
        for path in paths:
            try:
                _, body = await self.client.request("GET", path, what=f"list {plural}")
            except ApiError as exc:
                if missing_ok and exc.status == 404:
                    return []
                raise
            for item in (body or {}).get("items", []):
                item.setdefault("apiVersion", "gpufleet.io/v1alpha1")
                item.setdefault("kind", KINDS.get(plural, ""))
                items.append(item)
        return items

    async def _patch_pool(
        self, body: Mapping[str, Any], patch: Mapping[str, Any], report: StepReport
    ) -> None:
        meta = body.get("metadata") or {}
        await self.client.patch_status(
            "operatorpools", str(meta.get("namespace")), str(meta.get("name")), patch
        )
        report.status_writes += 1
        status = dict(body.get("status") or {})
        status.update(patch)
        if isinstance(body, dict):
            body["status"] = status

    def _post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self._spawn(self.client.post_event(obj, type_, reason, message))

    def _post_epoch_event(self, epoch_body: Mapping[str, Any], reason: str, message: str) -> None:
        """An Event about a cluster-scoped Epoch (in the operator's namespace)."""
        meta = epoch_body.get("metadata") or {}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": self.state_namespace},
            "involvedObject": {
                "apiVersion": "gpufleet.io/v1alpha1",
                "kind": "Epoch",
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Normal",
            "source": {"component": "gpufleet-operator"},
            "reportingComponent": "gpufleet.io/operator",
            "reportingInstance": os.environ.get("HOSTNAME", "gpufleet-operator"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._spawn(
            self.client.request(
                "POST",
                f"/api/v1/namespaces/{quote(self.state_namespace)}/events",
                body=event,
                what="epoch event",
            )
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # Events are best effort
                logger.debug("event not posted: %s", exc)

        task = asyncio.ensure_future(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain_events(self) -> None:
        """Wait for Events still being posted (tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


_METRICS: EpochMetrics | None = None


def _default_metrics() -> EpochMetrics:
    """One set of series in the operator's registry (created on first use)."""
    global _METRICS
    if _METRICS is None:
        _METRICS = EpochMetrics(METRICS.registry)
    return _METRICS


@contextlib.asynccontextmanager
async def start_epoch_controller(settings: OperatorSettings, client: KubeClient) -> Any:
    """Run the controller as a task for the duration of the context (the hook for the runtime)."""
    stop = asyncio.Event()
    controller = EpochController(settings, client)
    task = asyncio.create_task(controller.run(stop))
    try:
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def register_epoch_controller(registry: Any, settings: OperatorSettings, reconciler: Any) -> None:
    """Start the controller with the operator and stop it with it (kopf startup/cleanup handlers).

    Registered after the core's handlers, so its startup runs after the reconciler has its API
    client, which the controller shares.
    """
    import kopf

    holder: dict[str, Any] = {}

    @kopf.on.startup(registry=registry)
    async def start_epochs(**_: Any) -> None:
        client = reconciler.client
        if client is None:
            logger.warning("epoch controller not started: the reconciler has no API client")
            return
        stop = asyncio.Event()
        controller = EpochController(settings, client)
        holder.update(stop=stop, task=asyncio.create_task(controller.run(stop), name="gpufleet-epochs"))
        logger.info(
            "epoch controller started: %d s epochs from %s, routers %s",
            settings.epoch_length_seconds,
            plan.rfc3339(settings.epoch_genesis),
            controller.urls or "none (no counting)",
        )

    @kopf.on.cleanup(registry=registry)
    async def stop_epochs(**_: Any) -> None:
        if "stop" in holder:
            holder["stop"].set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(holder["task"], 10)
