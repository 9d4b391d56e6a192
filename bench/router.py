"""Router benchmark: data-plane candidates, share accuracy, reprogramming, 10k-endpoint recompute.

Everything on 127.0.0.1, every loop bounded in count and time. Fast fake upstreams are one Envoy
process answering every request itself (``direct_response``), one listener per fake engine: it
is C++ and costs little CPU, so the candidates are what is measured. Load generator: ``wrk``
(Debian package; POST with a JSON body through a Lua script), 32 connections.

    python bench/router.py                  # full run (~6 min), writes bench/results/router.{json,md}
    python bench/router.py --quick          # short run for a smoke check (results not written)

Candidates (same 1:2:3:4 weights wherever weights apply):
  direct          wrk -> one fake engine
  envoy-static    Envoy 1.40, static cluster, weighted round robin, no filters, no control plane
  gpufleet-router the real control plane programming Envoy (json_to_metadata body routing, access
                  log counters, OpenAI errors), its scrape loop running during the measurement
  haproxy         HAProxy (Debian), roundrobin with the same weights (HAProxy caps weights at 256)
  vllm-router     vllm-router from PyPI, --policy random (uniform: it has no weights)
  sglang-router   sglang-router from PyPI, --policy random (uniform)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpufleet.router import envoy as envoy_cfg  # noqa: E402
from gpufleet.router.controlplane import ControlPlane, envoy_binary  # noqa: E402
from gpufleet.router.endpoints import build_endpoints  # noqa: E402
from gpufleet.router.settings import RouterSettings  # noqa: E402
from gpufleet.router.weights import Endpoint, compute_weights, plan_routing  # noqa: E402
from gpufleet.shares import INT_BASE  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BODY = '{"model":"m","prompt":"hi","max_tokens":1}'
UPSTREAM_BODY = json.dumps(
    {
        "id": "cmpl-bench",
        "object": "text_completion",
        "model": "m",
        "choices": [{"index": 0, "text": " ok", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
WEIGHTS = (1, 2, 3, 4)
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """n distinct free ports: held open together so the kernel cannot hand one out twice."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s_.getsockname()[1]) for s_ in socks]
    finally:
        for sock in socks:
            sock.close()


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
        "note": "shared 2-core VM: other engineers' tests ran at the same time, so absolute rps vary "
        "run to run; candidates were measured back to back in one run",
    }


@contextlib.contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (load-independent cost)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    family = {pid}
    changed = True
    while changed:
        changed = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    return sum(times.get(p, 0.0) for p in family)


def wait_port(port: int, within: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


# --- fake upstreams -------------------------------------------------------------------------------
def upstream_bootstrap(ports: list[int], admin: int) -> dict[str, Any]:
    listeners = []
    for port in ports:
        listeners.append(
            {
                "name": f"u{port}",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.http_connection_manager",
                                "typed_config": {
                                    "@type": HCM_TYPE,
                                    "stat_prefix": "u",
                                    "codec_type": "AUTO",
                                    "route_config": {
                                        "virtual_hosts": [
                                            {
                                                "name": "all",
                                                "domains": ["*"],
                                                "routes": [
                                                    {
                                                        "match": {"prefix": "/"},
                                                        "direct_response": {
                                                            "status": 200,
                                                            "body": {"inline_string": UPSTREAM_BODY},
                                                        },
                                                        "response_headers_to_add": [
                                                            {
                                                                "header": {
                                                                    "key": "content-type",
                                                                    "value": "application/json",
                                                                }
                                                            }
                                                        ],
                                                    }
                                                ],
                                            }
                                        ]
                                    },
                                    "http_filters": [
                                        {
                                            "name": "envoy.filters.http.router",
                                            "typed_config": {"@type": ROUTER_TYPE},
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        )
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners},
    }


def static_envoy_bootstrap(port: int, admin: int, upstreams: list[int]) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "front",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM_TYPE,
                                        "stat_prefix": "front",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "engines", "timeout": "0s"},
                                                        }
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": ROUTER_TYPE},
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "engines",
                    "type": "STATIC",
                    "lb_policy": "ROUND_ROBIN",
                    "connect_timeout": "1s",
                    "circuit_breakers": {
                        "thresholds": [
                            {
                                "max_connections": 100000,
                                "max_pending_requests": 100000,
                                "max_requests": 100000,
                            }
                        ]
                    },
                    "load_assignment": {
                        "cluster_name": "engines",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": "127.0.0.1", "port_value": p}
                                            }
                                        },
                                        "load_balancing_weight": w,
                                    }
                                    for p, w in zip(upstreams, WEIGHTS, strict=True)
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def haproxy_config(port: int, upstreams: list[int]) -> str:
    servers = "\n".join(
        f"    server e{i} 127.0.0.1:{p} weight {w}"
        for i, (p, w) in enumerate(zip(upstreams, WEIGHTS, strict=True))
    )
    return f"""global
    nbthread 2
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend front
    bind 127.0.0.1:{port}
    default_backend engines
backend engines
    balance roundrobin
{servers}
"""


