"""Demo phase: requests through the real stake-weighted router (Envoy + control plane) (#16).

After the fleet has converged, one fake engine (``gpufleet_fakeengine``, in-process, on
127.0.0.1) is started per engine pod of the demo cluster, and ``gpufleet router``'s control plane
programs a real Envoy from the cluster's pods, InferenceNodes and OperatorPools (pod addresses
rewritten to the fake engines: the emulator's pods have no network). Two steps send the same
bounded number of requests per model through Envoy's OpenAI front: ``k = 0`` (every eligible
device the same share) and the operator's ``k`` (shares follow stake). The phase passes when
no request failed, blocked devices got nothing, and each device's observed share is within a
computed bound of its intended share. Its detail is the per-device table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import tempfile
import time
from decimal import Decimal
from typing import Any

JsonObj = dict[str, Any]
REQUESTS_PER_MODEL = 600
CONCURRENCY = 16
STEP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pods(demo: Any) -> list[JsonObj]:
    cluster = demo._cluster
    ns = demo.scenario.namespace

    def read() -> list[JsonObj]:
        rtype = cluster.store.type_for("v1", "Pod")
        return list(cluster.store.objects(rtype, ns))

    pods: list[JsonObj] = demo._threaded.call(read)
    return [p for p in pods if (p.get("metadata") or {}).get("labels", {}).get("gpufleet.io/device-index")]


def _keyed(objs: list[JsonObj]) -> dict[tuple[str, str], JsonObj]:
    return {(o["metadata"].get("namespace", "default"), o["metadata"]["name"]): o for o in objs}


def _rewrite(pod: JsonObj, port: int) -> JsonObj:
    """The pod as the router sees it, but reachable: 127.0.0.1 and the fake engine's port."""
    out: JsonObj = json.loads(json.dumps(pod))
    out.setdefault("status", {})["podIP"] = "127.0.0.1"
    containers = out.setdefault("spec", {}).setdefault("containers", [{}])
    containers[0]["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    return out


def bound(n: int, share: float) -> float:
    """|observed - intended| share bound: 5 sigma of independent picks, plus 2 picks for EDF phase."""
    if n == 0:
        return 1.0
    return (5 * math.sqrt(n * share * (1 - share)) + 2) / n


async def _fire(url: str, models: list[str], per_model: int) -> dict[int, int]:
    import aiohttp

    codes: dict[int, int] = {}
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as session:

        async def one(model: str) -> None:
            async with sem:
                body = json.dumps({"model": model, "prompt": "hello fleet", "max_tokens": 4})
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as r:
                        await r.read()
                        codes[r.status] = codes.get(r.status, 0) + 1
                except aiohttp.ClientError:
                    codes[0] = codes.get(0, 0) + 1

        await asyncio.wait_for(
            asyncio.gather(*(one(m) for m in models for _ in range(per_model))), STEP_TIMEOUT
        )
    return codes


async def _applied(plane: Any, within: float = 20.0) -> None:
    """Wait until Envoy's hosts and weights are the control plane's (observable, no fixed sleep)."""
    import aiohttp

    from gpufleet.router import envoy

    deadline = time.monotonic() + within
    url = f"http://127.0.0.1:{plane.settings.admin_port}/clusters?format=json"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(url) as r:
                data = await r.json(content_type=None)
            have = {
                c["name"]: {
                    h["address"]["socket_address"]["port_value"]: int(h.get("weight", 1))
                    for h in c.get("host_statuses", [])
                }
                for c in data.get("cluster_statuses", [])
            }
            want = {
                envoy.cluster_name(m): {
                    x.endpoint.port: x.weight
                    for x in (plane.groups[m].endpoints if m in plane.groups else ())
                }
                for m in plane.models or ()
            }
            if all(have.get(name) == hosts for name, hosts in want.items()):
                return
            await asyncio.sleep(0.02)
    raise TimeoutError("Envoy did not apply the router's weights")


async def run_traffic_phase(demo: Any, *, per_model: int = REQUESTS_PER_MODEL) -> Any:
    """Run the phase on ``demo`` (a ``gpufleet_demo.runner.Demo``); returns the Phase appended."""
    from aiohttp import web

    from gpufleet.router.controlplane import ControlPlane
    from gpufleet.router.settings import RouterSettings
    from gpufleet.settings import OperatorSettings
    from gpufleet_demo.runner import Phase
    from gpufleet_fakeengine.engine import FakeArgs, FakeEngine

    phase = Phase(name="requests through the stake-weighted router (Envoy)", expected="Routed")
    demo.result.phases.append(phase)
    started = time.monotonic()
    inodes = _keyed(demo._objects("InferenceNode"))
    pools = _keyed(demo._objects("OperatorPool"))
    pods = _pods(demo)
    runners: list[web.AppRunner] = []
    k_steps = [Decimal(0), OperatorSettings().priority_k]
    current_k = [k_steps[0]]
    plane: ControlPlane | None = None
    try:
        rewritten: dict[tuple[str, str], JsonObj] = {}
        engines: dict[tuple[str, str], FakeEngine] = {}
        for pod in pods:
            meta = pod["metadata"]
            inode = inodes.get(
                (meta.get("namespace", "default"), meta["labels"]["gpufleet.io/inference-node"])
            )
            models = [m["name"] for m in ((inode or {}).get("spec") or {}).get("models") or []] or ["model"]
            port = _free_port()
            engine = FakeEngine(
                FakeArgs(flavour="vllm", host="127.0.0.1", port=port, model=models[0], served_names=models),
                {},
            )
            runner = web.AppRunner(engine.app(), access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
            key = (meta.get("namespace", "default"), meta["name"])
            rewritten[key] = _rewrite(pod, port)
            engines[key] = engine
        state = tempfile.mkdtemp(prefix="gpufleet-demo-router-")
        settings = RouterSettings(
            listen_port=_free_port(),
            admin_port=_free_port(),
            metrics_port=0,
            state_dir=state,
            envoy_concurrency=1,
            scrape_interval_seconds=0.5,
        )
        plane = ControlPlane(settings, k_source=lambda: current_k[0])
        plane.prepare()
        plane.start_envoy()
        await plane.wait_envoy_ready()
        url = f"http://127.0.0.1:{settings.listen_port}/v1/completions"
        rows: dict[Any, JsonObj] = {}
        failed = 0
        problems: list[str] = []
        for step, k in enumerate(k_steps):
            current_k[0] = k
            plane.set_state(rewritten, inodes, pools)
            plane.recompute()
            await _applied(plane)
            before = {d.key: d.requests for d in plane.snapshot().devices}
            settled_before = sum(d.completions + d.failures.total for d in plane.snapshot().devices)
            models = sorted(plane.groups)
            codes = await _fire(url, models, per_model)
            failed += sum(n for c, n in codes.items() if c != 200)
            # Envoy flushes its access log every 250 ms: wait until every request is counted and
            # settled (a completion is final once its request line is read, see router.accesslog)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                plane.scrape()
                settled = sum(d.completions + d.failures.total for d in plane.snapshot().devices)
                if settled - settled_before >= per_model * len(models):
                    break
                await asyncio.sleep(0.1)
            snap = plane.snapshot()
            # #19: the epochs phase (run after this one) closes one epoch per k step from these counters
            demo.__dict__.setdefault("router_snapshots", []).append(snap)
            for model, group in plane.groups.items():
                total = sum(d.requests - before.get(d.key, 0) for d in snap.devices if d.key.model == model)
                for member in group.endpoints:
                    e = member.endpoint
                    dev = next((d for d in snap.devices if d.key.model == model and d.key.pod == e.pod), None)
                    got = (dev.requests - before.get(dev.key, 0)) if dev else 0
                    observed = got / total if total else 0.0
                    intended = float(member.share)
                    row = rows.setdefault((e.pool, e.inference_node, e.device, model), {})
                    row[f"priority{step}"] = float(member.priority)
                    row[f"intended{step}"] = intended
                    row[f"observed{step}"] = observed
                    if abs(observed - intended) > bound(total, intended):
                        problems.append(
                            f"{e.inference_node}/{e.device} k={k}: observed {observed:.4f} vs "
                            f"intended {intended:.4f}"
                        )
        blocked_served = 0
        for key in plane.plan.excluded:
            if key in engines:
                engine = engines[key]
                tokens = engine.registry.get_sample_value("vllm:generation_tokens_total", engine.model_label)
                blocked_served += int(bool(tokens))
        lines = [
            f"{'device':<28} {'model':<34} {'prio k=0':>8} {'intended':>8} {'observed':>8} "
            f"{'prio k':>8} {'intended':>8} {'observed':>8}"
        ]
        for (pool, inode, device, model), r in sorted(rows.items()):
            lines.append(
                f"{pool + ' ' + inode + '/' + str(device):<28} {model[:34]:<34} "
                f"{r.get('priority0', 0):>8.2f} {r.get('intended0', 0):>8.4f} {r.get('observed0', 0):>8.4f} "
                f"{r.get('priority1', 0):>8.2f} {r.get('intended1', 0):>8.4f} {r.get('observed1', 0):>8.4f}"
            )
        for key, reasons in sorted(plane.plan.excluded.items()):
            lines.append(f"{key[1]:<28} no traffic: {', '.join(r.value for r in reasons)}")
        ok = failed == 0 and not problems and blocked_served == 0 and bool(rows)
        phase.outcome = "Routed" if ok else "NotAsIntended"
        phase.detail = (
            f"{per_model} requests per model per step, k = 0 then k = {k_steps[1]}; failed {failed}; "
            f"blocked devices served {blocked_served}"
            + ("; " + "; ".join(problems[:5]) if problems else "")
            + "\n"
            + "\n".join(lines)
        )
    except (TimeoutError, OSError, RuntimeError) as exc:
        phase.outcome, phase.detail = "Failed", f"{type(exc).__name__}: {exc}"
    finally:
        if plane is not None:
            plane.stop_envoy()
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        phase.seconds = time.monotonic() - started
    return phase


__all__ = ["bound", "run_traffic_phase"]
