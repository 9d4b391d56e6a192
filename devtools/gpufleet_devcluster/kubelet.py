"""A simulated kubelet: moves pods bound to emulated nodes through their lifecycle.

It reacts to store events (deferred with call_soon, never inside another write) and writes pod
status through the store's `pods/status` path, so every status change is a real write with a
resourceVersion and a watch event, exactly what an operator would see from a real kubelet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, get_args

from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.resources import JsonObj
from gpufleet_devcluster.store import Event, Store, now_rfc3339

logger = logging.getLogger(__name__)

BehaviourKind = Literal["ok", "crash_loop", "never_ready", "slow_start", "oom", "image_pull_error", "exit"]
#: A pod label naming its behaviour kind; the real control plane's kwok Stages read the same label.
BEHAVIOUR_LABEL = "devcluster.gpufleet.io/behaviour"
GPU = "nvidia.com/gpu"
OWNED_CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


@dataclass(frozen=True)
class Behaviour:
    """What the simulated containers of a pod do. Delays of None take the kubelet's defaults."""

    kind: BehaviourKind = "ok"
    start_delay: float | None = None  # ContainerCreating -> Running
    ready_delay: float | None = None  # Running -> ready (engine up)
    crash_after: float = 0.05  # crash_loop/oom/exit: how long the container runs before it dies
    exit_code: int = 1


@dataclass
class KubeletConfig:
    """Default delays in seconds; small so that tests converge quickly."""

    admit_delay: float = 0.0  # bound -> Pending/ContainerCreating
    start_delay: float = 0.02
    ready_delay: float = 0.02
    slow_start_delay: float = 1.0
    crash_backoff: float = 0.05  # doubled per restart, capped at 8x (CrashLoopBackOff)
    termination_delay: float = 0.01


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    node: str
    behaviour: Behaviour
    images: tuple[str, ...]
    stage: str = "admitted"  # admitted | creating | running | ready | crashed | pull_error | exited | failed
    restart_count: int = 0
    started_at: str | None = None
    start_time: str = ""
    last_terminated: JsonObj | None = None
    failure: tuple[str, str] | None = None  # admission rejection (reason, message): terminal
    ip: str = ""
    token: int = 0
    terminating: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name