# --- load -----------------------------------------------------------------------------------------
LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def parse_wrk(out: str) -> dict[str, Any]:
    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    res: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = ms(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    return res


async def awrk(url: str, seconds: float, connections: int, lua: Path, threads: int = 2) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, int(seconds))}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    return parse_wrk(out.decode())


# --- gpufleet router helpers ----------------------------------------------------------------------
def bodies(
    devices: list[tuple[str, int, int]], k_priority_one: bool = True
) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """(pod, port, effective stake base units) -> raw fleet bodies (one InferenceNode per 64 pods)."""
    pods: dict[Any, Any] = {}
    inodes: dict[Any, Any] = {}
    pools = {("b", "pool"): {"metadata": {"name": "pool", "namespace": "b"}, "spec": {"selfStake": "1"}}}
    for i, (name, port, stake) in enumerate(devices):
        inode = f"node-{i // 64}"
        index = i % 64
        pods[("b", name)] = {
            "metadata": {
                "name": name,
                "namespace": "b",
                "labels": {
                    "app.kubernetes.io/managed-by": "gpufleet",
                    "gpufleet.io/pool": "pool",
                    "gpufleet.io/inference-node": inode,
                    "gpufleet.io/device-index": str(index),
                    "gpufleet.io/routable": "true",
                },
            },
            "spec": {"containers": [{"ports": [{"name": "http", "containerPort": port}]}]},
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "gpufleet.io/engine-ready", "status": "True"}],
            },
        }
        node = inodes.setdefault(
            ("b", inode),
            {
                "metadata": {"name": inode, "namespace": "b"},
                "spec": {"poolRef": {"name": "pool"}, "models": [{"name": "m"}]},
                "status": {"devices": []},
            },
        )
        whole, frac = divmod(stake, INT_BASE)
        node["status"]["devices"].append(
            {"index": index, "effectiveStake": f"{whole}" if not frac else f"{whole}.{frac:09d}".rstrip("0")}
        )
    return pods, inodes, pools


