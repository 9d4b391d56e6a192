"""RealCluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on loopback.

An envtest-style control plane built from source (`real/build.py`), with kwok managing fake GPU
nodes that carry the emulator's GPU Feature Discovery labels and `nvidia.com/gpu` capacity, the
kubelet behaviours of `real/stages.py`, and the simulated agents of `real/agents.py` behind the
API server's pod proxy. Everything binds to 127.0.0.1 (random ports) or a Unix socket; etcd keeps
its data on tmpfs without fsync. Every process it starts is stopped by PID on `stop()`, on
Ctrl-C/SIGTERM (the CLI), at interpreter exit, and — through PR_SET_PDEATHSIG — when the process
that started it dies, so a killed test run leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import logging
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml

from gpufleet_devcluster.agents import profile_report
from gpufleet_devcluster.cluster import DEFAULT_CRD_DIR, NodeSpec, load_crds, node_object
from gpufleet_devcluster.real import build as cpbuild
from gpufleet_devcluster.real import pki
from gpufleet_devcluster.real.agents import AgentProxy, Override, Watcher
from gpufleet_devcluster.real.stages import KINDS, Timings, all_stages

log = logging.getLogger(__name__)
T = TypeVar("T")
JsonObj = dict[str, Any]

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_NODES = (
    NodeSpec("gpu-h100-0", "h100-sxm-x8"),
    NodeSpec("gpu-l40s-0", "l40s-x4"),
    NodeSpec("gpu-4090-0", "rtx4090-x1-old-driver"),
)
#: kube-controller-manager controllers: what our tests need (garbage collection, namespace
#: deletion, the default ServiceAccount), not node lifecycle, replica sets or the like. Not the
#: root CA publisher either: its kube-root-ca.crt ConfigMap in every namespace is noise to tests
#: that list ConfigMaps, and kwok pods mount nothing.
CONTROLLERS = ("garbage-collector-controller", "namespace-controller", "serviceaccount-controller")


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM this child when its parent goes away (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def pod_cidr(index: int) -> str:
    """Node `index`'s pod range: global unicast (the API server proxies to nothing else), never routed."""
    return f"10.{64 + index // 256}.{index % 256}.0/24"


def node_body(spec: NodeSpec, index: int) -> JsonObj:
    """The emulator's Node (same GFD labels, capacity, profile annotation) made a kwok-managed node."""
    obj = node_object(spec, profile_report(spec.profile), index)
    obj["metadata"]["annotations"][KWOK_NODE_ANNOTATION] = "fake"
    obj["spec"] = {"podCIDR": pod_cidr(index), "podCIDRs": [pod_cidr(index)]}
    obj["status"]["conditions"][0].update(lastHeartbeatTime=_now(), lastTransitionTime=_now())
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class StartupTimes:
    """Seconds from start() for each step (reported by the CLI and the benchmark)."""

    steps: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, since: float) -> None:
        self.steps[name] = round(time.monotonic() - since, 2)


