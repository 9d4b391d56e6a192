"""Run a DevCluster in a child process, so the emulator and the code under test use two cores.

In one process the emulator and the operator share the GIL; on the 2-core CI machine that halves
what a fleet benchmark can do. `DevCluster(...).run_in_process()` starts the same cluster in a
spawned child and talks to it over a pipe: `url`, `kubeconfig_path`, `requests` (same methods as
RequestLog, answered by the child), `kubelet.set_behaviour(...)`, `objects(...)`, and `rpc(path,
*args)` for anything else reachable from the cluster by attribute path.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import multiprocessing.connection
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def tune_gc() -> None:
    """In a process of its own the emulator holds many long-lived dicts: collect them less often.

    Measured ~20% less CPU for the create phase of bench/emulator_watch.py; only used where the
    emulator owns the process (never in-thread, where it would change the code under test).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _resolve(root: Any, path: str) -> Any:
    target = root
    for part in path.split("."):
        if part.startswith("_"):
            raise AttributeError(f"private attribute {part!r} is not reachable over rpc")
        target = getattr(target, part)
    return target


def _child(kwargs: dict[str, Any], conn: multiprocessing.connection.Connection) -> None:
    from gpufleet_devcluster.cluster import DevCluster

    async def serve() -> None:
        cluster = DevCluster(**kwargs)
        await cluster.start()
        tune_gc()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_message() -> None:
            try:
                path, args, kw = conn.recv()
            except EOFError:
                done.set()
                return
            if path == "__stop__":
                done.set()
                return
            try:
                if path == "__run__":  # run(fn, *args): fn(cluster, *args), fn pickled by reference
                    result = args[0](cluster, *args[1:], **kw)
                else:
                    result = _resolve(cluster, path)
                    if callable(result):
                        result = result(*args, **kw)
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))

        loop.add_reader(conn.fileno(), on_message)
        conn.send(("ok", (cluster.url, str(cluster.kubeconfig_path))))
        await done.wait()
        loop.remove_reader(conn.fileno())
        await cluster.stop()

    asyncio.run(serve())
    conn.send(("ok", "stopped"))


class _Remote:
    """Attribute access and calls forwarded to the child (e.g. `pc.requests.count("get")`)."""

    def __init__(self, owner: ProcessCluster, path: str) -> None:
        self._owner = owner
        self._path = path

    def __getattr__(self, name: str) -> _Remote:
        return _Remote(self._owner, f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._owner.rpc(self._path, *args, **kwargs)


class ProcessCluster:
    """A DevCluster served by a child process; the handle lives in the caller's process."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(kwargs, child_conn), name="devcluster", daemon=True)
        self._lock = threading.Lock()
        self.url = ""
        self.kubeconfig_path = Path()

    def __enter__(self) -> ProcessCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120) -> None:
        self._proc.start()
        if not self._conn.poll(timeout):
            self._proc.kill()
            raise TimeoutError(f"the devcluster process did not start within {timeout}s")
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"the devcluster process failed to start: {value}")
        self.url, kubeconfig = value
        self.kubeconfig_path = Path(kubeconfig)

    def stop(self, timeout: float = 30) -> None:
        if not self._proc.is_alive():
            return
        with self._lock:
            self._conn.send(("__stop__", (), {}))
            if self._conn.poll(timeout):
                self._conn.recv()
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()

    def rpc(self, path: str, *args: Any, **kwargs: Any) -> Any:
        """Call (or read) `cluster.<path>` in the child; arguments and result must pickle."""
        with self._lock:
            self._conn.send((path, args, kwargs))
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"devcluster rpc {path} failed: {value}")
        return value

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """fn(cluster, *args) in the child (fn must be importable: a module-level function)."""
        result: T = self.rpc("__run__", fn, *args, **kwargs)
        return result

    @property
    def requests(self) -> Any:
        return _Remote(self, "requests")

    @property
    def kubelet(self) -> Any:
        return _Remote(self, "kubelet")

    @property
    def agents(self) -> Any:
        return _Remote(self, "agents")

    def objects(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.rpc("objects", api_version, kind, namespace)
        return result

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return self.rpc("get", api_version, kind, name, namespace)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.rpc("apply_obj", obj)
        return result
