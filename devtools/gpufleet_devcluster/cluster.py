"""DevCluster: the emulator's entry point for tests, benchmarks, the demo and the standalone server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from gpufleet_devcluster.agents import PROFILE_ANNOTATION, Agents, ReportSource, profile_report
from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.kubelet import Kubelet, KubeletConfig
from gpufleet_devcluster.resources import JsonObj
from gpufleet_devcluster.server import APIServer, RequestLog
from gpufleet_devcluster.store import Entry, Store, Validator
from gpufleet_devcluster.validation import schema_validator

if TYPE_CHECKING:
    from gpufleet_devcluster.process import ProcessCluster

T = TypeVar("T")

DEFAULT_CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


@dataclass(frozen=True)
class NodeSpec:
    """An emulated Kubernetes node with the GPUs of a recorded hardware profile."""

    name: str
    profile: str = "h100-sxm-x8"
    labels: dict[str, str] = field(default_factory=dict)  # merged over the GFD labels (e.g. a mismatch)
    gpus: int | None = None  # nvidia.com/gpu capacity; None = the profile's device count
    cpu: str = "64"
    memory: str = "512Gi"


def gfd_labels(profile: str, report: JsonObj) -> dict[str, str]:
    """GPU Feature Discovery labels for a node: the profile's own when the hardware package has it."""
    try:
        from gpufleet.hardware.profiles import list_profiles, profile_gfd_labels

        if profile in list_profiles():
            return dict(profile_gfd_labels(profile))
    except ImportError:  # pragma: no cover
        pass
    devices = report.get("devices") or []
    if not devices:
        return {}
    first = devices[0]
    major, _, minor = str(first.get("compute_capability", "0.0")).partition(".")
    driver = [*str(report.get("driver_version", "0.0.0")).split("."), "0", "0"]
    return {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": "-".join(str(first.get("name", "")).split()),
        "nvidia.com/gpu.memory": str(first.get("memory_total_mib", 0)),
        "nvidia.com/gpu.count": str(len(devices)),
        "nvidia.com/gpu.compute.major": major,
        "nvidia.com/gpu.compute.minor": minor,
        "nvidia.com/cuda.driver.major": driver[0],
        "nvidia.com/cuda.driver.minor": driver[1],
        "nvidia.com/cuda.driver.rev": driver[2],
    }


