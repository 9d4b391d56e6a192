"""The router end to end: real Envoy, real control plane, stub engines on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.router.conftest import Device, Router, Stub, post, wait_for

pytestmark = pytest.mark.timeout(120)


def binomial_bound(n: int, p: float, z: float = 5.0) -> float:
    """|count - n p| bound at z sigma for independent picks (Envoy's EDF is tighter than this)."""
    return z * math.sqrt(n * p * (1 - p)) + 2


async def fire(
    router: Router, n: int, model: str = "m", concurrency: int = 16, path: str = "/v1/completions"
) -> tuple[Counter[str], Counter[int]]:
    """n requests, bounded concurrency; who served each and the status codes."""
    who: Counter[str] = Counter()
    codes: Counter[int] = Counter()
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with sem:
                status, body, _ = await post(session, router.url, {"model": model, "prompt": "hi"}, path)
                codes[status] += 1
                if status == 200:
                    who[body["who"]] += 1

        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=60)
    return who, codes


async def test_shares_follow_priority(make_router: Any, stubs: Any) -> None:
    """Priorities 1 : 2 : 3.5 : 11 (k = 1e-4, stakes 0 / 10k / 25k / 100k INT)."""
    router: Router = await make_router()
    s = await stubs(4)
    stakes = ["0", "10000", "25000", "100000"]
    await router.program(
        [
            Device(f"p{i}", st.port, stake, index=i)
            for i, (st, stake) in enumerate(zip(s, stakes, strict=True))
        ]
    )
    n = 1400
    who, codes = await fire(router, n)
    assert codes == {200: n}
    priorities = [1, 2, 3.5, 11]
    total = sum(priorities)
    for stub, p in zip(s, priorities, strict=True):
        share = p / total
        assert abs(who[stub.name] - n * share) <= binomial_bound(n, share), (who, stub.name)
    # the control plane's counters agree with what the engines saw
    snap = await router.scrape_until(lambda sn: sum(d.requests for d in sn.devices) >= n)
    by_pod = {d.key.pod: d for d in snap.devices}
    assert [by_pod[f"p{i}"].completions for i in range(4)] == [who[st.name] for st in s]
    assert by_pod["p3"].intended_share == pytest.approx(11 / total)
    assert by_pod["p3"].tokens.completion == 3 * who[s[3].name]