async def envoy_hosts(admin: int) -> dict[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{admin}/clusters?format=json") as r:
        data = await r.json(content_type=None)
    out: dict[int, dict[str, Any]] = {}
    for c in data.get("cluster_statuses", []):
        for h in c.get("host_statuses", []):
            stats = {st["name"]: int(st.get("value", 0)) for st in h.get("stats", []) if "value" in st}
            out[h["address"]["socket_address"]["port_value"]] = {"weight": int(h.get("weight", 1)), **stats}
    return out


async def start_plane(tmp: Path, port: int, admin: int, k: str, concurrency: int = 2) -> ControlPlane:
    settings = RouterSettings(
        listen_port=port,
        admin_port=admin,
        metrics_port=0,
        state_dir=str(tmp),
        envoy_concurrency=concurrency,
        priority_k=Decimal(k),
        scrape_interval_seconds=1.0,
        outlier_consecutive_failures=1000,
    )
    plane = ControlPlane(settings)
    plane.prepare()
    plane.start_envoy()
    await plane.wait_envoy_ready()
    return plane


async def wait_weights(plane: ControlPlane, within: float = 30.0) -> float:
    """Seconds until Envoy's host weights equal the control plane's."""
    started = time.monotonic()
    want = {m.endpoint.port: m.weight for g in plane.groups.values() for m in g.endpoints}
    while time.monotonic() - started < within:
        hosts = await envoy_hosts(plane.settings.admin_port)
        if {p: h["weight"] for p, h in hosts.items()} == want:
            return time.monotonic() - started
        await asyncio.sleep(0.002)
    raise TimeoutError("Envoy did not apply the weights")


# --- sections -------------------------------------------------------------------------------------
async def throughput(
    tmp: Path, seconds: float, connections: int, candidates: list[str], rounds: int = 3
) -> dict[str, Any]:
    """All candidates up at once; ``rounds`` interleaved wrk runs each; the median run is reported.

    Interleaving matters on a shared machine: a burst of someone else's load hits every candidate
    alike instead of the one that happened to run then.
    """
    ups = free_ports(len(WEIGHTS))
    up_admin = free_port()
    (tmp / "up.json").write_text(json.dumps(upstream_bootstrap(ups, up_admin)))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    results: dict[str, Any] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    urls: dict[str, str] = {}
    pids: dict[str, int] = {}
    env_bin = envoy_binary(RouterSettings())
    plane: ControlPlane | None = None
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(
            process(
                [
                    env_bin,
                    "-c",
                    str(tmp / "up.json"),
                    "--concurrency",
                    "2",
                    "-l",
                    "error",
                    "--base-id",
                    "101",
                    "--disable-hot-restart",
                ],
                tmp / "up.log",
            )
        )
        wait_port(ups[-1], proc=up)
        for name in candidates:
            port, admin = free_port(), free_port()
            try:
                if name == "direct":
                    port = ups[0]
                elif name == "envoy-static":
                    (tmp / "static.json").write_text(json.dumps(static_envoy_bootstrap(port, admin, ups)))
                    p = stack.enter_context(
                        process(
                            [
                                env_bin,
                                "-c",
                                str(tmp / "static.json"),
                                "--concurrency",
                                "2",
                                "-l",
                                "error",
                                "--base-id",
                                "102",
                                "--disable-hot-restart",
                            ],
                            tmp / "static.log",
                        )
                    )
                    wait_port(port, proc=p)
                    pids[name] = p.pid
                elif name == "gpufleet-router":
                    plane = await start_plane(tmp / "gf", port, admin, "1")
                    stack.callback(plane.stop_envoy)
                    devices = [
                        (f"e{i}", p_, (w - 1) * INT_BASE)
                        for i, (p_, w) in enumerate(zip(ups, WEIGHTS, strict=True))
                    ]
                    plane.set_state(*bodies(devices))
                    plane.recompute()
                    await wait_weights(plane)
                    assert plane.envoy is not None
                    pids[name] = plane.envoy.pid
                elif name == "haproxy":
                    if not shutil.which("haproxy"):
                        results[name] = {"skipped": "haproxy not installed (apt-get install haproxy)"}
                        continue
                    (tmp / "haproxy.cfg").write_text(haproxy_config(port, ups))
                    p = stack.enter_context(
                        process(["haproxy", "-f", str(tmp / "haproxy.cfg"), "-db"], tmp / "haproxy.log")
                    )
                    wait_port(port, proc=p)
                    pids[name] = p.pid
                elif name in ("vllm-router", "sglang-router"):
                    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
                    if not exe:
                        results[name] = {"skipped": f"{name} not installed (pip install '.[bench]')"}
                        continue
                    cmd = [
                        exe,
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--policy",
                        "random",
                        "--worker-urls",
                        *[f"http://127.0.0.1:{p_}" for p_ in ups],
                    ]
                    if name == "sglang-router":
                        cmd = [exe, "launch", *cmd[1:]]
                    cmd += ["--prometheus-port", str(free_port()), "--prometheus-host", "127.0.0.1"]
                    p = stack.enter_context(process(cmd, tmp / f"{name}.log"))
                    wait_port(port, within=60, proc=p)
                    pids[name] = p.pid
                urls[name] = f"http://127.0.0.1:{port}/v1/completions"
                await awrk(urls[name], 1, connections, lua)  # warm-up
            except Exception as exc:
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        scraper = asyncio.create_task(plane.scrape_loop()) if plane is not None else None
        for _ in range(rounds):
            for name, url in urls.items():
                pid = pids.get(name)
                c0, own0 = (tree_cpu(pid) if pid else 0.0), time.process_time()
                res = await awrk(url, seconds, connections, lua)
                c1, own1 = (tree_cpu(pid) if pid else 0.0), time.process_time()
                done = max(1, res["requests"])
                res["proxy_cpu_us_per_request"] = round(1e6 * (c1 - c0) / done, 1)
                if name == "gpufleet-router":  # the control plane runs in this process (its scrape loop)
                    res["control_plane_cpu_us_per_request"] = round(1e6 * (own1 - own0) / done, 1)
                runs.setdefault(name, []).append(res)
                print(f"  {name}: {res['rps']:.0f} rps p99 {res['p99_ms']} ms", flush=True)
        if scraper is not None:
            scraper.cancel()
        for name, rs in runs.items():
            ordered = sorted(rs, key=lambda r: r["rps"])
            med = dict(ordered[len(ordered) // 2])
            med["rps_runs"] = [r["rps"] for r in rs]
            med["p99_runs_ms"] = [r["p99_ms"] for r in rs]
            med["p99_ms_median"] = statistics.median(r["p99_ms"] for r in rs)
            med["failed_total"] = sum(r["non_2xx"] + r["socket_errors"] for r in rs)
            med["proxy_cpu_us_per_request_median"] = statistics.median(
                r["proxy_cpu_us_per_request"] for r in rs
            )
            if "control_plane_cpu_us_per_request" in rs[0]:
                med["control_plane_cpu_us_per_request_median"] = statistics.median(
                    r["control_plane_cpu_us_per_request"] for r in rs
                )
            results[name] = med
        if plane is not None and "gpufleet-router" in results:
            plane.scrape()
            hosts = await envoy_hosts(plane.settings.admin_port)
            snap = plane.snapshot()
            results["gpufleet-router"]["requests_by_weight"] = {
                str(w): hosts[p_].get("rq_total", 0) for p_, w in zip(ups, WEIGHTS, strict=True)
            }
            results["gpufleet-router"]["control_plane_counted"] = sum(d.requests for d in snap.devices)
    direct = results.get("direct", {}).get("p99_ms_median")
    for res in results.values():
        if direct is not None and "p99_ms_median" in res:
            res["added_p99_ms"] = round(res["p99_ms_median"] - direct, 3)
    return results


async def share_accuracy(
    tmp: Path, pods: int, seconds: float, connections: int, seed: int = 7
) -> dict[str, Any]:
    rng = random.Random(seed)
    priorities = [10 ** rng.uniform(0, 6) for _ in range(pods)]
    # priority = 1 + k * stake (k = 1e-4 per INT): stake in base units, exact integers
    k = Decimal("0.0001")
    stakes = [round((p - 1) / 1e-4 * INT_BASE) for p in priorities]
    ups = free_ports(pods)
    up_admin = free_port()
    (tmp / "up1k.json").write_text(json.dumps(upstream_bootstrap(ups, up_admin)))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    env_bin = envoy_binary(RouterSettings())
    with process(
        [
            env_bin,
            "-c",
            str(tmp / "up1k.json"),
            "--concurrency",
            "1",
            "-l",
            "error",
            "--base-id",
            "103",
            "--disable-hot-restart",
        ],
        tmp / "up1k.log",
    ) as up:
        for p in ups:  # all bound before any other port is picked (free_port could hand one out again)
            wait_port(p, within=120, proc=up)
        port, admin = free_port(), free_port()
        plane = await start_plane(tmp / "share", port, admin, str(k))
        try:
            plane.set_state(
                *bodies([(f"e{i}", p, s) for i, (p, s) in enumerate(zip(ups, stakes, strict=True))])
            )
            plane.recompute()
            await wait_weights(plane, 60)
            res = await awrk(f"http://127.0.0.1:{port}/v1/completions", seconds, connections, lua)
            hosts = await envoy_hosts(admin)
        finally:
            plane.stop_envoy()
    group = plane.groups["m"]
    total = sum(hosts[m.endpoint.port].get("rq_success", 0) for m in group.endpoints)
    errors = []
    zero_with_expected = 0
    for m in group.endpoints:
        expected = float(m.share) * total
        got = hosts[m.endpoint.port].get("rq_success", 0)
        if expected >= 1000:
            errors.append(abs(got - expected) / expected)
        if expected >= 1 and got == 0:
            zero_with_expected += 1
    starved = sum(1 for m in group.endpoints if m.weight < 1 or m.endpoint.port not in hosts)
    return {
        "pods": pods,
        "priority_range": [min(priorities), max(priorities)],
        "requests": total,
        "wrk": res,
        "pods_with_ge_1000_expected": len(errors),
        "max_relative_error": max(errors) if errors else None,
        "mean_relative_error": statistics.fmean(errors) if errors else None,
        "starved_pods": starved,
        "pods_with_ge_1_expected_but_0_observed": zero_with_expected,
        "weights_exact": group.exact,
        "total_weight": group.total_weight,
        "min_weight": min(m.weight for m in group.endpoints),
    }


async def reprogramming(tmp: Path, changes: int, load_seconds: float, connections: int) -> dict[str, Any]:
    """(a) API change -> new weight in Envoy through the emulator's watch; (b) failures at 10 changes/s."""
    from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
    from gpufleet.router.controlplane import Informer, watch_paths
    from gpufleet_devcluster import DevCluster

    ups = free_ports(len(WEIGHTS))
    up_admin = free_port()
    (tmp / "upr.json").write_text(json.dumps(upstream_bootstrap(ups, up_admin)))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    env_bin = envoy_binary(RouterSettings())
    out: dict[str, Any] = {}
    with process(
        [
            env_bin,
            "-c",
            str(tmp / "upr.json"),
            "--concurrency",
            "1",
            "-l",
            "error",
            "--base-id",
            "104",
            "--disable-hot-restart",
        ],
        tmp / "upr.log",
    ) as up:
        wait_port(ups[-1], proc=up)
        dc = DevCluster(
            crd_dir=[ROOT / "crds"],
            nodes=[],
            kubelet=False,
            namespaces=("default", "b"),
            bookmark_interval=0.5,
        )
        await dc.start()
        port, admin = free_port(), free_port()
        plane = await start_plane(tmp / "rp", port, admin, "1")
        try:
            async with KubeClient(connection_from_kubeconfig(dc.kubeconfig_path)) as client:
                pods, inodes, _ = bodies([(f"e{i}", p, 0) for i, p in enumerate(ups)])
                g = "/apis/gpufleet.io/v1alpha1/namespaces/b"
                await client.request(
                    "POST",
                    f"{g}/operatorpools",
                    body={
                        "apiVersion": "gpufleet.io/v1alpha1",
                        "kind": "OperatorPool",
                        "metadata": {"name": "pool"},
                        "spec": {"selfStake": "1"},
                    },
                )
                for (_, name), inode in inodes.items():
                    await client.request(
                        "POST",
                        f"{g}/inferencenodes",
                        body={
                            "apiVersion": "gpufleet.io/v1alpha1",
                            "kind": "InferenceNode",
                            "metadata": {"name": name},
                            "spec": {**inode["spec"], "nodeName": name},
                        },
                    )
                    await client.patch_status("inferencenodes", "b", name, inode["status"])
                for (_, name), pod in pods.items():
                    await client.request(
                        "POST",
                        "/api/v1/namespaces/b/pods",
                        body={
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": pod["metadata"],
                            "spec": {
                                "containers": [{**pod["spec"]["containers"][0], "name": "e", "image": "x"}]
                            },
                        },
                    )
                    await client.request(
                        "PATCH",
                        f"/api/v1/namespaces/b/pods/{name}/status",
                        body={"status": pod["status"]},
                        content_type="application/merge-patch+json",
                    )
                informers = {
                    n: Informer(client, p, s, lambda: None) for n, (p, s) in watch_paths("b").items()
                }

                def changed() -> None:
                    plane.set_state(
                        informers["pods"].items, informers["inodes"].items, informers["pools"].items
                    )

                for inf in informers.values():
                    inf.on_change = changed
                tasks = [asyncio.create_task(i.run()) for i in informers.values()]
                tasks.append(asyncio.create_task(plane.recompute_loop()))
                await asyncio.sleep(0)
                await wait_weights_until(plane, lambda hosts: len(hosts) == len(ups))
                latencies = []
                for step in range(changes):
                    stake = str(1 + step % 7)  # priority of device 0 moves 2..8
                    t0 = time.monotonic()
                    await client.patch_status(
                        "inferencenodes",
                        "b",
                        "node-0",
                        {
                            "devices": [
                                {"index": 0, "effectiveStake": stake},
                                *inodes[("b", "node-0")]["status"]["devices"][1:],
                            ]
                        },
                    )
                    want = 1 + int(stake)
                    await wait_weights_until(
                        plane,
                        lambda hosts, w=want: (
                            hosts.get(ups[0], {}).get("weight") == w * 1
                            and hosts.get(ups[1], {}).get("weight") == 1
                        ),
                        within=10,
                        ratio=(ups[0], ups[1], want),
                    )
                    latencies.append(time.monotonic() - t0)
                latencies.sort()
                out["api_change_to_envoy_ms"] = {
                    "changes": changes,
                    "p50": 1000 * latencies[len(latencies) // 2],
                    "p99": 1000 * latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)],
                    "max": 1000 * latencies[-1],
                    "path": "PATCH InferenceNode status -> emulator watch -> informer -> recompute -> "
                    "EDS file rename -> Envoy applies (polled on its admin /clusters every 2 ms)",
                }
                # (b) full load while weights change 10 times per second through the API
                stop = asyncio.Event()

                async def churn() -> int:
                    n = 0
                    while not stop.is_set() and n < 10 * int(load_seconds + 5):
                        n += 1
                        await client.patch_status(
                            "inferencenodes",
                            "b",
                            "node-0",
                            {
                                "devices": [
                                    {"index": i, "effectiveStake": str(rng_stake(n, i))}
                                    for i in range(len(ups))
                                ]
                            },
                        )
                        await asyncio.sleep(0.1)
                    return n

                churner = asyncio.create_task(churn())
                before = plane.book.reprogrammings
                res = await awrk(f"http://127.0.0.1:{port}/v1/completions", load_seconds, connections, lua)
                stop.set()
                applied = await churner
                out["under_churn"] = {
                    **res,
                    "changes_sent": applied,
                    "reprogrammings": plane.book.reprogrammings - before,
                    "failed_requests": res["non_2xx"] + res["socket_errors"],
                }
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            plane.stop_envoy()
            await dc.stop()
    return out


def rng_stake(n: int, i: int) -> int:
    return (n * 7 + i * 13) % 50


async def wait_weights_until(
    plane: ControlPlane, check: Any, within: float = 30.0, ratio: tuple[int, int, int] | None = None
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        hosts = await envoy_hosts(plane.settings.admin_port)
        if ratio is not None:
            a, b, want = ratio
            if a in hosts and b in hosts and hosts[a]["weight"] == want * hosts[b]["weight"]:
                return
        elif check(hosts):
            return
        await asyncio.sleep(0.002)
    raise TimeoutError("weights not applied")


def recompute_cpu(n: int = 10_000) -> dict[str, Any]:
    rng = random.Random(3)
    eps = [
        Endpoint(
            namespace="b",
            pool=f"p{i % 100}",
            inference_node=f"n{i // 8}",
            device=i % 8,
            pod=f"e{i}",
            models=("m",),
            ip="10.0.0.1",
            port=8000,
            effective_stake_base=int(10 ** rng.uniform(0, 10)) * INT_BASE,
        )
        for i in range(n)
    ]
    t0 = time.process_time()
    _, groups = plan_routing(eps, Decimal("0.0001"))
    weights_cpu = time.process_time() - t0
    t0 = time.process_time()
    text = json.dumps(envoy_cfg.build_eds("m", groups["m"]), sort_keys=True)
    eds_cpu = time.process_time() - t0
    devices = [(f"e{i}", 8000 + i % 50000, e.effective_stake_base) for i, e in enumerate(eps)]
    pods, inodes, pools = bodies(devices)
    settings = RouterSettings()
    t0 = time.process_time()
    endpoints = build_endpoints(pods.values(), inodes, pools, settings, datetime.now(UTC))
    compute_weights(endpoints, Decimal("0.0001"))
    full_cpu = time.process_time() - t0
    with tempfile.TemporaryDirectory() as d:
        plane = ControlPlane(RouterSettings(state_dir=d, metrics_port=0))
        plane.prepare()
        plane.set_state(pods, inodes, pools)
        t0 = time.process_time()
        plane.recompute()
        plane_cpu = time.process_time() - t0
    return {
        "endpoints": n,
        "weights_cpu_s": weights_cpu,
        "eds_json_cpu_s": eds_cpu,
        "eds_bytes": len(text),
        "raw_bodies_to_weights_cpu_s": full_cpu,
        "control_plane_full_recompute_cpu_s": plane_cpu,
        "exact": groups["m"].exact,
    }


def render_md(res: dict[str, Any]) -> str:
    t = res["throughput"]
    lines = [
        "# Router benchmark",
        "",
        f"Run {res['when']} on {res['machine']['cpus']} CPUs "
        f"({res['machine']['cpu']}), load average at start {res['machine']['loadavg_at_start']}. "
        f"{res['machine']['note']}.",
        "",
        f"wrk, {res['connections']} connections, "
        f"{res['seconds']} s per run, {res['rounds']} interleaved rounds (median run shown), "
        "fake upstreams = one Envoy answering with direct_response.",
        "",
        "| candidate | rps (median) | rps runs | p50 ms | p99 ms (median) | added p99 ms | proxy CPU µs/req "
        "| failed |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in t.items():
        if "rps" in r:
            runs = ", ".join(f"{x:,.0f}" for x in r["rps_runs"])
            lines.append(
                f"| {name} | {r['rps']:,.0f} | {runs} | {r['p50_ms']:.2f} | {r['p99_ms_median']:.2f} | "
                f"{r.get('added_p99_ms', 0):.2f} | {r['proxy_cpu_us_per_request_median']:.0f} | "
                f"{r['failed_total']} |"
            )
        else:
            lines.append(f"| {name} | {r} | | | | |")
    lines += ["", "## Targets", ""]
    for target in res["targets"]:
        lines.append(f"- {target}")
    s = res.get("share_accuracy")
    if s:
        lines += ["", "## Share accuracy", "", "```json", json.dumps(s, indent=1), "```"]
    rp = res.get("reprogramming")
    if rp:
        lines += ["", "## Reprogramming", "", "```json", json.dumps(rp, indent=1), "```"]
    lines += [
        "",
        "## Full recompute of 10,000 endpoints",
        "",
        "```json",
        json.dumps(res["recompute"], indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def judge(res: dict[str, Any]) -> list[str]:
    out = []
    t = res["throughput"]
    g, v = t.get("gpufleet-router", {}), t.get("vllm-router", {})
    if "rps" in g and "rps" in v and v["rps"]:
        ratio = g["rps"] / v["rps"]
        overlap = min(g["rps_runs"]) <= max(v["rps_runs"]) * 1.4 and min(v["rps_runs"]) * 1.4 <= max(
            g["rps_runs"]
        )
        caveat = (
            f" (but runs spread {min(g['rps_runs']):,.0f}-{max(g['rps_runs']):,.0f} vs "
            f"{min(v['rps_runs']):,.0f}-{max(v['rps_runs']):,.0f} rps: at load average "
            f"{res['machine']['loadavg_at_start'][0]:.0f} on 2 cores the ratio is not significant)"
            if overlap
            else ""
        )
        out.append(
            f"throughput >= 1.4x vllm-router: {ratio:.2f}x -> {'MET' if ratio >= 1.4 else 'MISSED'}{caveat}"
        )
        out.append(
            f"added p99 <= vllm-router's: {g['added_p99_ms']:.2f} ms vs {v['added_p99_ms']:.2f} ms -> "
            f"{'MET' if g['added_p99_ms'] <= v['added_p99_ms'] else 'MISSED'}"
        )
    if "proxy_cpu_us_per_request_median" in g and "proxy_cpu_us_per_request_median" in v:
        gc = g["proxy_cpu_us_per_request_median"] + g.get("control_plane_cpu_us_per_request_median", 0.0)
        vc = v["proxy_cpu_us_per_request_median"]
        out.append(
            f"CPU per request (less sensitive to the machine's load than rps): gpufleet router {gc:.0f} µs "
            f"(Envoy + control plane) vs vllm-router {vc:.0f} µs -> capacity ratio {vc / gc:.2f}x"
        )
    s = res.get("share_accuracy")
    if s and s.get("max_relative_error") is not None:
        e = s["max_relative_error"]
        out.append(
            f"max share error <= 0.5%: {100 * e:.3f}% over {s['pods_with_ge_1000_expected']} pods with >= "
            f"1,000 expected picks, {s['requests']:,} requests (10^6 asked, or as many as the run allows: "
            f"{s['wrk']['rps']:,.0f} rps for the run's duration) -> {'MET' if e <= 0.005 else 'MISSED'}"
        )
        out.append(f"0 starved: {s['starved_pods']} -> {'MET' if s['starved_pods'] == 0 else 'MISSED'}")
    rp = res.get("reprogramming")
    if rp:
        f = rp["under_churn"]["failed_requests"]
        out.append(
            f"0 failed requests under 10 changes/s: {f} of {rp['under_churn']['requests']:,} -> "
            f"{'MET' if f == 0 else 'MISSED'}"
        )
    c = res["recompute"]["control_plane_full_recompute_cpu_s"]
    out.append(f"full recompute of 10,000 endpoints < 1 s: {c:.3f} s CPU -> {'MET' if c < 1 else 'MISSED'}")
    return out


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run; results are not written")
    ap.add_argument("--seconds", type=float, default=10.0, help="wrk duration per candidate")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved wrk runs per candidate")
    ap.add_argument("--share-seconds", type=float, default=100.0, help="wrk duration of the share run")
    ap.add_argument(
        "--candidates", default="direct,envoy-static,gpufleet-router,haproxy,vllm-router,sglang-router"
    )
    ap.add_argument("--skip", default="", help="comma list of sections to skip: share,reprogram")
    ap.add_argument(
        "--render-only", action="store_true", help="re-judge bench/results/router.json and rewrite the .md"
    )
    args = ap.parse_args()
    if args.render_only:
        res = json.loads((RESULTS / "router.json").read_text())
        res["targets"] = judge(res)
        (RESULTS / "router.json").write_text(json.dumps(res, indent=1) + "\n")
        (RESULTS / "router.md").write_text(render_md(res))
        print("\n".join(res["targets"]))
        return 0
    if not shutil.which("wrk"):
        print("bench/router.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    seconds = 2.0 if args.quick else args.seconds
    res: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "connections": args.connections,
        "seconds": seconds,
        "rounds": args.rounds,
        "load_generator": "wrk 4.1 (Debian)",
    }
    skip = set(args.skip.split(",")) if args.skip else set()
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-router-") as d:
        tmp = Path(d)
        print("throughput", flush=True)
        res["throughput"] = await throughput(
            tmp,
            seconds,
            args.connections,
            args.candidates.split(","),
            rounds=1 if args.quick else args.rounds,
        )
        res["recompute"] = recompute_cpu()
        print(f"recompute: {res['recompute']}", flush=True)
        if "reprogram" not in skip:
            print("reprogramming", flush=True)
            res["reprogramming"] = await reprogramming(
                tmp, 10 if args.quick else 100, seconds, args.connections
            )
            print(f"  {res['reprogramming']}", flush=True)
        if "share" not in skip:
            print("share accuracy", flush=True)
            res["share_accuracy"] = await share_accuracy(
                tmp, 100 if args.quick else 1000, 5 if args.quick else args.share_seconds, args.connections
            )
            print(f"  {res['share_accuracy']}", flush=True)
    res["machine"]["loadavg_at_end"] = list(os.getloadavg())
    res["targets"] = judge(res)
    for line in res["targets"]:
        print(line)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "router.json").write_text(json.dumps(res, indent=1) + "\n")
        (RESULTS / "router.md").write_text(render_md(res))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
