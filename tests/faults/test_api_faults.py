"""API faults: 500/429/503, resets, seconds-long delays and watch cuts between operator and API server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.faults.fleet import Layout, duplicate_gpu_pods, ready_devices, rig, wait_for
from tests.faults.proxy import NO_FAULTS, FaultPlan, summary

LAYOUT = Layout(nodes=8, pools=2)


async def test_fleet_converges_through_the_proxy(tmp_path: Path, record: dict[str, Any]) -> None:
    """Baseline for every other case: no faults, the fleet converges and then goes quiet."""
    async with rig(tmp_path, LAYOUT) as r:
        start = r.proxy.mark()
        seconds = await wait_for(r.converged(), within=90)
        record["converge_s"] = round(seconds, 1)
        record["requests_per_s_converging"] = round(r.proxy.rate(start), 1)
        assert not duplicate_gpu_pods(r.cluster)
        assert r.operator.alive()


class DuplicateWatch:
    """Samples the store every 50 ms while active: any (node, GPU) with two live pods is recorded."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self.seen: list[dict[tuple[str, str], int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DuplicateWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            dup = duplicate_gpu_pods(self.r.cluster)
            if dup:
                self.seen.append(dup)
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("rate", [0.2, 0.5])
async def test_converges_after_api_faults(tmp_path: Path, record: dict[str, Any], rate: float) -> None:
    """#21: at 50% API faults the fleet converges within 30 s after the faults stop, no duplicate pod
    ever, and at most 25 requests/s during the faults."""
    fault_seconds = 15.0
    async with rig(tmp_path, LAYOUT, start=False) as r:
        r.proxy.plan = FaultPlan.api_faults(rate, delay_seconds=2.0)
        async with DuplicateWatch(r) as dups:
            await r.start_operator()
            start = r.proxy.mark()
            await asyncio.sleep(fault_seconds)  # how long the faults last (a duration, not a check)
            end = r.proxy.mark()
            ready_during = ready_devices(r.cluster, LAYOUT)
            r.proxy.plan = NO_FAULTS
            recover = await wait_for(r.converged(), within=60)
        during = r.proxy.requests_between(start, end)
        record.update(
            fault_rate=rate,
            fault_seconds=fault_seconds,
            requests_per_s_during=round(r.proxy.rate(start, end), 1),
            peak_requests_per_s_during=round(r.proxy.peak_rate(start, end), 1),
            faults=summary(during),
            ready_gpus_when_faults_stop=f"{ready_during}/{LAYOUT.nodes * 2}",
            converge_after_faults_s=round(recover, 1),
            duplicate_samples=len(dups.seen),
            operator_tracebacks=r.operator.tracebacks(),
            operator_log_lines=len(r.operator.log_lines()),
        )
        assert not dups.seen, dups.seen[:3]
        assert recover <= 30, record
        assert r.proxy.rate(start, end) <= 25, record
        assert r.operator.alive()


async def test_routine_network_errors_log_no_tracebacks(tmp_path: Path, record: dict[str, Any]) -> None:
    async with rig(tmp_path, Layout(nodes=4, pools=1), start=False) as r:
        r.proxy.plan = FaultPlan(error_rate=0.3, reset_rate=0.2)
        await r.start_operator()
        start = r.proxy.mark()
        await wait_for(lambda: r.proxy.outcomes(start).get("reset", 0) >= 10, within=60)
        r.proxy.plan = NO_FAULTS
        await wait_for(r.converged(), within=60)
        lines = r.operator.log_lines()
        record.update(resets=r.proxy.outcomes(start).get("reset", 0), tracebacks=r.operator.tracebacks())
        record.update(log_lines=len(lines))
        assert r.operator.tracebacks() == 0, record


@pytest.mark.parametrize("indexes", ["kopf", "local"])
async def test_one_429_during_start_up_does_not_stall(
    tmp_path: Path, record: dict[str, Any], indexes: str
) -> None:
    """F7: in local mode one transient 429 on the start-up list stalled the operator for 60 s."""
    async with rig(tmp_path, LAYOUT, start=False, env={"GPUFLEET_INDEXES": indexes}) as r:
        r.proxy.set_plan(FaultPlan(error_rate=1.0, error_codes=(429,), paths=("/pods",), max_faults=1))
        await r.start_operator()
        took = await wait_for(r.converged(), within=90)
        record.update(indexes=indexes, converge_s=round(took, 1), injected=r.proxy.injected)
        assert r.proxy.injected == 1
        assert took <= 30, record


async def test_brownout_recovery_wakes_every_node(tmp_path: Path, record: dict[str, Any]) -> None:
    """F11: after a brownout (every request refused) the last nodes were retried up to 60 s later."""
    async with rig(tmp_path, LAYOUT) as r:
        await wait_for(r.converged(), within=90)
        pods = r.cluster.store.resolve("", "v1", "pods")
        r.proxy.plan = FaultPlan(error_rate=1.0, error_codes=(503,))
        for i in range(LAYOUT.nodes):  # every node needs the API during the brownout
            r.cluster.store.delete(pods, "fleet", f"box-{i}-gpu-0", actor="test")
        start = r.proxy.mark()
        await wait_for(lambda: len(r.proxy.requests_between(start)) >= 30, within=60)
        r.proxy.plan = NO_FAULTS
        took = await wait_for(r.converged(), within=90)
        record.update(brownout_requests=len(r.proxy.requests_between(start)), recover_s=round(took, 1))
        assert took <= 10, record