async def test_k_zero_is_uniform(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(priority_k="0")
    s = await stubs(3)
    await router.program([Device(f"p{i}", st.port, str(10 ** (2 * i)), index=i) for i, st in enumerate(s)])
    n = 900
    who, codes = await fire(router, n)
    assert codes == {200: n}
    for stub in s:
        assert abs(who[stub.name] - n / 3) <= binomial_bound(n, 1 / 3)


async def test_model_routing_and_models_list(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    a, b = await stubs(2)
    await router.program(
        [
            Device("pa", a.port, "0", inode="na", models=("org/alpha",)),
            Device("pb", b.port, "0", inode="nb", models=("beta-1.5",)),
        ]
    )
    who_a, _ = await fire(router, 20, model="org/alpha")
    who_b, _ = await fire(router, 20, model="beta-1.5", path="/v1/chat/completions")
    assert who_a == {a.name: 20}
    assert who_b == {b.name: 20}
    async with aiohttp.ClientSession() as session, session.get(router.url + "/v1/models") as r:
        models = await r.json()
    assert [m["id"] for m in models["data"]] == ["beta-1.5", "org/alpha"]
    assert models["object"] == "list"


async def test_error_cases_are_openai_json(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(max_body_bytes=4096)
    (a,) = await stubs(1)
    # "empty" is a model some InferenceNode asks for but no eligible engine serves
    await router.program(
        [Device("pa", a.port, "0"), Device("pz", a.port, "0", inode="nz", models=("empty",), gate=False)]
    )
    async with aiohttp.ClientSession() as session:
        status, body, _ = await post(session, router.url, {"model": "nope"})
        assert status == 404
        assert body["error"]["code"] == "model_not_found"
        status, body, headers = await post(session, router.url, {"model": "empty"})
        assert status == 503
        assert headers.get("Retry-After") == "1"
        assert body["error"]["type"] == "service_unavailable"
        status, body, _ = await post(session, router.url, "{not json")
        assert status == 400
        assert "not valid JSON" in body["error"]["message"]
        status, body, _ = await post(session, router.url, {"prompt": "no model"})
        assert status == 400
        status, body, _ = await post(session, router.url, {"model": "m", "prompt": "x" * 10_000})
        assert status == 413
        assert body["error"]["code"] == 413
    assert a.served == 0
    snap = await router.scrape_until(lambda sn: sn.router_503 >= 1)
    assert snap.router_503 == 1


async def test_streaming_is_passed_through_unbuffered(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    (a,) = await stubs(1)
    await router.program([Device("pa", a.port, "0")])
    arrivals: list[float] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            router.url + "/v1/chat/completions",
            data=json.dumps({"model": "m", "stream": True, "chunks": 4, "gap": 0.3}),
            headers={"Content-Type": "application/json"},
        ) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        async for line in r.content:
            if line.startswith(b"data: {"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # each chunk arrives on its own, ~0.3 s apart: nothing was buffered to the end
    assert min(gaps) > 0.15


async def test_retry_once_on_another_engine_counted_once(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(outlier_consecutive_failures=1000)
    bad, good = await stubs(2)
    bad.mode = "500"
    await router.program([Device("bad", bad.port, "0", index=0), Device("good", good.port, "0", index=1)])
    n = 40
    who, codes = await fire(router, n, concurrency=1)
    assert codes == {200: n}  # every failure was retried on the good engine
    assert who == {good.name: n}
    snap = await router.scrape_until(lambda sn: sum(d.requests for d in sn.devices) >= n + len(bad.seen))
    d = {x.key.pod: x for x in snap.devices}
    assert d["bad"].failures.http_5xx == len(bad.seen) > 0
    assert d["bad"].retries == len(bad.seen)
    assert d["bad"].completions == 0
    assert d["good"].completions == n
    assert d["good"].failures.total == 0


async def test_connect_failure_and_reset_are_retried(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(outlier_consecutive_failures=1000, retries=2)
    reset, good = await stubs(2)
    reset.mode = "reset"
    from tests.integration.router.conftest import free_port

    dead_port = free_port()  # nothing listens here
    await router.program(
        [
            Device("reset", reset.port, "0", index=0),
            Device("good", good.port, "0", index=1),
            Device("dead", dead_port, "0", index=2),
        ]
    )
    _who, codes = await fire(router, 30, concurrency=1)
    assert codes == {200: 30}
    snap = await router.scrape_until(lambda sn: sum(x.completions for x in sn.devices) >= 30)
    d = {x.key.pod: x for x in snap.devices}
    assert d["good"].completions == 30
    if "dead" in d:
        assert d["dead"].failures.connect == d["dead"].requests > 0
    if "reset" in d:
        assert d["reset"].failures.reset + d["reset"].failures.http_5xx == d["reset"].requests


async def test_failing_engine_is_ejected_and_comes_back(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router(
        outlier_consecutive_failures=3, outlier_base_ejection_seconds=1.0, retries=0
    )
    flaky, good = await stubs(2)
    await router.program([Device("flaky", flaky.port, "0", index=0), Device("good", good.port, "0", index=1)])
    flaky.mode = "500"
    async with aiohttp.ClientSession() as session:

        async def ejected() -> bool:
            await post(session, router.url, {"model": "m"})
            async with session.get(router.admin + "/clusters?format=json") as r:
                data = await r.json(content_type=None)
            for c in data["cluster_statuses"]:
                for h in c.get("host_statuses", []):
                    if h["address"]["socket_address"]["port_value"] == flaky.port:
                        return bool(h.get("health_status", {}).get("failed_outlier_check"))
            return False

        await wait_for(ejected, 10, "the flaky engine to be ejected")
        seen_while_ejected = len(flaky.seen)
        for _ in range(10):
            status, _, _ = await post(session, router.url, {"model": "m"})
            assert status == 200
        assert len(flaky.seen) == seen_while_ejected  # ejected: gets nothing
        flaky.mode = "ok"

        async def back() -> bool:
            await post(session, router.url, {"model": "m"})
            return flaky.served > 0

        await wait_for(back, 15, "the engine to come back after its ejection")


async def test_live_reweighting_without_failed_requests(make_router: Any, stubs: Any) -> None:
    """Weights change 10 times/s under load, streams in flight: not one request fails."""
    router: Router = await make_router()
    s = await stubs(3)
    devices = [Device(f"p{i}", st.port, "0", index=i) for i, st in enumerate(s)]
    await router.program(devices)
    stop = asyncio.Event()
    codes: Counter[int] = Counter()
    streams_ok = 0

    async def load() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                status, _, _ = await post(session, router.url, {"model": "m"})
                codes[status] += 1

    async def stream() -> None:
        nonlocal streams_ok
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                router.url + "/v1/chat/completions",
                data=json.dumps({"model": "m", "stream": True, "chunks": 10, "gap": 0.1}),
                headers={"Content-Type": "application/json"},
            ) as r,
        ):
            body = await r.read()
            if r.status == 200 and body.endswith(b"data: [DONE]\n\n"):
                streams_ok += 1

    workers = [asyncio.create_task(load()) for _ in range(8)]
    streams = [asyncio.create_task(stream()) for _ in range(4)]
    for step in range(20):  # 2 s at 10 changes/s
        stakes = [str((step * 7 + i * 13) % 50 * 1000) for i in range(3)]
        for d, st in zip(devices, stakes, strict=True):
            d.stake_int = st
        router.plane.set_state(
            *__import__("tests.integration.router.conftest", fromlist=["fleet_bodies"]).fleet_bodies(devices)
        )
        router.plane.recompute()
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*workers, *streams), 30)
    assert sum(codes.values()) > 50
    assert set(codes) == {200}, codes
    assert streams_ok == 4
    assert router.plane.book.reprogrammings >= 15


async def test_blocked_halted_penalised_get_nothing(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    ok, blocked, halted, penalised, gated = await stubs(5)
    far_future = "2999-01-01T00:00:00Z"
    await router.program(
        [
            Device("ok", ok.port, "100000", index=0),
            Device("blocked", blocked.port, "100000", index=1, routable=False),
            Device("halted", halted.port, "100000", pool="pool-h", inode="node-h"),
            Device(
                "penalised",
                penalised.port,
                "100000",
                index=2,
                annotations={"gpufleet.io/routing-penalised-until": far_future},
            ),
            Device("gated", gated.port, "100000", index=3, gate=False),
        ],
        pool_annotations={"pool-h": {"gpufleet.io/routing-halted": "true"}},
    )
    who, codes = await fire(router, 60)
    assert codes == {200: 60}
    assert who == {ok.name: 60}
    reasons = {key[1]: [r.value for r in rs] for key, rs in router.plane.plan.excluded.items()}
    assert reasons == {
        "blocked": ["NotRoutable"],
        "halted": ["PoolHalted"],
        "penalised": ["Penalised"],
        "gated": ["ReadinessGateClosed"],
    }


async def test_counters_survive_a_restart(make_router: Any, stubs: Any, tmp_path: Any) -> None:
    router: Router = await make_router()
    (a,) = await stubs(1)
    await router.program([Device("pa", a.port, "0")])
    await fire(router, 25)
    await router.scrape_until(lambda sn: sum(d.completions for d in sn.devices) >= 25)
    router.plane.checkpoint()
    from gpufleet.router.controlplane import ControlPlane

    # the control plane restarts; Envoy (its own process, as in a pod's second container) keeps running
    again = ControlPlane(router.settings)
    again.prepare()  # restores the checkpoint, including where it was in Envoy's access log
    [dev] = again.snapshot().devices
    assert dev.completions == 25
    assert again.snapshot().since == router.plane.snapshot().since
    again.set_state(router.plane.pods, router.plane.inodes, router.plane.pools)
    again.recompute()  # rewrites the same files: Envoy keeps serving
    await fire(router, 10)

    def counted() -> bool:
        again.scrape()
        return sum(d.completions for d in again.snapshot().devices) >= 35

    await wait_for(counted, 10, "the restarted control plane to count the new requests")
    [dev] = again.snapshot().devices
    assert dev.completions == 35  # the 25 already counted were not read twice


async def test_concurrency_cap_limits_inflight(make_router: Any, stubs: Any) -> None:
    router: Router = await make_router()
    (a,) = await stubs(1)
    a.delay = 0.2
    await router.program([Device("pa", a.port, "0", annotations={"gpufleet.io/max-concurrency": "2"})])
    _, codes = await fire(router, 12, concurrency=12)
    assert codes[200] == 12
    assert a.max_inflight <= 2


__all__ = ["Stub"]


async def test_access_log_rotation_loses_nothing(
    make_router: Any, stubs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rename + Envoy /reopen_logs + drain of the old file: every request counted exactly once."""
    from gpufleet.router import controlplane

    monkeypatch.setattr(controlplane, "LOG_ROTATE_BYTES", 1000)
    router: Router = await make_router()
    (a,) = await stubs(1)
    await router.program([Device("pa", a.port, "0")])
    await fire(router, 20)
    await router.scrape_until(lambda sn: sum(d.requests for d in sn.devices) >= 20)
    await fire(router, 5)  # lines still in Envoy's buffer or unread when the file is renamed
    async with aiohttp.ClientSession() as session:
        await router.plane.rotate_log_if_big(session)
    await fire(router, 15)
    snap = await router.scrape_until(lambda sn: sum(d.completions for d in sn.devices) >= 40)
    assert sum(d.completions for d in snap.devices) == 40
    assert sum(d.requests for d in snap.devices) == 40
    leftover = Path(router.plane.paths.access_log + ".1")
    assert not leftover.exists()  # noqa: ASYNC240 - one stat in a test