def node_object(spec: NodeSpec, report: JsonObj, index: int) -> JsonObj:
    gpus = spec.gpus if spec.gpus is not None else len(report.get("devices") or [])
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        **gfd_labels(spec.profile, report),
        **spec.labels,
    }
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": "110", "nvidia.com/gpu": str(gpus)}
    ip = f"10.0.{index // 250}.{index % 250 + 2}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels, "annotations": {PROFILE_ANNOTATION: spec.profile}},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": spec.name}],
            "nodeInfo": {
                "kubeletVersion": "v1.36.0-devcluster",
                "architecture": "amd64",
                "operatingSystem": "linux",
                "containerRuntimeVersion": "containerd://1.7.0",
                "osImage": "devcluster",
                "kernelVersion": "6.1.0",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def load_crds(crd_dir: Path) -> list[JsonObj]:
    if not crd_dir.is_dir():
        raise FileNotFoundError(f"CRD directory {crd_dir} does not exist")
    crds: list[JsonObj] = []
    for path in sorted(crd_dir.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def generated_crds() -> list[JsonObj]:
    """The CRDs built from the API models (identical to crds/, which a test keeps in step)."""
    from gpufleet.api import crdgen

    return [crdgen.build_crd(kind) for kind in crdgen.all_kinds()]


class DevCluster:
    """An emulated Kubernetes API server with simulated GPU nodes, kubelet and node agents.

    `async with DevCluster(crd_dir=Path("crds"), nodes=[NodeSpec("gpu-0")]) as cluster:` — or
    `with DevCluster(...).run_in_thread() as cluster:` from synchronous code.
    """

    def __init__(
        self,
        crd_dir: Path | Sequence[Path] | None = DEFAULT_CRD_DIR,
        nodes: Sequence[NodeSpec | str] = (),
        *,
        namespaces: Sequence[str] = ("default", "kube-system"),
        kubelet: bool = True,
        kubelet_config: KubeletConfig | None = None,
        report_source: ReportSource | None = None,
        validator: Validator | None = schema_validator,
        history_window: int = 100_000,
        keep_history: bool = True,
        bookmark_interval: float = 1.0,
        port: int = 0,
        kubeconfig_path: Path | None = None,
    ) -> None:
        # The arguments, so that run_in_process() can build the same cluster in a child process.
        self.init_kwargs: dict[str, Any] = {
            "crd_dir": crd_dir,
            "nodes": list(nodes),
            "namespaces": list(namespaces),
            "kubelet": kubelet,
            "kubelet_config": kubelet_config,
            "report_source": report_source,
            "validator": validator,
            "history_window": history_window,
            "keep_history": keep_history,
            "bookmark_interval": bookmark_interval,
            "port": port,
            "kubeconfig_path": kubeconfig_path,
        }
        self.store = Store(history_window=history_window, keep_history=keep_history)
        self.store.validator = validator
        self.server = APIServer(self.store, bookmark_interval=bookmark_interval)
        self.kubelet = Kubelet(self.store, kubelet_config)
        self.kubelet.enabled = kubelet
        self.agents = Agents(self.store, self.kubelet, report_source=report_source)
        self.server.proxy_handler = self.agents.handle
        self.server.log_handler = self.kubelet.logs
        self._crd_dirs = [crd_dir] if isinstance(crd_dir, Path) else list(crd_dir or [])
        self._nodes = [NodeSpec(n) if isinstance(n, str) else n for n in nodes]
        self._namespaces = list(namespaces)
        self._port = port
        self._kubeconfig_arg = kubeconfig_path
        self._tmpdir: str | None = None
        self.kubeconfig_path = Path()
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def requests(self) -> RequestLog:
        return self.server.requests

    @property
    def url(self) -> str:
        return self.server.url

    # ------------------------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> DevCluster:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for ns in self._namespaces:
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, actor="bootstrap")
        for crd_dir in self._crd_dirs:
            if crd_dir == DEFAULT_CRD_DIR and not crd_dir.is_dir():
                # Installed without a source checkout: no crds/ next to the package. The models
                # are the source of the crds/ files, so generate the same CRDs from them.
                crds = generated_crds()
            else:
                crds = load_crds(crd_dir)
            for crd in crds:
                self.apply(crd, actor="bootstrap")
        for spec in self._nodes:
            self.add_node(spec)
        if self.kubelet.enabled:
            self.kubelet.start(self.loop)
        await self.server.start(self._port)
        self._write_kubeconfig()

    async def stop(self) -> None:
        self.kubelet.stop()
        await self.server.stop()
        await self.agents.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _write_kubeconfig(self) -> None:
        if self._kubeconfig_arg is not None:
            path = self._kubeconfig_arg
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="devcluster-")
            path = Path(self._tmpdir) / "kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig()))
        self.kubeconfig_path = path

    def kubeconfig(self) -> JsonObj:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "devcluster",
            "preferences": {},
            "clusters": [{"name": "devcluster", "cluster": {"server": self.url}}],
            "users": [{"name": "devcluster", "user": {"token": "devcluster"}}],
            "contexts": [
                {
                    "name": "devcluster",
                    "context": {"cluster": "devcluster", "user": "devcluster", "namespace": "default"},
                }
            ],
        }

    def run_in_thread(self) -> ThreadedCluster:
        """Run the cluster on its own event loop thread, for synchronous callers (the demo, the CLI)."""
        return ThreadedCluster(self)

    def run_in_process(self) -> ProcessCluster:
        """Run the same cluster in a child process (its own GIL): for benchmarks of code under test."""
        from gpufleet_devcluster.process import ProcessCluster

        return ProcessCluster(self.init_kwargs)

    # ------------------------------------------------------------------------------------ helpers

    def add_node(self, spec: NodeSpec | str) -> JsonObj:
        spec = NodeSpec(spec) if isinstance(spec, str) else spec
        try:
            report = (self.agents.report_source or profile_report)(spec.profile)
        except KeyError as exc:
            raise ValueError(f"node {spec.name!r}: {exc.args[0] if exc.args else exc}") from exc
        node = node_object(spec, report, len(self.kubelet.nodes))
        entry = self.apply(node, actor="bootstrap")
        self.kubelet.add_node(spec.name, entry.obj)
        return entry.obj

    def apply(self, obj: JsonObj, *, actor: str = "test") -> Entry:
        """Create an object straight in the store (no HTTP); the kind and apiVersion pick the resource."""
        rtype = self.store.type_for(obj["apiVersion"], obj["kind"])
        ns = obj.get("metadata", {}).get("namespace") if rtype.namespaced else None
        if rtype.namespaced and ns is None:
            ns = "default"
        return self.store.create(rtype, ns, obj, actor=actor)

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[JsonObj]:
        """Every stored object of a kind (in one namespace, or all), in key order."""
        return self.store.objects(self.store.type_for(api_version, kind), namespace)

    def apply_obj(self, obj: JsonObj) -> JsonObj:
        """`apply` returning the stored object (what a remote caller can receive)."""
        return self.apply(obj).obj

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> JsonObj | None:
        rtype = self.store.type_for(api_version, kind)
        return self.store.find(rtype, namespace if rtype.namespaced else None, name)

    def pods(self, namespace: str | None = None) -> list[JsonObj]:
        return self.store.objects(self.store.resolve("", "v1", "pods"), namespace)

    async def wait_for(
        self, predicate: Callable[[], bool], within: float = 10.0, interval: float = 0.01
    ) -> None:
        """Poll predicate on the cluster's loop until true; TimeoutError naming the predicate otherwise."""
        deadline = asyncio.get_running_loop().time() + within
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"condition {getattr(predicate, '__name__', predicate)!r} not met in {within}s"
                )
            await asyncio.sleep(interval)


class ThreadedCluster:
    """A DevCluster on a background thread; `call` runs a function on its loop and returns the result."""

    def __init__(self, cluster: DevCluster) -> None:
        self.cluster = cluster
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="devcluster", daemon=True)

    def __enter__(self) -> ThreadedCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.cluster.start(), self._loop).result(timeout=60)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.cluster.stop(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args, **kwargs) on the cluster's loop thread (the store is not thread-safe)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=60)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(cluster, *args) on the cluster's loop: the same call works on a ProcessCluster."""
        return self.call(fn, self.cluster, *args, **kwargs)

    @property
    def kubeconfig_path(self) -> Path:
        return self.cluster.kubeconfig_path

    @property
    def url(self) -> str:
        return self.cluster.url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)


def env_with_kubeconfig(cluster: DevCluster | ThreadedCluster) -> dict[str, str]:
    """os.environ plus KUBECONFIG pointing at the cluster (for subprocesses)."""
    return {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)}


__all__ = [
    "APIError",
    "DevCluster",
    "NodeSpec",
    "ThreadedCluster",
    "env_with_kubeconfig",
    "gfd_labels",
    "load_crds",
    "node_object",
]
