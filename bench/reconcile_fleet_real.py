"""`bench/reconcile_fleet.py --backend real`: the same fleet on kube-apiserver + etcd + kwok.

The operator runs as ``gpufleet run --core-only`` in its own process under a ServiceAccount bound
to cluster-admin, so the API server's audit log (Metadata level) tells its requests apart from the
benchmark's own polling. kwok manages the fake GPU nodes with gpufleet's Stages (0.5 s to start,
0.5 s to ready, like the emulator run's kubelet), the simulated agents answer through the pod
proxy. Reported next to the emulator's numbers from the same invocation: converge time, API
requests per pod, writes after convergence, operator / kube-apiserver / etcd / kwok CPU seconds and
peak memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from gpufleet_devcluster.cluster import NodeSpec

GROUP = "gpufleet.io/v1alpha1"
NS = "fleet"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


class _Applier:
    """`populate()` of reconcile_fleet.py calls cluster.apply(obj): here through the admin client."""

    def __init__(self, api: Any) -> None:
        self.custom = client.CustomObjectsApi(api)

    def apply(self, obj: dict[str, Any]) -> None:
        group, version = obj["apiVersion"].split("/")
        plural = {
            "EngineRelease": "enginereleases",
            "OperatorPool": "operatorpools",
            "InferenceNode": "inferencenodes",
        }
        if obj["kind"] == "EngineRelease":
            self.custom.create_cluster_custom_object(group, version, plural[obj["kind"]], obj)
        else:
            self.custom.create_namespaced_custom_object(group, version, NS, plural[obj["kind"]], obj)


def _progress(api: Any, nodes: int, gpus: int) -> dict[str, int]:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    pods = core.list_namespaced_pod(NS).items
    ready = sum(
        1 for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    )
    inodes = custom.list_namespaced_custom_object("gpufleet.io", "v1alpha1", NS, "inferencenodes")["items"]
    done = sum(1 for o in inodes if (o.get("status") or {}).get("readyDevices") == gpus)
    pools = custom.list_namespaced_custom_object("gpufleet.io", "v1alpha1", NS, "operatorpools")["items"]
    pool_total = sum(int((o.get("status") or {}).get("readyDevices") or 0) for o in pools)
    return {"pods": len(pods), "ready_pods": ready, "ready_nodes": done, "pool_ready_devices": pool_total}


def _proc_stats(pid: int) -> tuple[float | None, float | None]:
    """(CPU seconds, peak RSS MiB) of a live process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            hwm = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
        return cpu, None if hwm is None else round(hwm / 1024, 1)
    except OSError:
        return None, None