class RealCluster:
    """A real Kubernetes control plane with kwok GPU nodes, for tests, benchmarks and `gpufleet devcluster`.

    ``with RealCluster(nodes=[...]) as rc:`` then ``rc.kubeconfig_path`` (admin, client certs),
    ``rc.set_behaviour("crash_loop", image="engine@sha256:…")``, ``rc.agents.override(ns, pod, fn)``.
    """

    def __init__(
        self,
        *,
        nodes: Sequence[NodeSpec | str] | None = None,
        crd_dir: Path | Sequence[Path] | None = DEFAULT_CRD_DIR,
        timings: Timings | None = None,
        images: dict[str, str] | None = None,
        bin_dir: Path | None = None,
        kubeconfig_path: Path | None = None,
        keep_logs: bool = False,
        build_if_missing: bool = True,
        audit: bool = False,
    ) -> None:
        specs = (
            list(DEFAULT_NODES)
            if nodes is None
            else [NodeSpec(n) if isinstance(n, str) else n for n in nodes]
        )
        self.nodes = specs
        self.crd_dirs = [] if crd_dir is None else [crd_dir] if isinstance(crd_dir, Path) else list(crd_dir)
        self.timings = timings or Timings()
        self.images: dict[str, str] = dict(images or {})
        self.bin_dir = bin_dir
        self.build_if_missing = build_if_missing
        self._kubeconfig_out = kubeconfig_path
        self.keep_logs = keep_logs
        self.audit = audit
        self.processes: list[Process] = []
        self.startup = StartupTimes()
        self.workdir: Path | None = None
        self.url = ""
        self.kubeconfig_path = Path()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self.agents: AgentProxy | None = None
        self._api: Any = None
        self._stopped = False
        self._node_count = 0
        self.crd_errors: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> RealCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> RealCluster:
        t0 = time.monotonic()
        bins = self.bin_dir or cpbuild.bin_dir()
        if not cpbuild.is_built(bins):
            if not self.build_if_missing:
                raise ControlPlaneError(
                    f"control plane not built in {bins}: run python -m gpufleet_devcluster.real.build"
                )
            bins = cpbuild.build()
        self.bin_dir = bins
        self.startup.mark("binaries", t0)
        shm = Path("/dev/shm")
        self.workdir = Path(tempfile.mkdtemp(prefix="gpufleet-cp-", dir=shm if shm.is_dir() else None))
        atexit.register(self.stop)
        try:
            self._start(t0)
        except BaseException:
            self.stop()
            raise
        self.startup.mark("total", t0)
        return self

    def _start(self, t0: float) -> None:
        assert self.workdir is not None
        assert self.bin_dir is not None
        w = self.workdir
        self.pki = pki.generate(
            w / "pki",
            {
                "admin": ("gpufleet-admin", "system:masters"),
                "kcm": ("system:kube-controller-manager", None),
                "scheduler": ("system:kube-scheduler", None),
                "kwok": ("kwok-controller", "system:masters"),
            },
        )
        self.startup.mark("pki", t0)
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={w / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
        )
        self._start_agents_loop()
        egress = w / "egress.yaml"
        egress.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "apiserver.k8s.io/v1beta1",
                    "kind": "EgressSelectorConfiguration",
                    "egressSelections": [
                        {
                            "name": "cluster",
                            "connection": {
                                "proxyProtocol": "HTTPConnect",
                                "transport": {"uds": {"udsName": str(w / "agents.sock")}},
                            },
                        }
                    ],
                }
            )
        )
        p = self.pki
        self.url = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_public}",
                f"--service-account-signing-key-file={p.sa_private}",
                f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                f"--egress-selector-config-file={egress}",
                *self._audit_flags(w),
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._wait_http(f"{self.url}/readyz", "kube-apiserver", 90)
        self.startup.mark("apiserver ready", t0)
        self.kubeconfig_path = self._kubeconfig("admin", self._kubeconfig_out)
        kcm_kc, sched_kc, kwok_kc = (self._kubeconfig(n) for n in ("kcm", "scheduler", "kwok"))
        sched_cfg = w / "scheduler.yaml"
        sched_cfg.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(sched_kc), "qps": 200, "burst": 400},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        self._spawn("kube-scheduler", [f"--config={sched_cfg}", "--secure-port=0", "--v=0"])
        api = self.api()
        self._apply_crd_files([self.bin_dir / cpbuild.STAGE_CRD])
        self._apply_stages()
        kwok_cfg = w / "kwok.yaml"
        kwok_cfg.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
                    "kind": "KwokConfiguration",
                    "options": {
                        "podPlayStageParallelism": 16,
                        "nodePlayStageParallelism": 4,
                        "nodeLeaseDurationSeconds": 40,
                        "nodeLeaseParallelism": 4,
                    },
                }
            )
        )
        self._spawn(
            "kwok",
            [
                f"--config={kwok_cfg}",
                f"--kubeconfig={kwok_kc}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--enable-crds=Stage",
                f"--server-address=127.0.0.1:{free_port()}",
                "--cidr=10.63.0.0/16",
                "--node-ip=10.62.0.1",
            ],
        )
        crds = [c for d in self.crd_dirs for c in load_crds(d)]
        self._apply_crds(crds, tolerate=True)
        self.startup.mark("crds established", t0)
        # After the CRDs: the garbage collector then watches their objects from its first discovery.
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kc}",
                "--secure-port=0",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                "--use-service-account-credentials=true",
                f"--root-ca-file={p.ca_cert}",
                f"--service-account-private-key-file={p.sa_private}",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--v=0",
            ],
        )
        self.add_nodes(self.nodes)
        self._wait(lambda: self._has_default_sa(api), "the default ServiceAccount", 60)
        self.startup.mark("default serviceaccount", t0)
        self._call(self._start_watcher())
        self.startup.mark("agents synced", t0)

    def stop(self) -> None:
        """Stop every process this cluster started (by PID, newest first) and remove its files."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self._api is not None:
            with contextlib.suppress(Exception):
                self._api.close()
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in reversed(self.processes):
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.kill()
                proc.popen.wait(5)
        if self._loop is not None:
            loop = self._loop

            async def _close() -> None:
                if self._watcher is not None:
                    await self._watcher.close()
                if self.agents is not None:
                    await self.agents.close()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
        if self.workdir is not None and not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _audit_flags(self, w: Path) -> list[str]:
        """With `audit`, every request's outcome (user, verb, resource, code) goes to audit.log."""
        if not self.audit:
            return []
        policy = w / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={w / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]

    def audit_events(self, user: str | None = None) -> list[JsonObj]:
        """The audit log's ResponseComplete events (optionally of one user), oldest first."""
        assert self.workdir is not None
        path = self.workdir / "audit.log"
        if not path.is_file():
            return []
        events = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if ev.get("stage") == "ResponseComplete" and (user is None or ev["user"]["username"] == user):
                    events.append(ev)
        return events

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.processes}

    def alive(self) -> dict[str, bool]:
        return {p.name: p.popen.poll() is None for p in self.processes}

    # ------------------------------------------------------------------ behaviours and nodes

    def set_behaviour(self, kind: str, *, image: str) -> None:
        """Pods whose first container runs `image` behave as `kind` (the emulator's Behaviour kinds)."""
        if kind not in KINDS:
            raise ValueError(f"unknown behaviour {kind!r}; one of {', '.join(KINDS)}")
        self.images[image] = kind
        self._apply_stages()

    def clear_behaviours(self) -> None:
        """Every image back to `ok` (labels still choose behaviours)."""
        if self.images:
            self.images.clear()
            self._apply_stages()

    def add_nodes(self, specs: Sequence[NodeSpec]) -> None:
        """Create kwok-managed GPU nodes (index-based pod CIDRs continue after the existing ones)."""
        from kubernetes import client

        core: Any = client.CoreV1Api(self.api())
        for spec in specs:
            body = node_body(spec, self._node_count)
            self._node_count += 1
            try:
                core.create_node(body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

    # ------------------------------------------------------------------ clients

    def api(self) -> Any:
        """A `kubernetes.client.ApiClient` for the admin user (shared; do not close it)."""
        if self._api is None:
            from kubernetes import config

            self._api = config.new_client_from_config(str(self.kubeconfig_path))  # type: ignore[no-untyped-call]
        return self._api

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        admin = self.pki.clients["admin"]
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        return ctx

    def kubeconfig_for_token(self, token: str, path: Path, user: str = "token-user") -> Path:
        """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        path.write_text(yaml.safe_dump(self._kubeconfig_doc(user, {"token": token})))
        return path

    # ------------------------------------------------------------------ internals

    def _spawn(self, name: str, args: list[str]) -> Process:
        assert self.workdir is not None
        assert self.bin_dir is not None
        log_path = self.workdir / f"{name}.log"
        out = log_path.open("wb")
        main = threading.current_thread() is threading.main_thread()
        popen = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            preexec_fn=_pdeathsig if main else None,
            start_new_session=True,
        )
        out.close()
        proc = Process(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def _check_alive(self) -> None:
        for proc in self.processes:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    def _wait(self, fn: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(Exception):
                if fn():
                    return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        tails = "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.processes)
        raise ControlPlaneError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")

    def _wait_http(self, url: str, what: str, timeout: float) -> None:
        import urllib.request

        ctx: ssl.SSLContext | None = None

        def ok() -> bool:
            nonlocal ctx
            if ctx is None:
                ctx = self.ssl_context()
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                return bool(resp.status == 200)

        self._wait(ok, what, timeout)

    def _kubeconfig_doc(self, user: str, creds: dict[str, str]) -> JsonObj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "gpufleet-real",
            "clusters": [
                {
                    "name": "gpufleet-real",
                    "cluster": {"server": self.url, "certificate-authority": str(self.pki.ca_cert)},
                }
            ],
            "users": [{"name": user, "user": creds}],
            "contexts": [{"name": "gpufleet-real", "context": {"cluster": "gpufleet-real", "user": user}}],
        }

    def _kubeconfig(self, stem: str, path: Path | None = None) -> Path:
        """A kubeconfig for one component's client certificate (embedded, so the file stands alone)."""
        import base64

        assert self.workdir is not None
        c = self.pki.clients[stem]
        doc = self._kubeconfig_doc(
            stem,
            {
                "client-certificate-data": base64.b64encode(c.cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(c.key.read_bytes()).decode(),
            },
        )
        doc["clusters"][0]["cluster"] = {
            "server": self.url,
            "certificate-authority-data": base64.b64encode(self.pki.ca_cert.read_bytes()).decode(),
        }
        out = path or self.workdir / f"{stem}.kubeconfig"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(doc))
        out.chmod(0o600)
        return out

    def _apply_crd_files(self, paths: list[Path]) -> None:
        self._apply_crds([d for p in paths for d in yaml.safe_load_all(p.read_text()) if isinstance(d, dict)])

    def _apply_crds(self, crds: list[JsonObj], *, tolerate: bool = False) -> None:
        """Create the CRDs and wait until they are Established.

        With `tolerate`, a CRD the API server refuses is recorded in `crd_errors` (name -> message)
        instead of failing the start: the other tests still run, and the CRD test names the culprit.
        """
        from kubernetes import client

        ext: Any = client.ApiextensionsV1Api(self.api())
        names = []
        for crd in crds:
            name = crd["metadata"]["name"]
            try:
                ext.create_custom_resource_definition(crd)
            except client.ApiException as exc:
                if exc.status == 422 and tolerate:
                    self.crd_errors[name] = json.loads(exc.body or "{}").get("message", str(exc))
                    log.warning("CRD %s refused by kube-apiserver: %s", name, self.crd_errors[name])
                    continue
                if exc.status != 409:
                    raise
            names.append(name)

        def established() -> bool:
            for name in names:
                conds = ext.read_custom_resource_definition(name).status.conditions or []
                if not any(c.type == "Established" and c.status == "True" for c in conds):
                    return False
            return True

        self._wait(established, f"CRDs {', '.join(names)} Established", 60)

    def _apply_stages(self) -> None:
        from kubernetes import client

        custom: Any = client.CustomObjectsApi(self.api())
        for stage in all_stages(self.images, self.timings):
            name = stage["metadata"]["name"]
            try:
                current = custom.get_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "stages", name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                custom.create_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "stages", stage)
                continue
            stage["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            custom.replace_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "stages", name, stage)

    def _has_default_sa(self, api: Any) -> bool:
        from kubernetes import client

        client.CoreV1Api(api).read_namespaced_service_account("default", "default")
        return True

    def _start_agents_loop(self) -> None:
        assert self.workdir is not None
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="gpufleet-real-agents", daemon=True)
        self._thread.start()
        self.agents = AgentProxy(self.workdir / "agents.sock", None)  # type: ignore[arg-type]
        self._call(self.agents.start())

    async def _start_watcher(self) -> None:
        self._watcher = Watcher(self.url, self.ssl_context())
        assert self.agents is not None
        self.agents.watcher = self._watcher
        await self._watcher.start()
        await asyncio.wait_for(self._watcher.synced.wait(), 30)

    def _call(self, coro: Any) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def override_agent(self, namespace: str, pod: str, handler: Override) -> None:
        """Fault injection: this pod's agent answers handler(path) -> (status, JSON body)."""
        assert self.agents is not None
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.agents.override, namespace, pod, handler)


def describe(rc: RealCluster) -> Iterator[str]:
    """Lines for the CLI: where the cluster is and how to use it."""
    yield f"real control plane serving {rc.url}; kubeconfig: {rc.kubeconfig_path}"
    yield f"  components: {', '.join(f'{n} (pid {p})' for n, p in rc.pids().items())}"
    yield f"  nodes (kwok): {', '.join(f'{n.name} ({n.profile})' for n in rc.nodes)}"
    yield f"  started in {rc.startup.steps.get('total', 0):.1f} s ({json.dumps(rc.startup.steps)})"
    yield f"  try: KUBECONFIG={rc.kubeconfig_path} kubectl get nodes -L nvidia.com/gpu.product"