class Kubelet:
    """One simulated kubelet for every emulated node."""

    def __init__(self, store: Store, config: KubeletConfig | None = None) -> None:
        self.store = store
        self.config = config or KubeletConfig()
        self.default = Behaviour()
        self.by_image: dict[str, Behaviour] = {}
        self.by_label: list[tuple[str, str, Behaviour]] = []
        self.nodes: dict[str, JsonObj] = {}
        self.pods: dict[tuple[str, str], PodState] = {}
        self.by_node: dict[str, set[tuple[str, str]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ip_seq = 0
        self._pods_type = store.resolve("", "v1", "pods")
        self.enabled = True
        self.down: set[str] = set()  # nodes whose kubelet stopped reporting
        self._deferred: dict[str, list[Callable[[], None]]] = {}

    # ------------------------------------------------------------------------------------ setup

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.store.listeners.append(self._on_event)
        self.store.graceful_pod = self.manages
        for obj in self.store.objects(self._pods_type):
            loop.call_soon(self._reconcile, obj)

    def stop(self) -> None:
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        self.store.graceful_pod = None
        for st in self.pods.values():
            st.token += 1
        self.enabled = False

    def add_node(self, name: str, node: JsonObj) -> None:
        self.nodes[name] = node

    def manages(self, pod: JsonObj) -> bool:
        return self.enabled and pod.get("spec", {}).get("nodeName") in self.nodes

    def set_behaviour(
        self,
        behaviour: Behaviour | BehaviourKind,
        *,
        image: str | None = None,
        label: tuple[str, str] | None = None,
    ) -> None:
        """Choose what pods do: by container image, by pod label, or (neither) the default for all."""
        b = Behaviour(behaviour) if isinstance(behaviour, str) else behaviour
        if image is not None:
            self.by_image[image] = b
        elif label is not None:
            self.by_label = [x for x in self.by_label if (x[0], x[1]) != label] + [(label[0], label[1], b)]
        else:
            self.default = b

    def behaviour_for(self, pod: JsonObj) -> Behaviour:
        labels = pod["metadata"].get("labels") or {}
        for key, value, b in reversed(self.by_label):
            if labels.get(key) == value:
                return b
        kind = labels.get(BEHAVIOUR_LABEL)
        if kind in get_args(BehaviourKind):
            return Behaviour(kind)  # type: ignore[arg-type]  # the shared behaviour label, checked above
        for c in pod.get("spec", {}).get("containers") or []:
            if c.get("image") in self.by_image:
                return self.by_image[c["image"]]
        return self.default

    # ------------------------------------------------------------------------------------ queries

    def state(self, namespace: str, name: str) -> PodState | None:
        return self.pods.get((namespace, name))

    def container_running(self, namespace: str, name: str) -> bool:
        st = self.pods.get((namespace, name))
        return (
            st is not None
            and st.stage in ("running", "ready")
            and not st.terminating
            and st.node not in self.down
        )

    def engine_up(self, namespace: str, name: str) -> bool:
        st = self.pods.get((namespace, name))
        return st is not None and st.stage == "ready" and not st.terminating and st.node not in self.down

    def set_node_ready(self, node: str, ready: bool) -> None:
        """Take a node's kubelet away (or bring it back).

        Down: the node's Ready condition becomes Unknown (`NodeStatusUnknown`) and the node
        controller marks its pods not Ready, as Kubernetes does when a kubelet stops posting
        status; the pods' agents stop answering and their lifecycles freeze. Up: the node is Ready
        again and the kubelet resumes, rewriting each pod's status.
        """
        if node not in self.nodes:
            raise KeyError(f"no emulated node {node!r}")
        nodes_t = self.store.resolve("", "v1", "nodes")
        ts = now_rfc3339()
        cond = (
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastTransitionTime": ts,
            }
            if ready
            else {
                "type": "Ready",
                "status": "Unknown",
                "reason": "NodeStatusUnknown",
                "message": "Kubelet stopped posting node status.",
                "lastTransitionTime": ts,
            }
        )

        def set_cond(obj: JsonObj) -> JsonObj:
            status = dict(obj.get("status") or {})
            others = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
            status["conditions"] = [cond, *others]
            return {**obj, "status": status}

        entry = self.store.mutate(
            nodes_t, None, node, set_cond, subresource="status", actor="node-controller"
        )
        self.nodes[node] = entry.obj
        keys = sorted(self.by_node.get(node, ()))
        if not ready:
            self.down.add(node)
            for key in keys:
                self._mark_not_ready(key)
            return
        self.down.discard(node)
        for key in keys:
            st = self.pods.get(key)
            if st is not None and not st.terminating:
                self._write(st)
        for fn in self._deferred.pop(node, []):
            fn()

    def _mark_not_ready(self, key: tuple[str, str]) -> None:
        def not_ready(pod: JsonObj) -> JsonObj:
            status = dict(pod.get("status") or {})
            conds = []
            for c in status.get("conditions") or []:
                if c.get("type") in ("Ready", "ContainersReady") and c.get("status") == "True":
                    c = {
                        **c,
                        "status": "False",
                        "reason": "NodeNotReady" if c["type"] == "Ready" else "ContainersNotReady",
                        "lastTransitionTime": now_rfc3339(),
                    }
                conds.append(c)
            status["conditions"] = conds
            return {**pod, "status": status}

        with contextlib.suppress(APIError):  # the pod went away meanwhile
            self.store.mutate(
                self._pods_type, key[0], key[1], not_ready, subresource="status", actor="node-controller"
            )

    def logs(self, pod: JsonObj, container: str | None = None) -> str:
        st = self.pods.get((pod["metadata"].get("namespace", ""), pod["metadata"]["name"]))
        return "".join(line + "\n" for line in st.log) if st else ""

    def crash(self, namespace: str, name: str, *, reason: str = "Error", exit_code: int = 1) -> None:
        """Make a running pod's container die now (it restarts after the back-off, like a real one)."""
        st = self.pods[(namespace, name)]
        self._crash(st, reason, exit_code)

    # ------------------------------------------------------------------------------------ events

    def _on_event(self, event: Event) -> None:
        if event.resource is not self._pods_type and event.resource.plural != "pods":
            return
        if event.resource.group or self._loop is None:
            return
        if event.type == "DELETED":
            st = self.pods.pop(event.key, None)
            if st is not None:
                st.token += 1
                self.by_node.get(st.node, set()).discard(st.key)
            return
        if event.actor == "kubelet" and event.key in self.pods:
            return
        self._loop.call_soon(self._reconcile_key, event.key)

    def _reconcile_key(self, key: tuple[str, str]) -> None:
        obj = self.store.find(self._pods_type, key[0], key[1])
        if obj is not None:
            self._reconcile(obj)

    def _reconcile(self, pod: JsonObj) -> None:
        if not self.manages(pod):
            return
        if pod["spec"]["nodeName"] in self.down:
            key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
            self._deferred.setdefault(pod["spec"]["nodeName"], []).append(partial(self._reconcile_key, key))
            return
        meta, spec = pod["metadata"], pod["spec"]
        key = (meta.get("namespace", ""), meta["name"])
        st = self.pods.get(key)
        if st is not None and st.uid != meta["uid"]:
            st.token += 1
            self.by_node.get(st.node, set()).discard(st.key)
            st = None
        if st is None:
            st = self._admit(pod)
            if st is None:
                return
        if meta.get("deletionTimestamp"):
            if not st.terminating:
                st.terminating = True
                st.token += 1
                grace = meta.get("deletionGracePeriodSeconds") or 0
                delay = min(float(grace), self.config.termination_delay)
                self._later(st, delay, self._terminate)
            return
        images = tuple(c.get("image", "") for c in spec.get("containers") or [])
        if images != st.images and st.stage not in ("failed",):
            st.images = images
            st.behaviour = self.behaviour_for(pod)
            st.restart_count += 1
            st.log.append(f"image changed to {', '.join(images)}: restarting container")
            self._start_creating(st)
            return
        # Something else changed (readiness gate conditions): recompute Ready, write if it differs.
        self._write(st)

    def _admit(self, pod: JsonObj) -> PodState | None:
        meta, spec = pod["metadata"], pod["spec"]
        node_name = spec["nodeName"]
        st = PodState(
            uid=meta["uid"],
            namespace=meta.get("namespace", ""),
            name=meta["name"],
            node=node_name,
            behaviour=self.behaviour_for(pod),
            images=tuple(c.get("image", "") for c in spec.get("containers") or []),
            start_time=now_rfc3339(),
        )
        self.pods[st.key] = st
        self.by_node.setdefault(node_name, set()).add(st.key)
        want = _gpu_request(pod)
        if want:
            capacity = int(
                ((self.nodes[node_name].get("status") or {}).get("allocatable") or {}).get(GPU, "0")
            )
            used = sum(
                _gpu_request(o) for o in self._active_pods_on(node_name) if o["metadata"]["uid"] != st.uid
            )
            if used + want > capacity:
                st.stage = "failed"
                st.failure = (
                    f"OutOf{GPU}",
                    f"Node didn't have enough resource: {GPU}, "
                    f"requested: {want}, used: {used}, capacity: {capacity}",
                )
                st.log.append(f"admission rejected: {GPU} requested {want}, used {used}, capacity {capacity}")
                self._write(st)
                return None
        if meta.get("deletionTimestamp"):
            return st
        self._later(st, self.config.admit_delay, self._start_creating)
        return st

    def _active_pods_on(self, node: str) -> list[JsonObj]:
        out = []
        for key in self.by_node.get(node, ()):
            st = self.pods.get(key)
            if st is not None and st.stage not in ("failed", "exited") and not st.terminating:
                obj = self.store.find(self._pods_type, st.namespace, st.name)
                if obj is not None:
                    out.append(obj)
        return out

    # ------------------------------------------------------------------------------------ lifecycle

    def _later(self, st: PodState, delay: float, fn: Callable[[PodState], None]) -> None:
        assert self._loop is not None
        token = st.token

        def run() -> None:
            if st.node in self.down:  # the node's kubelet is gone: resume when it comes back
                self._deferred.setdefault(st.node, []).append(run)
                return
            if st.token == token and self.pods.get(st.key) is st:
                try:
                    fn(st)
                except APIError as exc:  # the pod went away between scheduling and running
                    logger.debug("kubelet: %s/%s: %s", st.namespace, st.name, exc.message)

        if delay <= 0:
            self._loop.call_soon(run)
        else:
            self._loop.call_later(delay, run)

    def _start_creating(self, st: PodState) -> None:
        st.stage = "creating"
        st.token += 1
        if not st.ip:
            # The pod sandbox gets its IP before any container starts (as with a real CNI), so the
            # API server's proxy finds an address and answers 503 until the agent listens.
            self._ip_seq += 1
            st.ip = f"10.244.{(self._ip_seq >> 8) & 255}.{self._ip_seq & 255}"
        b = st.behaviour
        if b.kind == "image_pull_error":
            st.stage = "pull_error"
            st.log.append("failed to pull image")
            self._write(st)
            return
        delay = (
            b.start_delay
            if b.start_delay is not None
            else (self.config.slow_start_delay if b.kind == "slow_start" else self.config.start_delay)
        )
        if delay > 0:
            self._write(st)
        self._later(st, delay, self._run)

    def _run(self, st: PodState) -> None:
        st.stage = "running"
        st.started_at = now_rfc3339()
        st.log.append("container started")
        b = st.behaviour
        if b.kind in ("crash_loop", "oom", "exit"):
            self._write(st)
            reason = "OOMKilled" if b.kind == "oom" else ("Completed" if b.exit_code == 0 else "Error")
            code = 137 if b.kind == "oom" else b.exit_code
            self._later(st, b.crash_after, lambda s: self._crash(s, reason, code))
            return
        if b.kind == "never_ready":
            self._write(st)
            return
        delay = b.ready_delay if b.ready_delay is not None else self.config.ready_delay
        if delay > 0:
            self._write(st)
            self._later(st, delay, self._ready)
        else:
            self._ready(st)

    def _ready(self, st: PodState) -> None:
        st.stage = "ready"
        st.log.append("engine ready")
        self._write(st)

    def _crash(self, st: PodState, reason: str, exit_code: int) -> None:
        st.token += 1
        st.last_terminated = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": st.started_at,
                "finishedAt": now_rfc3339(),
                "containerID": _cid(st),
            }
        }
        st.log.append(f"container exited with code {exit_code} ({reason})")
        pod = self.store.find(self._pods_type, st.namespace, st.name)
        policy = (pod or {}).get("spec", {}).get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and exit_code == 0):
            st.stage = "exited"
            self._write(st)
            return
        st.stage = "crashed"
        st.restart_count += 1
        self._write(st)
        backoff = self.config.crash_backoff * min(2 ** (st.restart_count - 1), 8)
        self._later(st, backoff, self._restart)

    def _restart(self, st: PodState) -> None:
        self._run(st)

    def _terminate(self, st: PodState) -> None:
        st.stage = "exited"
        st.last_terminated = None
        st.log.append("container stopped (pod deleted)")
        st.token += 1
        self._write(st, terminated=True)
        self.store.finish_graceful_deletion(self._pods_type, st.namespace, st.name, actor="kubelet")

    # ------------------------------------------------------------------------------------ status

    def _write(self, st: PodState, *, terminated: bool = False) -> None:
        node = self.nodes.get(st.node, {})

        def build(pod: JsonObj) -> JsonObj:
            status = self._status(st, pod, node, failure=st.failure, terminated=terminated)
            return {**pod, "status": status}

        self.store.mutate(
            self._pods_type, st.namespace, st.name, build, subresource="status", actor="kubelet"
        )

    def _status(
        self, st: PodState, pod: JsonObj, node: JsonObj, *, failure: tuple[str, str] | None, terminated: bool
    ) -> JsonObj:
        old = pod.get("status") or {}
        spec = pod["spec"]
        ts = now_rfc3339()
        if failure is not None:
            return {
                "phase": "Failed",
                "reason": failure[0],
                "message": failure[1],
                "startTime": st.start_time,
                "qosClass": old.get("qosClass", "BestEffort"),
            }
        containers_ready = st.stage == "ready" and not terminated
        statuses = []
        for c in spec.get("containers") or []:
            cs: JsonObj = {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": f"docker-pullable://{c.get('image', '')}",
                "restartCount": st.restart_count,
                "ready": containers_ready,
                "started": st.stage in ("running", "ready"),
            }
            if terminated or st.stage == "exited":
                last = (st.last_terminated or {}).get("terminated") or {}
                cs["state"] = {
                    "terminated": {
                        "exitCode": last.get("exitCode", 0),
                        "reason": last.get("reason", "Completed"),
                        "startedAt": st.started_at or ts,
                        "finishedAt": ts,
                        "containerID": _cid(st),
                    }
                }
            elif st.stage in ("running", "ready"):
                cs["state"] = {"running": {"startedAt": st.started_at}}
                cs["containerID"] = _cid(st)
            elif st.stage == "crashed":
                cs["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container {c['name']} in pod {st.name}",
                    }
                }
            elif st.stage == "pull_error":
                cs["state"] = {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f'Back-off pulling image "{c.get("image", "")}"',
                    }
                }
            else:
                cs["state"] = {"waiting": {"reason": "ContainerCreating"}}
            if st.last_terminated is not None and "terminated" not in cs["state"]:
                cs["lastState"] = st.last_terminated
            else:
                cs["lastState"] = {}
            statuses.append(cs)
        names = [c["name"] for c in spec.get("containers") or []]
        gates = [g["conditionType"] for g in spec.get("readinessGates") or []]
        existing = {c.get("type"): c for c in old.get("conditions") or []}
        unready_msg = f"containers with unready status: [{' '.join(names)}]"
        ready, ready_reason, ready_msg = containers_ready, "ContainersNotReady", unready_msg
        if containers_ready:
            for gate in gates:
                gate_cond = existing.get(gate)
                if gate_cond is None:
                    ready, ready_reason = False, "ReadinessGatesNotReady"
                    ready_msg = f'corresponding condition of pod readiness gate "{gate}" does not exist.'
                    break
                if gate_cond.get("status") != "True":
                    ready, ready_reason = False, "ReadinessGatesNotReady"
                    ready_msg = (
                        f'the status of pod readiness gate "{gate}" is not "True", '
                        f"but {gate_cond.get('status')}"
                    )
                    break
        wanted = {
            "PodScheduled": (True, "", ""),
            "Initialized": (True, "", ""),
            "ContainersReady": (
                containers_ready,
                "" if containers_ready else "ContainersNotReady",
                "" if containers_ready else unready_msg,
            ),
            "Ready": (ready, "" if ready else ready_reason, "" if ready else ready_msg),
        }
        conditions = []
        for ctype in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
            ok, reason, message = wanted[ctype]
            status = "True" if ok else "False"
            prev = existing.get(ctype)
            cond: JsonObj = {
                "type": ctype,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"]
                if prev and prev.get("status") == status and prev.get("lastTransitionTime")
                else ts,
            }
            if reason:
                cond["reason"] = reason
                cond["message"] = message
            conditions.append(cond)
        conditions.extend(c for t, c in existing.items() if t not in OWNED_CONDITIONS)
        if st.stage == "exited":
            code = ((st.last_terminated or {}).get("terminated") or {}).get("exitCode", 0)
            phase = "Succeeded" if terminated or code == 0 else "Failed"
        elif st.stage in ("running", "ready", "crashed"):
            phase = "Running"
        else:
            phase = "Pending"
        status_out: JsonObj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": _node_ip(node),
            "hostIPs": [{"ip": _node_ip(node)}],
            "startTime": st.start_time,
            "containerStatuses": statuses,
            "qosClass": old.get("qosClass", "BestEffort"),
        }
        if st.ip:
            status_out["podIP"] = st.ip
            status_out["podIPs"] = [{"ip": st.ip}]
        return status_out


def _cid(st: PodState) -> str:
    return f"containerd://{st.uid.replace('-', '')}{st.restart_count:04d}"


def _node_ip(node: JsonObj) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == "InternalIP":
            return str(addr.get("address", ""))
    return ""


def _gpu_request(pod: JsonObj) -> int:
    total = 0
    for c in pod.get("spec", {}).get("containers") or []:
        res: dict[str, Any] = c.get("resources") or {}
        value = (res.get("limits") or {}).get(GPU) or (res.get("requests") or {}).get(GPU) or 0
        try:
            total += int(value)
        except (TypeError, ValueError):
            continue
    return total