def run_real(
    nodes: int,
    gpus: int,
    nodes_per_pool: int,
    quiet_seconds: float,
    timeout: float,
    workers: int,
    indexes: str,
    profile_name: str,
    populate: Any,
    machine: dict[str, Any],
) -> dict[str, Any]:
    from gpufleet_devcluster.real.cluster import RealCluster
    from gpufleet_devcluster.real.stages import Timings

    load_at_start = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    rc = RealCluster(
        nodes=[NodeSpec(f"gpu-{i}", profile=profile_name) for i in range(nodes)],
        timings=Timings(start_ms=500, ready_ms=500),
        audit=True,
    )
    rc.start()
    try:
        startup = {"seconds": round(time.monotonic() - t0, 2), "steps": rc.startup.steps}
        api = rc.api()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NS}})
        core.create_namespaced_service_account("default", {"metadata": {"name": "bench-operator"}})
        client.RbacAuthorizationV1Api(api).create_cluster_role_binding(
            {
                "metadata": {"name": "bench-operator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "bench-operator", "namespace": "default"}],
            }
        )
        token = core.create_namespaced_service_account_token(
            "bench-operator", "default", {"spec": {"expirationSeconds": 7200}}
        ).status.token
        user = "system:serviceaccount:default:bench-operator"
        kubeconfig = rc.kubeconfig_for_token(
            token, Path(tempfile.mkdtemp()) / "operator.kubeconfig", user="bench"
        )
        populate(_Applier(api), nodes, nodes_per_pool)
        env = {
            **os.environ,
            "GPUFLEET_LIVENESS_ENDPOINT": "",
            "GPUFLEET_METRICS_PORT": "0",
            "GPUFLEET_LOG_LEVEL": "WARNING",
            "GPUFLEET_WORKERS": str(workers),
            "GPUFLEET_INDEXES": indexes,
        }
        log = open(Path(tempfile.gettempdir()) / f"reconcile_fleet_real_{nodes}x{gpus}.log", "w")  # noqa: SIM115
        before = {n: _proc_stats(p)[0] or 0.0 for n, p in rc.pids().items()}
        started = time.monotonic()
        started_wall = datetime.now(UTC)
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet", "run", "--core-only", "--kubeconfig", str(kubeconfig)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        converged = None
        samples: list[tuple[float, dict[str, int]]] = []
        target = nodes * gpus
        try:
            while time.monotonic() - started < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"the operator exited with {proc.returncode}; see {log.name}")
                state = _progress(api, nodes, gpus)
                now = time.monotonic() - started
                samples.append((round(now, 2), state))
                if (
                    state["ready_pods"] == target
                    and state["ready_nodes"] == nodes
                    and state["pool_ready_devices"] == target
                ):
                    converged = now
                    break
                time.sleep(1.0)
            converged_wall = datetime.now(UTC)
            time.sleep(quiet_seconds)
            op_cpu, op_rss = _proc_stats(proc.pid)
            comps = {n: _proc_stats(p) for n, p in rc.pids().items()}
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        events = rc.audit_events(user)

        def when(ev: dict[str, Any]) -> datetime:
            return datetime.fromisoformat(ev["stageTimestamp"].replace("Z", "+00:00"))

        during = [e for e in events if started_wall <= when(e) <= converged_wall]
        after = [e for e in events if when(e) > converged_wall and e["verb"] in WRITE_VERBS]
        by_call = Counter(
            f"{e['verb']} {e.get('objectRef', {}).get('resource', e['requestURI'])}"
            + (f"/{e['objectRef']['subresource']}" if e.get("objectRef", {}).get("subresource") else "")
            for e in during
        )
        non_watch = sum(n for k, n in by_call.items() if not k.startswith("watch"))
        writes = sum(n for k, n in by_call.items() if k.split()[0] in WRITE_VERBS)
        forbidden = sum(1 for e in events if e["responseStatus"]["code"] == 403)
        return {
            "backend": "real",
            "components": "kube-apiserver v1.36.3, etcd v3.6.17 (--unsafe-no-fsync, tmpfs), kwok v0.8.0",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "nodes": nodes,
            "gpus_per_node": gpus,
            "pods": target,
            "operator": "core (--core-only)",
            "operator_workers": workers,
            "operator_indexes": indexes,
            "kwok_stage_delays_ms": {"start": 500, "ready": 500},
            "control_plane_startup": startup,
            "converged": converged is not None,
            "seconds_to_converge": None if converged is None else round(converged, 2),
            "api_requests_during_convergence": non_watch,
            "api_requests_per_pod": round(non_watch / target, 2),
            "api_writes_per_pod": round(writes / target, 2),
            "requests_by_call": dict(by_call.most_common(25)),
            "quiet_seconds": quiet_seconds,
            "writes_after_convergence": len(after),
            "writes_after_convergence_sample": [f"{e['verb']} {e['requestURI']}" for e in after[:10]],
            "forbidden_answers": forbidden,
            "operator_cpu_seconds": op_cpu,
            "operator_peak_rss_mib": op_rss,
            "component_cpu_seconds_during_run": {
                n: (None if c is None else round(c - before.get(n, 0.0), 2)) for n, (c, _) in comps.items()
            },
            "component_peak_rss_mib": {n: r for n, (_, r) in comps.items()},
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "timeline": samples[:: max(1, len(samples) // 40)],
        }
    finally:
        rc.stop()
